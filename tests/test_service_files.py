"""The service files in etc/ (issue #15): the systemd unit is valid and does what cproxy(8)
says (reload by SIGHUP, stop by SIGTERM, an unprivileged user, hardening), and agrees with
the logrotate snippet on the pid file."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ETC = Path(__file__).resolve().parents[1] / "etc"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ETC / "cproxy.service").read_text())
    return parser


def test_the_unit_reloads_by_hup_stops_by_term_and_runs_unprivileged() -> None:
    service = unit()["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] not in ("", "root", "0")
    assert service["ExecStart"].endswith("cproxy -c /etc/cproxy/cproxy.conf")
    assert "--check-config" in service["ExecStartPre"]
    for option in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert option in service, option
    assert service["CapabilityBoundingSet"] == ""
    # The pid file the unit expects is the one the logrotate snippet signals.
    assert service["PIDFile"] == "/run/cproxy/cproxy.pid"
    assert "/run/cproxy/cproxy.pid" in (ETC / "cproxy.logrotate").read_text()
    assert "PidFile = /run/cproxy/cproxy.pid" in (ETC / "cproxy.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # The unit names the installed command; point it at a stand-in so verify can check it.
    command = tmp_path / "cproxy"
    command.write_text("#!/bin/sh\nexit 0\n")
    command.chmod(command.stat().st_mode | stat.S_IXUSR)
    text = (ETC / "cproxy.service").read_text().replace("/opt/cproxy/venv/bin/cproxy", str(command))
    # The man pages are not installed here: verify would fail looking them up.
    text = "\n".join(x for x in text.splitlines() if not x.startswith("Documentation="))
    (tmp_path / "cproxy.service").write_text(text + "\n")
    out = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "cproxy.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
