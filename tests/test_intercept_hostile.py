"""Bad input at an intercepting proxy (issue #19): a ClientHello split over many segments
and records, garbage handshakes, clients that stall mid-handshake (bounded by InputTimeout,
holding no MaxActiveThreads slot), many distinct SNI names (bounded by SSLLeafCacheSize),
and bytes sent together with the CONNECT. Each gets a clear outcome and a log line, and no
other client notices.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import gevent
import gevent.socket
import pytest

from cproxy.intercept.clienthello import Verdict
from cproxy.server.interception import peek_hello
from tests.intercepting import Lab, connect, get, running, tls_origin, tunnel
from tests.support import WAIT_S, read_response, wait_for


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


class BioClient:
    """A TLS client whose bytes the test sends itself (to split, delay or garble them)."""

    def __init__(self, context: ssl.SSLContext, name: str) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=name)

    def client_hello(self) -> bytes:
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def _pump(self, sock: socket.socket) -> None:
        pending = self.outgoing.read()
        if pending:
            sock.sendall(pending)

    def _feed(self, sock: socket.socket) -> None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the peer")
        self.incoming.write(data)

    def finish_handshake(self, sock: socket.socket) -> None:
        while True:
            try:
                self.tls.do_handshake()
                self._pump(sock)
                return
            except ssl.SSLWantReadError:
                self._pump(sock)
                self._feed(sock)

    def request(self, sock: socket.socket, head: str) -> tuple[int, bytes]:
        """Send ``head``, read one response with Content-Length: (status, body)."""
        self.tls.write(head.encode())
        self._pump(sock)
        buf = b""
        while True:
            try:
                buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._feed(sock)
                continue
            if b"\r\n\r\n" in buf:
                head_bytes, _, body = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head_bytes.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(body) >= length:
                    return int(head_bytes.split()[1]), body[:length]


def records(hello: bytes, size: int) -> bytes:
    """``hello`` (one record) re-framed as handshake records of at most ``size`` bytes."""
    assert hello[0] == 0x16
    body = hello[5:]
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += hello[:3] + len(piece).to_bytes(2, "big") + piece
    return out


def log_lines(path: Path, proxy: object) -> list[dict[str, object]]:
    proxy.call(lambda: proxy.runtime.access_log.flush())  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def interception_stats(proxy: object) -> dict[str, object]:
    return proxy.call(lambda: proxy.runtime.stats()["interception"])  # type: ignore[attr-defined,no-any-return]


def test_the_peek_waits_for_more_bytes_without_consuming_any() -> None:
    """peek_hello, under gevent: a ClientHello arriving a few bytes at a time is judged
    once whole, and every byte is still there for the TLS layer afterwards."""
    ctx = ssl.create_default_context()
    hello = BioClient(ctx, "a.test").client_hello()
    # TCP, as client connections are: SO_RCVLOWAT governs readiness on TCP sockets (a Unix
    # socket reports readable with any byte queued).
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gevent.socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    listener.close()
    try:
        waiter = gevent.spawn(peek_hello, server)
        chunks = [hello[i : i + 97] for i in range(0, len(hello), 97)]
        assert len(chunks) > 2
        for chunk in chunks[:-1]:
            client.sendall(chunk)
            gevent.idle()
            assert not waiter.ready(), "judged before the ClientHello was whole"
        client.sendall(chunks[-1])
        peek = waiter.get(timeout=WAIT_S)
        assert peek is not None and peek.verdict is Verdict.CLIENT_HELLO
        assert peek.hello is not None and peek.hello.sni == "a.test"
        assert server.recv(len(hello) + 100) == hello  # nothing was consumed
    finally:
        server.close()
        client.close()


@pytest.mark.parametrize("record_size", [None, 40], ids=["one-record", "40-byte-records"])
def test_a_clienthello_split_over_many_segments_is_intercepted(
    lab: Lab, record_size: int | None
) -> None:
    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        client = BioClient(lab.client_context(), "a.test")
        hello = client.client_hello()
        if record_size:
            hello = records(hello, record_size)
        with connect(proxy, "a.test", origin.port) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(hello), 7):
                sock.sendall(hello[i : i + 7])
            client.finish_handshake(sock)
            status, body = client.request(
                sock, f"GET /split HTTP/1.1\r\nHost: a.test:{origin.port}\r\n\r\n"
            )
        assert (status, body) == (200, b"hello GET /split")
        assert interception_stats(proxy)["handshakes"] == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x00\x08garbage!",  # a handshake record that is no ClientHello
        b"\x16\x03\x01\x00\x00",  # an empty record
        # A ClientHello whose session id length runs past its end.
        b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03" + b"\x00" * 32 + b"\xff\x00\x00\x00",
    ],
    ids=["not-a-hello", "empty-record", "overrun"],
)
def test_a_garbage_handshake_is_refused_with_a_log_line(
    lab: Lab, tmp_path: Path, garbage: bytes
) -> None:
    log_path = tmp_path / "access.log"
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, AccessLog=str(log_path), AccessLogFormat="json")) as proxy,
    ):
        with connect(proxy, "a.test", origin.port) as sock:
            sock.sendall(garbage)
            sock.settimeout(WAIT_S)
            assert sock.recv(100) == b""  # closed, nothing sent
        assert origin.connections == 0
        line = next(x for x in log_lines(log_path, proxy) if x["method"] == "CONNECT")
        assert line["cache"] == "refused:malformed-hello"
        assert interception_stats(proxy)["handshake_failures"] == {"malformed-hello": 1}


@pytest.mark.parametrize("stall", ["half-hello", "after-hello"])
def test_a_client_stalling_mid_handshake_holds_no_slot_and_is_cut_at_input_timeout(
    lab: Lab, tmp_path: Path, stall: str
) -> None:
    log_path = tmp_path / "access.log"
    with (
        tls_origin(lab.origin_context()) as origin,
        running(
            lab.proxy(
                origin.port,
                MaxActiveThreads="1",
                InputTimeout="3 seconds",
                AccessLog=str(log_path),
                AccessLogFormat="json",
            )
        ) as proxy,
    ):
        stalling = BioClient(lab.client_context(), "a.test")
        hello = stalling.client_hello()
        with connect(proxy, "a.test", origin.port) as staller:
            staller.sendall(hello[: len(hello) // 2] if stall == "half-hello" else hello)
            started = time.monotonic()
            if stall == "after-hello":
                # Take cproxy's whole flight, and never send our Finished.
                while True:
                    stalling.incoming.write(staller.recv(65536))
                    try:
                        stalling.tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        continue
            # Meanwhile another client is served, with MaxActiveThreads = 1.
            with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
                assert get(tls, "/other", f"a.test:{origin.port}")[0] == 200
            # ...before the staller's InputTimeout ended its wait: it held no slot.
            staller.setblocking(False)
            try:
                assert staller.recv(65536, socket.MSG_PEEK) != b"", "served only after the cut"
            except BlockingIOError:
                pass  # nothing to read, and still open
            # The staller's connection is closed at InputTimeout.
            staller.settimeout(WAIT_S)
            assert staller.recv(65536) == b""
            assert time.monotonic() - started < WAIT_S
        reason = "no-hello" if stall == "half-hello" else "handshake-failed"
        lines = [x for x in log_lines(log_path, proxy) if x["method"] == "CONNECT"]
        assert sorted(str(x["cache"]) for x in lines) == sorted(
            ["intercepted", f"refused:{reason}"]
        )


def test_many_sni_names_stay_within_the_leaf_cache(lab: Lab) -> None:
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, SSLLeafCacheSize="50")) as proxy,
    ):
        for i in range(300):
            name = f"host{i}.test"
            with tunnel(proxy, name, origin.port, lab.client_context()) as tls:
                assert tls.getpeercert()["subjectAltName"] == (("DNS", name),)
        stats = interception_stats(proxy)
        assert stats["handshakes"] == 300 and stats["leaves_generated"] == 300
        assert stats["leaves_cached"] == 50
        # The proxy still serves.
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            assert get(tls, "/", f"a.test:{origin.port}")[0] == 200


def test_bytes_sent_with_the_connect_are_tunnelled_untouched(lab: Lab, tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    origin_trust = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, AccessLog=str(log_path), AccessLogFormat="json")) as proxy,
    ):
        client = BioClient(origin_trust, "a.test")
        hello = client.client_hello()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S) as sock:
            connect_head = f"CONNECT a.test:{origin.port} HTTP/1.1\r\nHost: a.test\r\n\r\n"
            sock.sendall(connect_head.encode() + hello)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            assert head.startswith(b"HTTP/1.1 200")
            # The handshake is the origin's own: its certificate verifies with its CA.
            client.finish_handshake(sock)
            status, body = client.request(
                sock, f"GET /early HTTP/1.1\r\nHost: a.test:{origin.port}\r\n\r\n"
            )
        assert (status, body) == (200, b"hello GET /early")
        wait_for(
            lambda: any(x["cache"] == "spliced:early-bytes" for x in log_lines(log_path, proxy))
        )
        assert interception_stats(proxy)["splices"]["early-bytes"] == 1  # type: ignore[index]


def test_a_late_request_head_inside_tls_gets_its_408_over_tls(lab: Lab) -> None:
    """The timeouts' answers go through the TLS layer (waking a wait shuts the raw socket
    down, never gevent's SSLSocket, which would drop the layer and send the 408 in
    cleartext), and an idle intercepted connection ends with close_notify."""
    with (
        tls_origin(lab.origin_context()) as origin,
        running(
            lab.proxy(origin.port, InputTimeout="1 second", PersistTimeout="1 second")
        ) as proxy,
    ):
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: a.te")  # and nothing more
            status, _, body = read_response(tls.makefile("rb"))
            assert status == 408 and b"did not arrive in time" in body
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            assert get(tls, "/", f"a.test:{origin.port}")[0] == 200
            started = time.monotonic()
            tls.settimeout(WAIT_S)
            assert tls.recv(100) == b""  # close_notify after PersistTimeout, then EOF
            assert time.monotonic() - started < WAIT_S


def test_an_idle_intercepted_connection_ends_cleanly_when_cproxy_stops(lab: Lab) -> None:
    with tls_origin(lab.origin_context()) as origin:
        with running(lab.proxy(origin.port)) as proxy:
            tls = tunnel(proxy, "a.test", origin.port, lab.client_context())
            assert get(tls, "/", f"a.test:{origin.port}")[0] == 200
        with tls:
            tls.settimeout(WAIT_S)
            assert tls.recv(100) == b""  # close_notify, no alert
