"""The retry decision (`cproxy.origin.retry.Retry`), apart from sockets (DESIGN.md §5 rule 5).

The end-to-end behaviour (a stale pooled socket retried once on a fresh one) is in
tests/test_pool_faults.py; this is the rule itself, over every combination.
"""

from __future__ import annotations

import itertools

import pytest

from cproxy.origin.retry import IDEMPOTENT_METHODS, MAX_UNPROCESSED, Retry

METHODS = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH", "PURGE"]


def test_idempotent_methods_are_rfc_9110s() -> None:
    assert frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) == IDEMPOTENT_METHODS


@pytest.mark.parametrize(
    ("method", "has_body", "reused"),
    list(itertools.product(METHODS, [False, True], [False, True])),
)
def test_retried_only_when_it_cannot_duplicate_work(
    method: str, has_body: bool, reused: bool
) -> None:
    first = Retry(method, has_body)
    again = first.after_no_response(reused=reused)
    expected = method in IDEMPOTENT_METHODS and not has_body and reused
    assert (again is not None) == expected
    if again is not None:
        # At most once, and on a fresh socket (whose failure is never retried: not reused).
        assert again.retried and again.fresh_socket
        assert again.after_no_response(reused=True) is None
        assert again.after_no_response(reused=False) is None


def test_a_body_always_goes_on_a_fresh_socket() -> None:
    assert Retry("POST", True).fresh_socket
    assert Retry("PUT", True).fresh_socket
    assert not Retry("GET", False).fresh_socket


@pytest.mark.parametrize("method", METHODS)
def test_only_requests_that_cannot_be_retried_verify_the_pooled_socket(method: str) -> None:
    assert Retry(method, False).verify_pooled == (method not in IDEMPOTENT_METHODS)


def test_a_retry_is_a_new_value() -> None:
    first = Retry("GET", False)
    again = first.after_no_response(reused=True)
    assert again is not None and again is not first
    assert not first.retried  # unchanged
    with pytest.raises(AttributeError):
        first.retried = True  # type: ignore[misc]


@pytest.mark.parametrize(("method", "has_body"), list(itertools.product(METHODS, [False, True])))
def test_an_unprocessed_request_is_sent_again_whatever_its_method(
    method: str, has_body: bool
) -> None:
    # RFC 9113 §8.7: a stream above GOAWAY's last_stream_id, or refused, did no work.
    first = Retry.first(method, has_body)
    # REFUSED_STREAM: once.
    again = first.after_unprocessed(refused=True)
    assert again is not None and again.fresh_socket
    assert again.after_unprocessed(refused=True) is None
    # GOAWAY above last_stream_id: a bounded number of times (a refusal among them).
    state: Retry | None = first
    for _ in range(MAX_UNPROCESSED):
        assert state is not None
        state = state.after_unprocessed()
    assert state is not None and state.after_unprocessed() is None
    again = first.after_unprocessed()
    assert again is not None
    # The other rule is untouched by it: a body still cannot be retried on no response.
    assert (again.after_no_response(reused=True) is not None) == (
        method in IDEMPOTENT_METHODS and not has_body
    )
