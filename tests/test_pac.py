"""The PAC file (ProxyPac, issue #15): /proxy.pac and /wpad.dat on the proxy port.

Fetched as a browser fetches it (directly from the proxy port), and used by headless
Chromium with --proxy-pac-url: a name the PAC sends through the proxy arrives there (the
origin sees cproxy's Via), a NoProxy name goes direct. Chromium never sends loopback URLs
to a proxy named by a PAC file, so the pages have names: Chromium's resolver knows only
loopback and the direct name (nothing is looked up outside), and cproxy's pool resolves
the proxied name to the loopback origin.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import Any

import pytest
import requests

from tests.support import CHROMIUM, CHROMIUM_ARGS, Origin, start_proxy


def test_the_pac_file_names_this_proxy_and_the_direct_list(origin: Origin) -> None:
    with start_proxy(NoProxy="intranet.example .corp.example 10.0.0.0/8 fd00::/8") as proxy:
        pac = requests.get(f"{proxy.url}/proxy.pac", timeout=10)
        wpad = requests.get(f"{proxy.url}/wpad.dat", timeout=10)
        head = requests.head(f"{proxy.url}/proxy.pac", timeout=10)
    assert pac.status_code == 200
    assert pac.headers["Content-Type"] == "application/x-ns-proxy-autoconfig"
    assert wpad.text == pac.text and head.status_code == 200 and head.content == b""
    script = pac.text
    assert "function FindProxyForURL(url, host)" in script
    assert f'return "PROXY 127.0.0.1:{proxy.port}";' in script
    assert 'dnsDomainIs(host, ".intranet.example")' in script
    assert 'host == "corp.example"' in script
    assert 'isInNet(host, "10.0.0.0", "255.0.0.0")' in script
    assert 'isInNetEx(bare, "fd00::/8")' in script
    assert origin.requests == []


def test_pac_proxy_address_and_switching_it_off() -> None:
    with start_proxy(PacProxyAddress="proxy.example:3128") as proxy:
        script = requests.get(f"{proxy.url}/proxy.pac", timeout=10).text
        assert 'return "PROXY proxy.example:3128";' in script
    with start_proxy(ProxyPac="off") as proxy:
        assert requests.get(f"{proxy.url}/proxy.pac", timeout=10).status_code == 400


def test_the_pac_file_needs_no_proxy_login(tmp_path: Any) -> None:
    from cproxy.admin.passwd import set_password

    passwd = tmp_path / "p"
    set_password(str(passwd), "u", "p", rounds=4)
    with start_proxy(ProxyAuth="on", ProxyAuthPasswordFile=str(passwd)) as proxy:
        assert requests.get(f"{proxy.url}/proxy.pac", timeout=10).status_code == 200
        other = requests.get(f"{proxy.url}/other", timeout=10)
        assert other.status_code == 407


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian chromium is not installed (scripts/test installs it; CI must not skip)",
)
def test_chromium_follows_the_pac_file(origin: Origin, monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(host: str, port: int) -> list[Any]:
        if host != "through.test":
            raise socket.gaierror(socket.EAI_NONAME, "not known in this test")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with start_proxy(NoProxy="direct.test") as proxy:
        # The test's stand-in for DNS: cproxy resolves only the proxied name, to loopback.
        monkeypatch.setattr(proxy.runtime.pool, "resolve", resolve)

        def browse(url: str) -> str:
            out = subprocess.run(
                [
                    CHROMIUM,
                    *CHROMIUM_ARGS,
                    "--headless",
                    f"--proxy-pac-url={proxy.url}/proxy.pac",
                    "--host-resolver-rules="
                    "MAP direct.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--dump-dom",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            return out.stdout + out.stderr[-1000:]

        through = browse(f"http://through.test:{origin.port}/via-proxy")
        direct = browse(f"http://direct.test:{origin.port}/direct")
    assert "hello GET /via-proxy" in through, through
    assert "hello GET /direct" in direct, direct
    seen = {path: dict(h) for _, path, h, _ in origin.requests}
    assert seen["/via-proxy"].get("Via") == "1.1 cproxy"
    assert "Via" not in seen["/direct"]
