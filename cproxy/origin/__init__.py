"""Origin connections and the server-side connection pool (DESIGN.md §1, §2).

``OriginPool`` hands out ``OriginConnection`` objects keyed by ``OriginKey``
``(scheme, host, port)``: ``acquire`` (reuse or connect), ``connect`` (always fresh),
``release`` (keep idle), ``discard`` (close), a collector greenlet, live ``reconfigure`` and
``stats``.
"""

from cproxy.origin.connection import (
    AddressCheck,
    OriginConnection,
    OriginKey,
    Resolver,
    default_resolve,
    format_origin,
    open_socket,
    origin_key,
)
from cproxy.origin.pool import OriginPool

__all__ = [
    "AddressCheck",
    "OriginConnection",
    "OriginKey",
    "OriginPool",
    "Resolver",
    "default_resolve",
    "format_origin",
    "open_socket",
    "origin_key",
]
