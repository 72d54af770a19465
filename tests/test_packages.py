"""A team's package downloads through cproxy (issue #23), with real clients: apt-get
against a flat repository built by the test, pip against a simple index with a wheel
built by the test. The origin sends no validator and no freshness at all; the built-in
package rules (CachePackageRules) keep the package files and never the indexes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.packagerepo import (
    AptMachine,
    make_apt_repo,
    make_npm_registry,
    make_simple_index,
    npm_pack,
    pip_download,
    serve_directory,
)
from tests.support import Origin, start_proxy

needs_apt = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("apt-get", "dpkg-deb", "dpkg-scanpackages")),
    reason="needs apt-get and dpkg-dev (scripts/test installs them)",
)


def _cache_fields(log: Path, ending: str) -> list[str]:
    """The access log's cache= fields of the requests whose URL ends with ``ending``."""
    out = []
    for line in log.read_text().splitlines():
        url = line.split('"')[1].split()[1]
        if url.endswith(ending):
            out.append(line.rsplit(" cache=", 1)[1].split(" ", 1)[0])  # not proto=
    return out


@needs_apt
@pytest.mark.timeout(240)
def test_apt_second_machine_gets_the_package_from_the_cache(tmp_path: Path) -> None:
    repo = make_apt_repo(tmp_path, ["cproxy-hello"])
    deb_name = "cproxy-hello_1.0_all.deb"
    log = tmp_path / "access.log"
    with Origin() as origin, start_proxy(AccessLog=str(log)) as proxy:
        origin.default_route = serve_directory(repo)
        downloaded = []
        for machine in ("first", "second"):
            apt = AptMachine(tmp_path / machine, origin.url("/"), proxy.port)
            apt.update()
            [deb] = apt.download("cproxy-hello")
            downloaded.append(deb.read_bytes())
        paths = [path for _, path, _, _ in origin.requests]
    assert downloaded == [(repo / deb_name).read_bytes()] * 2
    # The package file went to the origin once; the second machine had it from the cache.
    assert sum(p.endswith(deb_name) for p in paths) == 1, paths
    assert _cache_fields(log, deb_name) == ["uri-miss;stored", "hit"]
    # The index changes in place and the origin gives no validator: fetched on every
    # update, never kept, and the log says why.
    assert sum(p.endswith("/Packages") for p in paths) == 2, paths
    assert _cache_fields(log, "/Packages") == ["uri-miss;detail=no-freshness"] * 2


@needs_apt
@pytest.mark.timeout(240)
def test_apt_indexes_with_a_validator_are_revalidated(tmp_path: Path) -> None:
    """An archive that sends Last-Modified: Packages is stored but never fresh by heuristic
    (the 0.1 factor would make a days-old index fresh for hours, against a newer
    InRelease), so the second machine's update revalidates it: a 304, not the body."""
    repo = make_apt_repo(tmp_path, ["cproxy-hello"])
    old = 1_700_000_000  # a week-old index: the catch-all factor would give it 17 hours
    for name in ("Packages", "Release"):
        os.utime(repo / name, (old, old))
    log = tmp_path / "access.log"
    with Origin() as origin, start_proxy(AccessLog=str(log)) as proxy:
        origin.default_route = serve_directory(repo, last_modified=True)
        for machine in ("first", "second"):
            AptMachine(tmp_path / machine, origin.url("/"), proxy.port).update()
        asked = [(path, headers) for _, path, headers, _ in origin.requests]
    packages = [headers for path, headers in asked if path.endswith("/Packages")]
    assert len(packages) == 2 and "If-Modified-Since" in packages[1], packages
    assert _cache_fields(log, "/Packages") == ["uri-miss;stored", "revalidated"]


@needs_apt
@pytest.mark.timeout(240)
def test_apt_without_package_rules_keeps_nothing(tmp_path: Path) -> None:
    """CachePackageRules off: the same origin gives cproxy nothing to keep (issue #23's
    report), and Cache-Status says so."""
    repo = make_apt_repo(tmp_path, ["cproxy-hello"])
    log = tmp_path / "access.log"
    with (
        Origin() as origin,
        start_proxy(AccessLog=str(log), CachePackageRules="off") as proxy,
    ):
        origin.default_route = serve_directory(repo)
        for machine in ("first", "second"):
            apt = AptMachine(tmp_path / machine, origin.url("/"), proxy.port)
            apt.update()
            apt.download("cproxy-hello")
    assert _cache_fields(log, "_all.deb") == ["uri-miss;detail=no-freshness"] * 2


@pytest.mark.timeout(240)
def test_pip_second_download_of_a_wheel_is_a_hit(tmp_path: Path) -> None:
    site = make_simple_index(tmp_path, ["cproxy_tiny"])
    wheel = next((site / "packages").rglob("*.whl"))
    log = tmp_path / "access.log"
    with Origin() as origin, start_proxy(AccessLog=str(log)) as proxy:
        origin.default_route = serve_directory(site)
        index = origin.url("/simple")
        got = [
            pip_download(index, proxy.port, tmp_path / f"dl{i}", "cproxy_tiny").read_bytes()
            for i in range(2)
        ]
        paths = [path for _, path, _, _ in origin.requests]
    assert got == [wheel.read_bytes()] * 2
    assert sum(p.endswith(".whl") for p in paths) == 1, paths
    assert _cache_fields(log, ".whl") == ["uri-miss;stored", "hit"]
    # The index page is asked of the origin every time (pip says max-age=0, and it has
    # no validator to revalidate with).
    assert sum(p.endswith("/simple/cproxy-tiny/") for p in paths) == 2, paths


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
@pytest.mark.timeout(240)
def test_npm_second_fetch_of_a_tarball_is_a_hit(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Origin() as origin, start_proxy(AccessLog=str(log)) as proxy:
        site = make_npm_registry(tmp_path, "cproxy-tiny", origin.url("/"))
        tarball = site / "cproxy-tiny" / "-" / "cproxy-tiny-1.0.0.tgz"
        origin.default_route = serve_directory(site)
        got = [
            npm_pack(origin.url("/"), proxy.port, tmp_path / f"m{i}", "cproxy-tiny").read_bytes()
            for i in range(2)
        ]
        paths = [path for _, path, _, _ in origin.requests]
    assert got == [tarball.read_bytes()] * 2
    assert sum(p.endswith(".tgz") for p in paths) == 1, paths
    assert _cache_fields(log, ".tgz") == ["uri-miss;stored", "hit"]
    # The package document (no validator, no rule for this host) is never kept: every run
    # asks the origin (npm asks it more than once a run), and the log says why.
    documents = _cache_fields(log, "/cproxy-tiny")
    assert len(documents) >= 2 and set(documents) == {"uri-miss;detail=no-freshness"}
