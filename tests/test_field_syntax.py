"""One list splitter and one hop-by-hop list for all of cproxy (issue #12).

The protocol (`Headers.get_tokens`, used for Connection and Via) and the cache
(`cache.fields.split_list`, used for Cache-Control, Vary...) split list-based fields the
same, quote-aware way; forwarding and storing drop the same hop-by-hop fields.
"""

from __future__ import annotations

import pytest

from cproxy.cache import fields as cache_fields
from cproxy.cache.policy import NOT_STORED_FIELDS, headers_to_store
from cproxy.http import HOP_BY_HOP, Headers
from cproxy.http.syntax import split_list


@pytest.mark.parametrize(
    ("value", "members"),
    [
        ("a, b,,c ,\t", ["a", "b", "c"]),
        ('a, "b,c", d', ["a", '"b,c"', "d"]),
        ('"x\\",y", z', ['"x\\",y"', "z"]),
        ("", []),
    ],
)
def test_the_protocol_and_the_cache_split_lists_alike(value: str, members: list[str]) -> None:
    assert split_list(value) == members
    assert cache_fields.split_list is split_list
    assert Headers([("X-List", value)]).get_tokens("x-list") == [m.lower() for m in members]


def test_get_tokens_spans_every_field_line_and_lower_cases() -> None:
    headers = Headers([("Connection", "Keep-Alive, X-A"), ("connection", "close")])
    assert headers.get_tokens("connection") == ["keep-alive", "x-a", "close"]
    assert headers.get_tokens("via") == []


def test_what_is_never_forwarded_is_never_stored() -> None:
    assert HOP_BY_HOP <= NOT_STORED_FIELDS
    assert {"content-length", "age"} <= NOT_STORED_FIELDS


@pytest.mark.parametrize(
    "name", ["Proxy-Authenticate", "Proxy-Authorization", "Proxy-Authentication-Info"]
)
def test_proxy_authentication_fields_are_neither_forwarded_nor_stored(name: str) -> None:
    fields = [("Cache-Control", "max-age=60"), (name, "x"), ("X-Kept", "1")]
    assert Headers(list(fields)).end_to_end() == [("Cache-Control", "max-age=60"), ("X-Kept", "1")]
    assert headers_to_store(fields) == [("Cache-Control", "max-age=60"), ("X-Kept", "1")]
