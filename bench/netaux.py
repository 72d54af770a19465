"""Small loopback network helpers for the benchmarks, each run as its own process.

    python bench/netaux.py relay LISTEN_PORT TARGET_PORT DELAY_MS
        A TCP relay that behaves like a WAN link in front of TARGET_PORT: every byte the
        client sends reaches the target DELAY_MS later (one request trip), and a new
        connection costs one more DELAY_MS first (the TCP handshake's round trip). Answers
        come back at once. A request over a reused connection so takes ~DELAY_MS, over a
        new one ~2 x DELAY_MS. (The kernel here has no netem, hence a relay.)

    python bench/netaux.py source PORT
        A TCP source: sends bulk data to every connection until the peer closes.

    python bench/netaux.py tunnel PROXY_PORT TARGET_PORT SECONDS
        Opens a CONNECT tunnel through the proxy on 127.0.0.1:PROXY_PORT to
        127.0.0.1:TARGET_PORT (PROXY_PORT 0: connect directly, the baseline), reads for
        SECONDS and prints one JSON line: bytes, seconds, MB/s.

Everything binds and connects to 127.0.0.1 only. Each server runs until it is killed.
"""

from __future__ import annotations

import json
import socket
import sys
import time

LOOPBACK = "127.0.0.1"
CHUNK_BYTES = 256 * 1024


def relay(listen_port: int, target_port: int, delay_ms: float) -> None:
    import gevent
    import gevent.queue
    from gevent import socket as gsocket
    from gevent.server import StreamServer

    delay_s = delay_ms / 1000.0

    def to_target(client: gsocket.socket, target: gsocket.socket, accepted: float) -> None:
        # The handshake round trip: nothing reaches the target before accepted + delay.
        queue: gevent.queue.Queue = gevent.queue.Queue()

        def writer() -> None:
            while True:
                arrived, data = queue.get()
                due = max(arrived, accepted + delay_s) + delay_s
                wait = due - time.monotonic()
                if wait > 0:
                    gevent.sleep(wait)
                if not data:
                    try:
                        target.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    target.sendall(data)
                except OSError:
                    return

        w = gevent.spawn(writer)
        try:
            while True:
                try:
                    data = client.recv(CHUNK_BYTES)
                except OSError:
                    data = b""
                queue.put((time.monotonic(), data))
                if not data:
                    break
            w.join()
        finally:
            w.kill()

    def to_client(client: gsocket.socket, target: gsocket.socket) -> None:
        while True:
            try:
                data = target.recv(CHUNK_BYTES)
            except OSError:
                data = b""
            if not data:
                try:
                    client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                client.sendall(data)
            except OSError:
                return

    def handle(client: gsocket.socket, _address: tuple) -> None:
        accepted = time.monotonic()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target = gsocket.create_connection((LOOPBACK, target_port))
        target.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up = gevent.spawn(to_target, client, target, accepted)
            down = gevent.spawn(to_client, client, target)
            gevent.joinall([up, down])
        finally:
            target.close()
            client.close()

    StreamServer((LOOPBACK, listen_port), handle, backlog=1024).serve_forever()


def source(port: int) -> None:
    from gevent import socket as gsocket
    from gevent.server import StreamServer

    payload = b"x" * CHUNK_BYTES

    def handle(sock: gsocket.socket, _address: tuple) -> None:
        try:
            while True:
                sock.sendall(payload)
        except OSError:
            pass
        finally:
            sock.close()

    StreamServer((LOOPBACK, port), handle, backlog=128).serve_forever()


def tunnel(proxy_port: int, target_port: int, seconds: float) -> dict:
    if proxy_port:
        sock = socket.create_connection((LOOPBACK, proxy_port), timeout=10)
        target = f"{LOOPBACK}:{target_port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise SystemExit("tunnel: proxy closed the connection before its answer")
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise SystemExit(f"tunnel: proxy answered {head.splitlines()[0]!r}")
    else:
        sock = socket.create_connection((LOOPBACK, target_port), timeout=10)
        rest = b""
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    total = len(rest)
    started = time.monotonic()
    end = started + seconds
    while True:
        n = sock.recv_into(view)
        if not n:
            break
        total += n
        if time.monotonic() >= end:
            break
    elapsed = time.monotonic() - started
    sock.close()
    return {"bytes": total, "seconds": elapsed, "mb_per_s": total / elapsed / 1e6}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "relay" and len(args) == 3:
        relay(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "source" and len(args) == 1:
        source(int(args[0]))
    elif cmd == "tunnel" and len(args) == 3:
        print(json.dumps(tunnel(int(args[0]), int(args[1]), float(args[2]))), flush=True)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
