"""The proxy listener: a gevent StreamServer that accepts every connection at once.

A greenlet per connection waits for its request heads without a MaxActiveThreads slot;
slots are taken per request and caps on open connections are kept by
cproxy.server.admission. (Before, the spawn pool was MaxActiveThreads: connections that
sent nothing held the slots, and new clients waited in the kernel's backlog.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Any

import gevent
import gevent.event
from gevent import socket
from gevent.pool import Pool

from cproxy import __version__, build
from cproxy.directives import Config, load_config
from cproxy.errors import ConfigError
from cproxy.server.fdlimits import log_budget, raise_soft_limit
from cproxy.server.handler import handle_client
from cproxy.server.listeners import (
    ListenError,
    ProxyListener,
    bind_sockets,
    format_address,
    listen_sockets,
)
from cproxy.server.pidfile import AlreadyRunning, pid_file, pid_file_path
from cproxy.server.runtime import Runtime, configure_logging

log = logging.getLogger("cproxy")

# How long SIGTERM waits for in-flight requests before closing their connections.
SHUTDOWN_GRACE_S = 10.0
# Idle origin sockets closed each time accept fails for want of a descriptor.
GIVE_BACK_IDLE_SOCKETS = 16
# How often a proxy whose admin waits for its password file looks for it: the admin
# starts within this long of `cproxy passwd` creating the file (one stat a second).
ADMIN_WATCH_S = 1.0


class ProxyServer:
    """The listener plus the runtime it serves with. `start`, then `serve_forever` or `stop`."""

    def __init__(
        self,
        runtime: Runtime,
        sock: socket.socket | list[socket.socket] | None = None,
        *,
        admin: bool = True,
        admin_sock: socket.socket | list[socket.socket] | None = None,
    ) -> None:
        """``sock``: the proxy's listening socket(s); ``admin_sock``: the admin's bound
        socket(s) (made to listen when the admin starts). Both are bound here, on every
        BindAddress and AdminAddress, when not given; a busy address raises ListenError, so
        a proxy never runs without the admin it was told to run."""
        cfg = runtime.config
        self.runtime = runtime
        if sock is None:
            sock = listen_sockets(cfg.bind_address, cfg.port, cfg.listen_backlog)
        if admin and admin_sock is None and admin_will_run(cfg):
            admin_sock = bind_sockets(cfg.admin_address, cfg.admin_port)
        socks = sock if isinstance(sock, list) else [sock]
        runtime.listen_sockets = socks
        # One server per address. An unbounded pool shared by all: it only tracks the
        # handlers, so that stop() can wait for them (admission decides who is served).
        handlers = Pool()
        self.servers = [
            ProxyListener(s, self._handle, spawn=handlers, give_back=self._give_back_fds)
            for s in socks
        ]
        self.admin: Any = None
        admin_socks = (
            []
            if admin_sock is None
            else (admin_sock if isinstance(admin_sock, list) else [admin_sock])
        )
        self._admin_socks = admin_socks if admin else []
        self._admin_wanted = admin
        self._admin_watch: gevent.Greenlet | None = None
        for s in socks:
            host, port = s.getsockname()[:2]
            runtime.proxy_addresses.append((host, port))

    @property
    def address(self) -> tuple[str, int]:
        return self.runtime.proxy_addresses[0]

    def _give_back_fds(self) -> int:
        """Out of descriptors at accept: close some idle origin sockets (the listener's
        give_back); a client being refused costs more than an origin socket reopened."""
        return self.runtime.pool.close_idle(GIVE_BACK_IDLE_SOCKETS)

    def _handle(self, sock: socket.socket, address: tuple) -> None:
        handle_client(self.runtime, sock, address)

    def start(self) -> None:
        self.runtime.start()
        for server in self.servers:
            server.start()
        self._start_admin()
        if self.admin is None and self._admin_wanted and self.runtime.config.admin_port:
            self._admin_watch = gevent.spawn(self._watch_password_file)
        listening = ", ".join(format_address(h, p) for h, p in self.runtime.proxy_addresses)
        log.info("cproxy listening on %s (cproxy %s, %s)", listening, __version__, build())

    def _start_admin(self) -> None:
        """Start the admin on its bound sockets, unless it runs or its password file is
        missing (start_admin says so; a reload tries again). A password file created
        since the start: the admin addresses are bound now (a busy one is logged)."""
        cfg = self.runtime.config
        if self.admin is not None or not self._admin_wanted or not cfg.admin_port:
            return
        if not self._admin_socks and admin_will_run(cfg):
            try:
                self._admin_socks = bind_sockets(cfg.admin_address, cfg.admin_port)
            except ListenError as exc:
                log.error("admin not started: %s", exc)
                return
        from cproxy.admin.paths import password_file_missing

        if password_file_missing(cfg):
            return  # and the application is not imported for nothing (issue #21)
        from cproxy.admin import start_admin

        self.admin = start_admin(self.runtime, listener=self._admin_socks or None)

    def _watch_password_file(self) -> None:
        """Start the admin once its password file appears (``cproxy passwd`` run after the
        start), with no reload needed. One try: a busy admin address is logged once and
        a reload tries again."""
        while self.admin is None and not self.runtime.stopping:
            gevent.sleep(ADMIN_WATCH_S)
            if admin_will_run(self.runtime.config):
                self._start_admin()
                break
        self._admin_watch = None

    def reopen_logs(self) -> None:
        """SIGUSR1: reopen the logs; an admin waiting for its password file starts too."""
        self.runtime.reopen_logs()
        self._start_admin()

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, let in-flight requests finish within ``grace_s``, close."""
        self.runtime.stopping = True
        if self._admin_watch is not None:
            self._admin_watch.kill(block=False)
        for server in self.servers:
            server.close()  # stop accepting first
        for conn in list(self.runtime.connections):
            conn.close_if_idle()
        if self.admin is not None:
            self.admin.stop(timeout=1)
        else:
            for sock in self._admin_socks:
                sock.close()
        # Every server shares the handler pool: stopping the first waits for all handlers.
        for server in self.servers:
            server.stop(timeout=grace_s)
        self.runtime.close()

    def reload(self) -> list[str]:
        """Re-read the directive file (SIGHUP); a bad file is refused, the running config kept."""
        path = self.runtime.config_path
        if path is None:
            log.info("SIGHUP: running on built-in defaults, nothing to reload")
            return []
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("SIGHUP: configuration not changed: %s", exc)
            return []
        restart = self.runtime.apply(new)
        # A password file created since the start: the admin starts now.
        self._start_admin()
        return restart


# SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1 reopens the logs; blocked from listen()
# until their handlers exist (the default action of each would end the process).
_CONTROL_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}


def serve(config: Config, config_path: str | None) -> int:
    """Run cproxy until SIGTERM or SIGINT: one process, or a supervisor and ``Workers``."""
    configure_logging(config)
    before, after = raise_soft_limit()
    if after > before:
        log.info("file descriptor limit raised from %d to %d (the hard limit)", before, after)
    log_budget(config.max_client_connections, config.max_idle_sockets)
    # Clients (and supervisors) may connect and signal as soon as we listen: hold the
    # control signals until their handlers are installed, or their default action kills us.
    signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
    try:
        sock = listen_sockets(config.bind_address, config.port, config.listen_backlog)
    except ListenError as exc:
        return _cannot_start(config, str(exc))
    admin_sock: list[socket.socket] | None = None
    if admin_will_run(config):
        # Bound now so that a busy admin port stops the start, rather than leaving a
        # proxy that runs without the admin pages it was configured with.
        try:
            admin_sock = bind_sockets(config.admin_address, config.admin_port)
        except ListenError as exc:
            _close(sock)
            return _cannot_start(
                config,
                f"cannot listen on the admin address {exc.address}: "
                f"{exc.reason.strerror or exc.reason} (AdminPort = 0 runs without the admin pages)",
            )
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(pid_file(pid_file_path(config)))
        except AlreadyRunning as exc:
            _close(sock + (admin_sock or []))
            return _cannot_start(config, str(exc))
        except OSError as exc:
            _close(sock + (admin_sock or []))
            return _cannot_start(config, f"cannot write the PidFile: {exc}")
        if config.workers == 1:
            return serve_process(config, config_path, sock, admin_sock=admin_sock)
        return supervise(config, config_path, sock, admin_sock)
    raise AssertionError("unreachable")  # mypy: ExitStack may swallow exceptions


def admin_will_run(cfg: Config) -> bool:
    """Whether the admin starts with ``cfg``: AdminPort set and the password file there.
    Only then are its addresses bound at start, so that a busy one fails the start while
    a proxy with no admin to run is not stopped by someone else's use of port 8081."""
    return bool(cfg.admin_port) and os.path.isfile(cfg.resolve_path("AdminPasswordFile"))


def _close(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def _cannot_start(config: Config, message: str) -> int:
    """Log why cproxy cannot start, and say it on the console too when ErrorLog is a file."""
    log.error("%s", message)
    if config.error_log != "-":
        print(f"cproxy: {message}", file=sys.stderr)
    return 1


def serve_process(
    config: Config,
    config_path: str | None,
    sock: list[socket.socket],
    *,
    worker: int = 0,
    supervisor_pid: int | None = None,
    admin_sock: list[socket.socket] | None = None,
) -> int:
    """Serve on ``sock`` in this process until SIGTERM or SIGINT; the admin on
    ``admin_sock`` (bound by `serve`) in worker 0 only."""
    runtime = Runtime(config, config_path)
    runtime.supervisor_pid = supervisor_pid
    if worker != 0 and admin_sock is not None:
        _close(admin_sock)
        admin_sock = None
    server = ProxyServer(runtime, sock, admin=worker == 0, admin_sock=admin_sock)
    server.start()
    stopped = gevent.event.Event()

    def stop_then_signal() -> None:
        server.stop()
        stopped.set()

    def on_term() -> None:
        log.info("stopping: finishing in-flight requests (at most %.0f s)", SHUTDOWN_GRACE_S)
        gevent.spawn(stop_then_signal)

    gevent.signal_handler(signal.SIGTERM, on_term)
    gevent.signal_handler(signal.SIGINT, on_term)
    gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(server.reload))
    gevent.signal_handler(signal.SIGUSR1, server.reopen_logs)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)
    stopped.wait()
    log.info("stopped")
    return 0


# A worker that dies sooner than this after its start is restarted only after a pause,
# so a worker that cannot start does not turn the supervisor into a fork loop.
_RESPAWN_PAUSE_S = 1.0


def supervise(
    config: Config,
    config_path: str | None,
    sock: list[socket.socket],
    admin_sock: list[socket.socket] | None = None,
) -> int:
    """Pre-fork ``Workers`` processes that accept on one shared listening socket.

    Why one inherited socket rather than a SO_REUSEPORT socket per worker: with
    SO_REUSEPORT the kernel queues each connection on one worker's socket, and the
    connections queued on a worker that dies are reset; with one shared socket any
    live worker takes them. Workers hold their own cache and origin pool; only worker
    0 runs the admin listener. SIGHUP and SIGTERM are passed on to every worker; a
    worker that dies is restarted.
    """
    import time

    workers: dict[int, tuple[int, float]] = {}  # pid -> (worker number, start time)
    supervisor = os.getpid()
    stopping = False

    def start_worker(number: int) -> None:
        # Forked with the control signals blocked, as the first workers are: until the
        # child's own handlers exist (serve_process unblocks them), a SIGTERM waits, rather
        # than running the supervisor's handler that fork copied into the child (which
        # would swallow it: a worker that never stops) or killing a half-started worker.
        # The parent has the new pid in `workers` before a pending signal is delivered.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
        pid = os.fork()
        if pid != 0:
            workers[pid] = (number, time.monotonic())
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            return
        code = 1
        try:
            gevent.reinit()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            code = serve_process(
                config,
                config_path,
                sock,
                worker=number,
                supervisor_pid=supervisor,
                admin_sock=admin_sock,
            )
        finally:
            os._exit(code)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        elif signum == signal.SIGUSR1:
            configure_logging(config)  # the supervisor's own messages go to ErrorLog too
        for pid in list(workers):
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass

    for number in range(config.workers):
        start_worker(number)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)
    log.info("supervising %d workers", config.workers)
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in workers or stopping:
            workers.pop(pid, None)
            continue
        number, started = workers.pop(pid)
        log.error("worker %d (pid %d) died (status %d); restarting it", number, pid, status)
        if time.monotonic() - started < _RESPAWN_PAUSE_S:
            time.sleep(_RESPAWN_PAUSE_S)
            if stopping:  # SIGTERM came during the pause: nobody would stop the new one
                continue
        start_worker(number)
    log.info("stopped")
    return 0
