"""Does a DNS cache pay for itself when the pool opens many new connections? (issue #24)

    python bench/dns_cache.py [--seconds 5] [--trials 3] [--lookups 3000]

Loopback only; names come from /etc/hosts (``localhost``), so nothing leaves the machine.

1. In-process, per lookup: gevent's resolver (the one cproxy uses, `default_resolve`) for a
   hosts-file name and for an IP literal handed to getaddrinfo, against a dict hit (what a
   cache would cost), and `default_resolve` for a literal (answered without a lookup).
2. In-process, new connections per second through `open_socket` to a loopback listener,
   the name resolved each time vs resolved from a dict: the share of a new connection a
   cache could save.
3. End to end: cproxy with ServerConnPool off (every request opens a new origin
   connection) under wrk, unique URLs on a no-store nginx origin, the origin named
   ``localhost`` with DNSCacheTimeout 0 (a lookup per connection) and 1 minute (the
   cache), and ``127.0.0.1`` (no lookup at all: the floor), trials interleaved.
   Requests/s and cproxy CPU per request, each against no cache.

Prints one line per figure and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchlib as bl
import gevent
import gevent.socket as gsocket
from gevent.server import StreamServer

from cproxy.origin.connection import default_resolve, open_socket


def per_lookup_us(resolve: Any, host: str, n: int) -> float:
    resolve(host, 80)  # warm (threads started, hosts file read)
    t0 = time.perf_counter()
    for _ in range(n):
        resolve(host, 80)
    return (time.perf_counter() - t0) / n * 1e6


def lookups(n: int) -> dict[str, float]:
    cache = {("localhost", 80): default_resolve("localhost", 80)}

    def getaddrinfo(host: str, port: int) -> Any:
        return gsocket.getaddrinfo(host, port, 0, gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP)

    def cached(host: str, port: int) -> Any:
        return cache[(host, port)]

    return {
        "gevent_localhost_us": per_lookup_us(getaddrinfo, "localhost", n),
        "gevent_literal_us": per_lookup_us(getaddrinfo, "127.0.0.1", n),
        "default_resolve_literal_us": per_lookup_us(default_resolve, "127.0.0.1", n),
        "dict_hit_us": per_lookup_us(cached, "localhost", n * 100),
    }


def connections(seconds: float) -> dict[str, float]:
    def close_at_once(sock: Any, _addr: Any) -> None:
        sock.close()

    server = StreamServer(("127.0.0.1", 0), close_at_once, backlog=1024)
    server.start()
    port = server.server_port
    cache = {("localhost", port): default_resolve("localhost", port)}

    def cached(host: str, p: int) -> Any:
        return cache[(host, p)]

    def rate(resolve: Any) -> float:
        count = 0
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            open_socket("localhost", port, timeout_s=5, resolve=resolve).close()
            count += 1
        return count / (time.perf_counter() - t0)

    try:
        out: dict[str, list[float]] = {"resolved": [], "cached": []}
        for _ in range(3):  # interleaved, against drift on a shared machine
            out["resolved"].append(rate(default_resolve))
            out["cached"].append(rate(cached))
    finally:
        server.stop()
    return {k: statistics.median(v) for k, v in out.items()}


VARIANTS = {
    # name: (origin host, DNSCacheTimeout)
    "localhost, no cache": ("localhost", "0"),
    "localhost, cache": ("localhost", "1 minute"),
    "127.0.0.1 (no lookup)": ("127.0.0.1", "0"),
}


def end_to_end(seconds: float, trials: int) -> dict[str, Any]:
    origin = bl.start_origin(cpu=None)
    proxies = {
        timeout: bl.start_cproxy(
            cpu=None, access_log=True, ServerConnPool="off", DNSCacheTimeout=timeout
        )
        for timeout in sorted({t for _, t in VARIANTS.values()})
    }
    tmp = bl.make_tmp("dnsbench")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    try:
        for _ in range(trials):
            for name, (host, timeout) in VARIANTS.items():  # interleaved, against drift
                proxy = proxies[timeout]
                url = f"http://{host}:{origin.port}/nostore/1k"
                script = bl.write_wrk_script(tmp / "bench.lua", url, unique_query=True)
                bl.run_wrk(proxy.port, script, 1, connections=20, cpu=None)  # warm
                before = proxy.cpu_s()
                r = bl.run_wrk(proxy.port, script, seconds, connections=20, cpu=None)
                cpu = proxy.cpu_s() - before
                if r["errors"]:
                    raise RuntimeError(f"{name}: wrk errors {r}")
                results[name].append(
                    {"rps": r["rps"], "cpu_us_per_req": cpu / max(1, r["requests"]) * 1e6}
                )
    finally:
        for proxy in proxies.values():
            proxy.stop()
        origin.stop()
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        summary[name] = {
            "rps": statistics.median(x["rps"] for x in runs),
            "cpu_us_per_req": statistics.median(x["cpu_us_per_req"] for x in runs),
            "trials": runs,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--no-wrk", action="store_true", help="parts 1 and 2 only")
    args = parser.parse_args()
    if not args.no_wrk:
        bl.require_tools(["nginx", "wrk"])  # before anything runs: what is missing, named

    print(
        f"resolver: {type(gevent.get_hub().resolver).__module__} (GEVENT_RESOLVER="
        f"{os.environ.get('GEVENT_RESOLVER', '')!r})"
    )
    look = lookups(args.lookups)
    for name, value in look.items():
        print(f"lookup {name:28s} {value:10.2f} µs")
    conns = connections(min(args.seconds, 2.0))
    saved = 1 - conns["resolved"] / conns["cached"]
    print(f"open_socket resolved each time   {conns['resolved']:10.0f} conn/s")
    print(f"open_socket from a dict          {conns['cached']:10.0f} conn/s")
    print(f"share of a new connection spent resolving: {saved:.0%}")
    summary: dict[str, Any] = {"lookups": look, "connections_per_s": conns, "versions": {}}
    if not args.no_wrk:
        e2e = end_to_end(args.seconds, args.trials)
        for name, r in e2e.items():
            print(
                f"cproxy, pool off, {name:22s} {r['rps']:8.0f} req/s "
                f"{r['cpu_us_per_req']:6.0f} µs CPU/req"
            )
        base = e2e["localhost, no cache"]
        for name in ("localhost, cache", "127.0.0.1 (no lookup)"):
            print(
                f"{name} vs no cache: {e2e[name]['rps'] / base['rps']:.2f}x req/s, "
                f"{e2e[name]['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}x CPU/req"
            )
        summary["end_to_end"] = e2e
        summary["versions"] = bl.versions()
    print("BENCHJSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
