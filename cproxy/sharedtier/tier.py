"""The shared cache tier: lookups, queued writes, purges, fetch leases, pub/sub events.

An accelerator, never a dependency (DESIGN.md §5.11): every call is bounded by
SharedCacheTimeout, goes through a circuit breaker, and a failed call is reported to the
caller as `TierUnavailable` (or as "nothing there"), after which the request goes on as
without the tier. Values read back are checked by `cproxy.cache.shared.decode_entry`;
one that does not check out is counted and ignored.

Greenlets: a writer drains the bounded write queue (stores, invalidations, lease
releases), so the client's response never waits for a write; a listener holds the pub/sub
subscription through which purges reach every node. When the subscription is lost the
node cannot know which purges it missed, so it drops its whole in-process cache, once when
it notices (a closed connection at once, a silent one after `SILENCE_S`) and once more when
it has subscribed again.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.queue
from redis.exceptions import ClusterError, RedisClusterException, RedisError, ResponseError

from cproxy.cache.policy import CacheSettings
from cproxy.cache.shared import (
    PURGED,
    SETTLED,
    MalformedEntry,
    SharedEntry,
    decode_entry,
    encode_entry,
    entry_key,
    event_message,
    events_channel,
    lease_key,
    parse_event,
    shared_ttl_s,
    variant_field,
)
from cproxy.cache.store import MAX_VARIANTS_PER_KEY, Entry
from cproxy.directives.types import RedisTarget
from cproxy.errors import CproxyError
from cproxy.sharedtier.breaker import BreakerState, CircuitBreaker
from cproxy.sharedtier.client import open_client

log = logging.getLogger("cproxy")

# Quiet time on the subscription after which the listener pings Redis, and the silence
# after which it takes the subscription for lost. 10 s rides out a Redis that stalls for a
# few seconds (a slow fork for a snapshot, DEBUG SLEEP) without dropping every node's
# in-process cache, and bounds how long a silently cut node can miss purges.
PING_AFTER_S = 1.0
SILENCE_S = 10.0

# Purges that could not reach Redis are kept (newest this many URLs) and sent when it is
# back: otherwise a purged object would come back from the shared tier.
PENDING_PURGES = 10_000

# Latency histogram bounds (seconds) of shared-tier calls, for /metrics.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


# What a call to Redis may raise when Redis (or the way to it) is in trouble.
# RedisClusterException (e.g. no seed node answered) is not a RedisError.
_FAILURES = (RedisError, RedisClusterException, OSError, gevent.Timeout)


class TierUnavailable(CproxyError):
    """The shared tier could not be used for this call (breaker open, timeout, error)."""


@dataclass(frozen=True)
class TierSettings:
    """The SharedCache* directives, typed."""

    target: RedisTarget
    password: str | None
    namespace: str
    timeout_s: float
    retry_s: float
    max_entry_bytes: int
    write_queue: int
    lease_s: float

    def __repr__(self) -> str:  # never show the password
        return f"TierSettings(target={self.target}, namespace={self.namespace!r})"


_Job = tuple[str, Callable[[Any], Any]]


class SharedTier:
    """The shared tier as the cache front sees it: `lookup`, `store`, `purge`,
    `invalidate`, `try_lease` / `wait_settled` / `settle`."""

    def __init__(
        self,
        settings: TierSettings,
        *,
        cache_settings: Callable[[], CacheSettings],
        on_purge: Callable[[str], None],
        on_lost: Callable[[], None],
        opener: Callable[[RedisTarget, str | None, float], Any] = open_client,
    ) -> None:
        self.settings = settings
        self.cache_settings = cache_settings
        self.on_purge = on_purge
        self.on_lost = on_lost
        self.opener = opener
        self.breaker = CircuitBreaker(open_s=settings.retry_s)
        self.token = f"{socket.gethostname()}:{os.getpid()}"
        self.channel = events_channel(settings.namespace)
        self._client: Any = None
        self._queue: gevent.queue.Queue[_Job] = gevent.queue.Queue(settings.write_queue)
        self._reads: dict[str, gevent.event.AsyncResult] = {}
        self._settled: dict[str, gevent.event.Event] = {}
        self._leases: set[str] = set()
        self._pending_purges: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._greenlets: list[gevent.Greenlet] = []
        self.subscribed = False
        # Counters for the status page and /metrics.
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.malformed = 0
        self.skipped = 0  # calls not made: the breaker was open
        self.writes = 0
        self.dropped_writes = 0
        self.too_large = 0
        self.purges_received = 0
        self.lease_waits = 0
        self.lost = 0  # subscriptions lost (in-process cache dropped)
        self.calls = 0
        self.latency_sum_s = 0.0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.last_error = ""
        # The class of the last failure, for code (and tests) that ask what kind it was:
        # the text above is for people, and a class name in it changes between versions.
        self.last_error_class: type[BaseException] | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if not self._greenlets:
            self._greenlets = [gevent.spawn(self._write_loop), gevent.spawn(self._listen_loop)]

    def close(self) -> None:
        gevent.killall(self._greenlets)
        self._greenlets = []
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except (RedisError, OSError) as exc:  # closing a broken client: nothing to save
                log.debug("closing the shared tier's client: %s", exc)

    # -- calls -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)`` within SharedCacheTimeout, through the breaker."""
        if not self.breaker.allow():
            self.skipped += 1
            raise TierUnavailable("the shared tier is off for now (circuit breaker open)")
        start = time.perf_counter()
        timeout = gevent.Timeout(self.settings.timeout_s)
        timeout.start()
        try:
            if self._client is None:
                self._client = self.opener(
                    self.settings.target, self.settings.password, self.settings.timeout_s
                )
            result = fn(self._client)
        except _FAILURES as exc:
            if isinstance(exc, gevent.Timeout) and exc is not timeout:
                self.breaker.abandon()
                raise  # someone else's timeout
            self.errors += 1
            self.last_error_class = type(exc)
            if isinstance(exc, ResponseError) and not isinstance(exc, ClusterError):
                # Redis answered (so it is up), with an error about the value or command,
                # e.g. WRONGTYPE for a key someone else wrote: no reason to stop calling.
                self.breaker.success()
                self.last_error = f"{what}: {exc}"
                raise TierUnavailable(self.last_error) from None
            self.breaker.failure()
            self.last_error = f"{what}: {type(exc).__name__}: {exc}"
            if self.breaker.state is BreakerState.OPEN:
                log.warning("shared tier unavailable (%s); retrying later", self.last_error)
            raise TierUnavailable(self.last_error) from None
        except BaseException:
            self.breaker.abandon()  # killed mid-call: never leave a probe outstanding
            raise
        finally:
            timeout.close()
        self.breaker.success()
        self._record_latency(time.perf_counter() - start)
        return result

    def _record_latency(self, seconds: float) -> None:
        self.calls += 1
        self.latency_sum_s += seconds
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self.latency_counts[index] += 1
                return
        self.latency_counts[-1] += 1

    # -- reading ---------------------------------------------------------------------------

    def lookup(self, url_key: str) -> list[SharedEntry]:
        """Every valid variant stored for ``url_key``, each with its loopback mark (empty
        when none, or when the tier cannot be asked). Concurrent lookups of one URL share
        one call."""
        pending = self._reads.get(url_key)
        if pending is not None:
            entries: list[SharedEntry] = pending.get()
            return entries
        result = gevent.event.AsyncResult()
        self._reads[url_key] = result
        entries = []
        try:
            entries = self._read(url_key)
        except TierUnavailable:
            pass  # counted by _call; the request goes on without the tier
        finally:
            del self._reads[url_key]
            result.set(entries)
        return entries

    def _read(self, url_key: str) -> list[SharedEntry]:
        key = entry_key(self.settings.namespace, url_key)
        values: dict[bytes, bytes] = self._call("read", lambda c: c.hgetall(key))
        settings = self.cache_settings()
        entries = []
        for value in values.values():
            try:
                entries.append(decode_entry(value, url_key, settings))
            except MalformedEntry as exc:
                self.malformed += 1
                log.debug("ignored a shared-tier value under %s: %s", key, exc)
        if entries:
            self.hits += 1
        else:
            self.misses += 1
        return entries

    # -- writing (queued) ------------------------------------------------------------------

    def _enqueue(self, what: str, fn: Callable[[Any], Any]) -> None:
        if self.breaker.state is BreakerState.OPEN:
            self.dropped_writes += 1
            return
        try:
            self._queue.put_nowait((what, fn))
        except gevent.queue.Full:
            self.dropped_writes += 1

    def store(self, entry: Entry, *, loopback_origin: bool) -> None:
        """Queue ``entry`` for the shared tier (dropped, and counted, when it is too large,
        not worth keeping, or the queue is full); ``loopback_origin``: its URL was fetched
        from a LoopbackDestinations address, which the value then says to every node."""
        if entry.vary is None:
            return  # Vary: * never matches (RFC 9111 §4.1): nothing to share
        ttl_ms = int(shared_ttl_s(entry) * 1000)
        if ttl_ms <= 0:
            return
        value = encode_entry(entry, loopback_origin=loopback_origin)
        if len(value) > self.settings.max_entry_bytes:
            self.too_large += 1
            return
        key = entry_key(self.settings.namespace, entry.url_key)
        field = variant_field(entry)

        def write(client: Any) -> None:
            # One transaction on one key (so one cluster slot): the variant, then the key's
            # expiry set when it has none (NX) or raised to this variant's (GT).
            pipe = client.pipeline(transaction=True)
            pipe.hset(key, field, value)
            pipe.pexpire(key, ttl_ms, nx=True)
            pipe.pexpire(key, ttl_ms, gt=True)
            pipe.hlen(key)
            if pipe.execute()[-1] > MAX_VARIANTS_PER_KEY:
                # A URL varying on something like User-Agent: start its variants afresh
                # rather than let one key grow without bound.
                pipe = client.pipeline(transaction=True)
                pipe.delete(key)
                pipe.hset(key, field, value)
                pipe.pexpire(key, ttl_ms)
                pipe.execute()

        self._enqueue("store", write)

    def invalidate(self, url_key: str) -> None:
        """Queue the removal of ``url_key`` everywhere (RFC 9111 §4.4 after an unsafe
        request): from the shared tier and from every node's in-process tier."""
        self._enqueue("invalidate", lambda client: self._purge_now(client, url_key))

    def purge(self, url_key: str) -> bool:
        """Remove ``url_key`` from the shared tier and tell every node, now; True when the
        shared tier held it. When Redis cannot be reached the purge is kept and sent when
        it is back, so the object cannot return from there."""
        try:
            return bool(self._call("purge", lambda client: self._purge_now(client, url_key)))
        except TierUnavailable:
            self._pending_purges[url_key] = None
            self._pending_purges.move_to_end(url_key)
            while len(self._pending_purges) > PENDING_PURGES:
                self._pending_purges.popitem(last=False)
            return False

    def _purge_now(self, client: Any, url_key: str) -> int:
        deleted = int(client.delete(entry_key(self.settings.namespace, url_key)))
        client.publish(self.channel, event_message(PURGED, url_key))
        return deleted

    def _write_loop(self) -> None:
        while True:
            try:
                what, fn = self._queue.get(timeout=self.settings.retry_s)
            except gevent.queue.Empty:
                what, fn = "", None
            self._send_pending_purges()
            if fn is None:
                continue
            try:
                self._call(what, fn)
                if what == "store":
                    self.writes += 1
            except TierUnavailable:
                self.dropped_writes += 1
            except Exception:  # keep the writer alive whatever one write did: log it
                log.exception("shared tier: a %s write failed", what)
                self.dropped_writes += 1

    def _send_pending_purges(self) -> None:
        while self._pending_purges and self.breaker.state is BreakerState.CLOSED:
            url_key = next(iter(self._pending_purges))
            try:
                self._call("purge", functools.partial(self._purge_now, url_key=url_key))
            except TierUnavailable:
                return
            self._pending_purges.pop(url_key, None)

    # -- fetch leases (collapsing misses across nodes) ---------------------------------------

    def try_lease(self, url_key: str) -> bool:
        """True: this node fetches ``url_key`` (it took the lease, or the tier cannot say).
        False: another node holds the lease; `wait_settled`, then look it up again."""
        # Registered before asking, so a release announced meanwhile is not missed.
        event: gevent.event.Event = self._settled.setdefault(url_key, gevent.event.Event())
        key = lease_key(self.settings.namespace, url_key)
        px = max(1, int(self.settings.lease_s * 1000))
        try:
            taken = self._call("lease", lambda c: c.set(key, self.token, nx=True, px=px))
        except TierUnavailable:
            taken = True
        if taken:
            if self._settled.get(url_key) is event:
                del self._settled[url_key]
            self._leases.add(url_key)
            return True
        self.lease_waits += 1
        return False

    def wait_settled(self, url_key: str) -> bool:
        """Wait (at most SharedCacheLease) for the lease holder's fetch of ``url_key`` to
        be over; True when it said so."""
        event = self._settled.setdefault(url_key, gevent.event.Event())
        return bool(event.wait(timeout=self.settings.lease_s))

    def settle(self, url_key: str) -> None:
        """This node's fetch of ``url_key`` is over (its entry, if any, already queued):
        release the lease and tell the waiting nodes."""
        if url_key not in self._leases:
            return
        self._leases.discard(url_key)
        key = lease_key(self.settings.namespace, url_key)

        def release(client: Any) -> None:
            client.delete(key)
            client.publish(self.channel, event_message(SETTLED, url_key))

        self._enqueue("settle", release)

    # -- events (pub/sub) ------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        event = parse_event(data)
        if event is None:
            self.malformed += 1
            return
        kind, url_key = event
        if kind == PURGED:
            self.purges_received += 1
            self.on_purge(url_key)
        waiting = self._settled.pop(url_key, None)
        if waiting is not None:
            waiting.set()

    def _lose_subscription(self, why: str) -> None:
        if self.subscribed:
            self.subscribed = False
            self.lost += 1
            log.warning("shared tier: lost the event subscription (%s)", why)
            self.on_lost()

    def _listen_loop(self) -> None:
        first = True
        while True:
            pubsub = None
            try:
                with gevent.Timeout(max(1.0, 4 * self.settings.timeout_s)):
                    if self._client is None:
                        self._client = self.opener(
                            self.settings.target, self.settings.password, self.settings.timeout_s
                        )
                    pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.channel)
                self.subscribed = True
                if not first:
                    self.on_lost()  # purges may have been missed while unsubscribed
                first = False
                self._receive(pubsub)
            except _FAILURES as exc:
                self._lose_subscription(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # keep the listener alive whatever happened: log it
                log.exception("shared tier: the event listener failed")
                self._lose_subscription(f"{type(exc).__name__}: {exc}")
            finally:
                if pubsub is not None:
                    self._close_quietly(pubsub)
            gevent.sleep(self.settings.retry_s)

    def _receive(self, pubsub: Any) -> None:
        # get_message(timeout=t) would wait in a poll() of the event loop's thread
        # (redis-py checks readiness with select.poll): so read without a timeout, on the
        # gevent socket, and let a gevent.Timeout end a quiet wait.
        last_heard = time.monotonic()
        pinged = False
        while True:
            heard = False
            with gevent.Timeout(PING_AFTER_S, False):
                message = pubsub.get_message(timeout=None)
                heard = True
            now = time.monotonic()
            if heard:
                last_heard, pinged = now, False
                if message is not None and message.get("type") == "message":
                    self._on_message(message["data"])
                continue
            if now - last_heard > SILENCE_S:
                raise TimeoutError(f"no answer on the subscription for {SILENCE_S:g} s")
            if not pinged:
                pubsub.ping()
                pinged = True

    @staticmethod
    def _close_quietly(pubsub: Any) -> None:
        try:
            pubsub.close()
        except (RedisError, OSError) as exc:
            log.debug("closing a lost subscription: %s", exc)

    # -- figures ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.breaker.state.value,
            "subscribed": self.subscribed,
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "malformed": self.malformed,
            "skipped": self.skipped,
            "writes": self.writes,
            "dropped_writes": self.dropped_writes,
            "too_large": self.too_large,
            "queued_writes": self._queue.qsize(),
            "pending_purges": len(self._pending_purges),
            "purges_received": self.purges_received,
            "lease_waits": self.lease_waits,
            "breaker_opens": self.breaker.opens,
            "subscriptions_lost": self.lost,
            "calls": self.calls,
            "latency_sum_s": self.latency_sum_s,
            "latency_buckets": dict(
                zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], self.latency_counts, strict=True)
            ),
            "last_error": self.last_error,
        }
