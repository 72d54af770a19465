"""Admin pages as a new administrator meets them (issue #15): labels, a broken file, metrics.

A real admin listener on loopback (tests.test_admin.AdminSite); each test failed before
its fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_admin import PERFORMANCE, TIMEOUTS, AdminSite, field_section


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AdminSite]:
    s = AdminSite(tmp_path)
    yield s
    s.close()


def test_time_and_size_fields_carry_their_own_unit_not_a_seconds_label(site: AdminSite) -> None:
    html = site.get(TIMEOUTS).text
    output = field_section(html, "OutputTimeout")
    assert 'value="30 minutes"' in output
    # The text says minutes: no fixed "seconds" label beside it.
    assert not re.search(r'class="unit"[^<]*>\s*seconds', output), output
    assert ">seconds<" not in output


def test_a_directive_file_broken_on_disk_is_reported_on_every_page(site: AdminSite) -> None:
    assert "does not load" not in site.get("/").text
    site.conf.write_text(site.conf.read_text() + "ReadTimeout = soon\n")
    for path in ("/", PERFORMANCE):
        html = site.get(path).text
        banner = re.search(r'<div class="banner error" role="alert">(.*?)</div>', html, re.S)
        assert banner is not None, path
        text = banner.group(1)
        assert f"{site.conf}:" in text and "ReadTimeout: &#39;soon&#39; is not a time" in text
        assert "cannot be saved" in text and "a SIGHUP keeps the running configuration" in text
    document = site.get("/status.json").json()
    assert "ReadTimeout" in document["directive_file_problem"]
    # Fixed again: the warning goes.
    site.conf.write_text(site.conf.read_text().replace("ReadTimeout = soon\n", ""))
    assert "does not load" not in site.get(PERFORMANCE).text
    assert site.get("/status.json").json()["directive_file_problem"] is None
