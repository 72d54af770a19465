"""The admin web application (issue #4): configuration forms, status page, metrics.

Public surface:

* ``start_admin(runtime, listener=None) -> AdminServer | None``: start the listener;
* ``AdminServer``: the gevent.pywsgi server (``stop()`` also stops the sampler);
* ``AdminApp(runtime)``: the WSGI application itself;
* ``templates_dir()``: where ``web_admin/`` (templates and static files) was found;
* ``cproxy.admin.passwd.main(argv)``: the ``cproxy passwd`` command.
"""

from cproxy.admin.app import AdminApp
from cproxy.admin.paths import templates_dir
from cproxy.admin.server import AdminServer, start_admin

__all__ = ["AdminApp", "AdminServer", "start_admin", "templates_dir"]
