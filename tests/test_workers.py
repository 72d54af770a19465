"""Workers: pre-forked processes on one listening socket, supervised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.support import Origin, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def test_two_workers_serve_and_a_dead_worker_is_replaced(tmp_path: Path, origin: Origin) -> None:
    port = _free_port()
    conf = tmp_path / "cproxy.conf"
    conf.write_text(f"Port = {port}\nWorkers = 2\nAdminPort = 0\nAccessLog =\nLogLevel = warning\n")
    proc = subprocess.Popen([sys.executable, "-m", "cproxy", "-c", str(conf)])
    try:
        workers = wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid))
        proxies = {"http": f"http://127.0.0.1:{port}"}

        def served() -> bool:
            try:
                return requests.get(origin.url("/a"), proxies=proxies, timeout=5).ok
            except requests.ConnectionError:
                return False

        wait_for(served, what="the workers to serve")
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(
            lambda: len(_children(proc.pid)) == 2 and victim not in _children(proc.pid),
            what="a new worker",
        )
        assert replaced
        for _ in range(10):
            assert requests.get(origin.url("/b"), proxies=proxies, timeout=5).ok
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
