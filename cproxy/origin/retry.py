"""Whether a request goes out again after its origin connection failed (DESIGN.md §5 rule 5).

A value object in the manner of urllib3's ``Retry``: one per request, asked at each step,
replaced (never changed) when a retry is used, and pure, so the rule has its own tests
(tests/test_retry.py) apart from the sockets.

Only a request that cannot duplicate work is sent again: a safe or idempotent method
(RFC 9110 §9.2.2), no body, on a socket that was reused from the pool (a fresh one that
fails says the origin is down, not that a pooled socket went stale), when no byte of a
response arrived; at most once, and on a fresh socket.

A request the origin said it did not process (an HTTP/2 stream above a GOAWAY's last
stream id, or refused with REFUSED_STREAM: RFC 9113 §8.7) cannot have done any work, so
it is sent again whatever its method and body (`after_unprocessed`): after a GOAWAY up to
`MAX_UNPROCESSED` times (each time on a connection that did not send it; a busy origin
retiring connections every N requests may cut a retry off again), after REFUSED_STREAM
once.
"""

from __future__ import annotations

import dataclasses

# RFC 9110 §9.2.2: methods a client may repeat without changing the outcome.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """The retry state of one request to an origin."""

    method: str
    has_body: bool
    retried: bool = False
    # Times sent again because the origin said it did not process it, and whether one
    # of them followed a REFUSED_STREAM.
    unprocessed: int = 0
    refused: bool = False

    @staticmethod
    def first(method: str, has_body: bool) -> Retry:
        """The state of a request's first attempt. A frozen dataclass is slow to build
        (every field set through ``object.__setattr__``), and every request to an origin
        needs one: the usual ones are shared, which a value object allows."""
        if not has_body:
            shared = _FIRST_WITHOUT_BODY.get(method)
            if shared is not None:
                return shared
        return Retry(method, has_body)

    @property
    def fresh_socket(self) -> bool:
        """Whether the next attempt opens a fresh socket rather than take a pooled one:
        a body always does (a stale pooled socket could swallow part of an upload that
        cannot be replayed), and so does the retry."""
        return self.has_body or self.retried or self.unprocessed > 0

    @property
    def verify_pooled(self) -> bool:
        """Whether a pooled socket is peeked at before use: only for a request that could
        not be retried if the socket turned out dead (the peek is a system call)."""
        return self.method not in IDEMPOTENT_METHODS

    def after_no_response(self, *, reused: bool) -> Retry | None:
        """The state for sending the request again after its connection failed before any
        response byte arrived, or None when it must not be sent again."""
        if reused and not self.has_body and not self.retried and self.method in IDEMPOTENT_METHODS:
            return dataclasses.replace(self, retried=True)
        return None

    def after_unprocessed(self, *, refused: bool = False) -> Retry | None:
        """The state for sending the request again after the origin said it did not
        process it (`OriginUnprocessed`; ``refused``: by REFUSED_STREAM), or None when
        that was tried enough: an origin that refuses twice, or cuts a request off
        `MAX_UNPROCESSED` times, is failing, not shedding load."""
        if self.unprocessed >= MAX_UNPROCESSED or (refused and self.refused):
            return None
        return dataclasses.replace(
            self, unprocessed=self.unprocessed + 1, refused=self.refused or refused
        )


# How many times a request the origin did not process is sent again.
MAX_UNPROCESSED = 3

# The first attempts of requests without a body, by method (a bounded set: only these).
_FIRST_WITHOUT_BODY = {
    method: Retry(method, False) for method in (*sorted(IDEMPOTENT_METHODS), "POST", "PATCH")
}
