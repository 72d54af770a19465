"""nginx as a real HTTPS origin for tests and benchmarks (HTTP/2 or HTTP/1.1 over TLS).

`NginxOrigin` writes a configuration into a directory of its own (certificate from a test
CA, pid, logs and temp paths there too), starts ``nginx -p DIR -c nginx.conf -g 'daemon
off;'`` on 127.0.0.1, and stops it on exit. nginx cannot bind port 0: a free port is
picked and the start is tried again on another when it was taken meanwhile (EADDRINUSE).

Its access log records, per request, the connection serial number, the request's number
on that connection, the protocol and the URI (`requests()`), so a test can count the
connections and streams that reached it. Locations: ``/small/...`` (a short no-store
text), ``/files/NAME`` (files written by `add_file`), ``/echo`` (takes a body), everything
else 404.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.tls import TestCA

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT_S = 10.0

_CONF = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format reqs '$connection $connection_requests $server_protocol $status $request_uri';
    access_log {dir}/access.log reqs;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests {keepalive_requests};
    http2_max_concurrent_streams {max_streams};
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        server_name localhost 127.0.0.1;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location /small/ {{
            add_header Cache-Control no-store;
            return 200 "small $request_uri";
        }}
        location /files/ {{
            alias {dir}/files/;
            add_header Cache-Control no-store;
        }}
        location /echo {{
            # The request body is read, then answered with its length.
            client_max_body_size 64m;
            add_header Cache-Control no-store;
            return 200 "got $content_length";
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NginxOrigin:
    """nginx serving HTTPS on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        ca: TestCA,
        *,
        http2: bool = True,
        keepalive_requests: int = 1000,
        max_streams: int = 128,
    ) -> None:
        self.dir = directory
        self.ca = ca
        self.http2 = http2
        self.keepalive_requests = keepalive_requests
        self.max_streams = max_streams
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        (directory / "files").mkdir(parents=True, exist_ok=True)
        ca.cert.private_key_pem.write_to_path(str(directory / "key.pem"))
        ca.cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))

    def add_file(self, name: str, data: bytes) -> None:
        (self.dir / "files" / name).write_bytes(data)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def _write_conf(self, port: int) -> Path:
        conf = self.dir / "nginx.conf"
        conf.write_text(
            _CONF.format(
                dir=self.dir,
                port=port,
                http2=" http2" if self.http2 else "",
                keepalive_requests=self.keepalive_requests,
                max_streams=self.max_streams,
                # As root, workers would switch to nobody and not read tmp_path.
                user="user root;" if os.geteuid() == 0 else "",
            )
        )
        return conf

    def start(self) -> NginxOrigin:
        for _attempt in range(10):
            port = free_port()
            conf = self._write_conf(port)
            (self.dir / "error.log").write_text("")
            proc = subprocess.Popen(
                [NGINX, "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_listening(proc, port):
                self.proc, self.port = proc, port
                return self
            _, err = proc.communicate(timeout=START_TIMEOUT_S)
            if b"Address already in use" in err or str(errno.EADDRINUSE).encode() in err:
                continue  # another process took the port meanwhile: another one
            raise RuntimeError(f"nginx did not start: {err.decode(errors='replace')}")
        raise RuntimeError("nginx found no free port in 10 tries")

    def _wait_listening(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return True
            # Bounded poll of a process we do not control: nginx gives no readiness signal.
            time.sleep(0.02)
        proc.kill()
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def requests(self) -> list[tuple[int, int, str, str]]:
        """(connection serial, request number on it, protocol, URI) per request answered
        (nginx writes its log line when the request ends; it also logs, with status 0 or
        499, streams it did not process, which are left out here)."""
        path = self.dir / "access.log"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            conn, n, proto, status, uri = line.split(" ", 4)
            if status not in ("0", "499"):
                rows.append((int(conn), int(n), proto, uri))
        return rows

    def __enter__(self) -> NginxOrigin:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
