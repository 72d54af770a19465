"""``cproxy -k reload|stop|reopen|check`` and the default PidFile (issue #22).

A real ``cproxy -c FILE`` subprocess (tests.test_cli.RunningProxy) is signalled by a second
``cproxy -c FILE -k ...`` process, which finds it through the PidFile next to the directive
file (the default), as a user without root would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cproxy.directives import config_with, defaults, load_config
from cproxy.server.pidfile import pid_file_path, read_pid_file
from tests.support import Origin, wait_for
from tests.test_cli import ENV, RunningProxy, running


def cproxy_k(conf: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cproxy", "-c", str(conf), "-k", action],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait(10)
    return proc.pid


def test_the_default_pid_file_is_next_to_the_directive_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "cproxy.conf"
    conf.parent.mkdir()
    conf.write_text("Port = 0\n", encoding="utf-8")
    assert pid_file_path(load_config(str(conf))) == str(tmp_path / "etc" / "cproxy.pid")


def test_on_built_in_defaults_the_pid_file_is_in_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert pid_file_path(defaults()) == str(tmp_path / "cproxy.pid")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.chdir(tmp_path)
    assert pid_file_path(defaults()) == str(tmp_path / "cproxy.pid")
    # A name set on purpose is kept, whatever the environment says.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    chosen = config_with(defaults(), {"PidFile": "/run/cproxy/cproxy.pid"})
    assert pid_file_path(chosen) == "/run/cproxy/cproxy.pid"


def test_check_reload_reopen_stop_reach_the_running_proxy(tmp_path: Path, origin: Origin) -> None:
    with running(tmp_path) as proxy:
        assert proxy.proc is not None
        pid_file = tmp_path / "cproxy.pid"
        wait_for(pid_file.exists, what="the PidFile next to the directive file")
        assert pid_file.read_text().strip() == str(proxy.proc.pid)

        out = cproxy_k(proxy.conf, "check")
        assert out.returncode == 0, out.stderr
        assert f"running as process {proxy.proc.pid}" in out.stdout

        # reload: a changed live directive is applied.
        proxy.conf.write_text(proxy.conf.read_text() + "MaxPersistRequest = 7\n", encoding="utf-8")
        out = cproxy_k(proxy.conf, "reload")
        assert out.returncode == 0, out.stderr
        proxy.wait_log("configuration changed: MaxPersistRequest")

        # reopen: the access log moved away (log rotation) is written anew.
        r = requests.get(origin.url("/before"), proxies={"http": proxy.url}, timeout=10)
        assert r.status_code == 200
        wait_for(
            lambda: proxy.access_log.exists() and "/before" in proxy.access_log.read_text(),
            what="the first access log line",
        )
        rotated = tmp_path / "access.log.1"
        proxy.access_log.rename(rotated)
        out = cproxy_k(proxy.conf, "reopen")
        assert out.returncode == 0, out.stderr
        proxy.wait_log("log files reopened")
        r = requests.get(origin.url("/after"), proxies={"http": proxy.url}, timeout=10)
        assert r.status_code == 200
        wait_for(
            lambda: proxy.access_log.exists() and "/after" in proxy.access_log.read_text(),
            what="the access log written anew under its name",
        )
        assert "/after" not in rotated.read_text()

        out = cproxy_k(proxy.conf, "stop")
        assert out.returncode == 0, out.stderr
        assert f"process {proxy.proc.pid} stopped" in out.stdout
        assert proxy.proc.wait(10) == 0
    assert not pid_file.exists()
    out = cproxy_k(proxy.conf, "check")
    assert out.returncode == 1
    assert "OK; cproxy is not running (no PidFile" in out.stdout


def test_a_stale_pid_file_is_named_as_such_and_replaced_at_start(tmp_path: Path) -> None:
    proxy = RunningProxy(tmp_path)
    proxy.write_conf("")
    pid_file = tmp_path / "cproxy.pid"
    gone = dead_pid()
    pid_file.write_text(f"{gone}\n", encoding="ascii")
    for action in ("reload", "stop", "reopen"):
        out = cproxy_k(proxy.conf, action)
        assert out.returncode == 1, (action, out)
        assert f"cproxy is not running: the PidFile {pid_file} names process {gone}" in (
            out.stderr
        ), out.stderr
        assert "stale" in out.stderr
    with running(tmp_path) as proxy:
        assert proxy.proc is not None
        pid = proxy.proc.pid
        wait_for(lambda: pid_file.read_text().strip() == str(pid), what="the PidFile rewritten")
        assert read_pid_file(str(pid_file)).running


def test_a_second_cproxy_with_the_same_pid_file_refuses_to_start(tmp_path: Path) -> None:
    with running(tmp_path / "one", "PidFile = ../shared.pid\n") as first:
        assert first.proc is not None
        wait_for((tmp_path / "shared.pid").exists, what="the first PidFile")
        second = RunningProxy(tmp_path / "two", "PidFile = ../shared.pid\n")
        second.write_conf(second.extra)  # Port 0: its own port
        out = subprocess.run(
            [sys.executable, "-m", "cproxy", "-c", str(second.conf)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            check=False,
        )
        assert out.returncode == 1
        message = f"cproxy is already running as process {first.proc.pid}"
        assert message in second.log_text(), (second.log_text(), out.stderr)
        assert (tmp_path / "shared.pid").read_text().strip() == str(first.proc.pid)


def test_an_invalid_file_is_not_signalled_and_an_empty_pid_file_is_explained(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("Port = 80000\n", encoding="utf-8")
    out = cproxy_k(bad, "reload")
    assert out.returncode == 2
    assert str(bad) in out.stderr and "Port" in out.stderr
    empty = tmp_path / "nopid.conf"
    empty.write_text("PidFile =\n", encoding="utf-8")
    out = cproxy_k(empty, "stop")
    assert out.returncode == 1
    assert "PidFile is empty" in out.stderr


def test_k_refuses_an_unknown_action(tmp_path: Path) -> None:
    out = cproxy_k(tmp_path / "x.conf", "restart")
    assert out.returncode == 2
    assert "reload" in out.stderr  # the usage line lists the actions
