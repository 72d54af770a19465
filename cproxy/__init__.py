"""cproxy: a caching forward HTTP proxy configured by a directive file."""

__version__ = "0.1.0"
