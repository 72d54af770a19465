"""HTTPS interception through the running proxy (issue #19), with real parts: a TLS origin
whose certificate comes from a test CA that cproxy trusts (ServerSSLCAFile), and Python
clients that trust only cproxy's CA.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest

from cproxy.intercept.clienthello import Verdict, peek_client_hello
from tests.intercepting import (
    Lab,
    cacheable,
    connect,
    get,
    issuer,
    running,
    tls_origin,
    tunnel,
)
from tests.support import WAIT_S, read_response, wait_for


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def access_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def flush_log(proxy: object) -> None:
    proxy.call(lambda: proxy.runtime.access_log.flush())  # type: ignore[attr-defined]


def test_a_hit_inside_an_intercepted_tunnel_touches_no_origin(lab: Lab, tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, AccessLog=str(log_path), AccessLogFormat="json")) as proxy,
    ):
        origin.default_route = cacheable
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            # The client verified cproxy's leaf for a.test against cproxy's CA only.
            assert "cproxy" in issuer(tls)
            reader = tls.makefile("rb")
            first = get(tls, "/img.png", f"a.test:{origin.port}", reader=reader)
            assert first[0] == 200 and len(first[2]) == 1024
            connections, requests = origin.connections, len(origin.requests)
            second = get(tls, "/img.png", f"a.test:{origin.port}", reader=reader)
        assert second[0] == 200 and second[2] == first[2]
        assert "hit" in second[1]["cache-status"]
        # No origin connection and no origin request for the hit.
        assert (origin.connections, len(origin.requests)) == (connections, requests)
        assert origin.requests[0][1] == "/img.png"
        flush_log(proxy)
        lines = access_lines(log_path)
        url = f"https://a.test:{origin.port}/img.png"
        connect_line = next(line for line in lines if line["method"] == "CONNECT")
        assert connect_line["cache"] == "intercepted"
        gets = [line for line in lines if line["method"] == "GET" and line["target"] == url]
        assert [str(line["cache"]).split(";")[0] for line in gets] == ["uri-miss", "hit"], lines
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["handshakes"] == 1 and stats["leaves_generated"] == 1
        assert stats["intercepted_requests"] == 2


def test_the_origin_is_reached_over_the_pool_and_reused_across_tunnels(lab: Lab) -> None:
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, Caching="off")) as proxy,
    ):
        for _ in range(3):
            with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
                status, _, body = get(tls, "/p", f"a.test:{origin.port}")
                assert status == 200 and body == b"hello GET /p"
        # One pooled, verified TLS connection to the origin served the three tunnels.
        assert origin.connections == 1 and origin.handshakes == 1
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["leaves_generated"] == 1 and stats["leaves_cache_hits"] == 2


@pytest.mark.parametrize(
    "host_field",
    ["b.test:{port}", "a.test", "a.test:1"],
    ids=["other-host", "default-port", "other-port"],
)
def test_another_authority_inside_the_tunnel_gets_421_and_reaches_nothing(
    lab: Lab, host_field: str
) -> None:
    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        origin.default_route = cacheable
        # b.test's page is in the cache: the 421 must come before any lookup.
        with tunnel(proxy, "b.test", origin.port, lab.client_context()) as tls:
            assert get(tls, "/x", f"b.test:{origin.port}")[0] == 200
        before = len(origin.requests)
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            status, headers, body = get(tls, "/x", host_field.format(port=origin.port))
        assert status == 421 and b"a.test" in body
        assert "cache-status" not in headers
        assert len(origin.requests) == before


def test_an_absolute_target_for_another_authority_gets_421(lab: Lab) -> None:
    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            target = f"http://b.test:{origin.port}/x"
            status, _, _ = get(tls, target, f"b.test:{origin.port}")
        assert status == 421 and origin.requests == []


def test_a_spliced_host_shows_the_origins_own_certificate(lab: Lab) -> None:
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, SSLSpliceHosts="*.splice.test splice.test")) as proxy,
    ):
        # Trusting the origin's CA (not cproxy's): the origin's certificate came through.
        origin_trust = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
        with tunnel(proxy, "splice.test", origin.port, origin_trust) as tls:
            assert "cproxy" not in issuer(tls)
            status, _, body = get(tls, "/s", f"splice.test:{origin.port}")
        assert status == 200 and body == b"hello GET /s"
        assert origin.handshakes == 1
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["listed"] == 1 and stats["handshakes"] == 0


def test_interception_scope_directives(lab: Lab) -> None:
    origin_trust = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
    with (
        tls_origin(lab.origin_context()) as origin,
        running(
            lab.proxy(origin.port, SSLInterceptHosts="a.test", SSLInterceptClients="10.0.0.0/8")
        ) as proxy,
    ):
        # 127.0.0.1 is not in SSLInterceptClients: spliced even for a.test.
        with tunnel(proxy, "a.test", origin.port, origin_trust) as tls:
            assert get(tls, "/", f"a.test:{origin.port}")[0] == 200
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["client-not-listed"] == 1
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, SSLInterceptHosts="a.test")) as proxy,
    ):
        with tunnel(proxy, "b.test", origin.port, origin_trust) as tls:
            assert get(tls, "/", f"b.test:{origin.port}")[0] == 200
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            assert get(tls, "/", f"a.test:{origin.port}")[0] == 200
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["not-listed"] == 1 and stats["handshakes"] == 1


@pytest.mark.parametrize(
    ("make_context", "words"),
    [
        ("expired_context", "expired"),
        ("self_signed_context", "self-signed"),  # a chain to an unknown issuer
        ("wrong_name", "mismatch"),
    ],
)
def test_an_origin_whose_certificate_fails_gets_a_502_page_inside_tls(
    lab: Lab, make_context: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    if make_context == "wrong_name":
        context = lab.origin_context("other.test")
    else:
        context = getattr(lab, make_context)()
    caplog.set_level(logging.WARNING, logger="cproxy")
    with tls_origin(context) as origin, running(lab.proxy(origin.port)) as proxy:
        origin.default_route = cacheable
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            status, _, body = get(tls, "/secret", f"a.test:{origin.port}")
        assert status == 502
        text = body.decode()
        assert f"a.test:{origin.port}" in text and "did not verify" in text
        assert words in text.lower() or (
            words == "self-signed" and "unable to get local issuer" in text.lower()
        ), text
        # Nothing from that origin: its handler never ran.
        assert origin.requests == []
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["upstream_verify_failures"] == 1
    # The error log says the same as the page, as a warning.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"the certificate of a.test:{origin.port} did not verify" in m for m in warned)


def test_a_client_rejecting_our_certificate_is_spliced_for_a_while(lab: Lab) -> None:
    origin_trust = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        # A "pinned" client: it trusts only the origin's CA, so it refuses cproxy's leaf.
        with pytest.raises(ssl.SSLCertVerificationError):
            tunnel(proxy, "a.test", origin.port, origin_trust)
        wait_for(
            lambda: proxy.call(lambda: proxy.runtime.interception.pinned.stats().entries) == 1,
            what="the pinned pair",
        )
        # Its retry goes to the origin untouched and works.
        with tunnel(proxy, "a.test", origin.port, origin_trust) as tls:
            assert get(tls, "/", f"a.test:{origin.port}")[0] == 200
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["pinned"] == 1
        assert stats["handshake_failures"] == {"certificate_rejected": 1}


def test_sni_naming_another_host_is_spliced_never_intercepted(lab: Lab) -> None:
    origin_trust = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        with tunnel(proxy, "a.test", origin.port, origin_trust, sni="b.test") as tls:
            # The origin's own certificate (for b.test too): tunnelled untouched.
            assert get(tls, "/", f"b.test:{origin.port}")[0] == 200
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["sni-mismatch"] == 1 and stats["handshakes"] == 0


def test_bytes_that_are_not_tls_are_tunnelled_untouched(lab: Lab) -> None:
    from tests.tls import EchoServer

    with EchoServer() as echo, running(lab.proxy(echo.port)) as proxy:
        sock = connect(proxy, "127.0.0.1", echo.port)
        with sock:
            sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            got = b""
            while len(got) < 21:
                got += sock.recv(100)
        assert got == b"SSH-2.0-OpenSSH_9.2\r\n"
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["not-tls"] == 1


def test_a_cookie_response_is_not_shared_unless_it_says_so(lab: Lab) -> None:
    def personal(h: object) -> None:
        cookie = h.headers.get("Cookie", "")  # type: ignore[attr-defined]
        h.reply(200, f"page for {cookie}".encode(), {"Cache-Control": "max-age=600"})  # type: ignore[attr-defined]

    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        origin.routes["/me"] = personal
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            reader = tls.makefile("rb")
            alice = get(tls, "/me", f"a.test:{origin.port}", "Cookie: u=alice", reader=reader)
            bob = get(tls, "/me", f"a.test:{origin.port}", "Cookie: u=bob", reader=reader)
        assert alice[2] == b"page for u=alice" and bob[2] == b"page for u=bob"
        assert len(origin.requests) == 2


def test_interception_on_without_the_ca_refuses_to_start(lab: Lab) -> None:
    from cproxy.cli import main

    conf = lab.directory / "bad.conf"
    conf.write_text("SSLInterception = on\n")
    assert main(["-c", str(conf), "--check-config"]) == 2


def test_a_large_hit_goes_out_whole_over_tls(lab: Lab) -> None:
    """Bodies over 64 KiB take sendmsg on plain sockets; gevent's SSLSocket has none."""
    big = bytes(range(256)) * 1024  # 256 KiB

    def large(h: object) -> None:
        h.reply(200, big, {"Cache-Control": "max-age=600"})  # type: ignore[attr-defined]

    with tls_origin(lab.origin_context()) as origin, running(lab.proxy(origin.port)) as proxy:
        origin.routes["/big"] = large
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            reader = tls.makefile("rb")
            assert get(tls, "/big", f"a.test:{origin.port}", reader=reader)[2] == big
            status, headers, body = get(tls, "/big", f"a.test:{origin.port}", reader=reader)
        assert status == 200 and body == big and "hit" in headers["cache-status"]


def test_the_clienthello_of_pythons_ssl_is_read(lab: Lab) -> None:
    """The peek's parser on a real ClientHello, made by Python's ssl."""
    outgoing = ssl.MemoryBIO()
    obj = lab.client_context().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="a.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    peek = peek_client_hello(outgoing.read())
    assert peek.verdict is Verdict.CLIENT_HELLO and peek.hello is not None
    assert peek.hello.sni == "a.test"


class ClientCertOrigin:
    """A TLS 1.3 origin that requires a client certificate: its handshake fails with the
    certificate_required alert, after which it reads what it was sent and closes without
    a reset (a reset could overtake the alert and hide it)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            raw.settimeout(WAIT_S)
            tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            with tls, contextlib.suppress(OSError):
                with contextlib.suppress(ssl.SSLError):
                    tls.do_handshake()
                # Without its TLS layer now: read what came, then close (no reset).
                tls.shutdown(socket.SHUT_WR)
                while tls.recv(4096):
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # ends the accept() (close alone does not)
        self.sock.close()
        self.thread.join(WAIT_S)


def test_an_origin_asking_for_a_client_certificate_gets_502_then_is_spliced(lab: Lab) -> None:
    context = lab.origin_context()
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(lab.origin_ca_pem))
    origin = ClientCertOrigin(context)
    with contextlib.closing(origin), running(lab.proxy(origin.port)) as proxy:
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            status, _, body = get(tls, "/", f"a.test:{origin.port}")
        assert status == 502 and b"certificate required" in body, body
        # From then on the host is tunnelled untouched: the client's own certificate (or
        # its absence) is between the client and the origin.
        origin_trust = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
        with tunnel(proxy, "a.test", origin.port, origin_trust) as tls:
            # The origin's own certificate: its request for one is now the client's to answer.
            assert "cproxy" not in issuer(tls)
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["client-cert"] == 1 and stats["handshakes"] == 1


def tls12_client_cert_origin(lab: Lab, ciphers: str | None = None) -> ClientCertOrigin:
    """A TLS 1.2 origin requiring a client certificate (``ciphers``: its only suites)."""
    context = lab.origin_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(lab.origin_ca_pem))
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return ClientCertOrigin(context)


def test_a_tls_1_2_origin_asking_for_a_client_certificate_gets_502_then_is_spliced(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """Over TLS 1.2 the origin's refusal is the generic handshake_failure alert; what tells
    it apart is the CertificateRequest before it, seen through OpenSSL's message callback
    on cproxy's origin handshakes (docs/INTERCEPTION.md)."""
    caplog.set_level(logging.WARNING, logger="cproxy")
    origin = tls12_client_cert_origin(lab)
    with contextlib.closing(origin), running(lab.proxy(origin.port)) as proxy:
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            assert "cproxy" in issuer(tls)
            status, _, body = get(tls, "/", f"a.test:{origin.port}")
        assert status == 502
        assert f"a.test:{origin.port} asked for a client certificate" in body.decode(), body
        # Spliced from then on: the client, which has a certificate of its own, meets
        # the origin itself and answers its request.
        client = ssl.create_default_context(cafile=str(lab.origin_ca_pem))
        lab.origin_ca.issue_cert("client.test").configure_cert(client)
        with tunnel(proxy, "a.test", origin.port, client) as tls:
            assert "cproxy" not in issuer(tls)
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"]["client-cert"] == 1 and stats["handshakes"] == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("asks for a client certificate: spliced from now on" in m for m in warned)


def test_a_tls_1_2_handshake_failure_without_a_certificate_request_is_not_taken_for_one(
    lab: Lab,
) -> None:
    """The same alert (handshake_failure) for no cipher suite in common, from an origin
    that would have asked for a certificate: it failed before asking, so it is a 502 of a
    failed handshake each time, never spliced for a client certificate."""
    # A suite cproxy's client never offers (SHA-1 MACs are left out of its defaults).
    origin = tls12_client_cert_origin(lab, ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA")
    with contextlib.closing(origin), running(lab.proxy(origin.port)) as proxy:
        for _ in range(2):
            with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
                assert "cproxy" in issuer(tls)  # intercepted, both times
                status, _, body = get(tls, "/", f"a.test:{origin.port}")
            assert status == 502 and b"handshake failure" in body, body
            assert b"client certificate" not in body
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"].get("client-cert", 0) == 0 and stats["handshakes"] == 2
    assert origin.connections >= 2


def test_without_the_message_hook_a_tls_1_2_client_certificate_request_is_not_recognised(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where Python's ssl has no ``_msg_callback`` (it is a debugging hook), cproxy falls
    back to what it can know from the exception alone: a 502, and no splice."""
    from cproxy.origin import tls as origin_tls

    monkeypatch.setattr(origin_tls, "_MSG_CALLBACK", False)
    origin = tls12_client_cert_origin(lab)
    with contextlib.closing(origin), running(lab.proxy(origin.port)) as proxy:
        with tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls:
            status, _, body = get(tls, "/", f"a.test:{origin.port}")
        assert status == 502 and b"client certificate" not in body
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["splices"].get("client-cert", 0) == 0


class WebSocketOrigin:
    """A TLS origin that accepts one WebSocket opening handshake per connection (RFC 6455
    §4.2.2) and then echoes every byte; ``answer`` replaces the 101 when set."""

    def __init__(self, context: ssl.SSLContext, answer: bytes | None = None) -> None:
        # It offers HTTP/2 in ALPN as most origins (nginx with http2 on) do: cproxy must ask
        # for HTTP/1.1 alone when a request upgrades the connection.
        context.set_alpn_protocols(["h2", "http/1.1"])
        self.context = context
        self.answer = answer
        self.heads: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.sock.accept()
        except OSError:
            return
        with (
            raw,
            contextlib.suppress(OSError),
            self.context.wrap_socket(raw, server_side=True) as tls,
        ):
            head = b""
            while b"\r\n\r\n" not in head:
                head += tls.recv(4096)
            self.heads.append(head)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(
                hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            tls.sendall(
                self.answer
                or b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept
                + b"\r\n\r\n"
            )
            while data := tls.recv(4096):
                tls.sendall(data)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(WAIT_S)


WS_REQUEST = (
    "GET /chat HTTP/1.1\r\nHost: a.test:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_a_websocket_inside_an_intercepted_connection_is_relayed_after_the_101(lab: Lab) -> None:
    origin = WebSocketOrigin(lab.origin_context())
    try:
        with (
            running(lab.proxy(origin.port)) as proxy,
            tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls,
            tls.makefile("rb") as reader,
        ):
            tls.sendall(WS_REQUEST.format(port=origin.port).encode())
            status, headers, _ = read_response(reader)
            assert status == 101
            assert headers["upgrade"] == "websocket" and headers["connection"] == "Upgrade"
            assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello"
            tls.sendall(frame)
            assert reader.read(len(frame)) == frame
        sent = origin.heads[0].decode("latin-1").lower()
        assert "upgrade: websocket" in sent and "sec-websocket-key:" in sent
    finally:
        origin.close()


def test_an_origin_refusing_the_websocket_upgrade_gives_502(lab: Lab) -> None:
    origin = WebSocketOrigin(
        lab.origin_context(), answer=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    )
    try:
        with (
            running(lab.proxy(origin.port)) as proxy,
            tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls,
            tls.makefile("rb") as reader,
        ):
            tls.sendall(WS_REQUEST.format(port=origin.port).encode())
            status, _, body = read_response(reader)
        assert status == 502 and b"403" in body
    finally:
        origin.close()


@pytest.mark.parametrize("host_field", ["a.test:{port}", "A.Test:{port}"], ids=["exact", "case"])
def test_the_fast_lane_answers_intercepted_hits_as_the_general_path_does(
    lab: Lab, tmp_path: Path, host_field: str
) -> None:
    log_path = tmp_path / "access.log"
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, AccessLog=str(log_path), AccessLogFormat="json")) as proxy,
        tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls,
        tls.makefile("rb") as reader,
    ):
        origin.default_route = cacheable
        host = host_field.format(port=origin.port)
        assert get(tls, "/f", host, "Accept: */*", reader=reader)[0] == 200  # stored
        answers = {}
        for lane in (True, False):
            proxy.call(lambda lane=lane: setattr(proxy.runtime, "fast_lane", lane))
            before = proxy.call(lambda: proxy.runtime.cache.fast_hits)
            status, headers, body = get(tls, "/f", host, "Accept: */*", reader=reader)
            taken = proxy.call(lambda: proxy.runtime.cache.fast_hits) - before
            headers.pop("age", None)
            answers[lane] = (status, headers, body, taken)
        assert answers[True][:3] == answers[False][:3]
        # The exact authority takes the fast lane; another spelling is bound by the general path.
        assert answers[True][3] == (1 if host_field == "a.test:{port}" else 0)
        assert answers[False][3] == 0
        proxy.call(lambda: proxy.runtime.access_log.flush())
        stats = proxy.call(lambda: proxy.runtime.stats()["interception"])
        assert stats["intercepted_requests"] == 3
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    hits = [x for x in lines if x["method"] == "GET" and x["cache"] == "hit"]
    assert len(hits) == 2
    for line in hits:
        del line["time"], line["elapsed_ms"]
    assert hits[0] == hits[1]
    assert hits[0]["target"] == f"https://a.test:{origin.port}/f"


def test_the_user_the_connect_authenticated_is_the_user_of_every_request_inside(
    lab: Lab, tmp_path: Path
) -> None:
    from cproxy.admin.passwd import set_password

    passwd = tmp_path / "proxy.passwd"
    set_password(str(passwd), "alice", "secret", rounds=4)
    log_path = tmp_path / "access.log"
    directives = {
        "ProxyAuth": "on",
        "ProxyAuthPasswordFile": str(passwd),
        "ProxyAuthExempt": "",
        "AccessLog": str(log_path),
        "AccessLogFormat": "json",
    }
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, **directives)) as proxy,
    ):
        origin.default_route = cacheable
        # Without credentials the CONNECT itself is refused with 407.
        with pytest.raises(ConnectionError, match="407"):
            connect(proxy, "a.test", origin.port)
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
        credentials = base64.b64encode(b"alice:secret").decode()
        sock.sendall(
            f"CONNECT a.test:{origin.port} HTTP/1.1\r\nHost: a.test:{origin.port}\r\n"
            f"Proxy-Authorization: Basic {credentials}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        with lab.client_context().wrap_socket(sock, server_hostname="a.test") as tls:
            reader = tls.makefile("rb")
            # Browsers send no Proxy-Authorization inside TLS: no 407 here.
            assert get(tls, "/u", f"a.test:{origin.port}", reader=reader)[0] == 200
            assert get(tls, "/u", f"a.test:{origin.port}", reader=reader)[0] == 200
            reader.close()
        # Nothing the client sent for the proxy reaches the origin.
        assert all("Proxy-Authorization" not in h for _, _, h, _ in origin.requests)
        proxy.call(lambda: proxy.runtime.access_log.flush())
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    inside = [x for x in lines if x["method"] == "GET"]
    assert [x["user"] for x in inside] == ["alice", "alice"]


def test_pipelined_requests_and_a_large_upload_inside_tls(lab: Lab) -> None:
    def upload(h: object) -> None:
        body = h.body  # type: ignore[attr-defined]
        h.reply(200, f"got {len(body)} {hashlib.sha256(body).hexdigest()}".encode())  # type: ignore[attr-defined]

    payload = bytes(range(256)) * 800  # 200 KiB: many TLS records
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port)) as proxy,
        tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls,
        tls.makefile("rb") as reader,
    ):
        origin.routes["/up"] = upload
        host = f"a.test:{origin.port}"
        # Two GETs in one write, then a POST whose body spans many records.
        tls.sendall(
            f"GET /one HTTP/1.1\r\nHost: {host}\r\n\r\nGET /two HTTP/1.1\r\nHost: {host}\r\n\r\n"
            f"POST /up HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        assert read_response(reader)[2] == b"hello GET /one"
        assert read_response(reader)[2] == b"hello GET /two"
        status, _, body = read_response(reader)
    assert status == 200
    assert body == f"got {len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()


def test_a_large_upload_to_a_fresh_tls_origin_is_not_taken_for_an_early_answer(lab: Lab) -> None:
    """TLS 1.3 session tickets make a fresh origin socket readable with no answer there;
    the early-answer poll (plain sockets only) must not take them for one and wait."""

    def upload(h: object) -> None:
        h.reply(200, f"got {len(h.body)}".encode())  # type: ignore[attr-defined]

    payload = b"u" * (4 << 20)
    with (
        tls_origin(lab.origin_context()) as origin,
        running(lab.proxy(origin.port, ReadTimeout="3 seconds")) as proxy,
        tunnel(proxy, "a.test", origin.port, lab.client_context()) as tls,
        tls.makefile("rb") as reader,
    ):
        origin.routes["/up"] = upload
        head = f"POST /up HTTP/1.1\r\nHost: a.test:{origin.port}\r\nContent-Length: {len(payload)}"
        tls.sendall(head.encode() + b"\r\n\r\n" + payload)
        status, _, body = read_response(reader)
    assert (status, body) == (200, f"got {len(payload)}".encode())
