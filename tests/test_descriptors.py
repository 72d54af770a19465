"""Descriptors never run out (issue #22).

A real ``cproxy`` subprocess started under a low RLIMIT_NOFILE (soft = hard, as ``ulimit
-n 256`` gives a user) is asked for many distinct origins in a row: distinct loopback
ports, so distinct pool keys, each origin keeping its connection open for reuse. Before,
idle pooled sockets (MaxIdleSockets 512) outnumbered the limit, and at the 249th origin
the process ran out: "Too many open files" at accept, clients dropped. Now the pool's
share of the limit is a quarter of it (cproxy.server.fdlimits) and every request is
served. The client opens a new connection every few requests, so accept is exercised too,
while its own descriptors stay few.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import read_response, wait_for
from tests.test_cli import ENV, accepts, free_port

REQUESTS_PER_CLIENT_CONNECTION = 20


class ManyOrigins:
    """``n`` HTTP origins on 127.0.0.1, one listening socket (port) each, served by one
    selector thread: each answers every request on a connection with its own port number,
    keeping the connection open (so cproxy pools it)."""

    def __init__(self, n: int) -> None:
        self.listeners = []
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            s.setblocking(False)
            self.listeners.append(s)
        self.ports = [s.getsockname()[1] for s in self.listeners]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="many-origins", daemon=True)

    def __enter__(self) -> ManyOrigins:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wake_w.send(b"x")
        self._thread.join(10)
        for s in self.listeners:
            s.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.listeners:
            sel.register(s, selectors.EVENT_READ, ("listen", s.getsockname()[1]))
        sel.register(self._wake_r, selectors.EVENT_READ, ("stop", 0))
        buffers: dict[socket.socket, bytes] = {}
        try:
            while True:
                for key, _ in sel.select(timeout=5):
                    kind, port = key.data
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if kind == "stop":
                        return
                    if kind == "listen":
                        with contextlib.suppress(BlockingIOError):
                            conn, _ = sock.accept()
                            conn.setblocking(True)
                            sel.register(conn, selectors.EVENT_READ, ("conn", port))
                            buffers[conn] = b""
                        continue
                    data = sock.recv(65536)
                    if not data:
                        sel.unregister(sock)
                        sock.close()
                        del buffers[sock]
                        continue
                    buffers[sock] += data
                    while b"\r\n\r\n" in buffers[sock]:
                        _, _, buffers[sock] = buffers[sock].partition(b"\r\n\r\n")
                        body = str(port).encode()
                        sock.sendall(
                            b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                        )
        finally:
            for sock in list(buffers):
                sock.close()
            sel.close()


@contextlib.contextmanager
def own_descriptor_limit(needed: int) -> Iterator[None]:
    """This test process needs a descriptor per origin: raise its soft limit for a while."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the test needs {needed} descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def cproxy_with_nofile(directory: Path, limit: int) -> Iterator[tuple[int, Path]]:
    """``cproxy -c FILE`` with RLIMIT_NOFILE soft = hard = ``limit``, default directives
    (but the port, the logs and no admin); yields its port and error log."""
    port = free_port()
    conf = directory / "cproxy.conf"
    error_log = directory / "error.log"
    conf.write_text(
        f"Port = {port}\nAdminPort = 0\nAccessLog =\nErrorLog = {error_log}\nLogLevel = info\n",
        encoding="utf-8",
    )

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.Popen(
        [sys.executable, "-m", "cproxy", "-c", str(conf)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limited,
    )
    try:
        wait_for(lambda: proc.poll() is not None or accepts(port), what="cproxy to listen")
        assert proc.poll() is None, error_log.read_text()
        yield port, error_log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def fetch_each(proxy_port: int, origin_ports: list[int]) -> list[int]:
    """GET one URL of every origin through the proxy; return the statuses."""
    statuses: list[int] = []
    for start in range(0, len(origin_ports), REQUESTS_PER_CLIENT_CONNECTION):
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as client:
            reader = client.makefile("rb")
            for port in origin_ports[start : start + REQUESTS_PER_CLIENT_CONNECTION]:
                target = f"127.0.0.1:{port}"
                client.sendall(f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                status, _, body = read_response(reader)
                assert status != 200 or body == str(port).encode(), (port, body)
                statuses.append(status)
            reader.close()
    return statuses


@pytest.mark.parametrize(("limit", "origins"), [(256, 300), (1024, 3000)])
def test_distinct_origins_past_the_descriptor_limit_are_all_served(
    tmp_path: Path, limit: int, origins: int
) -> None:
    with (
        own_descriptor_limit(2 * origins + 200),
        ManyOrigins(origins) as many,
        cproxy_with_nofile(tmp_path, limit) as (port, error_log),
    ):
        statuses = fetch_each(port, many.ports)
        log = error_log.read_text()
    assert statuses == [200] * origins, {s: statuses.count(s) for s in set(statuses)}
    idle_share = (limit - 64) // 4
    assert f"file descriptors: limit {limit}; at most {(limit - 64) // 2} client" in log, log
    assert f"and {idle_share} idle origin sockets" in log
    assert "Too many open files" not in log


def test_the_soft_limit_is_raised_to_the_hard_one_and_logged(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "cproxy.conf"
    error_log = tmp_path / "error.log"
    conf.write_text(
        f"Port = {port}\nAdminPort = 0\nAccessLog =\nErrorLog = {error_log}\nLogLevel = info\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cproxy", "-c", str(conf)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512)),
    )
    try:
        wait_for(lambda: proc.poll() is not None or accepts(port), what="cproxy to listen")
        assert proc.poll() is None
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3:5] == ["512", "512"], line
    finally:
        proc.terminate()
        proc.wait(15)
    log = error_log.read_text()
    assert "file descriptor limit raised from 256 to 512 (the hard limit)" in log, log
    assert "file descriptors: limit 512; at most 224 client connections and 112 idle" in log


# A listener whose process has no descriptor left, in a subprocess of its own: ``hoard``
# stands for the pool's idle sockets. Phase 1: give_back frees two at a time. Phase 2:
# nothing can be freed until a timer releases the hoard 0.5 s later; accept must pause
# and retry a few times, not spin.
LISTENER_SCRIPT = """
import json, logging, resource, socket, sys
import gevent
from gevent.pool import Pool
from gevent.socket import wait_read
from cproxy.server.listeners import ProxyListener, listen_socket

def next_line():  # let the event loop run while waiting for the test's go-ahead
    wait_read(sys.stdin.fileno())
    sys.stdin.readline()

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
lsock = listen_socket("127.0.0.1", 0, 128)
hoard, calls = [], []
mode = {"give": True}

def fill():
    while True:
        try:
            hoard.append(socket.socket())
        except OSError:
            return

def give_back():
    n = min(2, len(hoard)) if mode["give"] else 0
    for _ in range(n):
        hoard.pop().close()
    calls.append(n)
    return n

def handle(sock, address):
    sock.sendall(b"served")
    sock.close()

server = ProxyListener(lsock, handle, spawn=Pool(), give_back=give_back)
server.start()
fill()
print(lsock.getsockname()[1], flush=True)
next_line()  # phase 1 done
fill()
mode["give"] = False
release_at = []
def release():
    release_at.append(len(calls))
    while hoard:
        hoard.pop().close()
gevent.spawn_later(0.5, release)
print("phase 2", flush=True)
next_line()  # phase 2 done
print(json.dumps({"calls": calls, "release_at": release_at}), flush=True)
"""


def served(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.settimeout(10)
        return client.recv(100)


def test_out_of_descriptors_at_accept_frees_idle_sockets_and_never_spins() -> None:
    import json

    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER_SCRIPT],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        port = int(proc.stdout.readline())
        # Phase 1: every accept finds no descriptor; idle ones are given back, all served.
        assert [served(port) for _ in range(5)] == [b"served"] * 5
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "phase 2"
        # Phase 2: nothing to give back; the client waits in the backlog and is served
        # once descriptors are free again (0.5 s later).
        assert served(port) == b"served"
        proc.stdin.write("\n")
        proc.stdin.flush()
        summary = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)
        stderr = proc.stderr.read()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    calls, release_at = summary["calls"], summary["release_at"]
    assert calls[0] == 2, calls  # phase 1 freed two idle descriptors
    phase2 = [n for n in calls if n == 0]
    # Pauses of 20, 40, 80, 160, 320 ms... cover the 0.5 s in a handful of tries.
    assert 2 <= len(phase2) <= 10, calls
    assert release_at and release_at[0] >= 2
    # Logged once per episode (and once when accepting works again), never per attempt.
    assert stderr.count("out of file descriptors at accept") == 2, stderr
    assert stderr.count("accepting again after running out of file descriptors") == 2, stderr
    assert "Traceback" not in stderr, stderr
