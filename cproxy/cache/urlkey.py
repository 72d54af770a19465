"""The primary cache key: a normalised absolute URL (RFC 9111 §2, RFC 9110 §4.2.3).

Normalisation only applies the equivalences RFC 9110 §4.2.3 allows without knowing the
origin's naming scheme, so two spellings of one resource share an entry and no two
resources ever do:

- scheme and host are lowercased; the default port (80 for http, 443 for https) and an empty
  port are removed; an empty path becomes ``/``;
- percent-encodings keep their meaning but their hex digits are uppercased (``%2f`` ->
  ``%2F``); nothing is decoded, because ``/a%2Fb`` and ``/a/b`` may name different
  resources, and an unreserved character's encoding (``%41``) is also kept as sent;
- the fragment is dropped (it is never sent to a server) and so is userinfo;
- the path and query are otherwise byte-for-byte as received: the query is part of the key,
  so different query arguments are different entries.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")


def normalise_url(url: str) -> str:
    """The cache key for an absolute ``http``/``https`` URL.

    Raises ValueError when ``url`` is not absolute (no scheme or no host).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise ValueError(f"not an absolute URL: {url!r}")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in URL: {url!r}") from exc
    authority = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = _upper_percent(parts.path) or "/"
    key = f"{scheme}://{authority}{path}"
    if parts.query or url.split("#", 1)[0].endswith("?"):
        key += "?" + _upper_percent(parts.query)
    return key


def origin_of(url_key: str) -> tuple[str, str]:
    """``(scheme, authority)`` of a normalised key: the origin of RFC 9110 §4.3.1."""
    parts = urlsplit(url_key)
    return parts.scheme, parts.netloc


def resolve_reference(url_key: str, reference: str) -> str | None:
    """Resolve a Location / Content-Location value against ``url_key`` (RFC 3986 §5).

    Returns the normalised key, or None when the reference is unusable.
    """
    reference = reference.strip(" \t")
    if not reference:
        return None
    try:
        return normalise_url(urljoin(url_key, reference))
    except ValueError:
        return None


def _upper_percent(text: str) -> str:
    return _PERCENT.sub(lambda m: m.group(0).upper(), text)
