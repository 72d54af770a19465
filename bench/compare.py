"""cproxy against Squid and nginx as caching forward proxies (issue #5).

    python bench/compare.py [--rounds 3] [--seconds 5] [--warmup 1] [--connections 50]
                            [--scenarios hit_1k,...] [--proxies cproxy,squid,nginx]
                            [--pool-requests 100] [--delay-ms 25] [--no-pool]

One command runs the whole comparison, prints a table and writes the raw figures as JSON to
bench/results/ (gitignored). It installs nothing: it needs the Debian packages nginx-light
(or nginx), squid and wrk (and util-linux's taskset), and says so when one is missing.

Set-up, all on 127.0.0.1:

- Origin: nginx serving 1 KiB, 16 KiB and 1 MiB files under /cache/ with
  `Cache-Control: max-age=3600` and the same files under /nostore/ with
  `Cache-Control: no-store`; its keep-alive limits are raised so it never closes a pooled
  connection itself. Connections it accepts are counted with nginx's stub_status.
- Proxies, each a forward proxy fed absolute-form requests, each with a 64 MB memory cache
  (--cache-mb):
  cproxy (`python -m cproxy -c FILE`, as the README installs it: the compiled build, made
  once per source digest under bench/results/builds, or the sources as pure Python with
  CPROXY_COMPILE=0; default directive values except port, no admin listener,
  CacheMemory, ConnectPorts, and AccessLog a file in its temp dir);
  Squid (memory cache only, no cache_dir, one process run in the foreground with -N,
  `maximum_object_size_in_memory 2 MB`, `http_access allow localhost`, the tunnel's port
  in its SSL ports, pid file and logs in a temp dir, the access log written by its
  log_file_daemon helper in the native format, as Debian's default squid.conf has it);
  nginx as a caching proxy: a true forward proxy (`proxy_pass http://$http_host$request_uri`)
  needs a `resolver`; since the benchmark's origin is fixed, nginx instead proxies to an
  `upstream` block pointing at the origin (`proxy_pass http://origin_upstream$request_uri`,
  keepalive 64) with `proxy_cache` in a temp dir. nginx cannot CONNECT without a third-party
  module: its tunnel figures are n/a. nginx logs the combined format to a file in its temp
  dir. --no-access-log turns every proxy's access log off (the toy and floor never log).
- Load: wrk with a Lua script that sends absolute-form requests, 50 connections, one thread.
  The proxy runs on CPU 0 (taskset; nginx with `worker_processes 1`, its master started
  under taskset so the worker inherits it), wrk, the origin and the helpers on CPU 1.
  Rounds are interleaved (cproxy, Squid, nginx, cproxy, Squid, nginx, ...) and the median
  over rounds is reported; each run is preceded by a warm-up run (fills the cache and the
  origin connection pools) that is not measured.

Scenarios: cache hits of 1 KiB, 16 KiB and 1 MiB; a 1 KiB hit with ten browser-like
request headers; 1 KiB `no-store` (every request goes to the origin, over the pool); a
CONNECT tunnel moving bulk data from a TCP source (bench/netaux.py), measured in MB/s by a
small client reading for --seconds. Figures: requests/s, latency p50 and p99, errors
(non-2xx/3xx and socket errors, from wrk), origin connections opened during the measured
run, the proxy's CPU time per request (utime+stime from /proc, summed over its processes)
and its peak RSS (VmHWM, summed over its processes), and the ratios cproxy/Squid and
cproxy/nginx taken within one round.

Pooling under latency: the kernel has no netem, so a relay of our own (bench/netaux.py
relay) sits between the proxies and the origin and adds --delay-ms to every request's trip
and one more --delay-ms to every new connection, as a WAN would. A sequential client sends
--pool-requests no-store requests per round through cproxy with `ServerConnPool on`, then
`off`, and through Squid with `server_persistent_connections on`, then `off`; the median
latencies are compared.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib as bl

PROXIES = ("cproxy", "squid", "nginx")
# Not run unless asked for (--proxies): "toy" is bench/toy_proxy.py, the floor of a gevent
# caching proxy (hits); "floor" is bench/passthrough_proxy.py, the floor of a pooled gevent
# miss (it caches nothing, so only its no-store row means anything); "base" is cproxy from
# another checkout (--base DIR, say a `git worktree` of an older
# commit), for an A/B comparison of a change within one run; "nolog" is this cproxy with
# its access log off (what the log line costs, in the same run).
EXTRA_PROXIES = ("toy", "floor", "base", "nolog")


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    headers: dict[str, str] | None = None
    tunnel: bool = False


SCENARIOS = (
    Scenario("hit_1k", "/cache/1k"),
    Scenario("hit_16k", "/cache/16k"),
    Scenario("hit_1m", "/cache/1m"),
    Scenario("hit_1k_browser", "/cache/1k", bl.BROWSER_HEADERS),
    Scenario("nostore_1k", "/nostore/1k"),
    Scenario("tunnel", "", tunnel=True),
)

# From issue #5: earlier measurements on this 2-core machine, 50 connections (requests/s).
REFERENCE = {
    ("hit_1k", "nginx"): 38_000,
    ("hit_1k", "squid"): 31_000,
    ("nostore_1k", "nginx"): 30_000,
    ("nostore_1k", "squid"): 8_800,
}
# Issue #5's targets for cproxy: (scenario, other proxy) -> least requests/s ratio.
TARGETS = {
    ("hit_1k", "squid"): 1.2,
    ("hit_1k", "nginx"): 1.0,
    ("hit_16k", "squid"): 2.0,
    ("hit_1m", "squid"): 3.0,
    ("hit_1k_browser", "squid"): 1.2,
    ("nostore_1k", "squid"): 1.5,
}
RSS_TARGET = 1.5  # cproxy peak RSS <= 1.5 x Squid's
POOL_TARGET = 0.55  # pooled miss median <= 0.55 x unpooled


def measure_wrk(
    proxy: bl.Server, origin: bl.Server, script: Path, args: argparse.Namespace
) -> dict:
    if args.warmup > 0:
        bl.run_wrk(proxy.port, script, args.warmup, args.connections, args.cpu_load)
    accepts = bl.origin_accepts(origin)
    user, system = proxy.cpu_times()
    r = bl.run_wrk(proxy.port, script, args.seconds, args.connections, args.cpu_load)
    user2, system2 = proxy.cpu_times()
    r["cpu_s"] = (user2 - user) + (system2 - system)
    r["cpu_kernel_share"] = (system2 - system) / r["cpu_s"] if r["cpu_s"] else None
    # minus 1: the first stub_status query's own connection
    r["origin_conns"] = bl.origin_accepts(origin) - accepts - 1
    r["cpu_us_per_req"] = r["cpu_s"] / r["requests"] * 1e6 if r["requests"] else None
    r["peak_rss_kib"] = proxy.peak_rss_kib()
    return r


def measure_tunnel(proxy: bl.Server | None, source_port: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(bl.BENCH_DIR / "netaux.py"),
        "tunnel",
        str(proxy.port if proxy else 0),
        str(source_port),
        str(args.seconds),
    ]
    if args.cpu_load is not None:
        cmd = ["taskset", "-c", args.cpu_load, *cmd]
    cpu = proxy.cpu_s() if proxy else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
    if out.returncode != 0:
        return {"error": (out.stdout + out.stderr).strip()[-500:]}
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if proxy:
        r["cpu_s"] = proxy.cpu_s() - cpu
        r["cpu_s_per_gb"] = r["cpu_s"] / (r["bytes"] / 1e9) if r["bytes"] else None
        r["peak_rss_kib"] = proxy.peak_rss_kib()
    return r


def sequential_latencies(proxy_port: int, url: str, n: int) -> list[float]:
    """``n`` GETs one after another on one persistent client connection; seconds each."""
    conn = http.client.HTTPConnection(bl.LOOPBACK, proxy_port, timeout=30)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", url)  # absolute form; Host is taken from the URL
            resp = conn.getresponse()
            resp.read()
            out.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"{url} through port {proxy_port}: status {resp.status}")
    finally:
        conn.close()
    return out


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict], pool_runs: list[dict], peak_rss: dict[str, int]) -> dict:
    summary: dict = {
        "scenarios": {},
        "ratios": {},
        "cpu_ratios": {},
        "peak_rss_kib": peak_rss,
        "pool": {},
    }
    for sc in SCENARIOS:
        per_proxy = {}
        for name in (*PROXIES, *EXTRA_PROXIES):
            rs = [r for r in runs if r["scenario"] == sc.name and r["proxy"] == name]
            if not rs:
                continue
            if sc.tunnel:
                per_proxy[name] = {
                    "mb_per_s": median([r.get("mb_per_s") for r in rs]),
                    "cpu_s_per_gb": median([r.get("cpu_s_per_gb") for r in rs]),
                    "errors": [r["error"] for r in rs if "error" in r],
                }
            else:
                per_proxy[name] = {
                    "rps": median([r["rps"] for r in rs]),
                    "p50_ms": median([r["p50_us"] / 1000 for r in rs]),
                    "p99_ms": median([r["p99_us"] / 1000 for r in rs]),
                    "errors": sum(r["errors"] for r in rs),
                    "origin_conns_max": max(r["origin_conns"] for r in rs),
                    "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
                    "cpu_kernel_share": median([r["cpu_kernel_share"] for r in rs]),
                }
        base = [r for r in runs if r["scenario"] == sc.name and r["proxy"] == "direct"]
        if base:
            per_proxy["direct"] = {"mb_per_s": median([r.get("mb_per_s") for r in base])}
        summary["scenarios"][sc.name] = per_proxy
        key = "mb_per_s" if sc.tunnel else "rps"
        for other in ("squid", "nginx", *EXTRA_PROXIES):
            ratios = []
            for rnd in {r["round"] for r in runs}:
                mine = _value(runs, sc.name, "cproxy", rnd, key)
                theirs = _value(runs, sc.name, other, rnd, key)
                if mine is not None and theirs:
                    ratios.append(mine / theirs)
            if ratios:
                summary["ratios"][f"{sc.name}/{other}"] = statistics.median(ratios)
            mine_cpu = per_proxy.get("cproxy", {}).get("cpu_us_per_req")
            theirs_cpu = per_proxy.get(other, {}).get("cpu_us_per_req")
            if mine_cpu and theirs_cpu:
                # requests per CPU-second, cproxy over the other: robust on a busy machine
                summary["cpu_ratios"][f"{sc.name}/{other}"] = theirs_cpu / mine_cpu
    for label in sorted({p["label"] for p in pool_runs}):
        lat = [x for p in pool_runs if p["label"] == label for x in p["latencies_s"]]
        opened = [p["origin_conns"] for p in pool_runs if p["label"] == label]
        summary["pool"][label] = {
            "median_ms": statistics.median(lat) * 1000,
            "p90_ms": statistics.quantiles(lat, n=10)[-1] * 1000 if len(lat) > 1 else None,
            "requests": len(lat),
            "origin_conns": sum(opened),
        }
    return summary


def _value(runs: list[dict], scenario: str, proxy: str, rnd: int, key: str) -> float | None:
    for r in runs:
        if r["scenario"] == scenario and r["proxy"] == proxy and r["round"] == rnd:
            return r.get(key)
    return None


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def print_report(summary: dict, args: argparse.Namespace) -> list[str]:
    """Print the table and the targets; returns the failed targets."""
    print()
    builds = f"cproxy: {bl.cproxy_build(bl.deployed_tree())}"
    if args.base:
        builds += f"; base: {bl.cproxy_build(bl.deployed_tree(Path(args.base)))}"
    print(builds, "(CPROXY_COMPILE=0 measures the sources as pure Python)")
    print(
        f"{args.rounds} rounds x {args.seconds:g} s, {args.connections} connections, medians; "
        "proxy on CPU 0, load on CPU 1"
    )
    head = (
        f"{'scenario':<15} {'proxy':<7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'orig.conn':>9} {'CPU us/req':>10} {'kernel':>6} {'req/CPU-s':>9} {'cp/squid':>8} "
        f"{'cp/nginx':>8}"
    )
    print(head)
    print("-" * len(head))
    ratios = summary["ratios"]
    for sc in SCENARIOS:
        per_proxy = summary["scenarios"].get(sc.name, {})
        for name in (*PROXIES, *EXTRA_PROXIES, "direct"):
            if sc.tunnel:
                if name not in per_proxy and name != "nginx":
                    continue
                s = per_proxy.get(name)
                mbs = s["mb_per_s"] if s else None
                cpu = s.get("cpu_s_per_gb") if s else None
                rs = _fmt(ratios.get("tunnel/squid"), ".2f") if name == "cproxy" else ""
                print(
                    f"{sc.name:<15} {name:<7} {_fmt(mbs, ',.0f'):>9} MB/s"
                    f"{'':>30} {_fmt(cpu, '.2f'):>6} s/GB {'':>16} {rs:>8}"
                )
                continue
            s = per_proxy.get(name)
            if s is None:
                continue
            rsq = ratios.get(f"{sc.name}/squid") if name == "cproxy" else None
            rng = ratios.get(f"{sc.name}/nginx") if name == "cproxy" else None
            share = s["cpu_kernel_share"]
            print(
                f"{sc.name:<15} {name:<7} {s['rps']:>9,.0f} {s['p50_ms']:>8.2f} "
                f"{s['p99_ms']:>8.2f} {s['errors']:>7} {s['origin_conns_max']:>9} "
                f"{_fmt(s['cpu_us_per_req'], '.1f'):>10} "
                f"{_fmt(share * 100 if share is not None else None, '.0f'):>5}% "
                f"{_fmt(1e6 / s['cpu_us_per_req'] if s['cpu_us_per_req'] else None, ',.0f'):>9} "
                f"{_fmt(rsq, '.2f') if rsq else '':>8} {_fmt(rng, '.2f') if rng else '':>8}"
            )
    extra = {k: v for k, v in ratios.items() if k.split("/")[1] in EXTRA_PROXIES}
    if extra:
        print()
        print("cproxy over " + ", ".join(f"{k}: {v:.2f}" for k, v in extra.items()))
    print()
    rss = summary["peak_rss_kib"]
    print("peak RSS (VmHWM): " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in rss.items()))
    if summary["pool"]:
        print()
        print(f"no-store 1 KiB through a {args.delay_ms:g} ms relay, sequential client:")
        for label, p in summary["pool"].items():
            print(
                f"  {label:<22} median {p['median_ms']:7.2f} ms  p90 {_fmt(p['p90_ms'], '7.2f')}"
                f" ms  ({p['requests']} requests, {p['origin_conns']} origin connections)"
            )
    print()
    print(
        "reference (issue #5, earlier on this machine): "
        + ", ".join(f"{sc} {px} {v:,}/s" for (sc, px), v in REFERENCE.items())
    )
    failed = []
    print("targets (issue #5):")

    def check(label: str, ok: bool | None, detail: str) -> None:
        mark = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{mark}] {label}: {detail}")
        if ok is False:
            failed.append(label)

    cpu_ratios = summary["cpu_ratios"]
    for (scenario, other), least in TARGETS.items():
        r = ratios.get(f"{scenario}/{other}")
        rc = cpu_ratios.get(f"{scenario}/{other}")
        check(
            f"{scenario} cproxy/{other} >= {least}",
            None if r is None else r >= least,
            f"{_fmt(r, '.2f')} (requests per CPU-second: {_fmt(rc, '.2f')})",
        )
    ns = summary["scenarios"].get("nostore_1k", {}).get("cproxy")
    check(
        "nostore_1k: 0 origin connections opened after warm-up",
        None if ns is None else ns["origin_conns_max"] == 0,
        "n/a" if ns is None else str(ns["origin_conns_max"]),
    )
    if "cproxy" in rss and "squid" in rss:
        r = rss["cproxy"] / rss["squid"]
        check(f"peak RSS cproxy/squid <= {RSS_TARGET}", r <= RSS_TARGET, f"{r:.2f}")
    pool = summary["pool"]
    if "cproxy pool on" in pool and "cproxy pool off" in pool:
        r = pool["cproxy pool on"]["median_ms"] / pool["cproxy pool off"]["median_ms"]
        check(f"pooled/unpooled miss median <= {POOL_TARGET}", r <= POOL_TARGET, f"{r:.3f}")
    return failed


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="each measured run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each run")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--cache-mb", type=int, default=64, help="each proxy's memory cache")
    p.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    p.add_argument("--proxies", default=",".join(PROXIES))
    p.add_argument("--pool-requests", type=int, default=100, help="per proxy and round")
    p.add_argument("--delay-ms", type=float, default=25.0)
    p.add_argument("--no-pool", action="store_true", help="skip the pooling latency scenario")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--no-access-log",
        action="store_true",
        help="proxies without access logs (by default cproxy, Squid and nginx log, as deployed)",
    )
    p.add_argument("--base", help='checkout of the "base" proxy (with --proxies cproxy,base,...)')
    p.add_argument("--out", default=str(bl.BENCH_DIR / "results"))
    args = p.parse_args()
    args.cpu_proxy, args.cpu_load = (None, None) if args.no_pin else ("0", "1")
    names = {s.name for s in SCENARIOS}
    args.scenario_list = [s for s in SCENARIOS if s.name in args.scenarios.split(",")]
    unknown = set(args.scenarios.split(",")) - names
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.proxy_list = [x for x in args.proxies.split(",") if x]
    if set(args.proxy_list) - {*PROXIES, *EXTRA_PROXIES}:
        p.error(f"proxies are: {', '.join((*PROXIES, *EXTRA_PROXIES))}")
    if "base" in args.proxy_list and not args.base:
        p.error("--proxies base needs --base DIR")
    return args


def main() -> int:
    args = parse_args()
    bl.require_tools(
        ["nginx", "wrk", "taskset", *(["squid"] if "squid" in args.proxy_list else [])]
    )
    started = datetime.datetime.now().astimezone()
    servers: list[bl.Server] = []
    runs: list[dict] = []
    pool_runs: list[dict] = []
    cleanup: list[Path] = []
    try:
        origin = bl.start_origin(cpu=args.cpu_load)
        servers.append(origin)
        source_port = bl.free_port()
        source = bl.start_aux(["source", str(source_port)], source_port, cpu=args.cpu_load)
        servers.append(source)
        proxies: dict[str, bl.Server] = {}
        logs = not args.no_access_log
        for name in args.proxy_list:
            if name == "cproxy":
                proxies[name] = bl.start_cproxy(
                    args.cache_mb, (source_port,), args.cpu_proxy, access_log=logs
                )
            elif name == "base":
                proxies[name] = bl.start_cproxy(
                    args.cache_mb,
                    (source_port,),
                    args.cpu_proxy,
                    repo_dir=Path(args.base),
                    access_log=logs,
                )
            elif name == "nolog":
                proxies[name] = bl.start_cproxy(
                    args.cache_mb, (source_port,), args.cpu_proxy, access_log=False
                )
            elif name == "toy":
                proxies[name] = bl.start_toy(args.cpu_proxy)
            elif name == "floor":
                proxies[name] = bl.start_passthrough(args.cpu_proxy)
            elif name == "squid":
                proxies[name] = bl.start_squid(
                    args.cache_mb, (source_port,), args.cpu_proxy, access_log=logs
                )
            else:
                proxies[name] = bl.start_nginx_proxy(
                    origin.port, args.cache_mb, args.cpu_proxy, access_log=logs
                )
            servers.append(proxies[name])
        scripts_dir = Path(tempfile.mkdtemp(prefix="cproxy-bench-wrk-"))
        cleanup.append(scripts_dir)
        scripts = {
            sc.name: bl.write_wrk_script(
                scripts_dir / f"{sc.name}.lua",
                f"http://{bl.LOOPBACK}:{origin.port}{sc.path}",
                sc.headers,
            )
            for sc in args.scenario_list
            if not sc.tunnel
        }
        for rnd in range(args.rounds):
            for sc in args.scenario_list:
                if sc.tunnel:
                    r = measure_tunnel(None, source_port, args)
                    runs.append({"round": rnd, "scenario": sc.name, "proxy": "direct", **r})
                for name, proxy in proxies.items():
                    if sc.tunnel and name in ("nginx", "toy", "floor"):
                        continue  # nginx cannot CONNECT without a third-party module
                    if sc.tunnel:
                        r = measure_tunnel(proxy, source_port, args)
                        shown = f"{r.get('mb_per_s', 0):,.0f} MB/s {r.get('error', '')}"
                    else:
                        r = measure_wrk(proxy, origin, scripts[sc.name], args)
                        shown = (
                            f"{r['rps']:,.0f} req/s p50 {r['p50_us'] / 1000:.2f} ms "
                            f"errors {r['errors']} origin conns {r['origin_conns']}"
                        )
                    runs.append({"round": rnd, "scenario": sc.name, "proxy": name, **r})
                    print(f"round {rnd + 1} {sc.name:<15} {name:<7} {shown}", flush=True)
        peak_rss = {name: p.peak_rss_kib() for name, p in proxies.items()}
        if not args.no_pool and ("cproxy" in proxies or "squid" in proxies):
            pool_runs = run_pool_latency(args, origin, proxies, servers)
    finally:
        for s in reversed(servers):
            s.stop()
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)
    summary = summarise(runs, pool_runs, peak_rss)
    failed = print_report(summary, args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"compare-{started:%Y%m%d-%H%M%S}.json"
    record = {
        "started": started.isoformat(timespec="seconds"),
        "versions": bl.versions(),
        "args": {k: v for k, v in vars(args).items() if k != "scenario_list"},
        "runs": runs,
        "pool_runs": pool_runs,
        "summary": summary,
        "failed_targets": failed,
    }
    out.write_text(json.dumps(record, indent=1, default=str))
    print(f"\nraw figures: {out}")
    return 0


def run_pool_latency(
    args: argparse.Namespace,
    origin: bl.Server,
    proxies: dict[str, bl.Server],
    servers: list[bl.Server],
) -> list[dict]:
    relay_port = bl.free_port()
    relay = bl.start_aux(
        ["relay", str(relay_port), str(origin.port), str(args.delay_ms)],
        relay_port,
        cpu=args.cpu_load,
    )
    servers.append(relay)
    variants: list[tuple[str, bl.Server]] = []
    if "cproxy" in proxies:
        off = bl.start_cproxy(args.cache_mb, (), args.cpu_proxy, ServerConnPool="off")
        servers.append(off)
        variants += [("cproxy pool on", proxies["cproxy"]), ("cproxy pool off", off)]
    if "squid" in proxies:
        off = bl.start_squid(args.cache_mb, (), args.cpu_proxy, persistent=False)
        servers.append(off)
        variants += [("squid pconn on", proxies["squid"]), ("squid pconn off", off)]
    url = f"http://{bl.LOOPBACK}:{relay_port}/nostore/1k"
    out = []
    for rnd in range(args.rounds):
        for label, proxy in variants:
            accepts = bl.origin_accepts(origin)
            lat = sequential_latencies(proxy.port, url, args.pool_requests)
            opened = bl.origin_accepts(origin) - accepts - 1
            out.append({"round": rnd, "label": label, "latencies_s": lat, "origin_conns": opened})
            print(
                f"round {rnd + 1} pool latency {label:<16} median "
                f"{statistics.median(lat) * 1000:.2f} ms, {opened} origin connections",
                flush=True,
            )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
