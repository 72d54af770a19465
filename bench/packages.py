"""What cproxy saves a team's apt downloads (issue #23), measured with the real apt-get.

A flat repository of N tiny .debs (dpkg-deb, dpkg-scanpackages) is served on loopback by an
origin that sends no validator and no freshness, as many mirrors do. Two "machines" (apt
state and configuration each in a directory of their own) run ``apt-get update`` and
``apt-get download`` of every package through one cproxy on its default directives, access
log on. Printed: per machine, the requests apt made, those the origin received, the hits,
and the bytes sent to apt that did not come from the cache.

Usage: ``.venv/bin/python bench/packages.py [--packages 20] [--no-package-rules]``
(needs apt-get and dpkg-dev).
Loopback only; nothing is installed, the machine's apt is not touched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import benchlib as bl

# Checked before anything starts (and before tests.* imports cproxy).
bl.require(tools=["apt-get", "dpkg-deb", "dpkg-scanpackages"])
sys.path.insert(0, str(bl.REPO_DIR))

from tests.packagerepo import AptMachine, make_apt_repo, serve_directory  # noqa: E402
from tests.support import Origin, start_proxy  # noqa: E402


def _fields(line: str) -> tuple[str, int, str]:
    """(URL, bytes sent, cache= field) of a cproxy-format access log line."""
    url = line.split('"')[1].split()[1]
    sent = int(line.split('"')[2].split()[1])
    return url, sent, line.rsplit(" cache=", 1)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=20)
    parser.add_argument(
        "--no-package-rules", action="store_true", help="CachePackageRules off, for comparison"
    )
    args = parser.parse_args()
    names = [f"cproxy-bench-{i:02d}" for i in range(args.packages)]
    with tempfile.TemporaryDirectory(prefix="cproxy-bench-packages-") as tmp:
        root = Path(tmp)
        repo = make_apt_repo(root, names)
        log = root / "access.log"
        rows = []
        rules = "off" if args.no_package_rules else "on"
        with (
            Origin() as origin,
            start_proxy(AccessLog=str(log), CachePackageRules=rules) as proxy,
        ):
            origin.default_route = serve_directory(repo)
            for machine in ("first", "second"):
                with origin.lock:
                    before = len(origin.requests)
                apt = AptMachine(root / machine, origin.url("/"), proxy.port)
                apt.update()
                got = apt.download(*names)
                assert len(got) == len(names), got
                with origin.lock:
                    rows.append((machine, len(origin.requests) - before))
                    asked = [path for _, path, _, _ in origin.requests[before:]]
                print(f"{machine} machine, origin saw: {sorted(set(asked) - {'/'})[:6]} ...")
        lines = log.read_text().splitlines()
    # The two machines' lines, in order: split where the second update starts.
    per_machine: list[list[tuple[str, int, str]]] = [[], []]
    machine = 0
    seen_debs = 0
    for line in lines:
        url, sent, cache = _fields(line)
        per_machine[machine].append((url, sent, cache))
        if url.endswith(".deb"):
            seen_debs += 1
            if seen_debs == len(names):
                machine = 1
    print(
        f"apt-get update + apt-get download of {len(names)} packages, twice, through cproxy"
        f" (CachePackageRules {rules})"
    )
    header = ("machine", "requests", "origin", "hits", ".deb hits", "bytes not from cache")
    print(
        f"{header[0]:8} {header[1]:>8} {header[2]:>7} {header[3]:>5} {header[4]:>9} {header[5]:>21}"
    )
    for (name, origin_requests), entries in zip(rows, per_machine, strict=True):
        hits = sum(c.startswith("hit") for _, _, c in entries)
        deb_hits = sum(c.startswith("hit") for u, _, c in entries if u.endswith(".deb"))
        from_origin = sum(s for _, s, c in entries if not c.startswith("hit"))
        print(
            f"{name:8} {len(entries):8d} {origin_requests:7d} {hits:5d} "
            f"{deb_hits:6d}/{len(names):<2d} {from_origin:21d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
