"""Slow and greedy clients (issue #6, DESIGN.md §5 rule 6): every input bounded in time
and memory, and one client's greed never starves another.

The figures printed here (run with ``-s``) go to the README's "Hardening" section:
``pytest -s tests/test_hostile_load.py | grep hostile:``.

On the listen backlog, measured and documented: while MaxActiveThreads handlers are busy
cproxy stops accepting and further clients wait in the kernel's backlog (ListenBacklog):
their connect() succeeds and they are served in turn; none is refused while the backlog
has room. Past it Linux does not refuse either (tcp_abort_on_overflow = 0): it drops the
SYN or the final ACK and the client's TCP retries, so those clients wait longer (seconds,
by TCP's retransmission back-off) instead of being refused.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import (
    OriginConn,
    ProxyProcess,
    RecordingOrigin,
    free_port,
    many_sockets,
    parse_responses,
    read_answers,
)
from tests.support import WAIT_S, start_proxy, wait_for

SLOWLORIS = 1000


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed")
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * needed), hard))


def get(origin: RecordingOrigin, path: str, close: bool = True) -> bytes:
    o = f"127.0.0.1:{origin.port}"
    extra = "Connection: close\r\n" if close else ""
    return f"GET http://{o}{path} HTTP/1.1\r\nHost: {o}\r\n{extra}\r\n".encode()


def one_request(port: int, data: bytes) -> tuple[int, bytes]:
    with contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)) as s:
        s.sendall(data)
        answers, _ = read_answers(s, 1)
    assert answers, "no answer"
    return answers[-1].status, answers[-1].body


@pytest.fixture
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as o:
        yield o


def test_1000_slowloris_connections_do_not_slow_a_normal_client(origin: RecordingOrigin) -> None:
    raise_nofile(3 * SLOWLORIS + 500)
    with (
        start_proxy(
            MaxActiveThreads="1200", ListenBacklog="1024", InputTimeout="6 seconds"
        ) as proxy,
        many_sockets(SLOWLORIS) as lorises,
    ):
        partial = get(origin, "/slow")[:-10]  # a head that never ends
        for _ in range(SLOWLORIS):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
            s.sendall(partial)
            lorises.append(s)
        opened = time.monotonic()
        wait_for(lambda: len(proxy.runtime.connections) >= SLOWLORIS, what="slowloris accepted")
        latencies = []
        while len(latencies) < 200 and time.monotonic() - opened < 4:
            t0 = time.perf_counter()
            status, body = one_request(proxy.port, get(origin, f"/n{len(latencies)}"))
            latencies.append(time.perf_counter() - t0)
            assert status == 200 and body == b"ok"
        assert len(proxy.runtime.connections) >= SLOWLORIS, "slowloris ended early"
        p99 = statistics.quantiles(latencies, n=100)[98]
        print(
            f"\nhostile: normal-client p99 with {SLOWLORIS} slowloris connections: "
            f"{p99 * 1000:.1f} ms over {len(latencies)} requests "
            f"(median {statistics.median(latencies) * 1000:.1f} ms)"
        )
        assert len(latencies) >= 50
        assert p99 < 1.0
        # InputTimeout ends every one of them with a 408 and a close.
        for s in lorises:
            s.settimeout(WAIT_S)
        got = [s.makefile("rb").read() for s in lorises]
        assert all(g.startswith(b"HTTP/1.1 408 ") for g in got), {g[:40] for g in got}
        assert "/slow" not in origin.paths()


def test_slow_post_body_within_read_timeout_is_forwarded_whole() -> None:
    received: list[bytes] = []

    def script(conn: OriginConn) -> None:
        r = conn.read_request()
        if r is not None:
            received.append(r.body)
            conn.reply(b"got it")

    with RecordingOrigin(script) as origin, start_proxy(ReadTimeout="1 second") as proxy:
        o = f"127.0.0.1:{origin.port}"
        body = b"0123456789" * 5
        head = f"POST http://{o}/up HTTP/1.1\r\nHost: {o}\r\nContent-Length: {len(body)}\r\n\r\n"
        pace = threading.Event()
        with contextlib.closing(socket.create_connection(("127.0.0.1", proxy.port))) as s:
            s.sendall(head.encode())
            for i in range(len(body)):
                pace.wait(0.02)  # the client's pace, well within ReadTimeout
                s.sendall(body[i : i + 1])
            answers, _ = read_answers(s, 1)
        assert [(a.status, a.body) for a in answers] == [(200, b"got it")]
        assert received == [body]


def test_slow_reader_of_a_large_response_gets_it_all_and_others_are_served(
    origin: RecordingOrigin,
) -> None:
    big = bytes(range(256)) * 4096 * 8  # 8 MiB
    with RecordingOrigin(keep_alive_big(big)) as bigorigin, start_proxy() as proxy:
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
        with contextlib.closing(s):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(get(bigorigin, "/big"))
            data = b""
            pace = threading.Event()
            reads = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                reads += 1
                if reads % 16 == 0:
                    pace.wait(0.01)  # a slow reader
                    # Meanwhile another client is served at once.
                    if reads % 256 == 0:
                        assert one_request(proxy.port, get(origin, "/other"))[0] == 200
        answers, _ = parse_responses(data)
        assert [(a.status, len(a.body)) for a in answers] == [(200, len(big))]
        assert answers[0].body == big


def keep_alive_big(body: bytes):  # type: ignore[no-untyped-def]
    def script(conn: OriginConn) -> None:
        while conn.read_request() is not None:
            if not conn.send(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            ):
                return

    return script


def test_clients_past_max_active_threads_wait_in_the_backlog_and_are_all_served() -> None:
    """5 slots, backlog 20: 25 clients connect at once; the 20 beyond the slots wait in
    the kernel's backlog (their connect succeeds) and all are served once slots free."""
    release = threading.Event()

    def held(conn: OriginConn) -> None:
        while (r := conn.read_request()) is not None:
            release.wait(WAIT_S)
            conn.reply(r.req.path.encode())

    with (
        RecordingOrigin(held) as origin,
        start_proxy(MaxActiveThreads="5", ListenBacklog="20", Caching="off") as proxy,
        many_sockets(25) as socks,
    ):
        for i in range(25):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
            s.sendall(get(origin, f"/c{i}"))
            socks.append(s)
        wait_for(lambda: len(origin.requests()) >= 5, what="5 held requests")
        assert len(proxy.runtime.connections) == 5  # the others are not accepted yet
        release.set()
        bodies = []
        for s in socks:
            answers, _ = read_answers(s, 1)
            bodies.append(answers[0].body)
        assert bodies == [f"/c{i}".encode() for i in range(25)]


def write_conf(tmp_path: Path, **directives: str) -> tuple[str, int]:
    port = free_port()
    base = {"Port": str(port), "AdminPort": "0", "AccessLog": '""', "LogLevel": "warning"}
    base.update(directives)
    path = tmp_path / "cproxy.conf"
    path.write_text("".join(f"{k} = {v}\n" for k, v in base.items()))
    return str(path), port


def test_flood_of_1000_connections_peak_rss(tmp_path: Path, origin: RecordingOrigin) -> None:
    """1,000 clients at once, each one GET, against cproxy as a process: all answered;
    peak RSS (VmHWM) printed."""
    n = 1000
    raise_nofile(3 * n + 500)
    conf, port = write_conf(tmp_path, MaxActiveThreads="1200", ListenBacklog="1024")
    with ProxyProcess(conf, port) as proxy, many_sockets(n) as socks:
        base_kib = proxy.status("VmHWM")
        sel = selectors.DefaultSelector()
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
            s.sendall(get(origin, f"/f{i % 50}"))
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, [b""])
        done = 0
        deadline = time.monotonic() + 20
        while done < n and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if chunk:
                    key.data[0] += chunk
                    continue
                sel.unregister(key.fileobj)
                done += 1
        answers = [parse_responses(k.data[0])[0] for k in list(sel.get_map().values())]
        peak_kib = proxy.status("VmHWM")
    print(
        f"\nhostile: {n}-connection flood: {done} answered; cproxy VmHWM {peak_kib / 1024:.1f} MiB "
        f"(at start {base_kib / 1024:.1f} MiB)"
    )
    assert done == n, f"only {done} of {n} answered ({answers[:1]})"
    assert peak_kib < 512 * 1024


def test_10000_pipelined_gets_answered_in_order_in_bounded_memory(
    tmp_path: Path, origin: RecordingOrigin
) -> None:
    n = 10_000
    conf, port = write_conf(tmp_path, Caching="off", MaxPersistRequest=str(2 * n))
    o = f"127.0.0.1:{origin.port}"
    pipeline = b"".join(
        f"GET http://{o}/p{i} HTTP/1.1\r\nHost: {o}\r\n\r\n".encode() for i in range(n)
    )
    origin.script = echo_path
    with (
        ProxyProcess(conf, port) as proxy,
        contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)) as s,
    ):
        sender = threading.Thread(target=s.sendall, args=(pipeline,), daemon=True)
        started = time.monotonic()
        sender.start()
        f = s.makefile("rb")
        bodies = []
        for _ in range(n):
            status_line = f.readline()
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert status_line.startswith(b"HTTP/1.1 200 ")
            bodies.append(f.read(length))
        elapsed = time.monotonic() - started
        sender.join(WAIT_S)
        peak_kib = proxy.status("VmHWM")
    print(
        f"\nhostile: {n} pipelined GETs answered in order in {elapsed:.1f} s; "
        f"cproxy VmHWM {peak_kib / 1024:.1f} MiB"
    )
    assert bodies == [f"/p{i}".encode() for i in range(n)]
    assert peak_kib < 256 * 1024


def echo_path(conn: OriginConn) -> None:
    while (r := conn.read_request()) is not None:
        if not conn.reply(r.req.path.encode()):
            return
