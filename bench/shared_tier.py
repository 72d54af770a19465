"""The shared cache tier (SharedCache) measured: two cproxy nodes, one Redis, a WAN origin.

    python bench/shared_tier.py [--samples 200] [--urls 2000] [--requests 6000]

Everything runs on this machine, on loopback: nginx as the origin (bench/benchlib.py),
the 25 ms relay of bench/netaux.py in front of it (a WAN link), Debian's redis-server
(maxmemory 64 MB, allkeys-lru), and two cproxy processes.

1. Latency (median of --samples, each on a fresh URL): a miss (through the relay), a
   hit from the shared tier (fetched through node A, asked of node B), and a hit from
   the in-process tier (the same URL asked of node B again).
2. A Zipf workload (exponent 1.0 over --urls URLs, --requests requests spread at random
   over the two nodes by 8 clients): origin requests and hit ratio with a shared tier and
   with two separate caches, side by side in one run.

Prints one table and a JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchlib as bl

# Checked before the imports below need them: a clear message, not a ModuleNotFoundError.
bl.require(tools=["nginx", "redis-server", "redis-cli"], modules=["redis"])

import redis as redis_py  # noqa: E402

from cproxy.cache.shared import entry_key  # noqa: E402
from cproxy.cache.urlkey import normalise_url  # noqa: E402

RELAY_MS = 25
ZIPF_S = 1.0
CLIENTS = 8


def start_redis() -> bl.Server:
    tmp = bl.make_tmp("redis")
    port = bl.free_port()
    log = tmp / "redis.log"
    cmd = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        bl.LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp),
        "--maxmemory",
        "64mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    server = bl.Server("redis", port, proc, tmp, log)
    bl.wait_port(port, proc, what="redis-server")
    return server


def origin_requests(origin: bl.Server) -> int:
    """nginx's request counter (this query included)."""
    conn = http.client.HTTPConnection(bl.LOOPBACK, origin.port, timeout=5)
    try:
        conn.request("GET", "/nginx_status", headers={"Connection": "close"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return int(text.splitlines()[2].split()[2])


class Client:
    """One persistent client connection to a proxy."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(bl.LOOPBACK, port, timeout=30)

    def get(self, url: str) -> float:
        started = time.perf_counter()
        self.conn.request("GET", url)
        resp = self.conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: status {resp.status}")
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


def latencies(relay_port: int, redis: bl.Server, a: bl.Server, b: bl.Server, n: int) -> dict:
    ca, cb = Client(a.port), Client(b.port)
    store = redis_py.Redis(host=bl.LOOPBACK, port=redis.port)
    miss, shared, local = [], [], []
    try:
        for i in range(n):
            url = f"http://{bl.LOOPBACK}:{relay_port}/cache/1k?lat={i}"
            miss.append(ca.get(url))
            deadline = time.monotonic() + 5
            while not store.exists(entry_key("cproxy", normalise_url(url))):  # queued write
                if time.monotonic() > deadline:
                    raise RuntimeError("the shared-tier write did not land")
                time.sleep(0.001)
            shared.append(cb.get(url))
            local.append(cb.get(url))
    finally:
        ca.close()
        cb.close()
    return {
        "miss_ms": statistics.median(miss) * 1000,
        "shared_hit_ms": statistics.median(shared) * 1000,
        "in_process_hit_ms": statistics.median(local) * 1000,
    }


def zipf_sequence(urls: int, requests: int, seed: int) -> list[tuple[int, int]]:
    """(node 0 or 1, URL rank) pairs: ranks Zipf-distributed, nodes at random."""
    rng = random.Random(seed)
    weights = [1 / (rank**ZIPF_S) for rank in range(1, urls + 1)]
    ranks = rng.choices(range(urls), weights=weights, k=requests)
    return [(rng.randrange(2), rank) for rank in ranks]


def zipf_run(origin: bl.Server, relay_port: int, ports: list[int], seq: list, tag: str) -> dict:
    before = origin_requests(origin)
    work = list(seq)
    lock = threading.Lock()

    def client() -> None:
        conns = [Client(p) for p in ports]
        try:
            while True:
                with lock:
                    if not work:
                        return
                    node, rank = work.pop()
                conns[node].get(f"http://{bl.LOOPBACK}:{relay_port}/cache/1k?{tag}={rank}")
        finally:
            for c in conns:
                c.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    fetched = origin_requests(origin) - before - 1  # less this query
    return {
        "origin_requests": fetched,
        "hit_ratio": 1 - fetched / len(seq),
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()

    servers: list[bl.Server] = []
    try:
        origin = bl.start_origin(cpu=None)
        servers.append(origin)
        relay_port = bl.free_port()
        relay = bl.start_aux(
            ["relay", str(relay_port), str(origin.port), str(RELAY_MS)], relay_port, cpu=None
        )
        servers.append(relay)
        redis = start_redis()
        servers.append(redis)
        tier = {
            "SharedCache": f"redis://{bl.LOOPBACK}:{redis.port}/0",
            "SharedCacheTimeout": "200 ms",
        }
        shared_nodes = [bl.start_cproxy(cpu=None, **tier) for _ in range(2)]
        separate_nodes = [bl.start_cproxy(cpu=None) for _ in range(2)]
        servers += shared_nodes + separate_nodes
        time.sleep(0.5)  # let the shared nodes subscribe (not measured)

        lat = latencies(relay_port, redis, *shared_nodes, args.samples)
        seq = zipf_sequence(args.urls, args.requests, args.seed)
        shared = zipf_run(origin, relay_port, [s.port for s in shared_nodes], seq, "zs")
        separate = zipf_run(origin, relay_port, [s.port for s in separate_nodes], seq, "zp")
    finally:
        for server in reversed(servers):
            server.stop()

    print(f"Latency, median of {args.samples} (1 KiB body, {RELAY_MS} ms relay to the origin):")
    print(f"  miss (origin through the relay)  {lat['miss_ms']:8.2f} ms")
    print(f"  hit from the shared tier (Redis) {lat['shared_hit_ms']:8.2f} ms")
    print(f"  hit from the in-process tier     {lat['in_process_hit_ms']:8.2f} ms")
    print(
        f"Zipf (s={ZIPF_S}) over {args.urls} URLs, {args.requests} requests, 2 nodes, "
        f"{CLIENTS} clients:"
    )
    print(f"  {'':22}{'origin requests':>16}{'hit ratio':>11}{'seconds':>9}")
    for name, run in (("shared tier", shared), ("separate caches", separate)):
        print(
            f"  {name:22}{run['origin_requests']:>16}{run['hit_ratio']:>11.3f}"
            f"{run['seconds']:>9.1f}"
        )
    distinct = len({rank for _, rank in seq})
    print(f"  (distinct URLs, the fewest origin requests possible: {distinct})")
    ratio = separate["origin_requests"] / max(1, shared["origin_requests"])
    print(f"  separate / shared origin requests: {ratio:.2f}x")
    print("BENCHJSON " + json.dumps({"latency": lat, "shared": shared, "separate": separate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
