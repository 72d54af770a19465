"""How much memory CacheMemory lets the in-memory cache take (issue #21).

    python bench/cache_memory.py [--cache-mb 64] [--count 60000] [--body 1024] [--base DIR]

Fills a CacheStore of ``--cache-mb`` MiB, in a fresh Python process, with ``--count``
distinct cacheable responses of ``--body`` bytes whose heads are those the benchmark's
nginx origin sends (nine header fields), parsed by cproxy's own parser as the proxy does,
and prints: the entries the store holds at the end, the bytes it says it holds, and the
growth of the process's resident memory (VmRSS, after a gc) against CacheMemory, per held
entry. ``--base DIR`` runs the same in the sources of another checkout (say an export of
main) beside this one, for a before/after in one run. The sources as pure Python, or with
``--compiled`` the build the install makes (compiled with mypyc once per source digest under
bench/results/builds, as compare.py runs cproxy). No network: it measures what the store
holds, not a proxy's throughput.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(cache_mb: int, count: int, body_len: int) -> dict[str, float]:
    from cproxy.cache import CacheSettings, CacheStore, Entry
    from cproxy.http.message import parse_response_head

    settings = CacheSettings()
    store = CacheStore(cache_mb << 20)
    gc.collect()
    before = rss_kib()
    for i in range(count):
        head = (
            "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
            "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {body_len}\r\nLast-Modified: Mon, 13 Nov 2023 10:00:00 GMT\r\n"
            f'Connection: keep-alive\r\nETag: "6552f4e0-{i:x}"\r\n'
            "Cache-Control: max-age=3600\r\nAccept-Ranges: bytes\r\n\r\n"
        ).encode("latin-1")
        resp = parse_response_head(head, "GET")
        store.put(
            Entry.build(
                url_key=f"http://127.0.0.1:8080/cache/1k?n={i}",
                status=resp.status,
                reason=resp.reason,
                resp_headers=resp.headers,
                body=bytes(body_len),
                req_headers=[],
                request_time=1.7e9 + i,
                response_time=1.7e9 + i,
                settings=settings,
            )
        )
    gc.collect()
    grown = (rss_kib() - before) * 1024
    held = len(store)
    return {
        "entries": held,
        "store_bytes": store.current_bytes,
        "rss_growth": grown,
        "rss_per_entry": grown / held if held else 0.0,
        "evictions": store.evictions,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache-mb", type=int, default=64)
    p.add_argument("--count", type=int, default=60000)
    p.add_argument("--body", type=int, default=1024)
    p.add_argument("--base", help="also run the sources of this checkout (before)")
    p.add_argument("--compiled", action="store_true", help="run the compiled build")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.cache_mb, args.count, args.body)))
        return
    trees = [("this", REPO)]
    if args.base:
        trees.insert(0, ("base", Path(args.base).resolve()))
    if args.compiled:
        sys.path.insert(0, str(REPO / "bench"))
        import benchlib

        trees = [(name, benchlib.deployed_tree(tree)) for name, tree in trees]
    print(
        f"CacheMemory {args.cache_mb} MiB, {args.count:,} distinct {args.body}-byte responses"
        f" (nine header fields), CPython {sys.version.split()[0]},"
        f" {'compiled' if args.compiled else 'sources'}"
    )
    print(
        f"{'tree':<6} {'entries held':>12} {'store MiB':>10} {'RSS growth MiB':>15} "
        f"{'x CacheMemory':>14} {'RSS B/entry':>12}"
    )
    for name, tree in trees:
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(tree),
            "--cache-mb",
            str(args.cache_mb),
            "--count",
            str(args.count),
            "--body",
            str(args.body),
        ]
        out = subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:<6} {r['entries']:>12,} {r['store_bytes'] / 2**20:>10.1f} "
            f"{r['rss_growth'] / 2**20:>15.1f} {r['rss_growth'] / (args.cache_mb << 20):>14.2f} "
            f"{r['rss_per_entry']:>12.0f}"
        )


if __name__ == "__main__":
    main()
