"""Local package repositories and real package clients for issue #23's tests and the
bench/packages.py measurement: a flat apt repository of tiny .debs built with dpkg-deb and
indexed with dpkg-scanpackages, a PEP 503 simple index with hand-built wheels, an origin
that serves a directory with no validators at all (no Last-Modified, ETag, Cache-Control
or Expires, as many mirrors do), and apt-get / pip runs whose state lives in a temporary
directory so the machine's own apt and pip are untouched. Loopback only.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import unquote

from tests.support import OriginHandler

CLIENT_TIMEOUT_S = 90


def serve_directory(root: Path, *, last_modified: bool = False):  # type: ignore[no-untyped-def]
    """An origin route serving files under ``root`` (a directory's index.html for a path
    ending in /), with no validator or freshness field; 404 for anything else. With
    ``last_modified`` each file has a Last-Modified (its mtime), and an If-Modified-Since
    not older than it gets a 304."""
    root = root.resolve()

    def route(h: OriginHandler) -> None:
        path = (root / unquote(h.path.split("?")[0]).lstrip("/")).resolve()
        if path.is_dir():
            path = path / "index.html"
        if not path.is_relative_to(root) or not path.is_file():
            h.reply(404, b"not found\n", {"Content-Type": "text/plain"})
            return
        kind = "text/html" if path.suffix == ".html" else "application/octet-stream"
        fields = {"Content-Type": kind}
        if last_modified:
            mtime = int(path.stat().st_mtime)
            fields["Last-Modified"] = email.utils.formatdate(mtime, usegmt=True)
            since = h.headers.get("If-Modified-Since")
            parsed = email.utils.parsedate_to_datetime(since) if since else None
            if parsed is not None and parsed.timestamp() >= mtime:
                h.reply(304, b"", {**fields, "Content-Length": "0"})
                return
        h.reply(200, path.read_bytes(), fields)

    return route


def clean_env() -> dict[str, str]:
    """The environment for a client: no proxy variables (a NO_PROXY naming 127.0.0.1 would
    send pip straight to the origin), no user configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", LC_ALL="C.UTF-8")
    return env


# -- apt -----------------------------------------------------------------------------------


def build_deb(repo: Path, work: Path, name: str, version: str = "1.0") -> Path:
    """A tiny Architecture: all package ``name`` built with dpkg-deb into ``repo``."""
    tree = work / f"{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: cproxy tests <tests@example.test>\n"
        f"Description: {name}, a tiny package for cproxy's tests\n"
    )
    doc = tree / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "README").write_text(f"{name} {version}\n" * 50)
    deb = repo / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
        timeout=CLIENT_TIMEOUT_S,
    )
    return deb


def index_repo(repo: Path) -> None:
    """``Packages`` by dpkg-scanpackages, and a ``Release`` naming its hash (flat layout,
    unsigned: the sources line says [trusted=yes])."""
    done = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=CLIENT_TIMEOUT_S,
    )
    packages = done.stdout
    (repo / "Packages").write_bytes(packages)
    digest = hashlib.sha256(packages).hexdigest()
    (repo / "Release").write_text(
        "Origin: cproxy-tests\nLabel: cproxy-tests\nSuite: tests\nCodename: tests\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\n"
        f"SHA256:\n {digest} {len(packages)} Packages\n"
    )


def make_apt_repo(root: Path, names: list[str]) -> Path:
    """A flat repository of the packages ``names`` under ``root / "repo"``."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    for name in names:
        build_deb(repo, root / "build", name)
    index_repo(repo)
    return repo


class AptMachine:
    """One machine's apt: sources, lists, cache, status and configuration all under
    ``home``, its downloads through ``proxy_port`` to the repository at ``repo_url``."""

    def __init__(self, home: Path, repo_url: str, proxy_port: int) -> None:
        self.home = home
        for sub in ("lists/partial", "cache/archives/partial", "parts", "prefs", "dl"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        (home / "status").write_text("")
        (home / "sources.list").write_text(f"deb [trusted=yes] {repo_url} ./\n")
        # Read instead of the machine's apt.conf (APT_CONFIG comes first, and it points
        # Dir::Etc::Parts away from /etc/apt/apt.conf.d).
        (home / "apt.conf").write_text(
            f'Dir::Etc::Main "{os.devnull}";\n'
            f'Dir::Etc::Parts "{home / "parts"}";\n'
            f'Dir::Etc::SourceList "{home / "sources.list"}";\n'
            f'Dir::Etc::SourceParts "{home / "parts"}";\n'
            f'Dir::Etc::Preferences "{os.devnull}";\n'
            f'Dir::Etc::PreferencesParts "{home / "prefs"}";\n'
            f'Dir::State::Lists "{home / "lists"}";\n'
            f'Dir::State::status "{home / "status"}";\n'
            f'Dir::Cache "{home / "cache"}";\n'
            'Debug::NoLocking "1";\n'
            'APT::Sandbox::User "root";\n'
            'Acquire::Languages "none";\n'
            f'Acquire::http::Proxy "http://127.0.0.1:{proxy_port}";\n'
            'Acquire::Retries "0";\n'
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = clean_env()
        env["APT_CONFIG"] = str(self.home / "apt.conf")
        done = subprocess.run(
            ["apt-get", "-q", *args],
            cwd=self.home / "dl",
            env=env,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def update(self) -> None:
        self.run("update")

    def download(self, *names: str) -> list[Path]:
        self.run("download", *names)
        return sorted((self.home / "dl").glob("*.deb"))


# -- pip -----------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(out: Path, name: str, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel (PEP 427) with a correct RECORD, zipped by hand."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            "Summary: a tiny package for cproxy's tests\n"
        ).encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: cproxy-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def make_simple_index(root: Path, names: list[str]) -> Path:
    """A PEP 503 simple index under ``root / "pypi"``: /simple/NAME/ links to the wheel
    stored under /packages/xx/yy/ as PyPI lays files out."""
    site = root / "pypi"
    for name in names:
        files = site / "packages" / "ab" / "cd"
        files.mkdir(parents=True, exist_ok=True)
        wheel = build_wheel(files, name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        page = site / "simple" / re.sub(r"[-_.]+", "-", name).lower()  # PEP 503
        page.mkdir(parents=True)
        (page / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n"
            f'<a href="/packages/ab/cd/{wheel.name}#sha256={digest}">{wheel.name}</a>\n'
            "</body></html>\n"
        )
    return site


def pip_download(index_url: str, proxy_port: int, dest: Path, name: str) -> Path:
    """``pip download`` of ``name`` alone through the proxy, with no cache of pip's own."""
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--isolated",
            "--index-url",
            index_url,
            "--trusted-host",
            "127.0.0.1",
            "--proxy",
            f"http://127.0.0.1:{proxy_port}",
            "-d",
            str(dest),
            name,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return next(dest.glob(f"{name}-*.whl"))


# -- npm -----------------------------------------------------------------------------------


def make_npm_registry(root: Path, name: str, origin_url: str, version: str = "1.0.0") -> Path:
    """A registry directory for one package: the package document at /NAME (served as
    /NAME/index.html) and its tarball at /NAME/-/NAME-VERSION.tgz, as registry.npmjs.org
    lays them out. ``origin_url`` is the origin's base URL, which the document names."""
    import io
    import json
    import tarfile

    site = root / "npm"
    tarballs = site / name / "-"
    tarballs.mkdir(parents=True)
    manifest = json.dumps({"name": name, "version": version, "description": "tiny"}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/package.json")
        info.size = len(manifest)
        info.mtime = 1_700_000_000
        tar.addfile(info, io.BytesIO(manifest))
    data = buffer.getvalue()
    tarball = tarballs / f"{name}-{version}.tgz"
    tarball.write_bytes(data)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    document = {
        "name": name,
        "dist-tags": {"latest": version},
        "versions": {
            version: {
                "name": name,
                "version": version,
                "dist": {
                    "tarball": f"{origin_url.rstrip('/')}/{name}/-/{tarball.name}",
                    "shasum": hashlib.sha1(data).hexdigest(),
                    "integrity": integrity,
                },
            }
        },
    }
    (site / name / "index.html").write_text(json.dumps(document))
    return site


def npm_pack(registry_url: str, proxy_port: int, home: Path, name: str) -> Path:
    """``npm pack NAME``: fetch the package's tarball from the registry through the proxy,
    with an npm cache and configuration of its own under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "npmrc").write_text("")
    env = clean_env()
    env.update(HOME=str(home), NPM_CONFIG_UPDATE_NOTIFIER="false")
    done = subprocess.run(
        [
            "npm",
            "pack",
            name,
            "--registry",
            registry_url,
            "--proxy",
            f"http://127.0.0.1:{proxy_port}",
            "--cache",
            str(home / "cache"),
            "--userconfig",
            str(home / "npmrc"),
            "--pack-destination",
            str(home),
            "--no-audit",
            "--no-fund",
            "--loglevel",
            "warn",
        ],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return next(home.glob(f"{name}-*.tgz"))
