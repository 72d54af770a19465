"""File descriptors: raise the soft limit at start, and share the limit out.

As Squid does (``max_filedescriptors``), cproxy raises its soft RLIMIT_NOFILE to the hard
limit when it starts: the soft limit is often 1,024 (systemd's default for services) or
lower (``ulimit -n``) while the hard one allows far more, and a proxy needs a descriptor
per client connection and per origin socket, pooled or in use.

The limit is then shared out so that idle pooled origin sockets can never take the
descriptors clients need (issue #22: with ``ulimit -n 256`` and MaxIdleSockets 512, the
249th distinct origin ran the process out of descriptors and clients were dropped at
accept). With ``L`` the soft limit and ``R`` = 64 kept for listeners, logs, the admin and
files (``RESERVED_FDS``)::

    client connections        at most (L - R) / 2      MaxClientConnections (0: this)
    idle pooled origin sockets at most (L - R) / 4      MaxIdleSockets, capped to this
    the rest, (L - R) / 4:    origin sockets in use (one per request being served)

A directive set above its share is lowered to it (and the error log says so): a value the
process cannot hold would only turn into "Too many open files" later. Should the process
still run out (descriptors in use by requests being served), the listener closes idle
pooled sockets and pauses accepting briefly instead (cproxy.server.listeners).
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

from cproxy.directives import DIRECTIVES

log = logging.getLogger("cproxy")

DEFAULT_IDLE_SOCKETS = int(DIRECTIVES["MaxIdleSockets"].default)

# Descriptors kept back for listeners, logs, the admin server, files the cache or a tier
# may open.
RESERVED_FDS = 64
# Floors, whatever the limit says: a proxy with fewer is of no use anyway.
MIN_CLIENTS = 16
MIN_IDLE_SOCKETS = 4
# What "no limit" (RLIM_INFINITY) counts as: the kernel's usual nr_open.
UNLIMITED = 1 << 20


@dataclass(frozen=True)
class FdBudget:
    """How a soft descriptor limit is shared out (see the module's docstring)."""

    limit: int
    clients: int
    idle_sockets: int

    @classmethod
    def for_limit(cls, limit: int) -> FdBudget:
        usable = max(0, limit - RESERVED_FDS)
        return cls(
            limit=limit,
            clients=max(MIN_CLIENTS, usable // 2),
            idle_sockets=max(MIN_IDLE_SOCKETS, usable // 4),
        )

    @classmethod
    def current(cls) -> FdBudget:
        """The budget of this process's soft limit now."""
        return cls.for_limit(soft_limit())

    def client_cap(self, configured: int) -> int:
        """MaxClientConnections in force: ``configured`` (0: automatic) within the share."""
        return min(configured, self.clients) if configured else self.clients

    def idle_cap(self, configured: int) -> int:
        """MaxIdleSockets in force: ``configured`` (0: no cap of its own) within the share."""
        return min(configured, self.idle_sockets) if configured else self.idle_sockets


def soft_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED if soft == resource.RLIM_INFINITY else int(soft)


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; return (before, after).

    A hard limit of "unlimited" is taken as ``UNLIMITED``; when the system refuses (a
    hard limit above the kernel's nr_open), the limit stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = UNLIMITED if soft == resource.RLIM_INFINITY else int(soft)
    target = UNLIMITED if hard == resource.RLIM_INFINITY else int(hard)
    if target > before:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file descriptor limit to %d: %s", target, exc)
            return before, before
        return before, target
    return before, before


def log_budget(configured_clients: int, configured_idle: int) -> FdBudget:
    """Log how the limit is shared out, and any directive lowered to its share."""
    budget = FdBudget.current()
    log.info(
        "file descriptors: limit %d; at most %d client connections and %d idle origin "
        "sockets, %d for origin sockets in use, %d kept for listeners and logs",
        budget.limit,
        budget.client_cap(configured_clients),
        budget.idle_cap(configured_idle),
        max(0, budget.limit - RESERVED_FDS) // 4,
        RESERVED_FDS,
    )
    # Only a value someone chose is worth a warning; the defaults are shared out quietly.
    if configured_clients > budget.clients:
        log.warning(
            "MaxClientConnections %d is more than the descriptor limit %d allows: %d in force",
            configured_clients,
            budget.limit,
            budget.clients,
        )
    if configured_idle > budget.idle_sockets and configured_idle != DEFAULT_IDLE_SOCKETS:
        log.warning(
            "MaxIdleSockets %d is more than the descriptor limit %d allows: %d in force",
            configured_idle,
            budget.limit,
            budget.idle_sockets,
        )
    return budget
