"""The admin listener: gevent.pywsgi serving AdminApp, plus the status sampler.

``start_admin(runtime)`` is called by the server at start-up; ``server.stop()`` at
shutdown stops the listener and the sampler greenlet together.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from cproxy.admin.app import AdminApp, RuntimeLike, password_file_path
from cproxy.admin.status import SAMPLE_INTERVAL_S

log = logging.getLogger("cproxy.admin")

# Admin requests served at once. The admin shares the process with the proxy; a few
# browser tabs and a metrics scraper need far fewer, and a cap keeps a flood of admin
# requests from taking memory from proxied traffic.
MAX_ADMIN_CONNECTIONS = 32
# Admin connections the kernel queues: a few browsers and a scraper.
ADMIN_BACKLOG = 64


class AdminServer(WSGIServer):
    """A WSGIServer for AdminApp that also runs the status sampler while serving."""

    def __init__(
        self,
        listener: socket.socket | tuple[str, int],
        app: AdminApp,
        *,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        super().__init__(
            listener,
            app,
            spawn=Pool(MAX_ADMIN_CONNECTIONS),
            log=logging.getLogger("cproxy.admin.access"),
            error_log=log,
        )
        self.app: AdminApp = app
        self.sample_interval_s = sample_interval_s
        self._sampler: gevent.Greenlet[Any, Any] | None = None

    def start(self) -> None:
        """Start listening and sampling figures for the status charts."""
        super().start()
        if self._sampler is None:
            self._sampler = gevent.spawn(self._sample_forever)
        host, port = self.address[:2]
        log.info("admin listening on http://%s:%d/", host, port)

    def stop_sampler(self) -> None:
        """Stop sampling figures for the status charts (the listener keeps serving)."""
        if self._sampler is not None:
            self._sampler.kill()
            self._sampler = None

    def stop(self, timeout: float | None = None) -> None:
        """Stop the sampler, then the listener (waiting up to ``timeout`` for requests)."""
        self.stop_sampler()
        super().stop(timeout)

    def _sample_forever(self) -> None:
        while True:
            try:
                self.app.history.record(self.app.runtime.stats())
            except Exception:
                # A failing stats() must not end sampling for good; say what failed.
                log.exception("admin status sampling failed")
            gevent.sleep(self.sample_interval_s)


def start_admin(
    runtime: RuntimeLike, listener: socket.socket | tuple[str, int] | None = None
) -> AdminServer | None:
    """Start the admin listener for ``runtime``; None when the admin cannot run.

    The listener is AdminAddress:AdminPort unless ``listener`` (an address or a bound
    socket, e.g. for tests on port 0; a bound socket that is not listening yet is made
    to listen here) is given. The admin does not start, and a one-line
    message says why, when AdminPort is 0 or when the password file (AdminPasswordFile)
    does not exist: without it nobody could log in. Failing to bind raises OSError.
    """
    config = runtime.config
    if listener is None and config.admin_port == 0:
        log.info("admin disabled (AdminPort = 0)")
        return None
    passwords = password_file_path(config)
    if not passwords.is_file():
        log.warning(
            "admin not started: no password file %s; create one with: "
            "cproxy passwd -f %s admin, then reload cproxy (SIGHUP) to start the admin",
            passwords,
            passwords,
        )
        return None
    if listener is None:
        listener = (config.admin_address, config.admin_port)
    elif not isinstance(listener, tuple):
        # The server binds the admin address at start (so a busy port fails the start)
        # but listens only now: until then a client is refused, not left hanging.
        listener.listen(ADMIN_BACKLOG)
    server = AdminServer(listener, AdminApp(runtime))
    server.start()
    # The proxy refuses to forward requests to its own admin listener (DESIGN.md §5.7).
    admin_addresses = getattr(runtime, "admin_addresses", None)
    if admin_addresses is not None:
        admin_addresses.append(tuple(server.address[:2]))
    return server
