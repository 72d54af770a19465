"""cachetools' LRUCache that reports each eviction, for the response store (store.py).

A module of its own, outside setup.py's compiled list, because it subclasses a class of
another package: mypyc compiles such a subclass from what mypy knows of its base, and
pip's isolated build of a fresh install does not have cachetools installed yet, so the
base was unknown there and the compiled class crashed the process at its first use
(docs/ARCHITECTURE.md; tests/test_compiled_classes.py keeps compiled classes to bases of
our own and the standard library's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachetools import LRUCache


class EvictionCountingLRU(LRUCache):  # type: ignore[type-arg]
    """An LRUCache sized by ``getsizeof`` that calls ``on_evict(key, value)`` for each
    entry it evicts (cachetools calls popitem only to evict)."""

    def __init__(
        self,
        maxsize: int,
        getsizeof: Callable[[Any], int],
        on_evict: Callable[[Any, Any], None],
    ) -> None:
        super().__init__(maxsize, getsizeof=getsizeof)
        self._on_evict = on_evict

    def popitem(self) -> tuple[Any, Any]:
        key, value = super().popitem()
        self._on_evict(key, value)
        return key, value
