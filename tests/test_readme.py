"""The README's commands work as written (issue #15).

The Chromium line is run as the README gives it (port changed to the test proxy's, plus
the flags this machine needs to run a headless browser): a local test page must go through
cproxy, which the origin sees in the Via header. The install command must create and use a
virtual environment: Debian's Python refuses a plain ``pip install``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import CHROMIUM_ARGS, Origin, start_proxy

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def readme_chromium_command() -> list[str]:
    m = re.search(r"`(chromium --proxy-server=[^`]*)`", README.replace("\n  ", " "))
    assert m is not None, "no Chromium line in the README"
    return shlex.split(m.group(1))


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian chromium is not installed (scripts/test installs it; CI must not skip)",
)
def test_the_readme_chromium_line_sends_a_local_page_through_the_proxy(origin: Origin) -> None:
    origin.routes["/local"] = lambda h: h.reply(
        200, b"<p id='x'>local page</p>", {"Content-Type": "text/html"}
    )
    with start_proxy() as proxy:
        command = [arg.replace(":8080", f":{proxy.port}") for arg in readme_chromium_command()]
        out = subprocess.run(
            [
                *command,
                *CHROMIUM_ARGS,
                "--headless",
                # Only the test page's loopback address resolves: nothing leaves the machine.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--dump-dom",
                origin.url("/local"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert "local page" in out.stdout, out.stderr[-2000:]
    pages = [headers for _, path, headers, _ in origin.requests if path == "/local"]
    assert pages and all(dict(h).get("Via") == "1.1 cproxy" for h in pages), pages


def test_the_readme_install_command_creates_and_uses_a_virtual_environment() -> None:
    block = re.search(r"## Install and run.*?```sh\n(.*?)\n```", README, re.S)
    assert block is not None
    steps = [shlex.split(step) for step in block.group(1).split("&&")]
    assert steps[0][:3] == ["python3", "-m", "venv"], steps
    venv = steps[0][3]
    # Every later step runs from the environment, never the system's pip or Python.
    assert all(step[0].startswith(f"{venv}/bin/") for step in steps[1:]), steps
    assert [step[0].rsplit("/", 1)[1] for step in steps[1:]] == ["pip", "cproxy"]
    assert "apt-get install python3-venv" in README


def test_the_readme_fits_a_screen_or_two_and_its_links_lead_somewhere() -> None:
    """Issue #22: the README is the first hour; the rest lives in docs/."""
    assert len(README.splitlines()) < 200
    root = Path(__file__).resolve().parents[1]
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links, "no links to the documentation"
    for link in links:
        assert (root / link).is_file(), link
    # The run command with a directive file copies the sample out of the repository.
    assert "cp etc/cproxy.conf ~/cproxy.conf && .venv/bin/cproxy -c ~/cproxy.conf" in README
