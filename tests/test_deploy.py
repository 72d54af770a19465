"""Deploying cproxy as an administrator would (issue #15): file names, start-up, signals.

Real ``cproxy`` processes (tests.test_cli.RunningProxy) on loopback; each defect's test
failed before its fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.support import Origin, wait_for
from tests.test_cli import RunningProxy


@contextlib.contextmanager
def launched(proxy: RunningProxy) -> Iterator[RunningProxy]:
    """Start ``proxy`` (a configured RunningProxy); stop it and close its pipe after."""
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        if proxy.proc is not None and proxy.proc.stderr is not None:
            proxy.proc.stderr.close()


class RelativeLogs(RunningProxy):
    """AccessLog and ErrorLog given as bare file names, cproxy started in another directory."""

    def write_conf(self, extra: str) -> None:
        self.conf.write_text(
            f"Port = {self.port}\nAdminPort = 0\n"
            "AccessLog = access.log\nErrorLog = error.log\nLogLevel = info\n" + extra,
            encoding="utf-8",
        )


def test_relative_log_names_are_taken_relative_to_the_directive_file(
    tmp_path: Path, origin: Origin
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proxy = RelativeLogs(tmp_path / "etc")
    proxy.cwd = elsewhere
    with launched(proxy):
        r = requests.get(origin.url("/rel"), proxies={"http": proxy.url}, timeout=10)
        assert r.status_code == 200
        wait_for(
            lambda: proxy.access_log.exists() and "/rel" in proxy.access_log.read_text(),
            what="the access log line in the directive file's directory",
        )
        assert "cproxy listening on" in proxy.log_text()
    assert sorted(os.listdir(elsewhere)) == []
