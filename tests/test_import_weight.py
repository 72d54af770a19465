"""What a proxy process imports before any directive asks for more.

redis-py (SharedCache) and the admin application's Jinja2 and prometheus-client are most
of twenty MiB of a process's memory; a proxy without a shared tier or an admin listener
must not carry them (measured: 45 MiB after importing the server, 32 MiB without them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imported only by the parts that need them: cproxy.server.sharedcache.open_tier, and the
# admin application (cproxy.admin imports it when first asked for it); cryptography by
# HTTPS interception once SSLInterception is on (cproxy.server.interception);
# python-hyper's h2 (and its hpack, hyperframe) when the first HTTP/2 origin connection
# opens (cproxy.origin.pool imports cproxy.origin.h2conn then).
HEAVY = (
    "redis",
    "hiredis",
    "jinja2",
    "prometheus_client",
    "cryptography",
    "h2",
    "hpack",
    "hyperframe",
)


def imported_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return set(json.loads(out.stdout))


def test_the_server_imports_neither_the_shared_tier_nor_the_admin_application() -> None:
    modules = imported_after("import cproxy.server.proxy, cproxy.cli")
    assert "cproxy.server.proxy" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_the_admin_package_still_hands_out_its_application() -> None:
    modules = imported_after("from cproxy.admin import AdminServer, start_admin, templates_dir")
    assert "jinja2" in modules and "cproxy.admin.app" in modules
