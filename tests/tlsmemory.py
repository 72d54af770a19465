"""TLS handshakes in memory (``ssl.MemoryBIO``) for the interception tests: real OpenSSL on
both sides, no sockets, no threads, so every byte each side sent can be looked at."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field


@dataclass
class Handshake:
    client: ssl.SSLObject
    server: ssl.SSLObject
    client_error: BaseException | None = None
    server_error: BaseException | None = None
    #: every flight the client sent, in order (the first is the ClientHello)
    client_flights: list[bytes] = field(default_factory=list)


def client_hello(
    client_ctx: ssl.SSLContext | None = None, server_hostname: str | None = "example.test"
) -> bytes:
    """The ClientHello bytes ``client_ctx`` sends (no server needed)."""
    if client_ctx is None:
        client_ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def _step(obj: ssl.SSLObject) -> BaseException | None:
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        return None
    except (ssl.SSLError, OSError) as exc:
        return exc
    return None


def handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_hostname: str | None,
    *,
    close_after_hello: bool = False,
    rounds: int = 8,
) -> Handshake:
    """Run a handshake to its end (or first error on either side).

    ``close_after_hello``: the client sends its ClientHello, then the connection ends (EOF)
    as when a client closes during the handshake.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    hs = Handshake(
        client=client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname),
        server=server_ctx.wrap_bio(s_in, s_out, server_side=True),
    )
    for _ in range(rounds):
        if hs.client_error is None:
            hs.client_error = _step(hs.client)
        flight = c_out.read()  # after a client error: its alert
        if flight:
            hs.client_flights.append(flight)
            s_in.write(flight)
        if close_after_hello:
            s_in.write_eof()
        if hs.server_error is None:
            hs.server_error = _step(hs.server)
        c_in.write(s_out.read())
        if hs.server_error is not None or close_after_hello:
            break
        if hs.client.version() is not None and hs.server.version() is not None:
            break
    return hs
