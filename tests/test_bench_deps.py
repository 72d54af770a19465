"""Every benchmark says what it is missing, and how to install it, before it starts
anything (issue #22: bench/pool_bench.py crashed with ModuleNotFoundError: trustme).

Each script runs with an empty PATH (so its programs are missing) and, where it imports
one, a Python module made unimportable; it must exit with status 2 and name each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# script -> (a program it needs that lives in /usr/bin or None, a Python module it imports
# or None)
SCRIPTS = {
    "compare.py": ("wrk", None),
    "proxy_bench.py": ("wrk", None),
    "pool_bench.py": ("wrk", "trustme"),
    "profile_cproxy.py": ("py-spy", None),
    "shared_tier.py": ("redis-server", "redis"),
    "packages.py": ("dpkg-scanpackages", None),
    "leaf_cost.py": (None, "cryptography"),
    "dns_cache.py": ("wrk", None),
    "h2_bench.py": ("wrk", "trustme"),
    "intercept_bench.py": ("openssl", "trustme"),
    "tls_msg_callback.py": (None, "trustme"),
    "rss_growth.py": ("wrk", None),
}
# Scripts that need no program and no Python package beyond cproxy's own: nothing to name.
NEEDS_NOTHING = {"cache_memory.py"}

RUN = """
import runpy, sys
for name in sys.argv[2:]:
    sys.modules[name] = None  # as if the package were not installed
script = sys.argv[1]
sys.argv = [script]
sys.path.insert(0, script.rsplit("/", 1)[0])  # as "python bench/x.py" does
runpy.run_path(script, run_name="__main__")
"""


def test_every_benchmark_script_is_listed() -> None:
    helpers = {"benchlib.py", "netaux.py", "toy_proxy.py", "passthrough_proxy.py"}
    assert {p.name for p in BENCH.glob("*.py")} - helpers - NEEDS_NOTHING == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_benchmark_names_what_is_missing_and_exits_2(script: str, tmp_path: Path) -> None:
    program, module = SCRIPTS[script]
    blocked = [module] if module else []
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(BENCH / script), *blocked],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    if program:
        assert f"missing programs: {program}" in out.stderr or f", {program}" in out.stderr, (
            out.stderr
        )
    assert "Install with: " in out.stderr
    if module:
        assert f"missing Python packages: {module}" in out.stderr, out.stderr
        assert "pip install -c" in out.stderr and "constraints.txt" in out.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may start before the check"


def test_the_conformance_script_names_node_and_npm(tmp_path: Path) -> None:
    out = subprocess.run(
        ["/bin/bash", str(BENCH / "cache_conformance" / "run.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "missing program: node" in out.stderr
    assert "apt-get install nodejs npm" in out.stderr
