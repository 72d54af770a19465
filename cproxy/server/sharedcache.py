"""The cache front's use of the shared tier (SharedCache): the few steps between the
in-process cache and `cproxy.sharedtier.SharedTier`, kept apart from `caching` so the
hook there stays a handful of calls.

- `open_tier`: the tier for a configuration (None when SharedCache is empty).
- `from_shared_tier`: after an in-process miss, copy what the shared tier holds for the
  URL into the in-process cache (noting a URL the writing node fetched from
  LoopbackDestinations in `loopback_origins`, as a fetch here would) and decide again
  (RFC 9111 on this node's clock). The caller asks `loopback_origins.hidden_from` again
  before serving what came in.
- `lead_or_wait`: collapse a miss across nodes: take the URL's lease and fetch, or wait
  for the node that holds it and take its entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cproxy.cache import CacheStore, HttpCache, Lookup
from cproxy.cache.fields import HeaderPairs
from cproxy.directives import Config
from cproxy.errors import ConfigError
from cproxy.server.destinations import LoopbackOrigins

if TYPE_CHECKING:
    # Imported by `open_tier` only when SharedCache names a tier: redis-py (with its
    # asyncio client) is most of ten MiB of a process's memory that runs without one.
    from cproxy.sharedtier import SharedTier


class ProxyCache(Protocol):
    """What these steps use of `cproxy.server.caching.ProxyCache` (named here, not
    imported: caching imports this module)."""

    store: CacheStore
    http: HttpCache
    clock: Callable[[], float]
    tier: SharedTier | None
    loopback_origins: LoopbackOrigins


def read_password(cfg: Config) -> str | None:
    """The first line of SharedCachePasswordFile, None when there is no such file named."""
    path = cfg.resolve_path("SharedCachePasswordFile")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}",
            path=cfg.source_path,
            directive="SharedCachePasswordFile",
        ) from exc
    return line or None


def open_tier(cfg: Config, cache: ProxyCache) -> SharedTier | None:
    """The shared tier SharedCache names, not yet started; None when it names none."""
    if cfg.shared_cache is None:
        return None
    from cproxy.sharedtier import SharedTier
    from cproxy.sharedtier.tier import TierSettings

    settings = TierSettings(
        target=cfg.shared_cache,
        password=read_password(cfg),
        namespace=cfg.shared_cache_namespace,
        timeout_s=cfg.shared_cache_timeout_s,
        retry_s=cfg.shared_cache_retry_s,
        max_entry_bytes=cfg.shared_cache_max_entry_bytes,
        write_queue=cfg.shared_cache_write_queue,
        lease_s=cfg.shared_cache_lease_s,
    )
    return SharedTier(
        settings,
        cache_settings=lambda: cache.http.settings,
        on_purge=cache.store.invalidate,
        on_lost=cache.store.clear,
    )


def from_shared_tier(
    cache: ProxyCache, method: str, url_key: str, req_headers: HeaderPairs
) -> Lookup | None:
    """After an in-process miss: the lookup again, with the shared tier's variants of
    ``url_key`` copied in-process; None when the shared tier had none (or could not say).
    A URL whose value says it came from LoopbackDestinations is noted in
    ``cache.loopback_origins`` before this returns: the caller (and the fast lane, for
    every later hit) then keeps it from clients that may not reach loopback."""
    assert cache.tier is not None
    entries = cache.tier.lookup(url_key)
    if not entries:
        return None
    for shared in entries:
        cache.store.put(shared.entry)
    # After the puts (LoopbackOrigins forgets keys that are not stored when it grows), with
    # no greenlet switch in between: nothing can serve the copies before they are noted.
    if any(shared.loopback_origin for shared in entries):
        cache.loopback_origins.add(url_key)
    return cache.http.lookup(method, url_key, req_headers, cache.clock())


def lead_or_wait(
    cache: ProxyCache, method: str, url_key: str, req_headers: HeaderPairs
) -> Lookup | None:
    """Before fetching a miss: another node's result when it fetched the URL meanwhile
    (or holds its lease: then wait for it, at most SharedCacheLease), else None: fetch it
    here, and call ``cache.tier.settle(url_key)`` when done."""
    assert cache.tier is not None
    if not cache.tier.try_lease(url_key):
        cache.tier.wait_settled(url_key)
    # Also when this node took the lease: another may have stored the URL and released
    # its lease just after this node's first look.
    return from_shared_tier(cache, method, url_key, req_headers)
