"""redis-py clients whose sockets are gevent's, so a slow Redis blocks only its caller.

cproxy runs gevent without monkey-patching the process. redis-py takes a connection
class, and its connections only ever touch their socket through ``_connect``'s result
(``sendall``, ``recv_into``, ``settimeout``), so a subclass whose ``_connect`` returns a
gevent socket makes every Redis call cooperative: a greenlet waiting for Redis yields to
the event loop like one waiting for an origin. Measured (issue #14): a GET of 1 KiB on
loopback costs 34 us this way, 27 us with redis-py's own blocking sockets (which would
stall every client for as long as Redis does) and 64 us through gevent's thread pool.

Retries are off (`Retry` with 0 retries): redis-py's backoff would ``time.sleep`` in the
event loop's thread, and the tier's circuit breaker decides when to try again anyway.

``RedisCluster`` sleeps whatever its retry says: 0.25 s on every CLUSTERDOWN or
slot-not-covered answer (during a failover, or while slots are unassigned) before it
raises, 0.05 s on TRYAGAIN (resharding), ``watch_delay`` in ``transaction()``; each through
``time.sleep`` looked up in ``redis.cluster``'s globals at the call. redis-py has no option or
hook for these sleeps, and monkey-patching the whole process is what cproxy avoids, so
`cooperative_cluster_sleeps` gives ``redis.cluster`` (that module only) a ``time`` whose
``sleep`` is ``gevent.sleep`` and whose other attributes are the standard library's: the
greenlet waits, every other client goes on, and SharedCacheTimeout ends the wait like any
other. Without it, each failing tier call froze the whole process for 0.25 s, every call
in flight when the cluster went down one after another. tests/test_redisshim.py fails if
redis-py stops sleeping that way (this would then be dead code, and the loop blocked again).
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import gevent
import gevent.socket
import gevent.ssl
import redis.cluster
from redis import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.connection import Connection, ConnectionPool, SSLConnection
from redis.retry import Retry

from cproxy.directives.types import RedisTarget

# Connections one process keeps per Redis server. Beyond it redis-py refuses a call
# (ConnectionError) rather than wait: a burst then goes on without the tier.
MAX_CONNECTIONS = 128


def _gevent_socket(conn: Connection) -> gevent.socket.socket:
    sock = gevent.socket.create_connection(
        (conn.host, conn.port), timeout=conn.socket_connect_timeout
    )
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(conn.socket_timeout)
    return sock


class GeventConnection(Connection):
    """A redis-py connection on a gevent socket."""

    def _connect(self) -> Any:
        return _gevent_socket(self)


class GeventSSLConnection(SSLConnection):
    """A redis-py TLS connection on a gevent socket: the system's trust store (or
    SSL_CERT_FILE) verifies the server, whose name must match its certificate."""

    def _connect(self) -> Any:
        sock = _gevent_socket(self)
        # gevent.ssl.create_default_context is the standard library's, whose sockets
        # would block the event loop: build gevent's own context instead.
        context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies name and chain
        context.load_default_certs()
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class CooperativeTime:
    """The standard library's ``time`` module, but ``sleep`` yields to gevent's loop."""

    sleep = staticmethod(gevent.sleep)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


COOPERATIVE_TIME = CooperativeTime()


def cooperative_cluster_sleeps() -> None:
    """Make ``RedisCluster``'s sleeps cooperative (see the module's docstring); idempotent."""
    redis.cluster.time = COOPERATIVE_TIME  # type: ignore[assignment]  # duck-typed module


def open_client(target: RedisTarget, password: str | None, timeout_s: float) -> Any:
    """A redis-py client for ``target`` (connects on first use, except a cluster client,
    which asks its seed nodes for the slot map here and raises when none answers)."""
    options: dict[str, Any] = {
        "connection_class": GeventSSLConnection if target.tls else GeventConnection,
        "username": target.username or None,
        "password": password,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "max_connections": MAX_CONNECTIONS,
    }
    if target.cluster:
        cooperative_cluster_sleeps()
        host, port = target.nodes[0]
        return RedisCluster(
            # A URL makes redis-py build each node's pool from these options, our
            # connection class included (its scheme stays redis: TLS is the class's job).
            url=f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}",
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            retry=Retry(NoBackoff(), 0),
            **options,
        )
    host, port = target.nodes[0]
    pool = ConnectionPool(
        host=host, port=port, db=target.db, retry=Retry(NoBackoff(), 0), **options
    )
    return Redis(connection_pool=pool)
