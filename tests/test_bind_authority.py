"""bind_to_authority (issue #19): one authority per intercepted connection, with bytes.

Every request inside an intercepted CONNECT to host:port is bound to https://host:port or
refused with 421 before anything else sees it (DESIGN.md §5 rule 13).
"""

from __future__ import annotations

import pytest

from cproxy.errors import ClientProtocolError
from cproxy.http import Request, parse_request_head
from cproxy.http.authority import bind_to_authority


def request(line: str, *fields: str) -> Request:
    return parse_request_head(("\r\n".join((line, *fields)) + "\r\n\r\n").encode("latin-1"))


def bound(line: str, *fields: str, host: str = "a.example", port: int = 443) -> Request:
    req = request(line, *fields)
    bind_to_authority(req, "https", host, port)
    return req


def refused(line: str, *fields: str, host: str = "a.example", port: int = 443) -> int:
    req = request(line, *fields)
    before = (req.scheme, req.host, req.port, req.form, req.target)
    with pytest.raises(ClientProtocolError) as info:
        bind_to_authority(req, "https", host, port)
    # A refused request is left as it was.
    assert (req.scheme, req.host, req.port, req.form, req.target) == before
    return info.value.status


@pytest.mark.parametrize(
    "host_field",
    ["a.example", "a.example:443", "A.EXAMPLE", "a.example.", "a.example.:443"],
)
def test_origin_form_is_filled_with_the_connections_authority(host_field: str) -> None:
    req = bound("GET /p?q=1 HTTP/1.1", f"Host: {host_field}")
    assert (req.scheme, req.host, req.port, req.path) == ("https", "a.example", 443, "/p?q=1")
    assert req.form == "absolute"
    assert req.url == "https://a.example/p?q=1"
    assert req.target == "https://a.example/p?q=1"  # what the access log shows


def test_a_non_default_port_is_kept_and_must_be_written() -> None:
    req = bound("GET / HTTP/1.1", "Host: a.example:8443", port=8443)
    assert req.url == "https://a.example:8443/"
    # Host without a port means 443 for https: another authority than a.example:8443.
    assert refused("GET / HTTP/1.1", "Host: a.example", port=8443) == 421


@pytest.mark.parametrize(
    "host_field",
    [
        "b.example",
        "a.example:80",  # the same name on another port is another authority
        "a.example:8443",
        "sub.a.example",
        "a.example.evil",
        "127.0.0.1",
    ],
)
def test_a_host_field_naming_another_authority_gets_421(host_field: str) -> None:
    assert refused("GET / HTTP/1.1", f"Host: {host_field}") == 421


@pytest.mark.parametrize(
    "target",
    [
        "https://a.example/x",
        "https://a.example:443/x",
        "https://A.Example/x",
    ],
)
def test_an_absolute_target_for_the_same_authority_is_accepted(target: str) -> None:
    req = bound(f"GET {target} HTTP/1.1", "Host: a.example")
    assert req.url == "https://a.example/x"


@pytest.mark.parametrize(
    "target",
    [
        "http://a.example/x",  # http is port 80: another authority (and cleartext)
        "https://b.example/x",
        "https://a.example:8443/x",
        "http://a.example:443/x",  # right port, wrong scheme
    ],
)
def test_an_absolute_target_naming_another_authority_gets_421(target: str) -> None:
    assert refused(f"GET {target} HTTP/1.1", "Host: a.example") == 421


def test_an_absolute_target_wins_over_the_host_field_as_rfc_9112_says() -> None:
    # §3.2.2: with absolute-form the Host field is ignored (and rebuilt when forwarded).
    req = bound("GET https://a.example/x HTTP/1.1", "Host: b.example")
    assert req.host_header == "a.example"


def test_http_1_0_without_host_is_bound_to_the_connection() -> None:
    req = bound("GET /old HTTP/1.0")
    assert req.url == "https://a.example/old"


def test_ipv6_and_address_authorities() -> None:
    req = bound("GET / HTTP/1.1", "Host: [::1]", host="::1")
    assert req.url == "https://[::1]/"
    assert refused("GET / HTTP/1.1", "Host: [::2]", host="::1") == 421
    req = bound("GET / HTTP/1.1", "Host: 127.0.0.1:9443", host="127.0.0.1", port=9443)
    assert req.url == "https://127.0.0.1:9443/"


def test_connect_inside_is_refused() -> None:
    assert refused("CONNECT a.example:443 HTTP/1.1", "Host: a.example:443") == 405


def test_a_malformed_host_field_is_a_400_at_parsing_already() -> None:
    with pytest.raises(ClientProtocolError) as info:
        request("GET / HTTP/1.1", "Host: a.example:99999")
    assert info.value.status == 400
