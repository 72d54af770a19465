"""A threaded raw TCP server on 127.0.0.1:0 for scripted origins.

Each accepted connection is wrapped (``_wrap``) and served by ``script(conn)`` in a
thread of its own. An exception other than OSError in a script is re-raised when the
server's ``with`` block ends, so a broken script fails its test. Subclasses:
tests/scripted.py (ScriptedOrigin) and tests/hostile.py (RecordingOrigin).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from tests.support import WAIT_S

C = TypeVar("C")


class RawServer(Generic[C]):
    """Accepts on 127.0.0.1:0 and runs ``script(conn)`` per connection, each in a thread."""

    backlog = 128

    def __init__(self, script: Callable[[C], None]) -> None:
        self.script = script
        self.lock = threading.Lock()
        self.conns: list[C] = []
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(self.backlog)
        self.port = int(self.listener.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def connections(self) -> int:
        """Connections accepted and handed to the script so far."""
        return len(self.conns)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wrap(self, sock: socket.socket, index: int) -> C:
        """The object the script gets for accepted connection number ``index``."""
        raise NotImplementedError

    def _intercept(self, sock: socket.socket, peer: Any) -> bool:
        """True when the accepted socket was handled here and is not for the script."""
        return False

    @staticmethod
    def _sock(conn: C) -> socket.socket:
        return conn.sock  # type: ignore[attr-defined, no-any-return]

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, peer = self.listener.accept()
            except OSError:
                return
            if self._intercept(sock, peer):
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn = self._wrap(sock, len(self.conns))
                self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: C) -> None:
        try:
            self.script(conn)
        except OSError:
            pass  # the proxy went away mid-script: many tests provoke exactly that
        except BaseException as exc:  # re-raised by __exit__: a broken script fails the test
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                self._sock(conn).close()

    def __enter__(self) -> Any:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._acceptor.join(WAIT_S)
        for conn in list(self.conns):
            with contextlib.suppress(OSError):
                self._sock(conn).shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(WAIT_S)
        if self.errors and exc[0] is None:
            raise self.errors[0]
