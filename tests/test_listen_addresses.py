"""Several listen addresses (issue #15): the proxy and admin ports on IPv4 and IPv6 at once.

Real listeners on 127.0.0.1 and ::1; a real cproxy process for the log lines (IPv6 in
brackets) and for a busy second address failing the start.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cproxy.admin.passwd import set_password
from cproxy.directives.types import ListenHosts
from tests.support import Origin, start_proxy
from tests.test_cli import ENV, RunningProxy
from tests.test_deploy import launched


def free_port_on_both() -> int:
    """A port free on 127.0.0.1 and on ::1."""
    for _ in range(20):
        with socket.socket() as v4:
            v4.bind(("127.0.0.1", 0))
            port = int(v4.getsockname()[1])
            with socket.socket(socket.AF_INET6) as v6:
                try:
                    v6.bind(("::1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free on both loopbacks")


def test_host_list_values() -> None:
    hosts = ListenHosts()
    assert hosts.parse("127.0.0.1 ::1") == ("127.0.0.1", "::1")
    assert hosts.parse("127.0.0.1, 0:0::1") == ("127.0.0.1", "::1")
    assert hosts.format(("127.0.0.1", "::1")) == "127.0.0.1 ::1"
    for bad, message in (("", "at least one"), ("::1 ::1", "given twice"), ("a b!", "neither")):
        with pytest.raises(ValueError, match=message):
            hosts.parse(bad)


def test_the_proxy_serves_on_ipv4_and_ipv6_at_once(origin: Origin) -> None:
    with start_proxy(BindAddress="127.0.0.1 ::1") as proxy:
        addresses = proxy.runtime.proxy_addresses
        assert [host for host, _ in addresses] == ["127.0.0.1", "::1"]
        port = addresses[0][1]
        assert addresses[1][1] == port  # port 0: both take the first one's
        for proxy_url in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
            r = requests.get(origin.url("/both"), proxies={"http": proxy_url}, timeout=10)
            assert (r.status_code, r.headers["Via"]) == (200, "1.1 cproxy"), proxy_url
    assert len(origin.requests) == 2


def test_logs_print_ipv6_in_brackets_and_the_admin_serves_both(tmp_path: Path) -> None:
    port, admin_port = free_port_on_both(), free_port_on_both()
    set_password(str(tmp_path / "cproxy.passwd"), "admin", "pw-for-test", rounds=4)

    class BothLoopbacks(RunningProxy):
        def write_conf(self, extra: str) -> None:
            self.port, self.admin_port = port, admin_port  # free on both addresses
            super().write_conf(extra)

    proxy = BothLoopbacks(tmp_path, "BindAddress = 127.0.0.1 ::1\nAdminAddress = 127.0.0.1 ::1\n")
    with launched(proxy):
        log = proxy.wait_log("admin listening on http://[::1]")
        assert f"cproxy listening on 127.0.0.1:{port}, [::1]:{port}" in log, log
        assert f"admin listening on http://127.0.0.1:{admin_port}/" in log
        assert f"admin listening on http://[::1]:{admin_port}/" in log
        for host in ("127.0.0.1", "[::1]"):
            r = requests.get(
                f"http://{host}:{admin_port}/status.json",
                auth=("admin", "pw-for-test"),
                timeout=10,
            )
            assert r.status_code == 200, host


def test_a_busy_second_address_stops_the_start(tmp_path: Path) -> None:
    port = free_port_on_both()  # so 127.0.0.1 binds and ::1 is the address that fails
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::1", port))
        busy.listen(1)
        conf = tmp_path / "cproxy.conf"
        conf.write_text(
            f"Port = {port}\nBindAddress = 127.0.0.1 ::1\nAdminPort = 0\nErrorLog = e.log\n"
        )
        out = subprocess.run(
            [sys.executable, "-m", "cproxy", "-c", str(conf)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=30,
            check=False,
        )
    assert out.returncode == 1
    assert out.stderr.startswith(f"cproxy: cannot listen on [::1]:{port}: "), out.stderr
