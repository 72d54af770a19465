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


def test_a_reload_swaps_the_ca_and_a_bad_one_keeps_the_ca_in_use(tmp_path: Path) -> None:
    """The CA directives apply live: a reload naming another CA intercepts with it from then
    on; one naming a CA that fails the start-up checks is refused and the CA in use stays."""
    from cproxy.directives import config_with
    from cproxy.intercept.ca import create_ca
    from cproxy.server.runtime import Runtime

    first, second = create_ca(tmp_path / "a"), create_ca(tmp_path / "b")

    def using(ca_dir: Path) -> dict[str, str]:
        return {
            "SSLInterception": "on",
            "SSLCACertFile": str(ca_dir / "ca-cert.pem"),
            "SSLCAKeyFile": str(ca_dir / "ca-key.pem"),
        }

    base = config_with(defaults(), {"Port": "0", "AdminPort": "0", "AccessLog": ""})
    runtime = Runtime(config_with(base, using(tmp_path / "a")))
    try:
        assert runtime.interception.ca is not None
        assert runtime.interception.ca.fingerprint == first.fingerprint
        restart = runtime.apply(config_with(base, using(tmp_path / "b")))
        assert not {"SSLCACertFile", "SSLCAKeyFile"} & set(restart)
        assert runtime.interception.ca.fingerprint == second.fingerprint

        (tmp_path / "a" / "ca-key.pem").chmod(0o640)  # now refused: open to the group
        runtime.apply(config_with(base, using(tmp_path / "a")))
        assert runtime.interception.ca.fingerprint == second.fingerprint
    finally:
        runtime.close()
