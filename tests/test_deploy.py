"""Deploying cproxy as an administrator would (issue #15): file names, start-up, signals.

Real ``cproxy`` processes (tests.test_cli.RunningProxy) on loopback; each defect's test
failed before its fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cproxy.admin.passwd import set_password
from tests.support import Origin, raw_connection, read_response, start_proxy, wait_for
from tests.test_cli import ENV, RunningProxy, accepts


@contextlib.contextmanager
def launched(proxy: RunningProxy) -> Iterator[RunningProxy]:
    """Start ``proxy`` (a configured RunningProxy); stop it and close its pipe after."""
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        if proxy.proc is not None and proxy.proc.stderr is not None:
            proxy.proc.stderr.close()


class RelativeLogs(RunningProxy):
    """AccessLog and ErrorLog given as bare file names, cproxy started in another directory."""

    def write_conf(self, extra: str) -> None:
        self.conf.write_text(
            f"Port = {self.port}\nAdminPort = 0\n"
            "AccessLog = access.log\nErrorLog = error.log\nLogLevel = info\n" + extra,
            encoding="utf-8",
        )


def test_relative_log_names_are_taken_relative_to_the_directive_file(
    tmp_path: Path, origin: Origin
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proxy = RelativeLogs(tmp_path / "etc")
    proxy.cwd = elsewhere
    with launched(proxy):
        r = requests.get(origin.url("/rel"), proxies={"http": proxy.url}, timeout=10)
        assert r.status_code == 200
        wait_for(
            lambda: proxy.access_log.exists() and "/rel" in proxy.access_log.read_text(),
            what="the access log line in the directive file's directory",
        )
        assert "cproxy listening on" in proxy.log_text()
    assert sorted(os.listdir(elsewhere)) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_password_file_created_after_start_starts_the_admin_without_a_reload(
    tmp_path: Path,
) -> None:
    """Issue #22: cproxy passwd -c CONF writes the file cproxy -c CONF looks for, and the
    running proxy starts its admin when the file appears: no SIGHUP, no restart."""
    admin_port = free_port()
    passwd = tmp_path / "users.passwd"
    proxy = RunningProxy(tmp_path, "AdminPasswordFile = users.passwd\n")
    proxy.admin_port = admin_port
    with launched(proxy):
        warning = proxy.wait_log("admin not started: no password file")
        line = next(x for x in warning.splitlines() if "admin not started" in x)
        assert f"cproxy passwd -f {passwd} admin" in line
        assert "the admin starts within a second of it appearing" in line
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{admin_port}/", timeout=5)
        made = subprocess.run(
            [sys.executable, "-m", "cproxy", "passwd", "-c", str(proxy.conf), "admin"],
            input="s3cret-pass\n",
            capture_output=True,
            text=True,
            env=ENV,
            cwd=tmp_path.parent,  # not the directive file's directory
            timeout=30,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        assert passwd.is_file()
        # A bounded poll of the admin port: it opens within ADMIN_WATCH_S of the file.
        wait_for(lambda: accepts(admin_port), what="the admin listener")
        r = requests.get(
            f"http://127.0.0.1:{admin_port}/status.json", auth=("admin", "s3cret-pass"), timeout=10
        )
        assert r.status_code == 200
        assert "requests_total" in r.text
        assert "admin listening on" in proxy.log_text()


def test_passwd_with_a_bad_directive_file_names_it_and_writes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "cproxy.conf"
    conf.write_text("Port = nope\n", encoding="utf-8")
    made = subprocess.run(
        [sys.executable, "-m", "cproxy", "passwd", "-c", str(conf), "admin"],
        input="pw\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert made.returncode == 2
    assert str(conf) in made.stderr and "Port" in made.stderr, made.stderr
    assert not (tmp_path / "cproxy.passwd").exists()


def test_a_busy_admin_port_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        admin_port = busy.getsockname()[1]
        conf = tmp_path / "cproxy.conf"
        conf.write_text(
            f"Port = 0\nAdminPort = {admin_port}\nErrorLog = error.log\nAccessLog =\n",
            encoding="utf-8",
        )
        # The admin would run (its password file exists): its port must be free.
        set_password(str(tmp_path / "cproxy.passwd"), "admin", "pw", rounds=4)
        out = subprocess.run(
            [sys.executable, "-m", "cproxy", "-c", str(conf)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=30,
            check=False,
        )
    assert out.returncode == 1
    message = f"cannot listen on the admin address 127.0.0.1:{admin_port}: "
    assert out.stderr.startswith(f"cproxy: {message}"), out.stderr
    assert "AdminPort = 0 runs without the admin pages" in out.stderr
    assert message in (tmp_path / "error.log").read_text()


# --- cproxy(8) says what the command does ---------------------------------------------------

MAN8 = Path(__file__).resolve().parents[1] / "man" / "cproxy.8"


def man_section(name: str) -> str:
    """The text of one .SH section of cproxy(8), roff requests and font escapes removed."""
    text = MAN8.read_text(encoding="utf-8")
    m = re.search(rf"^\.SH {name}\n(.*?)(?=^\.SH )", text, re.S | re.M)
    assert m is not None, name
    lines = [re.sub(r"^\.(?:B|I|BR|IR|RB|BI|IB)\s+", "", x) for x in m.group(1).splitlines()]
    plain = " ".join(x for x in lines if not x.startswith("."))
    return re.sub(r"\\f[BIR]|\\", "", plain).replace('"', "")


def test_man_page_exit_statuses_are_the_commands(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("Port = many\n")
    invalid = subprocess.run(
        [sys.executable, "-m", "cproxy", "--check-config", "-c", str(bad)],
        capture_output=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert invalid.returncode == 2
    statuses = man_section("EXIT STATUS")
    assert re.search(r"2 The directive file is invalid", statuses), statuses
    assert "status 0 when the file is valid, 2 otherwise" in man_section("OPTIONS")


def test_man_page_gives_passwd_its_real_default_and_purge_its_real_port(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "cproxy", "passwd", "someone"],
        input="a-password\n",
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "cproxy.passwd").is_file()
    commands = man_section("COMMANDS")
    assert "defaults to cproxy.passwd in the working directory" in commands, commands
    description = man_section("DESCRIPTION")
    assert "statistics and PURGE" not in description
    assert "PURGE requests, which drop a URL from the cache, are sent to the proxy port" in (
        description
    )


# --- what errors say ------------------------------------------------------------------------


class Records(logging.Handler):
    """Collects the messages of the ``cproxy`` logger (it may not propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def cproxy_messages() -> Iterator[Records]:
    logger = logging.getLogger("cproxy")
    records, level = Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connections are refused


def test_the_error_page_names_a_refused_address_once() -> None:
    port = closed_port()
    where = f"127.0.0.1:{port}"
    with start_proxy() as proxy, raw_connection(proxy.port) as sock:
        sock.sendall(f"GET http://{where}/ HTTP/1.1\r\nHost: {where}\r\n\r\n".encode())
        status, _, body = read_response(sock)
    assert status == 502
    page = body.decode()
    assert f"cannot connect to {where}: Connection refused" in page, page
    assert page.count(where) == 1, page


def test_the_error_log_writes_a_connect_target_as_host_and_port() -> None:
    port = closed_port()
    where = f"127.0.0.1:{port}"
    with (
        cproxy_messages() as records,
        start_proxy(ConnectPorts=str(port), LogLevel="info") as proxy,
        raw_connection(proxy.port) as sock,
    ):
        sock.sendall(f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n\r\n".encode())
        status, _, _ = read_response(sock)
    assert status == 502
    lines = [m for m in records.messages if m.startswith("CONNECT ")]
    assert lines and lines[0].startswith(f"CONNECT {where}: cannot connect"), records.messages
    assert not any("http://" in m for m in lines), lines


def test_a_busy_admin_port_does_not_stop_a_proxy_that_has_no_admin_to_run(
    tmp_path: Path, origin: Origin
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        proxy = RunningProxy(tmp_path)  # no password file: the admin would not start
        proxy.admin_port = busy.getsockname()[1]
        with launched(proxy):
            proxy.wait_log("admin not started: no password file")
            r = requests.get(origin.url("/still"), proxies={"http": proxy.url}, timeout=10)
            assert r.status_code == 200
