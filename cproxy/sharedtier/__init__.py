"""The shared cache tier on Redis (issue #14): the I/O behind `cproxy.cache.shared`.

`client` opens gevent-cooperative redis-py clients, `breaker` is the circuit breaker
(pure, given a clock), `tier` is the `SharedTier` the cache front calls.
"""

from cproxy.sharedtier.breaker import BreakerState, CircuitBreaker
from cproxy.sharedtier.tier import SharedTier, TierUnavailable

__all__ = ["BreakerState", "CircuitBreaker", "SharedTier", "TierUnavailable"]
