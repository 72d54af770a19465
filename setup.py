"""The optional compiled build (issue #21); everything else is in setup.cfg.

By default cproxy installs as pure Python. With ``CPROXY_COMPILE=1`` in the environment,
a wheel build (``pip install .``) compiles the modules of the request path (``COMPILED``)
with mypyc, which turns their type-annotated Python into C extension modules; the .py
files ship beside them, and Python imports the extension first. It needs mypy (which
provides mypyc) in the build environment, a C compiler and Python's headers::

    .venv/bin/pip install -c constraints.txt mypy setuptools wheel
    CPROXY_COMPILE=1 .venv/bin/pip install --no-build-isolation -c constraints.txt .

All or nothing: mypyc builds one shared library for the group and a small module per
file, so when any part fails to compile the build removes what it built and installs
pure Python, with a warning in the build's output (``pip -v`` shows it; checked with
``CC=/bin/false``: the wheel then holds the .py files only). An editable install
(``pip install -e .``, the tests') is never compiled: the sources there must stay the
modules that run.

Measured (docs/BENCHMARKS-PERF.md): a pooled 1 KiB miss 120 -> 77 us of CPU, a 1 KiB
hit 27 -> 23, in one run. ``scripts/test-compiled`` runs the test suite against it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The request path: parsing and serialising heads, the fast and miss lanes, the exchange,
# the cache's decisions and store, the pool, the access log. Modules that touch gevent's
# greenlets through callbacks or are imported only on demand stay Python.
COMPILED = [
    "cproxy/memo.py",
    "cproxy/geventshim.py",
    "cproxy/http/syntax.py",
    "cproxy/http/message.py",
    "cproxy/http/heads.py",
    "cproxy/http/framing.py",
    "cproxy/cache/cachecontrol.py",
    "cproxy/cache/fields.py",
    "cproxy/cache/policy.py",
    "cproxy/cache/httpcache.py",
    "cproxy/cache/store.py",
    "cproxy/origin/connection.py",
    "cproxy/origin/pool.py",
    "cproxy/server/sink.py",
    "cproxy/server/respond.py",
    "cproxy/server/responsestats.py",
    "cproxy/server/accesslog.py",
    "cproxy/server/exchange.py",
    "cproxy/server/caching.py",
    "cproxy/server/fastlane.py",
    "cproxy/server/misslane.py",
    "cproxy/server/handler.py",
]


def _compiling() -> bool:
    return os.environ.get("CPROXY_COMPILE") == "1" and "bdist_wheel" in sys.argv


class AllOrNothingBuildExt(build_ext):
    """Build every compiled module, or none: a failure removes what was built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # a missing compiler or header, a mypyc error
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            self.warn(f"cproxy: the compiled build failed ({exc}); installing pure Python")


def _ext_modules() -> list:
    if not _compiling():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("cproxy: CPROXY_COMPILE=1 needs mypy in the build environment", file=sys.stderr)
        return []
    try:
        return mypycify(COMPILED, opt_level="3")
    except (Exception, SystemExit) as exc:  # mypy found an error mypyc cannot compile
        print(f"cproxy: mypyc refused the modules ({exc}); installing pure Python", file=sys.stderr)
        return []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": AllOrNothingBuildExt})
