"""Cache-Status says why (issue #23, RFC 9211 §2.8): a response that is not stored, or a
stored one that is not used, names the reason in its ``detail``, and the access log's
``cache=`` field carries the same. Each case through a real proxy and a real origin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from cproxy.cache.policy import STORE_REASONS
from tests.support import Origin, OriginHandler, start_proxy

FRESH = {"Cache-Control": "max-age=600"}


def _route(status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"x" * 10):  # type: ignore[no-untyped-def]
    def route(h: OriginHandler) -> None:
        h.reply(status, body, headers)

    return route


# (detail, the origin's answer, the directives, the request: method, path, headers)
CASES = [
    ("no-store", _route(headers={"Cache-Control": "no-store"}), {}, ("GET", "/r", {})),
    ("private", _route(headers={"Cache-Control": "private, max-age=60"}), {}, ("GET", "/r", {})),
    # No validator, no explicit freshness, no rule gives it a lifetime.
    ("no-freshness", _route(), {}, ("GET", "/r", {})),
    ("authorization", _route(headers=FRESH), {}, ("GET", "/r", {"Authorization": "Basic eDp5"})),
    ("too-large", _route(headers=FRESH, body=b"x" * 2000), {"CacheFileSizeLimit": "1 K"},
     ("GET", "/r", {})),
    ("vary-star", _route(headers={**FRESH, "Vary": "*"}), {}, ("GET", "/r", {})),
    ("status", _route(500), {}, ("GET", "/r", {})),
    ("method", _route(headers=FRESH), {}, ("POST", "/r", {})),
    # A 206 of unknown complete length cannot be combined with other parts.
    ("range", _route(206, {**FRESH, "Content-Range": "bytes 0-9/*"}), {},
     ("GET", "/r", {"Range": "bytes=0-9"})),
    ("query", _route(headers=FRESH), {"CacheQueries": "off"}, ("GET", "/r?q=1", {})),
    # A request with a cookie, a response that does not say it may be shared (#19's
    # CacheCookieResponses; "explicit" applies it to plain http as well as https).
    ("cookie", _route(headers=FRESH), {"CacheCookieResponses": "explicit"},
     ("GET", "/r", {"Cookie": "session=1"})),
    # Storable, but larger than the whole cache (CacheMemory).
    ("limit", _route(headers=FRESH, body=b"x" * 1500),
     {"CacheMemory": "1600 bytes", "CacheFileSizeLimit": "0"}, ("GET", "/r", {})),
]  # fmt: skip


@pytest.mark.parametrize(
    ("detail", "route", "directives", "request_"), CASES, ids=[c[0] for c in CASES]
)
def test_a_response_not_stored_says_why(  # type: ignore[no-untyped-def]
    tmp_path: Path, detail: str, route, directives: dict[str, str], request_: tuple
) -> None:
    method, path, headers = request_
    log = tmp_path / "access.log"
    with Origin() as origin, start_proxy(AccessLog=str(log), **directives) as proxy:
        origin.routes["/r"] = route
        proxies = {"http": proxy.url}
        for _ in range(2):
            r = requests.request(method, origin.url(path), headers=headers, proxies=proxies,
                                 timeout=10)  # fmt: skip
            status = r.headers["Cache-Status"]
            assert f"detail={detail}" in status.split("; "), status
            assert "stored" not in status.split("; ") and "hit" not in status.split("; ")
        assert len(origin.requests) == 2  # nothing was served from the cache
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert cache_field(line).endswith(f";detail={detail}"), line


def cache_field(line: str) -> str:
    """The access log line's cache= field (proto= and any later field left out)."""
    return line.split(" cache=", 1)[1].split(" ", 1)[0]


def test_a_stored_response_says_stored_and_then_hit(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Origin() as origin, start_proxy(AccessLog=str(log)) as proxy:
        origin.routes["/r"] = _route(headers=FRESH)
        first = requests.get(origin.url("/r"), proxies={"http": proxy.url}, timeout=10)
        second = requests.get(origin.url("/r"), proxies={"http": proxy.url}, timeout=10)
    assert "detail=" not in first.headers["Cache-Status"]
    assert "stored" in first.headers["Cache-Status"].split("; ")
    assert "hit" in second.headers["Cache-Status"].split("; ")
    assert [cache_field(line) for line in log.read_text().splitlines()] == [
        "uri-miss;stored",
        "hit",
    ]


def test_the_man_page_lists_every_detail() -> None:
    page = (Path(__file__).resolve().parents[1] / "man" / "cproxy.8").read_text()
    section = page.split(".SH CACHE STATUS\n")[1].split("\n.SH ")[0]
    listed = set(re.findall(r"^\.B ([a-z-]+)$", section, re.M))
    words = {*STORE_REASONS, "body", "until-close", "too-large", "limit", "incomplete"}
    assert words <= listed, words - listed
