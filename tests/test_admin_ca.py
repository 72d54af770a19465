"""The admin's interception CA page and downloads (issue #19), on a real admin listener
(tests/test_admin.py's AdminSite) with a CA made by create_ca in tmp_path."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from cproxy.admin.capage import ca_view
from cproxy.directives import load_config
from cproxy.intercept.ca import create_ca
from tests.test_admin import CONF_TEXT, AdminSite, field_section

CA_CONF = CONF_TEXT + "SSLCACertFile = ca/ca-cert.pem\nSSLCAKeyFile = ca/ca-key.pem\n"


@pytest.fixture
def ca_site(tmp_path: Path) -> Iterator[AdminSite]:
    create_ca(tmp_path / "ca")
    site = AdminSite(tmp_path, conf_text=CA_CONF)
    yield site
    site.close()


def test_page_shows_fingerprint_and_validity(ca_site: AdminSite, tmp_path: Path) -> None:
    cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca-cert.pem").read_bytes())
    page = ca_site.get("/ca")
    assert page.status_code == 200
    view = ca_view(ca_site.runtime.config)
    assert view.fingerprint and f'<code id="ca-fingerprint">{view.fingerprint}</code>' in page.text
    assert f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC" in page.text
    assert f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC" in page.text
    assert 'href="/ca/cproxy-ca.pem"' in page.text and 'href="/ca/cproxy-ca.der"' in page.text
    # Linked from every page's navigation.
    assert 'href="/ca"' in ca_site.get("/").text


def test_downloads_are_the_certificate_only(ca_site: AdminSite, tmp_path: Path) -> None:
    files = tmp_path / "ca"
    pem = ca_site.get("/ca/cproxy-ca.pem")
    assert pem.status_code == 200
    assert pem.content == (files / "ca-cert.pem").read_bytes()
    assert pem.headers["Content-Type"] == "application/x-pem-file"
    assert "attachment" in pem.headers["Content-Disposition"]
    der = ca_site.get("/ca/cproxy-ca.der")
    assert der.status_code == 200
    assert der.content == (files / "ca-cert.der").read_bytes()
    assert der.headers["Content-Type"] == "application/x-x509-ca-cert"
    key = (files / "ca-key.pem").read_bytes()
    for response in (pem, der, ca_site.get("/ca")):
        assert b"PRIVATE KEY" not in response.content
        assert key not in response.content


def test_the_key_file_is_never_opened(ca_site: AdminSite, tmp_path: Path) -> None:
    """Even with the key unreadable to us, the page and downloads work: they never
    touch it."""
    key = tmp_path / "ca" / "ca-key.pem"
    key.rename(tmp_path / "elsewhere.pem")
    assert ca_site.get("/ca").status_code == 200
    assert ca_site.get("/ca/cproxy-ca.pem").status_code == 200


def test_no_other_path_under_ca(ca_site: AdminSite) -> None:
    for path in ("/ca/ca-key.pem", "/ca/../ca/ca-key.pem", "/ca/cproxy-ca.key", "/ca/x"):
        response = ca_site.get(path)
        assert response.status_code == 404, path
        assert b"PRIVATE KEY" not in response.content


def test_login_is_required(ca_site: AdminSite) -> None:
    for path in ("/ca", "/ca/cproxy-ca.pem", "/ca/cproxy-ca.der"):
        assert ca_site.get(path, auth=None).status_code == 401
    assert ca_site.post("/ca", {}).status_code == 405


def test_without_a_ca_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    site = AdminSite(tmp_path)
    try:
        page = site.get("/ca")
        assert page.status_code == 200
        assert "cproxy ca init" in page.text
        assert site.get("/ca/cproxy-ca.pem").status_code == 404
    finally:
        site.close()


def test_a_certificate_broken_since_start_is_reported(ca_site: AdminSite, tmp_path: Path) -> None:
    cert = tmp_path / "ca" / "ca-cert.pem"
    cert.write_bytes(b"not a certificate")
    page = ca_site.get("/ca")
    assert page.status_code == 200
    assert 'id="ca-error"' in page.text and str(cert) in page.text
    assert ca_site.get("/ca/cproxy-ca.der").status_code == 404


def test_an_expiring_ca_is_flagged(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca")
    conf = tmp_path / "cproxy.conf"
    conf.write_text("SSLCACertFile = ca/ca-cert.pem\nSSLCAKeyFile = ca/ca-key.pem\n")
    config = load_config(conf)
    fresh = ca_view(config)
    assert not fresh.expiring and fresh.days_left > 3000
    end = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca-cert.pem").read_bytes())
    late = ca_view(config, now=end.not_valid_after_utc - dt.timedelta(days=30))
    assert late.expiring and late.days_left == 30
    assert os.path.exists(tmp_path / "ca" / "ca-key.pem")


INTERCEPTION_FORM = "/config/proxy-configuration/https-interception"


def test_the_form_refuses_a_ca_cproxy_would_refuse_at_start(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    os.chmod(ca.key_path, 0o640)
    site = AdminSite(tmp_path)
    try:
        before = site.conf.read_bytes()
        fields = site.form(INTERCEPTION_FORM)
        fields["d.SSLCACertFile"] = "ca/ca-cert.pem"
        fields["d.SSLCAKeyFile"] = "ca/ca-key.pem"
        refused = site.post(INTERCEPTION_FORM, fields)
        assert refused.status_code == 400
        assert ca.key_path in field_section(refused.text, "SSLCAKeyFile")
        assert site.conf.read_bytes() == before
        assert site.runtime.config.sslca_key_file == ""
        os.chmod(ca.key_path, 0o600)
        fields = site.form(INTERCEPTION_FORM)
        fields["d.SSLCACertFile"] = "ca/ca-cert.pem"
        fields["d.SSLCAKeyFile"] = "ca/ca-key.pem"
        applied = site.post(INTERCEPTION_FORM, fields)
        assert applied.status_code == 200
        assert "SSLCAKeyFile = ca/ca-key.pem" in site.conf.read_text()
    finally:
        site.close()
