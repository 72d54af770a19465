"""Access log formats and rotation (issue #15), through a running proxy.

Each AccessLogFormat is written by a real cproxy serving real requests: NCSA combined is
read by Debian's goaccess, Squid's native format and JSON lines are parsed field by field.
Rotation runs the shipped logrotate snippet (Debian's logrotate) against a cproxy process
found through its PidFile: the next line goes to the new file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cproxy.server.accesslog import FORMATS
from tests.support import Origin, raw_connection, read_response, start_proxy, wait_for
from tests.test_cli import ENV, RunningProxy, running

REPO = Path(__file__).resolve().parents[1]


def serve_three(origin: Origin, tmp_path: Path, fmt: str) -> list[str]:
    """A miss, a hit and a CONNECT refused by port, logged in ``fmt``; the log's lines."""
    origin.routes["/kept"] = lambda h: h.reply(200, b"kept", {"Cache-Control": "max-age=60"})
    log = tmp_path / f"access-{fmt}.log"
    with start_proxy(AccessLog=str(log), AccessLogFormat=fmt) as proxy:
        proxies = {"http": proxy.url}
        headers = {"User-Agent": 'agent "quoted"', "Referer": "http://ref.test/"}
        for _ in range(2):
            assert requests.get(origin.url("/kept"), proxies=proxies, headers=headers).ok
        with raw_connection(proxy.port) as sock:
            sock.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
            assert read_response(sock)[0] == 403
    # Stopping the proxy wrote what was buffered.
    return log.read_text(encoding="utf-8").splitlines()


def test_every_format_has_a_writer() -> None:
    from cproxy.directives import DIRECTIVES

    assert set(DIRECTIVES["AccessLogFormat"].type.choices) == set(FORMATS)


@pytest.mark.skipif(shutil.which("goaccess") is None, reason="goaccess not installed")
def test_combined_is_read_by_goaccess(origin: Origin, tmp_path: Path) -> None:
    lines = serve_three(origin, tmp_path, "combined")
    assert len(lines) == 3
    ncsa = re.compile(
        r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "[^"]+" \d{3} \d+ '
        r'"[^"]*" "(?:[^"\\]|\\.)*"$'
    )
    assert all(ncsa.match(line) for line in lines), lines
    report = tmp_path / "report.json"
    out = subprocess.run(
        [
            "goaccess",
            str(tmp_path / "access-combined.log"),
            "--log-format=COMBINED",
            "--no-global-config",
            "-o",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    general = json.loads(report.read_text())["general"]
    assert (general["total_requests"], general["valid_requests"]) == (3, 3), general
    assert general["failed_requests"] == 0


def test_squid_native_format(origin: Origin, tmp_path: Path) -> None:
    lines = serve_three(origin, tmp_path, "squid")
    squid = re.compile(
        r"^(?P<time>\d+\.\d{3}) +(?P<ms>\d+) (?P<client>\S+) (?P<code>[A-Z_]+)/(?P<status>\d{3}) "
        r"(?P<bytes>\d+) (?P<method>\S+) (?P<url>\S+) (?P<user>\S+) (?P<peer>\S+) (?P<type>\S+)$"
    )
    fields = [m.groupdict() for line in lines if (m := squid.match(line))]
    assert len(fields) == 3, lines
    miss, hit, connect = fields
    assert (miss["code"], miss["status"], miss["method"]) == ("TCP_MISS", "200", "GET")
    assert miss["url"] == origin.url("/kept") and miss["peer"] == "HIER_DIRECT/127.0.0.1"
    assert (hit["code"], hit["peer"]) == ("TCP_MEM_HIT", "HIER_NONE/-")
    assert (connect["code"], connect["status"]) == ("TCP_DENIED", "403")
    assert (connect["method"], connect["url"]) == ("CONNECT", "127.0.0.1:9")
    assert abs(float(miss["time"]) - time.time()) < 600


def test_json_lines(origin: Origin, tmp_path: Path) -> None:
    records = [json.loads(line) for line in serve_three(origin, tmp_path, "json")]
    miss, hit, connect = records
    assert miss["method"] == "GET" and miss["target"] == origin.url("/kept")
    assert (miss["status"], miss["origin"], miss["origin_protocol"]) == (200, "new", "1.1")
    assert miss["cache"].startswith("uri-miss")
    assert miss["user_agent"] == 'agent "quoted"' and miss["referer"] == "http://ref.test/"
    assert miss["user"] is None and miss["version"] == "HTTP/1.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", miss["time"])
    assert (hit["cache"], hit["origin"], hit["origin_protocol"]) == ("hit", "-", "-")
    assert (connect["method"], connect["status"]) == ("CONNECT", 403)
    assert all(isinstance(r["elapsed_ms"], float | int) for r in records)


def test_the_format_changes_live_at_sighup(tmp_path: Path, origin: Origin) -> None:
    with running(tmp_path) as proxy:
        requests.get(origin.url("/before"), proxies={"http": proxy.url}, timeout=10)
        proxy.write_conf("AccessLogFormat = json\n")
        proxy.signal(signal.SIGHUP)
        proxy.wait_log("configuration changed: AccessLogFormat")
        requests.get(origin.url("/after"), proxies={"http": proxy.url}, timeout=10)
        lines = wait_for(
            lambda: len(text := proxy.access_log.read_text().splitlines()) >= 2 and text,
            what="two access log lines",
        )
    assert "ms origin=" in lines[0] and "/before" in lines[0]
    assert json.loads(lines[1])["target"].endswith("/after")


# --- rotation -------------------------------------------------------------------------------


def logrotate_config(tmp_path: Path, proxy: RunningProxy, pid_path: Path) -> Path:
    """etc/cproxy.logrotate with its paths pointed at this test's files."""
    text = (REPO / "etc" / "cproxy.logrotate").read_text()
    assert "/var/log/cproxy/" in text and "/run/cproxy/cproxy.pid" in text
    text = text.replace("/var/log/cproxy/", f"{proxy.directory}/")
    text = text.replace("/run/cproxy/cproxy.pid", str(pid_path))
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    os.chmod(conf, 0o644)
    return conf


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_the_logrotate_snippet_moves_the_logs_and_cproxy_writes_new_ones(
    tmp_path: Path, origin: Origin
) -> None:
    logs = tmp_path / "logs"
    pid_path = logs / "cproxy.pid"
    with running(logs, f"PidFile = {pid_path}\n") as proxy:
        assert proxy.proc is not None
        wait_for(pid_path.exists, what="the PidFile")
        assert int(pid_path.read_text()) == proxy.proc.pid
        requests.get(origin.url("/old"), proxies={"http": proxy.url}, timeout=10)
        wait_for(lambda: "/old" in proxy.access_log.read_text(), what="the first line")
        conf = logrotate_config(tmp_path, proxy, pid_path)
        out = subprocess.run(
            ["logrotate", "--force", "--state", str(tmp_path / "state"), str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        rotated = logs / "access.log.1"
        assert rotated.exists() and "/old" in rotated.read_text()
        proxy.wait_log("log files reopened")
        requests.get(origin.url("/new"), proxies={"http": proxy.url}, timeout=10)
        wait_for(
            lambda: proxy.access_log.exists() and "/new" in proxy.access_log.read_text(),
            what="the next line in the new file",
        )
        assert "/new" not in rotated.read_text()
        assert "log files reopened" in proxy.error_log.read_text()
    assert not pid_path.exists()  # removed at exit


def test_sigusr1_reopens_a_moved_access_log(tmp_path: Path, origin: Origin) -> None:
    with running(tmp_path) as proxy:
        requests.get(origin.url("/one"), proxies={"http": proxy.url}, timeout=10)
        wait_for(lambda: "/one" in proxy.access_log.read_text(), what="the first line")
        moved = tmp_path / "access.log.moved"
        proxy.access_log.rename(moved)
        proxy.signal(signal.SIGUSR1)
        proxy.wait_log("log files reopened")
        requests.get(origin.url("/two"), proxies={"http": proxy.url}, timeout=10)
        wait_for(
            lambda: proxy.access_log.exists() and "/two" in proxy.access_log.read_text(),
            what="the next line in a new file",
        )
        assert proxy.proc is not None and proxy.proc.poll() is None
    assert "/two" not in moved.read_text()


def test_a_pid_file_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    conf = tmp_path / "cproxy.conf"
    conf.write_text("Port = 0\nAdminPort = 0\nAccessLog =\nPidFile = no/such/dir/cproxy.pid\n")
    out = subprocess.run(
        [sys.executable, "-m", "cproxy", "-c", str(conf)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        check=False,
    )
    assert out.returncode == 1
    assert "cannot write the PidFile" in out.stderr


def test_with_workers_the_pid_file_is_the_supervisors_and_sigusr1_reaches_every_worker(
    tmp_path: Path, origin: Origin
) -> None:
    pid_path = tmp_path / "cproxy.pid"
    with running(tmp_path, f"Workers = 2\nPidFile = {pid_path}\n") as proxy:
        assert proxy.proc is not None
        wait_for(pid_path.exists, what="the PidFile")
        assert int(pid_path.read_text()) == proxy.proc.pid  # the supervisor
        children = Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children")
        wait_for(lambda: len(children.read_text().split()) == 2, what="two workers")
        moved = tmp_path / "access.log.1"
        proxy.access_log.touch()
        proxy.access_log.rename(moved)
        os.kill(int(pid_path.read_text()), signal.SIGUSR1)
        # Each worker says so in the (shared) error log.
        wait_for(
            lambda: proxy.log_text().count("log files reopened") >= 2,
            what="both workers to reopen their logs",
        )
        with requests.Session() as s:
            s.proxies = {"http": proxy.url}
            for n in range(6):  # whichever worker takes them
                assert s.get(origin.url(f"/after-{n}"), timeout=10).ok
                s.close()
        wait_for(
            lambda: (
                proxy.access_log.exists() and proxy.access_log.read_text().count("/after-") == 6
            ),
            what="the new lines in the new file",
        )
        assert "/after-" not in moved.read_text()
    assert not pid_path.exists()
