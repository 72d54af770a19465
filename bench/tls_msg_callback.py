"""What watching an origin handshake's messages costs cproxy (issue #19, TLS 1.2 origins
that ask for a client certificate; cproxy/origin/tls.py, `_HandshakeWatch`).

    python bench/tls_msg_callback.py [--handshakes 300] [--records 3000] [--rounds 3]

On loopback only: a TLS server (Python's ssl, in a thread of its own, certificate from a
throw-away CA) and cproxy's origin-side `start_tls` in the main thread, under gevent. The
figures are CPU time of the main thread (`time.thread_time`), so the server's work does
not count, medians over ``--handshakes`` or ``--records``, best of ``--rounds``:

1. one origin handshake (TCP connect excluded), TLS 1.3 and TLS 1.2, with the hook (what
   cproxy does) and without it (as where ``_msg_callback`` is missing);
2. one 1 KiB request/response round trip on an established connection, with no handshake
   of its context under way (the hook off: what nearly every request sees) and with one
   under way (the hook on: each record read or written calls into Python).

The hook is set as cproxy sets it (`origin_tls._C_HOOK`, the attribute of the C type).

Prints one line per figure and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import require

# What is missing is named before anything is imported from it (tests/test_bench_deps.py).
require(modules=("trustme",))

import gevent.socket as gsocket  # noqa: E402
import trustme  # noqa: E402

from cproxy.origin import tls as origin_tls  # noqa: E402
from cproxy.origin.tls import TLSSettings, client_context, start_tls  # noqa: E402


class Server:
    """A TLS server on 127.0.0.1: each connection shakes hands, then echoes what it reads
    until the client closes."""

    def __init__(self, ca: trustme.CA, version: ssl.TLSVersion) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("origin.test").configure_cert(self.context)
        self.context.maximum_version = version
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                while data := tls.recv(65536):
                    tls.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def connect(port: int) -> gsocket.socket:
    return gsocket.create_connection(("127.0.0.1", port))


def handshake_us(port: int, settings: TLSSettings, n: int, hook: bool) -> float:
    origin_tls._MSG_CALLBACK = hook
    times = []
    for _ in range(n):
        sock = connect(port)
        t0 = time.thread_time()
        tls = start_tls(sock, "origin.test", port, settings, session=None, deadline=1e18)
        times.append(time.thread_time() - t0)
        tls.close()
    return statistics.median(times) * 1e6


def round_trip_us(port: int, settings: TLSSettings, n: int, hook: bool) -> float:
    origin_tls._MSG_CALLBACK = True
    tls = start_tls(connect(port), "origin.test", port, settings, session=None, deadline=1e18)
    ctx: Any = client_context(settings)
    # As while another handshake of this context is under way (`_watch`), or not.
    origin_tls._C_HOOK.__set__(ctx, origin_tls._observe if hook else None)
    payload = b"x" * 1024
    times = []
    try:
        for _ in range(n):
            t0 = time.thread_time()
            tls.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(tls.recv(65536))
            times.append(time.thread_time() - t0)
    finally:
        origin_tls._C_HOOK.__set__(ctx, None)
        tls.close()
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not origin_tls._hook_available():
        sys.exit("this Python's ssl has no SSLContext._msg_callback: nothing to measure")
    ca = trustme.CA()
    workdir = tempfile.TemporaryDirectory(prefix="cproxy-msgcb-")
    ca_file = Path(workdir.name) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings = TLSSettings(ca_file=str(ca_file))
    figures: dict[str, float] = {}
    try:
        for name, version in (
            ("TLS 1.3", ssl.TLSVersion.TLSv1_3),
            ("TLS 1.2", ssl.TLSVersion.TLSv1_2),
        ):
            server = Server(ca, version)
            try:
                for hook in (False, True):
                    label = f"{name} handshake, hook {'on' if hook else 'off'}"
                    figures[label] = min(
                        handshake_us(server.port, settings, args.handshakes, hook)
                        for _ in range(args.rounds)
                    )
                for hook in (False, True):
                    label = f"{name} 1 KiB round trip, hook {'on' if hook else 'off'}"
                    figures[label] = min(
                        round_trip_us(server.port, settings, args.records, hook)
                        for _ in range(args.rounds)
                    )
            finally:
                server.close()
    finally:
        workdir.cleanup()
        origin_tls._MSG_CALLBACK = True
    for label, value in figures.items():
        print(f"{label:<40} {value:8.1f} us CPU (median)")
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
