"""``cproxy ca init`` and ``cproxy ca show`` as users run them (subprocesses), the start-up
check of SSLCACertFile/SSLCAKeyFile, and the NSS install line run for real with certutil."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cproxy.intercept.ca import ca_files, load_ca

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
FINGERPRINT = re.compile(r"SHA-256 fingerprint: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")


def cproxy(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cproxy", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_init_creates_the_ca_and_says_how_to_install_it(tmp_path: Path) -> None:
    done = cproxy("ca", "init", "-d", "ca", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    files = ca_files(tmp_path / "ca")
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    ca = load_ca(files.cert, files.key)
    match = FINGERPRINT.search(done.stdout)
    assert match is not None and match.group(1) == ca.fingerprint
    out = done.stdout
    # Absolute paths, so the directive lines can be pasted into any directive file.
    assert f"SSLCACertFile = {files.cert}" in out
    assert f"SSLCAKeyFile = {files.key}" in out
    for how in (
        "/usr/local/share/ca-certificates/",
        "update-ca-certificates",
        f"certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n cproxy -i {files.cert}",
        f"certutil -addstore Root {files.cert_der}",
        "security add-trusted-cert",
    ):
        assert how in out
    # The key's content is never printed.
    assert "PRIVATE KEY" not in out


def test_init_refuses_to_replace_unless_forced(tmp_path: Path) -> None:
    assert cproxy("ca", "init", "-d", str(tmp_path / "ca")).returncode == 0
    files = ca_files(tmp_path / "ca")
    before = files.cert.read_bytes()
    again = cproxy("ca", "init", "-d", str(tmp_path / "ca"))
    assert again.returncode == 1
    assert again.stderr.startswith("cproxy ca: ") and "--force" in again.stderr
    assert files.cert.read_bytes() == before
    forced = cproxy("ca", "init", "-d", str(tmp_path / "ca"), "--force")
    assert forced.returncode == 0
    assert files.cert.read_bytes() != before


def test_show_prints_fingerprint_and_validity(tmp_path: Path) -> None:
    cproxy("ca", "init", "-d", str(tmp_path / "ca"))
    ca = load_ca(ca_files(tmp_path / "ca").cert, ca_files(tmp_path / "ca").key)
    shown = cproxy("ca", "show", "-d", str(tmp_path / "ca"))
    assert shown.returncode == 0
    assert ca.fingerprint in shown.stdout
    assert f"{ca.not_after:%Y-%m-%d}" in shown.stdout


def test_show_refuses_a_key_open_to_others(tmp_path: Path) -> None:
    cproxy("ca", "init", "-d", str(tmp_path / "ca"))
    key = ca_files(tmp_path / "ca").key
    key.chmod(0o644)
    shown = cproxy("ca", "show", "-d", str(tmp_path / "ca"))
    assert shown.returncode == 1
    assert str(key) in shown.stderr and "0644" in shown.stderr


def test_show_of_a_missing_ca(tmp_path: Path) -> None:
    shown = cproxy("ca", "show", "-d", str(tmp_path / "none"))
    assert shown.returncode == 1
    assert str(tmp_path / "none") in shown.stderr


def test_ca_without_a_subcommand_is_a_usage_error() -> None:
    assert cproxy("ca").returncode == 2


def test_check_config_loads_the_ca(tmp_path: Path) -> None:
    cproxy("ca", "init", "-d", str(tmp_path / "ca"))
    conf = tmp_path / "cproxy.conf"
    conf.write_text("SSLCACertFile = ca/ca-cert.pem\nSSLCAKeyFile = ca/ca-key.pem\n")
    ok = cproxy("-c", str(conf), "--check-config")
    assert ok.returncode == 0, ok.stderr
    key = ca_files(tmp_path / "ca").key
    key.chmod(0o640)
    bad = cproxy("-c", str(conf), "--check-config")
    assert bad.returncode == 2
    line = bad.stderr.strip()
    assert "\n" not in line
    assert str(conf) in line and "SSLCAKeyFile" in line and str(key) in line


def test_cproxy_refuses_to_start_with_a_certificate_that_is_not_a_ca(tmp_path: Path) -> None:
    cproxy("ca", "init", "-d", str(tmp_path / "ca"))
    conf = tmp_path / "cproxy.conf"
    # The key as the certificate: not a certificate at all.
    conf.write_text("Port = 0\nSSLCACertFile = ca/ca-key.pem\nSSLCAKeyFile = ca/ca-key.pem\n")
    started = cproxy("-c", str(conf))
    assert started.returncode == 2
    assert (
        "SSLCACertFile" in started.stderr and str(tmp_path / "ca" / "ca-key.pem") in started.stderr
    )


@pytest.mark.skipif(shutil.which("certutil") is None, reason="libnss3-tools not installed")
def test_the_nss_install_line_works(tmp_path: Path) -> None:
    """The printed Chromium/Firefox line, run with HOME in tmp_path, puts the CA in the NSS
    database as a trusted CA for TLS servers."""
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"],
        check=True, env=env, timeout=30, capture_output=True,
    )  # fmt: skip
    done = cproxy("ca", "init", "-d", str(tmp_path / "ca"))
    line = next(
        x.strip() for x in done.stdout.splitlines() if x.strip().startswith("certutil -d sql:")
    )
    subprocess.run(["sh", "-c", line], check=True, env=env, timeout=30, capture_output=True)
    listed = subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-L", "-n", "cproxy"],
        check=True, env=env, timeout=30, capture_output=True, text=True,
    )  # fmt: skip
    assert "Is a CA: Yes" in listed.stdout or "Certificate Authority" in listed.stdout
    trust = subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-L"],
        check=True, env=env, timeout=30, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert re.search(r"^cproxy\s+C,,", trust, re.M)
