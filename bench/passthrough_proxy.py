"""The floor for a miss: the leanest pooled pass-through gevent proxy we can write.

    python bench/passthrough_proxy.py PORT

Not a proxy anyone should use: it trusts the request completely, caches nothing, knows
only Content-Length responses, and keeps a LIFO pool of keep-alive origin sockets per
origin with no checks at all (no liveness peek, no retry, no limits). It exists so
bench/compare.py can say how far cproxy's pooled miss is from what Python and gevent can
do at all on this machine (bench/toy_proxy.py caches everything, so its no-store figure
says nothing about misses). Issue #12 quotes such a floor at about 2x Squid's misses.
"""

from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402

from gevent.server import StreamServer  # noqa: E402

# (host, port) -> idle keep-alive sockets, most recently used last.
POOL: dict[tuple[str, int], list[socket.socket]] = {}


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


def exchange(request_line: bytes, fields: bytes) -> bytes:
    """Send the request to its origin on a pooled socket; the whole response."""
    method, url, version = request_line.split(b" ", 2)
    hostport, _, path = url.split(b"://", 1)[1].partition(b"/")
    host, _, port = hostport.partition(b":")
    key = (host.decode(), int(port or 80))
    idle = POOL.setdefault(key, [])
    s = idle.pop() if idle else socket.create_connection(key)
    s.sendall(method + b" /" + path + b" " + version + b"\r\n" + fields + b"\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            s.close()
            raise ConnectionError("origin closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = _content_length(head)
    while len(body) < length:
        body += s.recv(65536)
    idle.append(s)
    return head + b"\r\n\r\n" + body


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
        request_line, _, fields = head.partition(b"\r\n")
        conn.sendall(exchange(request_line, fields))


if __name__ == "__main__":
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=1024)
    server.serve_forever()
