"""Remembering the results of pure functions of short, often repeated arguments.

Clients send the same URLs, Host values and header blocks again and again, so their
checks are worth remembering; but an argument's length is the client's choice, so only
short ones are kept and a memo's memory stays bounded (``maxsize`` x ``max_len``) whatever
clients send (DESIGN.md §5 rule 6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

A = TypeVar("A", str, bytes)
R = TypeVar("R")


def memoised_when_short(fn: Callable[[A], R], *, max_len: int, maxsize: int) -> Callable[[A], R]:
    """``fn``, with its results remembered (least recently used first out, at most
    ``maxsize``) for arguments of at most ``max_len`` characters or bytes."""
    memo = functools.lru_cache(maxsize=maxsize)(fn)

    @functools.wraps(fn)
    def call(arg: A) -> R:
        return memo(arg) if len(arg) <= max_len else fn(arg)

    return call
