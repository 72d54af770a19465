"""The ``cproxy`` command as users run it: a subprocess of ``python -m cproxy`` (issue #2).

--check-config on good and bad files (one stderr line naming file:line, the directive and
what is allowed), then a real process: serving and the access log, SIGHUP reloads (good and
broken files), SIGTERM draining an in-flight request, and the built-in defaults' address.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cproxy import build
from tests.support import Origin, OriginHandler, wait_for

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def cproxy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cproxy", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd or REPO,
        timeout=30,
        check=False,
    )


def write(tmp_path: Path, text: str, name: str = "cproxy.conf") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- --check-config -------------------------------------------------------------------------


def test_check_config_accepts_the_sample_file() -> None:
    out = cproxy("--check-config", "-c", "etc/cproxy.conf")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cproxy: etc/cproxy.conf: OK"
    assert out.stderr == ""


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a small proxy\n"
        "Port = 3128\n"
        "persisttimeout = 2 seconds\n"
        "CacheMemory = 128 M\n"
        "Caching = off\n"
        'MappingRules = """\n'
        "    Proxy  /app/*  http://127.0.0.1:9000/*\n"
        "    Fail   /private/*\n"
        '"""\n',
    )
    out = cproxy("--check-config", "-c", str(path))
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.strip() == f"cproxy: {path}: OK"


def test_check_config_without_a_file_checks_the_defaults() -> None:
    out = cproxy("--check-config")
    assert (out.returncode, out.stdout.strip()) == (0, "cproxy: built-in defaults: OK")


# (file text, expected line, the start of the message after "file:line: ", what is allowed)
BAD_FILES = {
    "unknown directive": (
        "Port = 8080\n\nPersistTimout = 4 seconds\n",
        3,
        "PersistTimout: unknown directive (did you mean PersistTimeout?)",
        "allowed: the directives listed in cproxy.conf(5)",
    ),
    "bad time": (
        "# timeouts\nReadTimeout = 30\n",
        2,
        "ReadTimeout: '30' is not a time",
        "allowed: a time from 1 ms to 1 day",
    ),
    "bad size": (
        "CacheMemory = lots\n",
        1,
        "CacheMemory: 'lots' is not a size",
        "allowed: a size from 0 to 1 T",
    ),
    "bad switch": (
        "Port = 1\nCaching = maybe\n",
        2,
        "Caching: 'maybe' is not a switch",
        "allowed: on or off",
    ),
    "out of range": (
        "Workers = 65\n",
        1,
        "Workers: 65 is out of range",
        "allowed: a whole number from 1 to 64",
    ),
    "duplicate": (
        "Port = 8080\nHostname = a\nport = 8081\n",
        3,
        "Port: given twice (first on line 1 as Port)",
        "allowed: each directive once",
    ),
    "section header": (
        "Port = 1\n\n[cache]\nCaching = on\n",
        3,
        "sections ([name] lines) are not used",
        "allowed: Name = value lines",
    ),
    "unterminated multi-line value": (
        'Port = 1\nMappingRules = """\n  Fail /x/*\n',
        2,
        'MappingRules: the triple-quoted value is not closed (no matching """)',
        'allowed: a multi-line value between """ and """',
    ),
    "line without equals": (
        "Port = 1\nProxy /app/* http://x/*\n",
        2,
        "line 'Proxy /app/* http://x/*' is not Name = value",
        "allowed: Name = value lines",
    ),
    "unbalanced quote": (
        'Hostname = "edge\n',
        1,
        "Hostname: unbalanced quote",
        "allowed: a value, optionally in matching",
    ),
    "bad mapping rule": (
        'MappingRules = """\n  Pass /a/* /b/*\n"""\n',
        1,
        "MappingRules: ",
        "Proxy, Map, Redirect, Fail",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
@pytest.mark.parametrize("check_only", [True, False], ids=["check-config", "run"])
def test_bad_directive_file_exits_non_zero_with_one_line(
    tmp_path: Path, case: str, check_only: bool
) -> None:
    text, line, message, allowed = BAD_FILES[case]
    path = write(tmp_path, text)
    out = cproxy(*(["--check-config"] if check_only else []), "-c", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"cproxy: {path}:{line}: {message}"), lines[0]
    assert allowed in lines[0]


def test_missing_file_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    out = cproxy("--check-config", "-c", str(path))
    assert out.returncode == 2
    assert out.stderr == f"cproxy: {path}: file not found\n"


def test_version_and_help() -> None:
    version = cproxy("--version")
    assert version.returncode == 0
    # The build that runs: compiled under scripts/test-compiled, pure Python on the sources.
    assert re.fullmatch(r"cproxy \S+ \((compiled|pure Python)\)\n", version.stdout)
    assert f"({build()})" in version.stdout
    usage = cproxy("--help")
    assert usage.returncode == 0
    assert "--check-config" in usage.stdout


# --- a running cproxy process ---------------------------------------------------------------


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class RunningProxy:
    """``cproxy -c FILE`` in a subprocess on a free port, logs in files under ``directory``."""

    def __init__(self, directory: Path, extra: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.conf = directory / "cproxy.conf"
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # The working directory cproxy runs in (the directive file's by default).
        self.cwd = directory
        self.admin_port = 0

    def write_conf(self, extra: str) -> None:
        self.conf.write_text(
            f"Port = {self.port}\n"
            f"AdminPort = {self.admin_port}\n"
            f"AccessLog = {self.access_log}\n"
            f"ErrorLog = {self.error_log}\n"
            "LogLevel = info\n" + extra,
            encoding="utf-8",
        )

    def start(self) -> None:
        # A port found free may be taken before cproxy binds it: try a second one then.
        for _attempt in range(2):
            self.port = free_port()
            self.write_conf(self.extra)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cproxy", "-c", str(self.conf)],
                env=ENV,
                cwd=self.cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            proc = self.proc
            wait_for(
                lambda proc=proc: proc.poll() is not None or accepts(self.port),  # type: ignore[misc]
                what="cproxy to accept connections",
            )
            if proc.poll() is None:
                return
            assert proc.stderr is not None
            stderr = proc.stderr.read().decode()
            assert "cannot listen" in self.log_text(), stderr
        raise AssertionError("cproxy could not listen on two free ports")

    def log_text(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def wait_log(self, text: str) -> str:
        return wait_for(lambda: text in self.log_text() and self.log_text(), what=repr(text))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return self.proc.returncode


@contextlib.contextmanager
def running(directory: Path, extra: str = "") -> Iterator[RunningProxy]:
    proxy = RunningProxy(directory, extra)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        if proxy.proc is not None and proxy.proc.stderr is not None:
            proxy.proc.stderr.close()


ACCESS_LINE = re.compile(
    r"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<ms>\d+\.\d)ms '
    r"origin=(?P<origin>new|reused|-) cache=\S+ proto=(?:1\.1|2|-)$"
)


def test_serves_and_writes_the_access_log(tmp_path: Path, origin: Origin) -> None:
    with running(tmp_path) as proxy, requests.Session() as s:
        s.proxies = {"http": proxy.url}
        r1 = s.get(origin.url("/one"), headers={"User-Agent": "cli-test", "Referer": "http://r/"})
        r2 = s.get(origin.url("/two"), headers={"User-Agent": "cli-test"})
        assert (r1.status_code, r1.text, r1.headers["Via"]) == (200, "hello GET /one", "1.1 cproxy")
        assert (r2.status_code, r2.text) == (200, "hello GET /two")
        # The log is flushed once a second.
        lines = wait_for(
            lambda: (
                proxy.access_log.exists()
                and len(text := proxy.access_log.read_text().splitlines()) >= 2
                and text
            ),
            what="two access log lines",
        )
    matches = [ACCESS_LINE.match(line) for line in lines]
    assert all(matches), lines
    first, second = (m.groupdict() for m in matches if m)
    assert first["request"] == f"GET {origin.url('/one')} HTTP/1.1"
    assert (first["status"], first["referer"], first["agent"]) == ("200", "http://r/", "cli-test")
    assert int(first["bytes"]) > len("hello GET /one")
    assert first["origin"] == "new"
    assert second["request"] == f"GET {origin.url('/two')} HTTP/1.1"
    assert (second["referer"], second["origin"]) == ("-", "reused")
    assert origin.connections == 1


def test_sighup_applies_an_edited_file_while_running(tmp_path: Path, origin: Origin) -> None:
    with running(tmp_path) as proxy:
        before = requests.get(origin.url("/a"), proxies={"http": proxy.url}, timeout=10)
        assert before.headers["Via"] == "1.1 cproxy"
        proxy.write_conf("Hostname = edge-1\nMaxPersistRequest = 1\n")
        proxy.signal(signal.SIGHUP)
        proxy.wait_log("configuration changed: ")
        with requests.Session() as s:
            s.proxies = {"http": proxy.url}
            after = s.get(origin.url("/b"), timeout=10)
            assert after.headers["Via"] == "1.1 edge-1"
            # MaxPersistRequest = 1: the first response already closes the connection.
            assert after.headers["Connection"] == "close"
        assert proxy.proc is not None and proxy.proc.poll() is None
    assert [dict(h)["Via"] for _, _, h, _ in origin.requests] == ["1.1 cproxy", "1.1 edge-1"]


def test_sighup_with_a_broken_file_keeps_the_running_config(tmp_path: Path, origin: Origin) -> None:
    with running(tmp_path, "Hostname = before\n") as proxy:
        proxy.write_conf("Hostname = after\nReadTimeout = soon\n")
        proxy.signal(signal.SIGHUP)
        log = proxy.wait_log("SIGHUP: configuration not changed")
        line = next(x for x in log.splitlines() if "SIGHUP: configuration not changed" in x)
        assert f"{proxy.conf}:7: ReadTimeout: 'soon' is not a time" in line
        assert "allowed: a time" in line
        r = requests.get(origin.url("/still"), proxies={"http": proxy.url}, timeout=10)
        assert (r.status_code, r.headers["Via"]) == (200, "1.1 before")
        assert proxy.proc is not None and proxy.proc.poll() is None


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(
    tmp_path: Path, origin: Origin
) -> None:
    release = threading.Event()

    def slow(h: OriginHandler) -> None:
        release.wait(10)
        h.reply(200, b"finished late")

    origin.routes["/slow"] = slow
    result: dict[str, object] = {}

    with running(tmp_path) as proxy:

        def client() -> None:
            try:
                r = requests.get(origin.url("/slow"), proxies={"http": proxy.url}, timeout=15)
                result["response"] = (r.status_code, r.content)
            except BaseException as exc:
                result["error"] = exc

        t = threading.Thread(target=client)
        t.start()
        wait_for(lambda: origin.requests, what="the slow request to reach the origin")
        proxy.signal(signal.SIGTERM)
        proxy.wait_log("stopping: finishing in-flight requests")
        # New clients are refused once it stops accepting...
        wait_for(lambda: not accepts(proxy.port), what="the listener to close")
        # ...while the request in flight is still being served.
        assert proxy.proc is not None and proxy.proc.poll() is None
        release.set()
        t.join(15)
        assert result.get("response") == (200, b"finished late"), result
        assert proxy.proc.wait(5) == 0


def test_a_signal_right_after_listen_is_handled_not_fatal(tmp_path: Path) -> None:
    # cproxy accepts connections from listen() on; a SIGTERM sent then must be handled
    # (clean exit 0), not kill it by the default action (-15). Repeated: the window is short.
    for attempt in range(8):
        with running(tmp_path / str(attempt)) as proxy:
            proxy.signal(signal.SIGTERM)
            assert proxy.proc is not None
            assert proxy.proc.wait(5) == 0, f"attempt {attempt}"


def test_sigterm_on_an_idle_proxy_exits_0_promptly(tmp_path: Path) -> None:
    with running(tmp_path) as proxy:
        assert proxy.proc is not None
        # An idle keep-alive client must not hold shutdown for the grace period.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as idle:
            idle.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(100)
            proxy.signal(signal.SIGTERM)
            assert proxy.proc.wait(5) == 0


def test_built_in_defaults_listen_on_127_0_0_1_8080(tmp_path: Path, origin: Origin) -> None:
    probe = socket.socket()
    # As cproxy does: connections of an earlier run in TIME_WAIT must not count as "in use".
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", 8080))
    except OSError:
        pytest.skip("127.0.0.1:8080 is in use on this machine")
    finally:
        probe.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cproxy"],
        env=ENV,
        cwd=tmp_path,  # no admin password file here, so no admin listener either
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: proc.poll() is not None or accepts(8080), what="cproxy on :8080")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        r = requests.get(
            origin.url("/default"), proxies={"http": "http://127.0.0.1:8080"}, timeout=10
        )
        assert (r.status_code, r.text) == (200, "hello GET /default")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0
    # AccessLog defaults to standard output, ErrorLog to standard error.
    assert f"GET {origin.url('/default')} HTTP/1.1".encode() in stdout
    assert b"cproxy listening on 127.0.0.1:8080" in stderr
