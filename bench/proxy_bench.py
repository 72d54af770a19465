"""cproxy's basic throughput benchmark (issue #2).

    python bench/proxy_bench.py [--seconds 10] [--connections 50] [--path /nostore/1k]

Starts a local origin (Debian's nginx on 127.0.0.1 serving a 1 KiB file with
`Cache-Control: no-store`, so every request goes through to the origin) and cproxy (a
subprocess with its own directive file in a temp dir, default directive values apart from
the port, no access log and no admin listener), warms up, then runs wrk with 50 connections
sending absolute-form requests through cproxy, and prints requests per second, latency p50
and p99, errors (non-2xx/3xx answers and socket errors), and how many connections the origin
accepted during the measured run (nginx's stub_status "accepts"): with connection pooling
this should be 0 after the warm-up.

cproxy runs on CPU 0, wrk and the origin on CPU 1 (taskset). Needs the Debian packages
nginx-light (or nginx) and wrk. The full comparison with Squid and nginx is bench/compare.py.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import benchlib as bl


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up run (default 2)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--path", default="/nostore/1k", help="origin path: /nostore/1k, /cache/16k…")
    p.add_argument(
        "--unique-query",
        action="store_true",
        help="a distinct ?n=<counter> on every request: no collapsing of concurrent misses",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="cproxy's Workers directive; above 1 nothing is pinned (the workers need both CPUs)",
    )
    args = p.parse_args()
    if args.workers > 1:
        args.no_pin = True
    bl.require_tools(["nginx", "wrk", "taskset"])
    cpu_proxy, cpu_load = (None, None) if args.no_pin else ("0", "1")

    origin = bl.start_origin(cpu=cpu_load)
    proxy = None
    try:
        proxy = bl.start_cproxy(cpu=cpu_proxy, Workers=str(args.workers))
        with tempfile.TemporaryDirectory(prefix="cproxy-bench-") as tmp:
            script = bl.write_wrk_script(
                Path(tmp) / "req.lua",
                f"http://{bl.LOOPBACK}:{origin.port}{args.path}",
                unique_query=args.unique_query,
            )
            bl.run_wrk(proxy.port, script, args.warmup, args.connections, cpu_load)
            before_conns = bl.origin_accepts(origin)
            before_cpu = proxy.cpu_s()
            r = bl.run_wrk(proxy.port, script, args.seconds, args.connections, cpu_load)
            cpu = proxy.cpu_s() - before_cpu
            # minus 1: the "before" query's own connection
            opened = bl.origin_accepts(origin) - before_conns - 1
        print(
            f"cproxy ({args.workers} worker{'s' if args.workers > 1 else ''}), "
            f"{args.connections} connections, GET {args.path} for {args.seconds:g} s"
        )
        print(f"  requests/s          {r['rps']:,.0f}")
        print(f"  latency p50 / p99   {r['p50_us'] / 1000:.2f} ms / {r['p99_us'] / 1000:.2f} ms")
        print(
            f"  errors              {r['errors']} (non-2xx/3xx {r['status']}, connect "
            f"{r['connect']}, read {r['read']}, write {r['write']}, timeout {r['timeout']})"
        )
        print(f"  origin connections  {opened} opened during the run")
        if r["requests"]:
            print(f"  cproxy CPU          {cpu / r['requests'] * 1e6:.1f} µs per request")
        print(f"  cproxy peak RSS     {proxy.peak_rss_kib() / 1024:.1f} MiB")
    finally:
        if proxy is not None:
            proxy.stop()
        origin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
