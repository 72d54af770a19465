"""cproxy: a caching forward HTTP proxy configured by a directive file."""

from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

__version__ = "0.1.0"


def build() -> str:
    """Which build is installed: "compiled" when the request path runs as the C extension
    modules setup.py's mypyc build makes, else "pure Python" (no compiler at install
    time, CPROXY_COMPILE=0, or an editable install)."""
    spec = find_spec("cproxy.memo")  # compiled with the rest of the request path, or not
    origin = (spec.origin or "") if spec is not None else ""
    return "compiled" if origin.endswith(tuple(EXTENSION_SUFFIXES)) else "pure Python"
