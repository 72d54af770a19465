"""HTTPS interception: cproxy against Squid's ssl_bump (Debian's squid-openssl), one run.

    .venv/bin/python bench/intercept_bench.py [--seconds 5] [--connections 4] [--rounds 2]
        [--h2-upstream on,off] [--parts hits,pages,connections]

Everything runs on loopback: an nginx TLS origin (127.0.0.1, a certificate from a
throw-away origin CA both proxies trust; HTTP/1.1 and HTTP/2 by ALPN, as most HTTPS
servers), cproxy with SSLInterception on and its own CA, once per ``--h2-upstream`` value
(``cproxy-h2``: ServerHTTP2 on, the default, so its requests to the origin go as HTTP/2
streams; ``cproxy-h1``: ServerHTTP2 off, HTTP/1.1 to the origin),
and Squid bumping every CONNECT with its own CA (``ssl_bump peek`` at step 1, ``bump``
after: client-first with the SNI, as cproxy does) and its certificate helper
(``security_file_certgen``) with its database in a temporary directory. Both log every
request (cproxy's AccessLog, Squid's access_log daemon) and otherwise keep their defaults.
The proxy runs on CPU 0, the origin and the clients on CPU 1 (``--no-pin`` to drop that).

Measured, per proxy, in the same run:

1. **kept-alive hits**: ``--connections`` client processes, each one intercepted
   connection (CONNECT, TLS handshake with the proxy's certificate) carrying 1 KiB cached
   responses back to back for ``--seconds``: requests per second and the proxy's CPU time
   per request (user + system, from /proc);
2. **a browser-like page load**: ``--objects`` 1 KiB objects fetched over ``--page-conns``
   new intercepted connections in parallel (objects shared out in turn), with the origin
   behind a relay adding ``--delay-ms`` to each request's trip and one more to each new
   connection (bench/netaux.py relay, as compare.py's pool figures); a first visit (every
   object a miss, no origin connection pooled yet), a second one on new connections
   (every object a hit) and a third with new objects while the first's origin
   connections are pooled ("warm"): wall time and the origin connections each visit
   opened (nginx's stub_status), in each of ``--rounds`` rounds (a relay of its own each
   round, so each first visit meets a new origin; the proxies in turn, their order
   rotated every round);
3. **a new intercepted connection**: ``--handshakes`` times, one after the other, CONNECT +
   handshake + one cached 1 KiB GET + close: median and p90 latency, proxy CPU per
   connection. For cproxy also with a leaf that is not cached (SSLLeafCacheSize 1 and two
   names taken in turn, so every handshake signs a new leaf) and without the GET.

The client side is Python (``ssl``), so requests per second here are bounded by the
clients as much as by the proxies; CPU per request is the proxy's own and does not depend
on the client. Squid 5 speaks HTTP/1.1 to origins whatever they offer. ``--parts`` runs
some of the three measurements only. The load average of the machine is printed at the
start and the end: the machine these run on is shared. Nothing is installed: missing tools
are named with their Debian packages.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

BODY_BYTES = 1024
# The origin's name: from /etc/hosts for both proxies (no DNS), and sent as SNI, which
# Squid's step-2 bump needs to put the name in the certificate it makes.
HOST = "localhost"
# Squid's certificate generator for ssl_bump (Debian's squid-openssl).
CERTGEN = "/usr/lib/squid/security_file_certgen"
# Files the origin has for the page-load figure (--objects may use fewer).
PAGE_OBJECTS_MAX = 100
# The measurements, in the order they run (--parts).
PARTS = ("hits", "pages", "connections")
# cproxy's name in the figures for each ServerHTTP2 value (--h2-upstream).
CPROXY_NAMES = {"on": "cproxy-h2", "off": "cproxy-h1"}
# The page load's visits: misses on a new origin, hits, misses with the origin connections
# pooled.
VISITS = ("first", "second", "warm")


# -- the origin ---------------------------------------------------------------------------


def start_tls_origin(tmp: Path, cert: Path, key: Path, cpu: str | None) -> bl.Server:
    """nginx over TLS on 127.0.0.1 (HTTP/1.1, and HTTP/2 by ALPN): /cache/1k, 1 KiB with
    max-age=3600, and /cache/objN for the page load."""
    files = tmp / "files"
    files.mkdir()
    (files / "1k").write_bytes(b"o" * BODY_BYTES)
    for i in range(PAGE_OBJECTS_MAX):
        (files / f"obj{i}").write_bytes(b"p" * BODY_BYTES)
    port = bl.free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        bl._nginx_common(tmp)
        + f"""
http {{
{bl._nginx_http_common(tmp)}
    http2_max_requests 1000000;
    default_type application/octet-stream;
    server {{
        listen {bl.LOOPBACK}:{port} ssl http2 backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /cache/ {{ alias {files}/; add_header Cache-Control "max-age=3600"; }}
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
    server = bl.Server("origin", port, proc, tmp, log)
    bl.wait_port(port, proc, what="TLS origin nginx")
    return server


# -- the proxies --------------------------------------------------------------------------


def start_squid_bump(
    tmp: Path, ports: tuple[int, ...], origin_ca: Path, cpu: str | None, cache_mb: int
) -> bl.Server:
    """Squid with ssl_bump, memory cache only, its CA (RSA 2048, made by openssl) and
    certificate database in ``tmp``. Its CA file is ``tmp/squid-ca.pem``."""
    ca_cert, ca_key = tmp / "squid-ca.pem", tmp / "squid-ca.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=squid bench CA", "-keyout", str(ca_key), "-out", str(ca_cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    certgen = CERTGEN
    db = tmp / "ssl_db"
    subprocess.run([certgen, "-c", "-s", str(db), "-M", "16MB"], check=True, timeout=60)
    port = bl.free_port()
    conf = f"""
http_port {bl.LOOPBACK}:{port} ssl-bump tls-cert={ca_cert} tls-key={ca_key} \
    generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program {certgen} -s {db} -M 16MB
sslcrtd_children 4 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile={origin_ca}
workers 1
cache_mem {cache_mb} MB
maximum_object_size_in_memory 2 MB
memory_cache_mode always
acl bench_ssl_ports port 443 {" ".join(str(p) for p in ports)}
acl bench_connect method CONNECT
http_access deny bench_connect !bench_ssl_ports
http_access allow localhost
http_access deny all
"""
    return bl.run_squid(
        tmp, port, conf, cpu, f"daemon:{tmp}/access.log squid", extra={"ca": ca_cert}
    )


def start_cproxy_intercepting(
    tmp: Path, ports: tuple[int, ...], origin_ca: Path, cpu: str | None, cache_mb: int, **more: str
) -> bl.Server:
    from cproxy.intercept.ca import create_ca

    ca_dir = tmp / f"cproxy-ca-{bl.free_port()}"
    ca = create_ca(ca_dir)
    server = bl.start_cproxy(
        cache_mb,
        ports,
        cpu,
        access_log=True,
        SSLInterception="on",
        SSLCACertFile=ca.cert_path,
        SSLCAKeyFile=ca.key_path,
        ServerSSLCAFile=str(origin_ca),
        **more,
    )
    server.extra["ca"] = Path(ca.cert_path)
    return server


# -- the clients --------------------------------------------------------------------------


def open_intercepted(
    proxy_port: int, host: str, origin_port: int, ctx: ssl.SSLContext
) -> ssl.SSLSocket:
    sock = socket.create_connection((bl.LOOPBACK, proxy_port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        f"CONNECT {host}:{origin_port} HTTP/1.1\r\nHost: {host}:{origin_port}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            raise ConnectionError("proxy closed after CONNECT")
        head += data
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise ConnectionError(head.decode("latin-1").splitlines()[0])
    return ctx.wrap_socket(sock, server_hostname=host)


def one_get(tls: ssl.SSLSocket, request: bytes, buf: bytearray) -> str:
    """Send ``request``, read its response (Content-Length framed); returns the head."""
    tls.sendall(request)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end != -1:
            head = bytes(buf[:end]).decode("latin-1")
            length = next(
                int(line.split(":", 1)[1])
                for line in head.split("\r\n")
                if line.lower().startswith("content-length:")
            )
            total = end + 4 + length
            while len(buf) < total:
                data = tls.recv(65536)
                if not data:
                    raise ConnectionError("closed mid-response")
                buf += data
            del buf[:total]
            return head
        data = tls.recv(65536)
        if not data:
            raise ConnectionError("closed before a response")
        buf += data


def _hits_worker(
    proxy_port: int, origin_port: int, ca: str, seconds: float, start: float, out: object
) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    host = HOST
    request = f"GET /cache/1k HTTP/1.1\r\nHost: {host}:{origin_port}\r\n\r\n".encode()
    tls = open_intercepted(proxy_port, host, origin_port, ctx)
    buf = bytearray()
    one_get(tls, request, buf)
    while time.time() < start:
        time.sleep(0.001)  # all workers begin together (pacing, not synchronisation)
    count = reconnects = 0
    end = start + seconds
    while time.time() < end:
        head = one_get(tls, request, buf)
        count += 1
        if "\r\nconnection: close" in head.lower():
            # The proxy's limit of requests per connection (cproxy's MaxPersistRequest):
            # a browser opens the next one, with a handshake, and so do we.
            tls.close()
            tls = open_intercepted(proxy_port, host, origin_port, ctx)
            reconnects += 1
    tls.close()
    out.put((count, reconnects))  # type: ignore[attr-defined]


def measure_hits(proxy: bl.Server, origin_port: int, args: argparse.Namespace) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start = time.time() + 1.0
    workers = [
        multiprocessing.Process(
            target=_hits_worker,
            args=(proxy.port, origin_port, str(proxy.extra["ca"]), args.seconds, start, queue),
        )
        for _ in range(args.connections)
    ]
    for w in workers:
        w.start()
        if args.cpu_load is not None:
            subprocess.run(["taskset", "-p", "-c", args.cpu_load, str(w.pid)], capture_output=True)
    while time.time() < start:
        time.sleep(0.001)
    cpu0 = proxy.cpu_s()
    got = [queue.get(timeout=args.seconds + 60) for _ in workers]
    cpu1 = proxy.cpu_s()
    for w in workers:
        w.join(30)
    n = sum(count for count, _ in got)
    return {
        "rps": n / args.seconds,
        "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / max(n, 1),
        "n": n,
        "reconnects": sum(r for _, r in got),
    }


def measure_connections(
    proxy: bl.Server, origin_port: int, n: int, names: tuple[str, ...], with_get: bool
) -> dict:
    ctx = ssl.create_default_context(cafile=str(proxy.extra["ca"]))
    latencies = []
    cpu0 = proxy.cpu_s()
    for i in range(n):
        host = names[i % len(names)]
        t0 = time.perf_counter()
        tls = open_intercepted(proxy.port, host, origin_port, ctx)
        if with_get:
            request = f"GET /cache/1k HTTP/1.1\r\nHost: {host}:{origin_port}\r\n\r\n".encode()
            one_get(tls, request, bytearray())
        tls.close()
        latencies.append(time.perf_counter() - t0)
    cpu1 = proxy.cpu_s()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(len(latencies) * 0.9)] * 1000,
        "cpu_ms_per_conn": (cpu1 - cpu0) * 1000 / n,
    }


def origin_accepts(origin_port: int, origin_ca: Path) -> int:
    """nginx's accepted-connection counter, asked over TLS (this query's own included)."""
    import http.client

    ctx = ssl.create_default_context(cafile=str(origin_ca))
    conn = http.client.HTTPSConnection(HOST, origin_port, timeout=10, context=ctx)
    try:
        conn.request("GET", "/nginx_status", headers={"Connection": "close"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return int(text.splitlines()[2].split()[0])


def page_load(
    proxy: bl.Server, relay_port: int, tag: str, args: argparse.Namespace
) -> tuple[float, list[str]]:
    """One visit: ``args.objects`` objects over ``args.page_conns`` new intercepted
    connections to the relay, in parallel. Returns (seconds, the heads' cache verdicts)."""
    import threading

    ctx = ssl.create_default_context(cafile=str(proxy.extra["ca"]))
    paths = [f"/cache/obj{i}?v={tag}" for i in range(args.objects)]
    shares = [paths[i :: args.page_conns] for i in range(args.page_conns)]
    heads: list[str] = []
    errors: list[BaseException] = []

    def connection(share: list[str]) -> None:
        try:
            tls = open_intercepted(proxy.port, HOST, relay_port, ctx)
            buf = bytearray()
            for path in share:
                request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{relay_port}\r\n\r\n"
                heads.append(one_get(tls, request.encode(), buf))
            tls.close()
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=connection, args=(sh,)) for sh in shares if sh]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, heads


def _verdict(head: str) -> str:
    """hit or miss, from cproxy's Cache-Status or Squid's X-Cache."""
    lower = head.lower()
    if "cache-status:" in lower:
        return "hit" if "; hit" in lower else "miss"
    return "hit" if "x-cache: hit" in lower else "miss"


def measure_page_loads(
    proxies: dict[str, bl.Server],
    origin_port: int,
    relay_ports: list[int],
    origin_ca: Path,
    args: argparse.Namespace,
) -> dict[str, list[dict]]:
    """Each proxy's visits in each of ``args.rounds`` rounds: proxy name -> one dict per
    round (visit -> ms, origin_conns, hits). Round r goes through relay r, an origin the
    proxies have not met yet, so its first visit finds no pooled connection (a browser's
    first visit to a site); "first" and "second" are the issue's two visits, "warm" a third
    one with new objects (all misses) while the first's origin connections are pooled."""
    out: dict[str, list[dict]] = {name: [] for name in proxies}
    names = list(proxies)
    for proxy in proxies.values():
        # One intercepted GET first, to the origin's own port (another origin than the
        # relay's, so nothing pooled for it): the proxy has its leaf for the name made and
        # its code warm, as after the other measurements, and round 1 is like the rest.
        measure_connections(proxy, origin_port, 1, (HOST,), with_get=True)
    for rnd in range(args.rounds):
        # Rotate the order each round, so no proxy always follows the same one.
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            proxy = proxies[name]
            figures = {}
            for visit in VISITS:
                before = origin_accepts(origin_port, origin_ca)
                tag = f"{name}-{rnd}" + ("-warm" if visit == "warm" else "")
                seconds, heads = page_load(proxy, relay_ports[rnd], tag, args)
                opened = origin_accepts(origin_port, origin_ca) - before - 1
                hits = sum(_verdict(h) == "hit" for h in heads)
                figures[visit] = {"ms": seconds * 1000, "origin_conns": opened, "hits": hits}
            out[name].append(figures)
            print(
                f"round {rnd + 1} page load {name:<9} "
                + "  ".join(
                    f"{visit} {f['ms']:6.1f} ms {f['hits']:2d} hits {f['origin_conns']} conns"
                    for visit, f in figures.items()
                ),
                flush=True,
            )
    return out


# -- the run ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="each kept-alive hit run")
    p.add_argument("--connections", type=int, default=4, help="client processes")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--handshakes", type=int, default=200, help="new connections per figure")
    p.add_argument("--objects", type=int, default=20, help="objects of the page load")
    p.add_argument("--page-conns", type=int, default=6, help="connections of the page load")
    p.add_argument("--delay-ms", type=float, default=25.0, help="the relay's delay")
    p.add_argument("--cache-mb", type=int, default=64)
    p.add_argument("--no-pin", action="store_true", help="do not pin proxy/load to CPUs")
    p.add_argument(
        "--h2-upstream",
        default="on,off",
        help="cproxy's ServerHTTP2, one cproxy per value (on: cproxy-h2, off: cproxy-h1)",
    )
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"which measurements, of {','.join(PARTS)}"
    )
    args = p.parse_args()
    args.h2_upstream = [v.strip() for v in args.h2_upstream.split(",") if v.strip()]
    if not args.h2_upstream or set(args.h2_upstream) - {"on", "off"}:
        p.error("--h2-upstream takes on, off or on,off")
    args.parts = [v.strip() for v in args.parts.split(",") if v.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        p.error(f"--parts takes some of {','.join(PARTS)}")
    args.cpu_proxy, args.cpu_load = (None, None) if args.no_pin else ("0", "1")
    return args


def _loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def main() -> int:
    args = parse_args()
    bl.require(tools=["nginx", "squid", "taskset", "openssl"], modules=["trustme"])
    if not Path(CERTGEN).exists():
        print(
            f"missing program: {CERTGEN} (Squid's certificate helper for ssl_bump). "
            "Install with: apt-get install squid-openssl",
            file=sys.stderr,
        )
        return 2
    import trustme  # the origin's throw-away CA (a test dependency of cproxy)

    tmp = bl.make_tmp("intercept-bench")
    servers: list[bl.Server] = []
    try:
        origin_ca = trustme.CA()
        origin_cert = origin_ca.issue_cert("127.0.0.1", "localhost")
        ca_pem, cert_pem, key_pem = tmp / "origin-ca.pem", tmp / "origin.pem", tmp / "origin.key"
        origin_ca.cert_pem.write_to_path(str(ca_pem))
        origin_cert.private_key_pem.write_to_path(str(key_pem))
        cert_pem.write_bytes(b"".join(b.bytes() for b in origin_cert.cert_chain_pems))
        origin_tmp = bl.make_tmp("intercept-origin")
        origin = start_tls_origin(origin_tmp, cert_pem, key_pem, args.cpu_load)
        servers.append(origin)
        relay_ports = []
        for _ in range(args.rounds if "pages" in args.parts else 0):
            relay_port = bl.free_port()
            relay = bl.start_aux(
                ["relay", str(relay_port), str(origin.port), str(args.delay_ms)],
                relay_port,
                cpu=args.cpu_load,
            )
            servers.append(relay)
            relay_ports.append(relay_port)
        ports = (origin.port, *relay_ports)
        print(f"load average at the start: {_loadavg()}", flush=True)
        print(f"cproxy: {bl.cproxy_build(bl.deployed_tree())}", flush=True)
        proxies: dict[str, bl.Server] = {}
        for value in args.h2_upstream:
            proxies[CPROXY_NAMES[value]] = start_cproxy_intercepting(
                tmp, ports, ca_pem, args.cpu_proxy, args.cache_mb, ServerHTTP2=value
            )
        proxies["squid"] = start_squid_bump(
            bl.make_tmp("squid-bump"), ports, ca_pem, args.cpu_proxy, args.cache_mb
        )
        servers += proxies.values()
        cproxies = [name for name in proxies if name != "squid"]
        results: dict[str, list[dict]] = {name: [] for name in proxies}
        if "hits" in args.parts:
            for rnd in range(args.rounds):
                for name, proxy in proxies.items():
                    r = measure_hits(proxy, origin.port, args)
                    results[name].append(r)
                    print(
                        f"round {rnd + 1} hits {name:<9} {r['rps']:8,.0f} req/s "
                        f"{r['cpu_us_per_req']:7.1f} us CPU/request "
                        f"({r['reconnects']} new connections at the proxy's request)",
                        flush=True,
                    )
        pages = {}
        if "pages" in args.parts:
            pages = measure_page_loads(proxies, origin.port, relay_ports, ca_pem, args)
        conns = {}
        if "connections" in args.parts:
            for name, proxy in proxies.items():
                conns[name] = measure_connections(
                    proxy, origin.port, args.handshakes, (HOST,), with_get=True
                )
            for name in cproxies:
                proxies[name].stop()  # one CPU for the next one
            fresh = start_cproxy_intercepting(
                tmp, ports, ca_pem, args.cpu_proxy, args.cache_mb, SSLLeafCacheSize="1"
            )
            servers.append(fresh)
            names = ("a.bench.test", "b.bench.test")
            conns["cproxy, cached leaf, no GET"] = measure_connections(
                fresh, origin.port, args.handshakes, names[:1], with_get=False
            )
            conns["cproxy, new leaf each, no GET"] = measure_connections(
                fresh, origin.port, args.handshakes, names, with_get=False
            )
        if results["squid"]:
            print()
            print("kept-alive intercepted connections, 1 KiB cached responses (median of rounds):")
            rps = {n: statistics.median(r["rps"] for r in rs) for n, rs in results.items()}
            cpu = {
                n: statistics.median(r["cpu_us_per_req"] for r in rs) for n, rs in results.items()
            }
            for name in results:
                print(f"  {name:<9} {rps[name]:8,.0f} req/s  {cpu[name]:7.1f} us CPU/request")
            for name in cproxies:
                print(
                    f"  {name}/squid: {rps[name] / rps['squid']:.2f}x req/s, "
                    f"{cpu['squid'] / cpu[name]:.2f}x requests per CPU-second"
                )
        if pages:
            print()
            print(
                f"page load: {args.objects} objects of 1 KiB over {args.page_conns} new "
                f"intercepted connections, origin behind a {args.delay_ms:g} ms relay "
                f"(median of {args.rounds} rounds; origin connections each round):"
            )
            for name, rounds in pages.items():
                for visit in VISITS:
                    all_ms = [r[visit]["ms"] for r in rounds]
                    hits = statistics.median(r[visit]["hits"] for r in rounds)
                    opened = ",".join(str(r[visit]["origin_conns"]) for r in rounds)
                    print(
                        f"  {name:<9} {visit:<6} visit {statistics.median(all_ms):7.1f} ms "
                        f"({min(all_ms):.0f}-{max(all_ms):.0f})  "
                        f"{hits:4.0f}/{args.objects} hits  origin connections {opened}"
                    )
        if conns:
            print()
            print(f"new intercepted connection ({args.handshakes} in a row):")
            for name, r in conns.items():
                print(
                    f"  {name:<30} p50 {r['p50_ms']:6.2f} ms  p90 {r['p90_ms']:6.2f} ms  "
                    f"{r['cpu_ms_per_conn']:6.2f} ms CPU/connection"
                )
        print()
        print(f"load average at the end: {_loadavg()}")
        print(f"versions: {bl.versions()}")
    finally:
        for server in reversed(servers):
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
