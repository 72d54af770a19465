"""The compiled build (issue #21); everything else is in setup.cfg.

A wheel build (``pip install .``, the README's install command) compiles the modules of
the request path (``COMPILED``) with mypyc, which turns their type-annotated Python into C
extension modules; the .py files ship beside them, and Python imports the extension
first. ``cproxy --version`` and the start-up log line say which build runs. It needs a C
compiler and Python's headers (Debian: ``apt-get install gcc python3-dev``); mypy, which
provides mypyc, comes from pyproject.toml's build requirements at pinned versions.

Pure Python instead, always installable and tested the same (scripts/test runs the suite
both ways):
- ``CPROXY_COMPILE=0`` in the environment asks for it;
- with no C compiler or no Python headers the build says so and installs pure Python
  (checked before mypyc starts, so it costs nothing);
- all or nothing: mypyc builds one shared library for the group and a small module per
  file, so when any part fails to compile the build removes what it built and installs
  pure Python, with a warning (checked with ``CC=/bin/false``);
- an editable install (``pip install -e .``, the tests') is never compiled: the sources
  there must stay the modules that run.

pip shows the build's messages with ``-v`` only, hence the version line.

Measured (docs/BENCHMARKS-PERF.md): a pooled 1 KiB miss 120 -> 77 us of CPU, a 1 KiB
hit 27 -> 23, in one run. A build takes about a minute and a half of CPU.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
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
    "cproxy/http/chunked.py",
    "cproxy/origin/tls.py",
    "cproxy/origin/retry.py",
    "cproxy/origin/telemetry.py",
    "cproxy/origin/parents.py",
    "cproxy/server/admission.py",
    "cproxy/server/destinations.py",
    "cproxy/server/routing.py",
    "cproxy/server/runtime.py",
    "cproxy/server/transport.py",
]


def _compiling() -> bool:
    return os.environ.get("CPROXY_COMPILE", "1") != "0" and "bdist_wheel" in sys.argv


def _missing_toolchain() -> str | None:
    """What the compiled build lacks on this machine, or None when it can build."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}; Debian: apt-get install gcc)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers}; Debian: apt-get install python3-dev)"
    return None


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
    missing = _missing_toolchain()
    if missing is not None:
        print(f"cproxy: installing pure Python: {missing}", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("cproxy: installing pure Python: no mypy in the build environment", file=sys.stderr)
        return []
    try:
        return mypycify(COMPILED, opt_level="3")
    except (Exception, SystemExit) as exc:  # mypy found an error mypyc cannot compile
        print(f"cproxy: mypyc refused the modules ({exc}); installing pure Python", file=sys.stderr)
        return []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": AllOrNothingBuildExt})
