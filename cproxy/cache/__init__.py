"""RFC 9111 shared cache: pure policy (``now`` is a parameter) and a byte-sized LRU store.

Public surface: ``HttpCache`` / ``Lookup`` / ``LookupKind`` (the façade the server calls),
``CacheStore`` / ``Entry`` (the store), ``CacheSettings`` (the cache directives as values),
``normalise_url`` (the primary key) and ``cache_status`` (RFC 9211). The policy functions
live in ``cproxy.cache.policy``; parsers in ``cachecontrol`` and ``dates``.
"""

from cproxy.cache.cachestatus import cache_status
from cproxy.cache.httpcache import HttpCache, Lookup, LookupKind
from cproxy.cache.policy import CacheSettings
from cproxy.cache.store import CacheStore, Entry
from cproxy.cache.urlkey import normalise_url

__all__ = [
    "CacheSettings",
    "CacheStore",
    "Entry",
    "HttpCache",
    "Lookup",
    "LookupKind",
    "cache_status",
    "normalise_url",
]
