"""The built wheel carries what an installed cproxy needs (templates, man pages, sample file)."""

from __future__ import annotations

import configparser
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


def test_wheel_contains_admin_templates_and_docs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("cproxy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "web_admin").rglob("*"):
        if template.is_file():
            assert f"cproxy/web_admin/{template.relative_to(ROOT / 'web_admin')}" in names
    assert any(n.endswith("share/man/man5/cproxy.conf.5") for n in names)
    assert any(n.endswith("share/man/man8/cproxy.8") for n in names)
    for shipped in ("cproxy.conf", "cproxy.service", "cproxy.logrotate"):
        assert any(n.endswith(f"share/doc/cproxy/{shipped}") for n in names), shipped
