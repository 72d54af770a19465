"""A circuit breaker: stop calling a failing service, probe it again later. Pure.

CLOSED: calls go through; ``failures_to_open`` failures in a row open it.
OPEN: calls are refused at once, for ``open_s``.
HALF_OPEN: after that, one call (the probe) goes through; its success closes the breaker,
its failure opens it again for another ``open_s``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Decides whether the next call may go; told the outcome of each call that went."""

    def __init__(
        self,
        *,
        failures_to_open: int = 3,
        open_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0  # in a row
        self.opened_at = 0.0
        self.opens = 0  # how many times it opened, for the status page
        self._probing = False

    def allow(self) -> bool:
        """May a call go now? In HALF_OPEN only one (the probe) until it reports."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.open_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False

    def abandon(self) -> None:
        """The call that went ended without an outcome (its greenlet was killed): let
        another probe go, counting nothing."""
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failures_to_open:
            if self.state is not BreakerState.OPEN:
                self.opens += 1
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            self._probing = False
