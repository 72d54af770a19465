"""The floor: the leanest gevent caching proxy we can write, for side-by-side comparison.

    python bench/toy_proxy.py PORT

Not a proxy anyone should use: it trusts the request completely, caches every 200 answer
forever by URL, and knows only Content-Length bodies. It exists so bench/floor.py can say
how far cproxy's hit path is from what Python and gevent can do at all on this machine
(issue #5 quotes such a toy at about 42,000 1 KiB hits/s here).
"""

from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402

from gevent.server import StreamServer  # noqa: E402

CACHE: dict[bytes, bytes] = {}


def fetch(url: bytes) -> bytes:
    rest = url.split(b"://", 1)[1]
    hostport, _, path = rest.partition(b"/")
    host, _, port = hostport.partition(b":")
    s = socket.create_connection((host.decode(), int(port or 80)))
    try:
        s.sendall(b"GET /" + path + b" HTTP/1.1\r\nHost: " + hostport + b"\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += s.recv(65536)
        return head + b"\r\n\r\n" + body
    finally:
        s.close()


def handle(conn: socket.socket, _addr) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                conn.close()
                return
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        url = head.split(b" ", 2)[1]
        response = CACHE.get(url)
        if response is None:
            response = CACHE[url] = fetch(url)
        conn.sendall(response)


if __name__ == "__main__":
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=1024)
    server.serve_forever()
