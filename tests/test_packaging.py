"""The built wheel carries what an installed cproxy needs (templates, man pages, sample
file), and a machine without a C compiler still gets a working pure-Python install."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_setup_cfg_lists_every_package() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cproxy").rglob("__init__.py")
    }
    assert found | {"cproxy.web_admin"} == listed


def build_wheel(out: Path, **env: str) -> tuple[Path, str]:
    """Build cproxy's wheel into ``out`` with ``env`` added; the wheel and pip's -v output."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("cproxy-*.whl")
    return wheel, done.stdout + done.stderr


def test_wheel_contains_admin_templates_and_docs(tmp_path: Path) -> None:
    # The contents, not the compiled modules: scripts/test-compiled builds those.
    wheel, _ = build_wheel(tmp_path, CPROXY_COMPILE="0")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "web_admin").rglob("*"):
        if template.is_file():
            assert f"cproxy/web_admin/{template.relative_to(ROOT / 'web_admin')}" in names
    assert any(n.endswith("share/man/man5/cproxy.conf.5") for n in names)
    assert any(n.endswith("share/man/man8/cproxy.8") for n in names)
    for shipped in ("cproxy.conf", "cproxy.service", "cproxy.logrotate"):
        assert any(n.endswith(f"share/doc/cproxy/{shipped}") for n in names), shipped


def test_no_c_compiler_installs_pure_python_and_says_why(tmp_path: Path) -> None:
    # The default build compiles; a machine without gcc (a fresh Debian) gets the .py
    # files, and the build's output says what was missing. Checked before mypyc starts.
    wheel, output = build_wheel(tmp_path, CC=str(tmp_path / "no-such-cc"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "cproxy/server/handler.py" in names
    assert not [n for n in names if n.endswith(".so")], names
    assert "installing pure Python: no C compiler" in output
