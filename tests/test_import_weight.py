"""What a proxy process imports before any directive asks for more.

redis-py (SharedCache) and the admin application's Jinja2 and prometheus-client are most
of twenty MiB of a process's memory; a proxy without a shared tier or an admin listener
must not carry them (measured: 45 MiB after importing the server, 32 MiB without them).
Nor must a proxy on default directives carry OpenSSL until TLS is needed (issue #21:
33.2 MiB after start with it, 27.1 without it and the other modules of `LAZY`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support import Origin, wait_for

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


# What a proxy on default directives must not have imported after serving plain HTTP
# (issue #21, peak RSS): OpenSSL, through ``ssl`` (an https origin, interception, a TLS
# shared tier) or ``hashlib``/``hmac`` (ProxyAuth, the admin's forms, the shared tier's
# keys), costs about 4 MiB of a process; http_sf (CacheTargetedFields), difflib (a
# misspelt directive), tempfile (the admin's Apply), html's entity table (cproxy escapes
# its pages itself), shutil (argparse's help width), calendar with datetime (cproxy
# counts days itself) and decimal (sizes and times are summed in integers) are two MiB
# more that a default start has no use for.
LAZY = (
    *HEAVY,
    "ssl",
    "_ssl",
    "hashlib",
    "_hashlib",
    "hmac",
    "secrets",
    "bcrypt",
    "http_sf",
    "difflib",
    "tempfile",
    "html",
    "shutil",
    "calendar",
    "datetime",
    "decimal",
)

# The proxy started as ``python -m cproxy -c FILE`` is, with the modules it imported
# written to a file as it exits.
RUN_AND_DUMP = """
import atexit, json, runpy, sys
out, conf = sys.argv[1:]
def dump():
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(dump)
sys.argv = ["cproxy", "-c", conf]
runpy.run_module("cproxy", run_name="__main__", alter_sys=True)
"""


def test_a_default_proxy_serving_plain_http_imports_none_of_the_lazy_modules(
    tmp_path: Path, origin: Origin
) -> None:
    origin.routes["/kept"] = lambda h: h.reply(200, b"kept", {"Cache-Control": "max-age=60"})
    error_log = tmp_path / "error.log"
    conf = tmp_path / "cproxy.conf"
    # Defaults but for the port (any free one), and the logs in files (as deployed).
    conf.write_text(f"Port = 0\nAccessLog = {tmp_path / 'access.log'}\nErrorLog = {error_log}\n")
    out = tmp_path / "modules.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_AND_DUMP, str(out), str(conf)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def port_logged() -> str | None:
        assert proc.poll() is None, "cproxy exited at start"
        text = error_log.read_text() if error_log.exists() else ""
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        return found.group(1) if found else None

    try:
        port = wait_for(port_logged, what="cproxy to listen")
        proxies = {"http": f"http://127.0.0.1:{port}"}
        with requests.Session() as session:
            for _ in range(2):  # a miss, then a hit
                r = session.get(origin.url("/kept"), proxies=proxies, timeout=10)
                assert (r.status_code, r.content) == (200, b"kept")
            r = session.get(origin.url("/other"), proxies=proxies, timeout=10)
            assert r.status_code == 200
        assert len(origin.requests) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    modules = set(json.loads(out.read_text()))
    assert "cproxy.server.proxy" in modules and "cproxy.server.handler" in modules
    assert not {m for m in modules if m.split(".")[0] in LAZY}
