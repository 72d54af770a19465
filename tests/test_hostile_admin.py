"""The admin listener under attack (issue #10): password guessing and DNS rebinding.

A real admin listener (start_admin on 127.0.0.1, port 0) for a real Runtime; the
attacker's requests come from a second real source address (127.0.0.2, in the default
AdminAccess) over raw sockets, so its address is its own and the honest user's
(127.0.0.1) is another. The raw exchanges run in gevent's thread pool, so the admin's
greenlets serve meanwhile.

- Failed logins are counted per client address: past a few, that address is locked out
  (429 with Retry-After, its passwords not even checked, the lockout logged) while
  another address logs in as fast as ever; the lockout ends (an injected clock).
- The admin answers only requests whose Host names it (localhost, its addresses,
  Hostname, AdminHostNames): a rebound name gets 421, whatever the credentials.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from cproxy.admin.auth import LOGIN_FREE_FAILURES, LoginThrottle
from cproxy.directives import config_with
from tests.hostile import Answer, parse_responses, read_all
from tests.support import WAIT_S, FakeClock
from tests.test_admin import PASSWORD, USER, AdminSite


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AdminSite]:
    s = AdminSite(tmp_path)
    yield s
    s.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def admin_get(
    site: AdminSite,
    *,
    source: str = "127.0.0.1",
    host: str | None = "127.0.0.1",
    password: str | None = PASSWORD,
    path: str = "/status.json",
) -> Answer:
    """One raw GET to the admin from ``source``; Host ``host:port`` (None: no Host)."""
    port = site.server.address[1]
    lines = [f"GET {path} HTTP/1.1" if host is not None else f"GET {path} HTTP/1.0"]
    if host is not None:
        lines.append(f"Host: {host}:{port}")
    if password is not None:
        lines.append(f"Authorization: {basic(USER, password)}")
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()

    def run() -> bytes:
        with contextlib.closing(socket.socket()) as s:
            s.settimeout(WAIT_S)
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(data)
            raw, _ = read_all(s, WAIT_S)
            return raw

    with gevent.Timeout(WAIT_S * 2):
        raw = gevent.get_hub().threadpool.apply(run)
    answers, _ = parse_responses(raw)
    assert len(answers) == 1, raw[:300]
    return answers[0]


# -- password guessing ---------------------------------------------------------------------


def test_failed_logins_lock_out_their_address_only(
    site: AdminSite, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    site.server.app.login_throttle = LoginThrottle(clock=clock)
    verifier = site.server.app._verifier(site.runtime.config)
    with caplog.at_level(logging.WARNING, logger="cproxy.admin"):
        for n in range(LOGIN_FREE_FAILURES + 1):
            answer = admin_get(site, source="127.0.0.2", password=f"guess-{n}")
            assert answer.status == 401, (n, answer.status)
        runs = verifier.bcrypt_runs
        # Locked out: even the right password is refused, and not checked at all.
        for password in ("guess-again", PASSWORD):
            answer = admin_get(site, source="127.0.0.2", password=password)
            assert answer.status == 429, answer.status
            assert int(answer.header("retry-after") or "0") >= 1
        assert verifier.bcrypt_runs == runs
        # Another address is not slowed down (a generous bound: the machine is shared).
        started = time.monotonic()
        assert admin_get(site, source="127.0.0.1").status == 200
        assert time.monotonic() - started < 2.0
    locked = [r.getMessage() for r in caplog.records if "locked out" in r.getMessage()]
    assert any("127.0.0.2" in m for m in locked), locked
    assert not any("127.0.0.1 " in m for m in locked), locked
    # The lockout ends; the right password then works and clears the count.
    clock.advance(1.5)
    assert admin_get(site, source="127.0.0.2").status == 200
    assert admin_get(site, source="127.0.0.2", password="one-slip").status == 401
    assert admin_get(site, source="127.0.0.2").status == 200


def test_the_lockout_doubles_with_each_further_failure() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, first_lockout_s=1, max_lockout_s=8)
    lockouts = [throttle.failed("192.0.2.9") for _ in range(LOGIN_FREE_FAILURES + 5)]
    assert lockouts[:LOGIN_FREE_FAILURES] == [0.0] * LOGIN_FREE_FAILURES
    assert lockouts[LOGIN_FREE_FAILURES:] == [1, 2, 4, 8, 8]
    assert throttle.retry_after_s("192.0.2.9") == 8
    assert throttle.retry_after_s("192.0.2.10") == 0
    clock.advance(8)
    assert throttle.retry_after_s("192.0.2.9") == 0


# -- DNS rebinding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "cproxy-admin"]
)
def test_a_host_that_is_not_the_admins_gets_421_whatever_the_credentials(
    site: AdminSite, host: str
) -> None:
    for path in ("/", "/status.json", "/static/admin.css"):
        answer = admin_get(site, host=host, path=path)
        assert answer.status == 421, (path, answer.status)
        assert b"uptime" not in answer.body


def test_a_request_without_host_gets_421(site: AdminSite) -> None:
    assert admin_get(site, host=None).status == 421


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "cproxy"])
def test_the_admins_own_names_and_addresses_are_served(site: AdminSite, host: str) -> None:
    # "cproxy" is the Hostname directive's default.
    assert admin_get(site, host=host).status == 200


def test_admin_host_names_adds_names(site: AdminSite) -> None:
    assert admin_get(site, host="proxy.office.test").status == 421
    site.runtime.apply(config_with(site.runtime.config, {"AdminHostNames": "proxy.office.test"}))
    assert admin_get(site, host="proxy.office.test").status == 200
    assert admin_get(site, host="PROXY.office.test").status == 200
