"""The directives that decide interception (issue #19): values, defaults, bad input."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from cproxy.directives import defaults, load_config
from cproxy.errors import ConfigError


def test_interception_is_off_by_default_and_scoped_to_everyone_listed() -> None:
    cfg = defaults()
    assert cfg.ssl_interception is False
    assert cfg.ssl_intercept_clients == ()
    assert cfg.ssl_splice_hosts == () and cfg.ssl_intercept_hosts == ()
    assert cfg.ssl_pinned_splice_time_s == 3600.0
    assert cfg.cache_cookie_responses == "https"


def test_values_as_people_type_them(tmp_path: Path) -> None:
    path = tmp_path / "cproxy.conf"
    path.write_text(
        "SSLSpliceHosts = *.bank.example, .health.example gov.example 10.9.0.0/16\n"
        "SSLInterceptHosts = deb.example.org\n"
        "SSLInterceptClients = 10.1.0.0/16 ::1\n"
        "SSLPinnedSpliceTime = 2 hours 30 minutes\n"
        "CacheCookieResponses = Explicit\n"
    )
    cfg = load_config(path)
    assert cfg.ssl_splice_hosts == (
        "bank.example",
        "health.example",
        "gov.example",
        ipaddress.ip_network("10.9.0.0/16"),
    )
    assert cfg.ssl_intercept_hosts == ("deb.example.org",)
    assert cfg.ssl_intercept_clients == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("::1/128"),
    )
    assert cfg.ssl_pinned_splice_time_s == 9000.0
    assert cfg.cache_cookie_responses == "explicit"


@pytest.mark.parametrize(
    ("line", "directive"),
    [
        ("SSLInterception = maybe", "SSLInterception"),
        ("SSLSpliceHosts = bank example/x", "SSLSpliceHosts"),
        ("SSLInterceptClients = 10.0.0.1/8", "SSLInterceptClients"),
        ("SSLPinnedSpliceTime = 0 seconds", "SSLPinnedSpliceTime"),
        ("CacheCookieResponses = sometimes", "CacheCookieResponses"),
    ],
)
def test_bad_values_name_file_line_and_directive(tmp_path: Path, line: str, directive: str) -> None:
    path = tmp_path / "cproxy.conf"
    path.write_text("# interception\n" + line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:2" in text and directive in text
