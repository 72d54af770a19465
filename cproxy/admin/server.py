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

from cproxy.admin.app import AdminApp, RuntimeLike
from cproxy.admin.paths import password_file_missing
from cproxy.admin.status import SAMPLE_INTERVAL_S
from cproxy.origin.connection import format_host_port

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
        # Listeners on AdminAddress's other addresses: the same app, started and stopped
        # with this one (which alone samples the figures).
        self.siblings: list[WSGIServer] = []

    def add_listener(self, listener: socket.socket | tuple[str, int]) -> None:
        """Serve the same app on another address as well (before `start`)."""
        self.siblings.append(
            WSGIServer(
                listener,
                self.app,
                spawn=Pool(MAX_ADMIN_CONNECTIONS),
                log=logging.getLogger("cproxy.admin.access"),
                error_log=log,
            )
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) this admin listens on, this server's first."""
        return [tuple(s.address[:2]) for s in (self, *self.siblings)]  # type: ignore[misc]

    def start(self) -> None:
        """Start listening and sampling figures for the status charts."""
        super().start()
        for sibling in self.siblings:
            sibling.start()
        if self._sampler is None:
            self._sampler = gevent.spawn(self._sample_forever)
        for host, port in self.addresses:
            log.info("admin listening on http://%s/", format_host_port(host, port))

    def stop_sampler(self) -> None:
        """Stop sampling figures for the status charts (the listener keeps serving)."""
        if self._sampler is not None:
            self._sampler.kill()
            self._sampler = None

    def stop(self, timeout: float | None = None) -> None:
        """Stop the sampler, then the listener (waiting up to ``timeout`` for requests)."""
        self.stop_sampler()
        for sibling in self.siblings:
            sibling.stop(timeout)
        super().stop(timeout)

    def _sample_forever(self) -> None:
        while True:
            try:
                self.app.history.record(self.app.runtime.stats())
            except Exception:
                # A failing stats() must not end sampling for good; say what failed.
                log.exception("admin status sampling failed")
            gevent.sleep(self.sample_interval_s)


Listener = socket.socket | tuple[str, int]


def start_admin(
    runtime: RuntimeLike, listener: Listener | list[Listener] | None = None
) -> AdminServer | None:
    """Start the admin listener for ``runtime``; None when the admin cannot run.

    The listeners are AdminAddress:AdminPort (every address) unless ``listener`` (an
    address or a bound socket, or a list of them, e.g. for tests on port 0; a bound
    socket that is not listening yet is made to listen here) is given. The admin does
    not start, and a one-line message says why, when AdminPort is 0 or when the password
    file (AdminPasswordFile) does not exist: without it nobody could log in. Failing to
    bind raises OSError.
    """
    config = runtime.config
    if listener is None and config.admin_port == 0:
        log.info("admin disabled (AdminPort = 0)")
        return None
    if password_file_missing(config):
        return None
    listeners: list[Listener]
    if listener is None:
        listeners = [(host, config.admin_port) for host in config.admin_address]
    elif isinstance(listener, list):
        listeners = listener
    else:
        listeners = [listener]
    for each in listeners:
        if not isinstance(each, tuple):
            # The server binds the admin addresses at start (so a busy port fails the
            # start) but listens only now: until then a client is refused, not left hanging.
            each.listen(ADMIN_BACKLOG)
    server = AdminServer(listeners[0], AdminApp(runtime))
    for other in listeners[1:]:
        server.add_listener(other)
    server.start()
    # The proxy refuses to forward requests to its own admin listener (DESIGN.md §5.7).
    admin_addresses = getattr(runtime, "admin_addresses", None)
    if admin_addresses is not None:
        admin_addresses.extend(server.addresses)
    return server
