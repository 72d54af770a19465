"""Origin pool benchmarks (issue #11), side by side in one run, loopback only.

    python bench/pool_bench.py [--seconds 5] [--trials 5]

1. Standby: the first request after start to an origin behind a 25 ms relay
   (bench/netaux.py relay: a new connection costs one more trip), cproxy with
   ``ServerConnStandby`` listing the origin vs without.
2. The queue: 200 wrk connections against one origin, ``MaxConnPerServer 8`` vs no cap:
   requests/s, the origin's peak open connections (nginx stub_status, sampled), client
   latency p50/p99 (with the cap, mostly the wait in the queue).
3. TLS to the origin (nginx with a trustme certificate), pooled (ServerConnPool on) vs a
   fresh connection per request (off): requests/s and cproxy CPU per request under wrk,
   and the latency of one request behind the 25 ms relay (pooled: one trip; fresh: TCP
   plus the TLS handshake, three).

Prints one line per figure and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

RELAY_MS = 25


def first_request_ms(proxy_port: int, url: str) -> float:
    conn = http.client.HTTPConnection(bl.LOOPBACK, proxy_port, timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request("GET", url)
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{url}: status {resp.status}")
    finally:
        conn.close()
    return elapsed * 1000


def wait_standby(origin: bl.Server, before: int, count: int) -> None:
    """Until the origin has accepted ``count`` connections more than ``before`` (bounded)."""
    deadline = time.monotonic() + 10
    while bl.origin_accepts(origin) - 1 < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError("the standby connections were not opened")
        time.sleep(0.01)


def bench_standby(origin: bl.Server, trials: int) -> dict:
    relay_port = bl.free_port()
    relay = bl.start_aux(["relay", str(relay_port), str(origin.port), str(RELAY_MS)], relay_port)
    url = f"http://{bl.LOOPBACK}:{relay_port}/nostore/1k"
    out: dict[str, list[float]] = {"standby": [], "no standby": []}
    try:
        for _ in range(trials):
            for name in out:
                extra = {"ServerConnStandby": f"http://{bl.LOOPBACK}:{relay_port} 2"}
                before = bl.origin_accepts(origin)
                proxy = bl.start_cproxy(Caching="off", **(extra if name == "standby" else {}))
                try:
                    if name == "standby":
                        wait_standby(origin, before, 2)
                    out[name].append(first_request_ms(proxy.port, url))
                finally:
                    proxy.stop()
    finally:
        relay.stop()
    result = {name: statistics.median(values) for name, values in out.items()}
    for name, value in result.items():
        print(f"standby: first request behind {RELAY_MS} ms relay, {name}: {value:.1f} ms")
    return result


class PeakSampler:
    """Samples nginx's 'Active connections' (minus the sampler's own) until stopped."""

    def __init__(self, origin: bl.Server) -> None:
        self.origin = origin
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(bl.LOOPBACK, self.origin.port, timeout=5)
            try:
                conn.request("GET", "/nginx_status", headers={"Connection": "close"})
                text = conn.getresponse().read().decode()
                self.peak = max(self.peak, int(text.split()[2]) - 1)
            except OSError:
                pass
            finally:
                conn.close()
            self._stop.wait(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def bench_queue(origin: bl.Server, seconds: float, tmp: Path) -> dict:
    script = bl.write_wrk_script(
        tmp / "queue.lua", f"http://{bl.LOOPBACK}:{origin.port}/nostore/1k", unique_query=True
    )
    result = {}
    for name, cap in (("MaxConnPerServer 8", "8"), ("no cap", "0")):
        proxy = bl.start_cproxy(
            Caching="off",
            MaxConnPerServer=cap,
            MaxActiveThreads="400",
            ServerConnQueueTimeout="30 s",
        )
        try:
            with PeakSampler(origin) as sampler:
                r = bl.run_wrk(proxy.port, script, seconds, connections=200, threads=2)
        finally:
            proxy.stop()
        result[name] = {
            "rps": r["rps"],
            "errors": r["errors"],
            "origin_peak_connections": sampler.peak,
            "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000,
        }
        f = result[name]
        print(
            f"queue: 200 clients, {name}: {f['rps']:.0f} req/s, origin peak "
            f"{f['origin_peak_connections']} connections, latency p50 {f['p50_ms']:.1f} ms "
            f"p99 {f['p99_ms']:.1f} ms, errors {f['errors']}"
        )
    return result


def start_tls_origin(tmp: Path) -> tuple[bl.Server, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    otmp = bl.make_tmp("tlsorigin")
    files = otmp / "files"
    files.mkdir()
    files.chmod(0o755)
    (files / "1k").write_bytes(b"o" * 1024)
    (files / "1k").chmod(0o644)
    port = bl.free_port()
    conf = otmp / "nginx.conf"
    conf.write_text(
        bl._nginx_common(otmp)
        + f"""
http {{
{bl._nginx_http_common(otmp)}
    server {{
        listen {bl.LOOPBACK}:{port} ssl backlog=4096;
        ssl_certificate {cert_pem};
        ssl_certificate_key {key_pem};
        ssl_session_cache shared:tls:1m;
        location /nostore/ {{ alias {files}/; add_header Cache-Control "no-store"; }}
    }}
}}
"""
    )
    log = otmp / "stdout.log"
    proc = bl._spawn(
        [bl.tool("nginx"), "-p", str(otmp), "-e", str(otmp / "error.log"), "-c", str(conf)],
        "1",
        log,
    )
    server = bl.Server("tls-origin", port, proc, otmp, log)
    bl.wait_port(port, proc, what="TLS origin nginx")
    return server, ca_pem


def bench_tls(seconds: float, trials: int, tmp: Path) -> dict:
    origin, ca_pem = start_tls_origin(tmp)
    relay_port = bl.free_port()
    relay = bl.start_aux(["relay", str(relay_port), str(origin.port), str(RELAY_MS)], relay_port)
    # Origin-form requests: the proxy acts as the web server and maps them to the origin.
    script = tmp / "tls.lua"
    script.write_text('wrk.method = "GET"\nwrk.path = "/app/1k"\n' + bl._WRK_DONE)
    result = {}
    try:
        for name, pool in (("pooled TLS", "on"), ("fresh TLS", "off")):
            rules = f"Proxy /app/* https://{bl.LOOPBACK}:{origin.port}/nostore/*"
            proxy = bl.start_cproxy(
                Caching="off", ServerConnPool=pool, ServerSSLCAFile=str(ca_pem), MappingRules=rules
            )
            try:
                cpu0 = proxy.cpu_s()
                r = bl.run_wrk(proxy.port, script, seconds, connections=8)
                cpu = proxy.cpu_s() - cpu0
            finally:
                proxy.stop()
            relayed = f"Proxy /app/* https://{bl.LOOPBACK}:{relay_port}/nostore/*"
            proxy = bl.start_cproxy(
                Caching="off",
                ServerConnPool=pool,
                ServerSSLCAFile=str(ca_pem),
                MappingRules=relayed,
            )
            try:
                conn = http.client.HTTPConnection(bl.LOOPBACK, proxy.port, timeout=30)
                latencies = []
                for _ in range(trials + 1):
                    t0 = time.perf_counter()
                    conn.request("GET", "/app/1k")
                    resp = conn.getresponse()
                    resp.read()
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if resp.status != 200:
                        raise RuntimeError(f"TLS through the relay: status {resp.status}")
                conn.close()
            finally:
                proxy.stop()
            result[name] = {
                "rps": r["rps"],
                "errors": r["errors"],
                "cpu_us_per_request": cpu / max(r["requests"], 1) * 1e6,
                # The first request opens the connection either way; the rest show reuse.
                "relayed_ms": statistics.median(latencies[1:]),
            }
            f = result[name]
            print(
                f"tls: {name}: {f['rps']:.0f} req/s, {f['cpu_us_per_request']:.0f} µs cproxy CPU "
                f"per request, behind {RELAY_MS} ms relay {f['relayed_ms']:.1f} ms, "
                f"errors {f['errors']}"
            )
    finally:
        relay.stop()
        origin.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each wrk run")
    parser.add_argument("--trials", type=int, default=5, help="first-request trials")
    args = parser.parse_args()
    bl.require(tools=["nginx", "wrk", "taskset"], modules=["trustme"])
    tmp = bl.make_tmp("poolbench")
    origin = bl.start_origin()
    try:
        summary = {
            "standby": bench_standby(origin, args.trials),
            "queue": bench_queue(origin, args.seconds, tmp),
            "tls": bench_tls(args.seconds, args.trials, tmp),
        }
    finally:
        origin.stop()
    s, q, t = summary["standby"], summary["queue"], summary["tls"]
    print(
        "ratios: standby first request "
        f"{s['no standby'] / s['standby']:.2f}x faster; queue throughput "
        f"{q['MaxConnPerServer 8']['rps'] / q['no cap']['rps']:.2f}x of uncapped; pooled TLS "
        f"{t['pooled TLS']['rps'] / t['fresh TLS']['rps']:.2f}x the requests/s of fresh TLS, "
        f"{t['fresh TLS']['cpu_us_per_request'] / t['pooled TLS']['cpu_us_per_request']:.2f}x "
        "less CPU per request"
    )
    print("BENCHJSON " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
