"""HTTP/2 to origins (issue #20): cproxy's HTTP/2 pool against its HTTP/1.1 pool and HAProxy.

    python bench/h2_bench.py [--seconds 5] [--warmup 1] [--rounds 1] [--clients 50,200]
                             [--delay-ms 25] [--proxies cproxy-h2,cproxy-h1,haproxy]

Set-up, all on 127.0.0.1:

- Origin: nginx serving HTTPS with HTTP/2 (`listen ... ssl http2`), a certificate from a
  throw-away CA (trustme), a 1 KiB file under /nostore/ with `Cache-Control: no-store`
  (every request goes to the origin), keep-alive limits raised so it never closes a
  connection itself; its stub_status "accepts" counts the connections it accepted.
- A WAN in front of it: bench/netaux.py's relay adds --delay-ms to every request's trip
  and one more to every new connection (so each TLS handshake costs several).
- Proxies, each fed absolute-form `GET https://127.0.0.1:RELAY/nostore/1k` by wrk:
  cproxy with its defaults (ServerHTTP2 on) and ServerSSLCAFile naming the test CA
  ("cproxy-h2"); the same with `ServerHTTP2 off` ("cproxy-h1"); HAProxy 2.6 as a reverse
  proxy whose one backend server is the relay with `ssl alpn h2` and `http-reuse always`
  ("haproxy", one thread). Every access log is on (cproxy's and HAProxy's to a file).
- Load: wrk, one thread, --clients connections; the proxy pinned to CPU 0, everything
  else to CPU 1. A warm-up run precedes each measured run.

Figures per proxy and client count: origin connections opened in all (warm-up and
measured run: the warm-up's burst of first requests opens what the pool keeps) and during
the measured run, latency p50/p99, requests/s, the proxy's CPU time per request (µs),
errors. ``--prewarm-one`` runs one client for a second first, so that the burst finds an
origin connection already open.

Everything binds and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as bl

PROXIES = ("cproxy-h2", "cproxy-h1", "haproxy")


def make_ca(tmp: Path) -> dict[str, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp / "ca.pem", "cert": tmp / "cert.pem", "key": tmp / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    for path in paths.values():
        path.chmod(0o644)
    return paths


def start_h2_origin(pki: dict[str, Path], cpu: str = "1") -> bl.Server:
    tmp = bl.make_tmp("h2origin")
    files = tmp / "files"
    files.mkdir()
    files.chmod(0o755)
    (files / "1k").write_bytes(b"o" * 1024)
    (files / "1k").chmod(0o644)
    port = bl.free_port()
    conf = tmp / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        bl._nginx_common(tmp)
        + user
        + f"""
http {{
{bl._nginx_http_common(tmp)}
    http2_max_requests 1000000;
    http2_max_concurrent_streams 256;
    default_type application/octet-stream;
    server {{
        listen {bl.LOOPBACK}:{port} ssl http2 backlog=4096;
        ssl_certificate {pki["cert"]};
        ssl_certificate_key {pki["key"]};
        location /nostore/ {{ alias {files}/; add_header Cache-Control "no-store"; }}
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""
    )
    log = tmp / "stdout.log"
    proc = bl._spawn(
        [bl.tool("nginx"), "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
        cpu,
        log,
    )
    server = bl.Server("origin", port, proc, tmp, log, {"ca": str(pki["ca"])})
    bl.wait_port(port, proc, what="origin nginx")
    return server


def origin_accepts(origin: bl.Server) -> int:
    """stub_status over HTTPS (the origin speaks nothing else)."""
    out = subprocess.run(
        [
            bl.tool("curl"),
            "-s",
            "--cacert",
            origin.extra["ca"],
            f"https://{bl.LOOPBACK}:{origin.port}/nginx_status",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return int(out.stdout.splitlines()[2].split()[0])


def start_haproxy(relay_port: int, ca: Path, cpu: str = "0") -> bl.Server:
    tmp = bl.make_tmp("haproxy")
    port = bl.free_port()
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        f"""
global
    maxconn 4000
    nbthread 1
    pidfile {tmp}/haproxy.pid
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 10s
    timeout client 60s
    timeout server 60s

frontend proxy
    bind {bl.LOOPBACK}:{port}
    default_backend origin

backend origin
    http-reuse always
    server o {bl.LOOPBACK}:{relay_port} ssl verify required ca-file {ca} alpn h2
"""
    )
    log = tmp / "haproxy.log"  # its access log (stdout)
    proc = bl._spawn([bl.tool("haproxy"), "-f", str(conf), "-db"], cpu, log)
    server = bl.Server("haproxy", port, proc, tmp, log)
    bl.wait_port(port, proc, what="haproxy")
    return server


def start_proxy(name: str, relay_port: int, ca: Path) -> bl.Server:
    if name == "haproxy":
        return start_haproxy(relay_port, ca)
    h2 = "on" if name == "cproxy-h2" else "off"
    return bl.start_cproxy(
        access_log=True,
        ServerSSLCAFile=str(ca),
        ServerHTTP2=h2,
        Caching="off",
        MaxActiveThreads="1000",
        MaxClientConnections="2000",
    )


def measure(
    proxy: bl.Server,
    origin: bl.Server,
    url: str,
    clients: int,
    seconds: float,
    warmup: float,
    prewarm_one: bool = False,
) -> dict:
    script = bl.write_wrk_script(proxy.tmp / "wrk.lua", url)
    before = origin_accepts(origin)
    if prewarm_one:
        bl.run_wrk(proxy.port, script, 1, connections=1)
    if warmup:
        bl.run_wrk(proxy.port, script, warmup, connections=clients)
    accepts = origin_accepts(origin)
    cpu = proxy.cpu_s()
    result = bl.run_wrk(proxy.port, script, seconds, connections=clients)
    cpu = proxy.cpu_s() - cpu
    after = origin_accepts(origin)
    opened = after - accepts - 1  # less the first query's own connection
    total = after - before - 2  # warm-up and run, less the queries' own connections
    return {
        "rps": result["rps"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "cpu_us_per_req": cpu / result["requests"] * 1e6 if result["requests"] else 0.0,
        "origin_conns": opened,
        "origin_conns_total": total,
        "errors": result["errors"],
        "requests": result["requests"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", default="50,200")
    parser.add_argument("--delay-ms", type=float, default=25.0)
    parser.add_argument("--proxies", default=",".join(PROXIES))
    parser.add_argument(
        "--prewarm-one",
        action="store_true",
        help="one client for a second before the warm-up (the origin connection exists "
        "before the burst of first requests)",
    )
    args = parser.parse_args(argv)
    bl.require(tools=["nginx", "wrk", "haproxy", "curl", "taskset"], modules=["trustme"])
    proxies = [p for p in args.proxies.split(",") if p]
    clients = [int(c) for c in args.clients.split(",")]
    pki_dir = Path(tempfile.mkdtemp(prefix="h2bench-pki-"))
    pki = make_ca(pki_dir)
    origin = start_h2_origin(pki)
    relay_port = bl.free_port()
    relay = bl.start_aux(
        ["relay", str(relay_port), str(origin.port), str(args.delay_ms)], relay_port
    )
    url = f"https://{bl.LOOPBACK}:{relay_port}/nostore/1k"
    results: dict[str, dict[int, dict]] = {}
    try:
        for n in clients:
            for name in proxies:
                proxy = start_proxy(name, relay_port, pki["ca"])
                try:
                    results.setdefault(name, {})[n] = measure(
                        proxy, origin, url, n, args.seconds, args.warmup, args.prewarm_one
                    )
                finally:
                    proxy.stop()
    finally:
        relay.stop()
        origin.stop()
        shutil.rmtree(pki_dir, ignore_errors=True)
    print(
        f"1 KiB no-store over HTTPS, origin behind a {args.delay_ms:g} ms relay, "
        f"{args.seconds:g} s runs"
    )
    columns = ("proxy", "clients", "conns total", "conns in run", "p50 ms", "p99 ms", "req/s")
    columns += ("CPU µs/req",)
    print(f"{columns[0]:<10}" + "".join(f"{c:>13}" for c in (*columns[1:], "errors")))
    for name in proxies:
        for n in clients:
            r = results[name][n]
            cells = (
                n,
                r["origin_conns_total"],
                r["origin_conns"],
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['rps']:.0f}",
                f"{r['cpu_us_per_req']:.0f}",
                r["errors"],
            )
            print(f"{name:<10}" + "".join(f"{c:>13}" for c in cells))
    out = bl.BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    (out / "h2_bench.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
