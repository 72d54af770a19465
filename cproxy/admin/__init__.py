"""The admin web application (issue #4): configuration forms, status page, metrics.

Public surface:

* ``start_admin(runtime, listener=None) -> AdminServer | None``: start the listener;
* ``AdminServer``: the gevent.pywsgi server (``stop()`` also stops the sampler);
* ``AdminApp(runtime)``: the WSGI application itself;
* ``templates_dir()``: where ``web_admin/`` (templates and static files) was found;
* ``cproxy.admin.passwd.main(argv)``: the ``cproxy passwd`` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cproxy.admin.app import AdminApp
    from cproxy.admin.paths import templates_dir
    from cproxy.admin.server import AdminServer, start_admin

__all__ = ["AdminApp", "AdminServer", "start_admin", "templates_dir"]

# Imported when first asked for (PEP 562), not with the package: the proxy imports
# `cproxy.admin.auth` for ProxyAuth, and the application's Jinja2 and prometheus-client
# (several MiB of a process's memory) are needed only where the admin listener runs.
_WHERE = {
    "AdminApp": "cproxy.admin.app",
    "AdminServer": "cproxy.admin.server",
    "start_admin": "cproxy.admin.server",
    "templates_dir": "cproxy.admin.paths",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
