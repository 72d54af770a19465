"""The shared cache tier (SharedCache) with Debian's redis-server and several cproxy nodes.

Each node is a cproxy of its own (its own runtime, in-process cache, gevent hub and
Redis connections) in a thread of the test process, so its counters can be read; the
Workers test runs cproxy as a separate process with two workers.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import requests
from redis.exceptions import ClusterDownError, RedisClusterException

from cproxy.cache.shared import entry_key
from cproxy.cache.urlkey import normalise_url
from cproxy.directives.types import RedisTarget
from cproxy.sharedtier.client import open_client
from tests import support
from tests.redisserver import RedisCluster, RedisServer, free_port
from tests.support import FakeClock, Origin, OriginHandler, ProxyThread, wait_for

# Generous: the machine is shared and loaded; a slower call would only count as a miss.
TIER = {"SharedCacheTimeout": "2 seconds", "SharedCacheRetry": "200 ms", "PurgeAccess": "127.0.0.1"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@contextlib.contextmanager
def nodes(
    url: str, count: int, *, subscribed: bool = True, **directives: str
) -> Iterator[list[ProxyThread]]:
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                ProxyThread(support.test_config(SharedCache=url, **{**TIER, **directives}))
            )
            for _ in range(count)
        ]
        for node in started:
            if subscribed:
                wait_for(lambda node=node: tier(node).subscribed, what="the node to subscribe")
        yield started


def tier(node: ProxyThread) -> Any:
    return node.runtime.cache.tier


def get(node: ProxyThread, url: str, **headers: str) -> requests.Response:
    proxies = {"http": node.url}
    return requests.get(url, proxies=proxies, headers=headers, timeout=30)


def origin_gets(origin: Origin, path: str) -> int:
    with origin.lock:
        return sum(1 for method, p, _, _ in origin.requests if method == "GET" and p == path)


def cacheable(h: OriginHandler) -> None:
    h.reply(200, f"body of {h.path}".encode(), {"Cache-Control": "max-age=300"})


def written(node: ProxyThread, count: int = 1) -> None:
    wait_for(lambda: tier(node).writes >= count, what="the shared-tier write")


def test_a_response_fetched_through_one_node_is_served_by_another(
    origin: Origin, redis_server: RedisServer
) -> None:
    origin.routes["/shared"] = cacheable
    with nodes(redis_server.url, 2) as (a, b):
        first = get(a, origin.url("/shared"))
        assert first.status_code == 200
        written(a)
        second = get(b, origin.url("/shared"))
        assert second.status_code == 200
        assert second.content == first.content == b"body of /shared"
        assert origin_gets(origin, "/shared") == 1
        assert tier(b).hits == 1
        # Copied in-process: B's next hit does not ask Redis.
        calls = tier(b).calls
        assert get(b, origin.url("/shared")).content == b"body of /shared"
        assert tier(b).calls == calls
        assert "hit" in second.headers["Cache-Status"]
        assert int(second.headers["Age"]) >= 0


def test_a_stored_partial_response_never_reaches_the_shared_tier(
    origin: Origin, redis_server: RedisServer
) -> None:
    """Issue #13 item 6: a 206 kept with a URL's parts is in-process only; other nodes get
    the whole response from the origin, never an empty or partial stored copy."""
    whole = bytes(range(256)) * 4

    def ranged(h: OriginHandler) -> None:
        fields = {"Cache-Control": "max-age=300", "ETag": '"p1"'}
        if h.headers.get("Range") == "bytes=0-9":
            fields["Content-Range"] = f"bytes 0-9/{len(whole)}"
            h.reply(206, whole[:10], fields)
        else:
            h.reply(200, whole, fields)

    origin.routes["/part"] = ranged
    origin.routes["/marker"] = cacheable
    with nodes(redis_server.url, 2) as (a, b):
        part = get(a, origin.url("/part"), Range="bytes=0-9")
        assert (part.status_code, part.content) == (206, whole[:10])
        assert part.headers["Cache-Status"].endswith("; stored")  # kept in A
        get(a, origin.url("/marker"))
        written(a)  # the marker's write; a part queued before it would make two
        assert tier(a).writes == 1
        full = get(b, origin.url("/part"))
        assert (full.status_code, full.content) == (200, whole)
        assert origin_gets(origin, "/part") == 2


def test_purge_through_one_node_is_honoured_by_the_others(
    origin: Origin, redis_server: RedisServer
) -> None:
    origin.routes["/purged"] = cacheable
    url = origin.url("/purged")
    key = normalise_url(url)
    with nodes(redis_server.url, 2) as (a, b):
        get(a, url)
        written(a)
        get(b, url)
        assert key in a.runtime.cache.store and key in b.runtime.cache.store
        purge = requests.request("PURGE", url, proxies={"http": b.url}, timeout=30)
        assert purge.status_code == 200
        started = time.monotonic()
        wait_for(lambda: key not in a.runtime.cache.store, what="A to drop its copy")
        # The documented bound is the pub/sub delivery time: well under a second here.
        assert time.monotonic() - started < 2.0
        assert not redis_server.client().exists(entry_key("cproxy", key))
        get(a, url)
        assert origin_gets(origin, "/purged") == 2


def test_an_unsafe_request_through_one_node_invalidates_on_every_node(
    origin: Origin, redis_server: RedisServer
) -> None:
    origin.routes["/doc"] = cacheable
    url = origin.url("/doc")
    key = normalise_url(url)
    with nodes(redis_server.url, 2) as (a, b):
        get(a, url)
        written(a)
        get(b, url)
        assert requests.post(url, data=b"x", proxies={"http": b.url}, timeout=30).ok
        wait_for(lambda: key not in a.runtime.cache.store, what="A to drop its copy")
        wait_for(lambda: not redis_server.client().exists(entry_key("cproxy", key)))
        get(a, url)
        assert origin_gets(origin, "/doc") == 2


def test_fifty_concurrent_requests_over_three_nodes_reach_the_origin_once(
    origin: Origin, redis_server: RedisServer
) -> None:
    release = threading.Event()

    def slow(h: OriginHandler) -> None:
        release.wait(10)  # hold the response until every client has asked
        cacheable(h)

    origin.routes["/hot"] = slow
    url = origin.url("/hot")
    with nodes(redis_server.url, 3) as three:
        results: list[requests.Response] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            response = get(three[i % 3], url)
            with lock:
                results.append(response)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        # Every node has its clients waiting: one for the origin, the rest for it.
        wait_for(lambda: origin_gets(origin, "/hot") >= 1, what="the first origin request")
        wait_for(
            lambda: sum(tier(n).lease_waits for n in three) == 2,
            what="the other two nodes to wait for the lease",
        )
        release.set()
        for thread in threads:
            thread.join(30)
        assert len(results) == 50
        assert all(r.status_code == 200 and r.content == b"body of /hot" for r in results)
        assert origin_gets(origin, "/hot") == 1


def test_vary_variants_are_shared(origin: Origin, redis_server: RedisServer) -> None:
    def varied(h: OriginHandler) -> None:
        lang = h.headers.get("Accept-Language", "none")
        h.reply(
            200,
            f"in {lang}".encode(),
            {"Cache-Control": "max-age=300", "Vary": "Accept-Language"},
        )

    origin.routes["/v"] = varied
    url = origin.url("/v")
    with nodes(redis_server.url, 2) as (a, b):
        assert get(a, url, **{"Accept-Language": "en"}).content == b"in en"
        assert get(a, url, **{"Accept-Language": "fr"}).content == b"in fr"
        written(a, 2)
        assert get(b, url, **{"Accept-Language": "fr"}).content == b"in fr"
        assert get(b, url, **{"Accept-Language": "en"}).content == b"in en"
        assert origin_gets(origin, "/v") == 2
        assert get(b, url, **{"Accept-Language": "de"}).content == b"in de"
        assert origin_gets(origin, "/v") == 3


def test_a_304_freshens_the_entry_for_every_node(origin: Origin, redis_server: RedisServer) -> None:
    clock = FakeClock()

    def validated(h: OriginHandler) -> None:
        # The origin's clock is the nodes' clock, as in a real deployment.
        h.date_time_string = lambda timestamp=None: formatdate(clock.now, usegmt=True)  # type: ignore[method-assign]
        if h.headers.get("If-None-Match") == '"v1"':
            h.reply(304, b"", {"ETag": '"v1"', "Cache-Control": "max-age=10"})
        else:
            h.reply(200, b"version 1", {"ETag": '"v1"', "Cache-Control": "max-age=10"})

    origin.routes["/e"] = validated
    url = origin.url("/e")
    with nodes(redis_server.url, 3) as (a, b, c):
        for node in (a, b, c):
            node.runtime.cache.clock = clock
        assert get(a, url).content == b"version 1"
        written(a)
        clock.advance(30)  # stale everywhere now
        served = get(b, url)  # B takes the stale entry from Redis and validates it
        assert served.content == b"version 1"
        assert "revalidated" in served.headers["Cache-Status"]
        written(b)
        conditional = [r for r in origin.requests if r[1] == "/e" and "If-None-Match" in r[2]]
        assert len(conditional) == 1
        fresh = get(c, url)  # C finds the freshened entry: fresh, no origin request
        assert fresh.content == b"version 1"
        assert len(origin.requests) == 2
        assert int(fresh.headers["Age"]) < 10


def test_a_value_written_into_the_namespace_by_hand_is_never_served(
    origin: Origin, redis_server: RedisServer
) -> None:
    origin.routes["/forged"] = cacheable
    origin.routes["/other"] = cacheable
    url = origin.url("/forged")
    key = entry_key("cproxy", normalise_url(url))
    with nodes(redis_server.url, 2) as (a, b):
        r = redis_server.client()
        # Garbage, an entry of another version, and a valid entry of another URL.
        get(a, origin.url("/other"))
        written(a)
        other = r.hgetall(entry_key("cproxy", normalise_url(origin.url("/other"))))
        (valid_for_other,) = other.values()
        r.hset(key, mapping={"x": b"forged body", "y": b"CPXE\x09" + valid_for_other[5:]})
        r.hset(key, "z", valid_for_other)
        response = get(b, url)
        assert response.content == b"body of /forged"
        assert origin_gets(origin, "/forged") == 1
        assert tier(b).malformed >= 3  # each look counts them
        # A value of the wrong Redis type is not served either, and breaks nothing.
        r.delete(key)
        r.set(key, b"a string, not a hash")
        assert b.runtime.cache.store.purge(normalise_url(url))
        errors = tier(b).errors
        assert get(b, url).content == b"body of /forged"
        assert origin_gets(origin, "/forged") == 2
        assert tier(b).errors > errors
        assert tier(b).breaker.state.value == "closed"  # Redis answered: it is not down


def test_stopping_redis_loses_no_request_and_the_tier_comes_back(
    origin: Origin, redis_server: RedisServer
) -> None:
    origin.routes["/after"] = cacheable
    with nodes(redis_server.url, 2) as (a, b):
        failures: list[str] = []
        stop = threading.Event()
        count = [0]

        def client(node: ProxyThread, name: str) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    response = get(node, origin.url(f"/{name}/{i % 20}"))
                    if response.status_code != 200:
                        failures.append(f"{name} {i}: {response.status_code}")
                except requests.RequestException as exc:
                    failures.append(f"{name} {i}: {exc}")
                count[0] += 1

        threads = [
            threading.Thread(target=client, args=(node, name))
            for node, name in ((a, "a"), (b, "b"))
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: count[0] >= 20, what="some traffic")
        redis_server.stop()
        wait_for(lambda: tier(a).breaker.state.value != "closed", what="A's breaker to open")
        served = count[0]
        wait_for(lambda: count[0] >= served + 40, what="traffic without Redis")
        redis_server.start()
        for node in (a, b):
            wait_for(lambda node=node: tier(node).subscribed, what="the subscription back")
        served = count[0]
        wait_for(lambda: count[0] >= served + 20, what="traffic with Redis back")
        stop.set()
        for thread in threads:
            thread.join(30)
        assert failures == []
        # The tier works again by itself: A fetches, B is served from Redis.
        get(a, origin.url("/after"))
        wait_for(
            lambda: redis_server.client().exists(
                entry_key("cproxy", normalise_url(origin.url("/after")))
            )
        )
        get(b, origin.url("/after"))
        assert origin_gets(origin, "/after") == 1
        assert tier(a).breaker.state.value == "closed"


@pytest.mark.parametrize("stall", ["SIGSTOP", "DEBUG SLEEP 5"])
def test_a_stalled_redis_does_not_delay_other_clients_hits(
    origin: Origin, redis_server: RedisServer, stall: str
) -> None:
    origin.routes["/warm"] = cacheable
    origin.routes["/cold"] = cacheable
    with nodes(redis_server.url, 1, SharedCacheTimeout="5 seconds") as (a,):
        get(a, origin.url("/warm"))
        written(a)
        sleeper = None
        if stall == "SIGSTOP":
            redis_server.pause()
        else:
            # Redis runs one command at a time: while it sleeps it answers nobody.
            sleeper = threading.Thread(
                target=redis_server.client().execute_command, args=stall.split()
            )
            sleeper.start()
        # The miss below must meet a Redis that is already stalled, not one that is
        # about to be (the sleeper's command may not have reached it yet).
        wait_for(redis_server.stalled, what="Redis to stall")
        try:
            # This miss waits for Redis (up to the 5 s timeout) ...
            cold = threading.Thread(target=get, args=(a, origin.url("/cold")))
            cold.start()
            wait_for(lambda: tier(a)._reads, what="the miss to wait for Redis")
            # ... while hits of other clients go on at once.
            for _ in range(5):
                started = time.monotonic()
                assert get(a, origin.url("/warm")).content == b"body of /warm"
                assert time.monotonic() - started < 1.0
            assert tier(a)._reads  # the miss is still waiting: the hits did not wait for it
        finally:
            if sleeper is None:
                redis_server.resume()
            else:
                sleeper.join(30)
        cold.join(30)
        assert origin_gets(origin, "/cold") == 1


def test_workers_of_one_machine_fetch_a_url_once(
    tmp_path: Path, origin: Origin, redis_server: RedisServer
) -> None:
    origin.routes["/w"] = cacheable
    port = free_port()
    conf = tmp_path / "cproxy.conf"
    conf.write_text(
        f"Port = {port}\nWorkers = 2\nAdminPort = 0\nAccessLog =\nLogLevel = warning\n"
        f"SharedCache = {redis_server.url}\nSharedCacheTimeout = 2 seconds\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "cproxy", "-c", str(conf)])
    try:
        proxies = {"http": f"http://127.0.0.1:{port}"}
        # Both workers subscribe to the events channel.
        wait_for(
            lambda: redis_server.client().pubsub_numsub("cproxy:events")[0][1] == 2,
            what="both workers to subscribe",
        )
        sessions = [requests.Session() for _ in range(8)]
        for s in sessions:
            s.trust_env = False
        first = sessions[0].get(origin.url("/w"), proxies=proxies, timeout=30)
        assert first.status_code == 200
        key = entry_key("cproxy", normalise_url(origin.url("/w")))
        wait_for(lambda: redis_server.client().exists(key), what="the entry in Redis")
        for s in sessions:
            for _ in range(3):
                assert s.get(origin.url("/w"), proxies=proxies, timeout=30).ok
        assert origin_gets(origin, "/w") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_password_from_a_file(tmp_path: Path, origin: Origin) -> None:
    origin.routes["/p"] = cacheable
    secret = "s3cret-for-the-test"
    (tmp_path / "redis.pass").write_text(secret + "\n")
    with RedisServer(tmp_path / "redis", password=secret) as server:
        directives = {"SharedCachePasswordFile": str(tmp_path / "redis.pass")}
        with nodes(server.url, 2, **directives) as (a, b):
            get(a, origin.url("/p"))
            written(a)
            get(b, origin.url("/p"))
            assert origin_gets(origin, "/p") == 1
            assert secret not in repr(tier(a).settings)
        # Without it, Redis refuses every call; requests are answered all the same.
        with nodes(server.url, 1, subscribed=False) as (c,):
            assert get(c, origin.url("/p")).content == b"body of /p"
            wait_for(lambda: tier(c).errors >= 1, what="the refusal to be counted")
            assert not tier(c).subscribed
            assert secret not in tier(c).last_error


def test_redis_cluster(tmp_path: Path, origin: Origin) -> None:
    origin.routes["/c1"] = cacheable
    origin.routes["/c2"] = cacheable
    with RedisCluster(tmp_path / "cluster") as cluster, nodes(cluster.url, 2) as (a, b):
        for path in ("/c1", "/c2"):
            get(a, origin.url(path))
        written(a, 2)
        for path in ("/c1", "/c2"):
            assert get(b, origin.url(path)).content == f"body of {path}".encode()
        assert origin_gets(origin, "/c1") == origin_gets(origin, "/c2") == 1
        url = origin.url("/c1")
        purge = requests.request("PURGE", url, proxies={"http": b.url}, timeout=30)
        assert purge.status_code == 200
        wait_for(lambda: normalise_url(url) not in a.runtime.cache.store, what="A to drop it")
        get(a, url)
        assert origin_gets(origin, "/c1") == 2


def cluster_down(cluster: RedisCluster) -> None:
    """Unassign every slot on every master: each node answers CLUSTERDOWN for any key (as
    during a failover), and the slot map redis-py asks for afterwards covers nothing."""
    for server in cluster.servers:
        server.client().execute_command("CLUSTER", "DELSLOTSRANGE", "0", "16383")
    wait_for(lambda: not cluster._ok(), what="the cluster to be down")


def test_a_cluster_that_is_down_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    # cproxy's cluster client in this process's hub, next to a greenlet that ticks every
    # 10 ms: redis-py sleeps 0.25 s on each CLUSTERDOWN; a blocking sleep would leave a
    # gap of 0.25 s (four calls in flight: 1 s) between two ticks.
    with RedisCluster(tmp_path / "cluster") as cluster:
        target = RedisTarget(
            tls=False, cluster=True, nodes=tuple(("127.0.0.1", s.port) for s in cluster.servers)
        )
        client = open_client(target, None, 5.0)
        key = entry_key("cproxy", normalise_url("http://origin.test/down"))
        assert client.hgetall(key) == {}  # the cluster answers
        cluster_down(cluster)
        gaps: list[float] = []
        ticking = gevent.event.Event()
        stop = gevent.event.Event()

        def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                gevent.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                ticking.set()

        durations: list[float] = []

        def failing_call() -> None:
            started = time.monotonic()
            with pytest.raises((ClusterDownError, RedisClusterException)):
                client.hgetall(key)
            durations.append(time.monotonic() - started)

        tick = gevent.spawn(ticker)
        try:
            assert ticking.wait(10)
            calls = [gevent.spawn(failing_call) for _ in range(4)]
            assert len(gevent.joinall(calls, timeout=30, raise_error=True)) == len(calls)
        finally:
            stop.set()
            tick.join(5)
            client.close()
        assert len(durations) == 4
        assert min(durations) >= 0.2  # redis-py did wait its 0.25 s, in the greenlet
        # Blocking sleeps would stall the loop 1 s in all (four calls, 0.25 s each); a
        # loaded machine may delay one tick by a few tenths of a second, which is not that.
        stalled = sum(gap for gap in gaps if gap >= 0.2)
        assert stalled < 0.75, f"the event loop stalled {stalled:.3f} s in all: {gaps}"


def test_while_the_cluster_is_down_other_clients_hits_are_not_delayed(
    tmp_path: Path, origin: Origin
) -> None:
    origin.routes["/warm"] = cacheable
    origin.routes["/cold"] = cacheable
    with RedisCluster(tmp_path / "cluster") as cluster, nodes(cluster.url, 1) as (a,):
        get(a, origin.url("/warm"))  # in the node's memory: its hits never ask Redis
        cluster_down(cluster)
        # One client's misses keep asking the tier (the breaker lets a probe through every
        # SharedCacheRetry, 200 ms), each met by CLUSTERDOWN and redis-py's 0.25 s wait ...
        errors_before = tier(a).errors
        cold = threading.Thread(
            target=lambda: [get(a, origin.url(f"/cold?n={n}")) for n in range(8)]
        )
        cold.start()
        # ... while another client's hits are answered at once. With the wait blocking
        # the loop most of this time would be stalled: most hits would wait 0.1-0.25 s.
        latencies = []
        while cold.is_alive():
            started = time.monotonic()
            assert get(a, origin.url("/warm")).content == b"body of /warm"
            latencies.append(time.monotonic() - started)
        cold.join(30)
        assert tier(a).errors - errors_before >= 3  # the misses did meet the down cluster
        latencies.sort()
        assert len(latencies) >= 10
        p90 = latencies[len(latencies) * 9 // 10]
        assert p90 < 0.1, f"hits waited: p90 {p90:.3f} s of {len(latencies)}"


def test_status_page_and_metrics_show_the_tier(
    tmp_path: Path, origin: Origin, redis_server: RedisServer
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from cproxy.admin.status import RuntimeCollector
    from tests.test_admin import CONF_TEXT, AdminSite

    def metrics(node: ProxyThread) -> dict[str, Any]:
        registry = CollectorRegistry()
        registry.register(RuntimeCollector(node.runtime.stats))
        text = generate_latest(registry).decode()
        return {
            sample.name + str(sample.labels.get("state", "")): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    origin.routes["/m"] = cacheable
    with nodes(redis_server.url, 2) as (a, b):
        get(a, origin.url("/m"))
        written(a)
        get(b, origin.url("/m"))
        figures = metrics(b)
        assert figures["cproxy_shared_cache_hits_total"] == 1
        assert figures["cproxy_shared_cache_stateclosed"] == 1
        assert figures["cproxy_shared_cache_subscribed"] == 1
        assert figures["cproxy_shared_cache_call_seconds_count"] >= 1
        redis_server.stop()
        for i in range(5):  # misses that find Redis gone
            assert get(b, origin.url(f"/m?{i}")).status_code == 200
        figures = metrics(b)
        assert figures["cproxy_shared_cache_stateopen"] == 1
        assert figures["cproxy_shared_cache_errors_total"] >= 3
        assert figures["cproxy_shared_cache_breaker_opens_total"] >= 1

    # The status page of a runtime with SharedCache (its password never shown).
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "redis.pass").write_text("never-shown\n")
    conf = CONF_TEXT + "SharedCache = redis://127.0.0.1:1/0\nSharedCachePasswordFile = redis.pass\n"
    site = AdminSite(tmp_path / "site", conf_text=conf)
    try:
        doc = site.get("/status.json").json()
        assert doc["shared"]["state"] == "closed"
        assert doc["shared"]["hits"] == 0
        page = site.get("/").text
        assert "Shared cache tier" in page and 'data-stat="shared.state"' in page
        form = site.get("/config/cache-configuration/shared-cache")
        assert form.status_code == 200 and "SharedCachePasswordFile" in form.text
        for text in (page, form.text, site.get("/metrics").text, site.conf.read_text()):
            assert "never-shown" not in text
    finally:
        site.close()


def test_rediss_verifies_the_server_and_shares(
    tmp_path: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.tls import TestCA

    ca = TestCA(tmp_path)
    cert, key = tmp_path / "redis.crt", tmp_path / "redis.key"
    ca.cert.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert.private_key_pem.write_to_path(str(key))
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert)]
    tls += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca.ca_pem)]
    tls += ["--tls-auth-clients", "no"]
    origin.routes["/t"] = cacheable
    url = f"rediss://127.0.0.1:{tls_port}/0"
    with RedisServer(tmp_path / "redis", *tls):
        # Not trusted yet: every call fails its handshake; requests are answered anyway.
        with nodes(url, 1, subscribed=False) as (untrusting,):
            assert get(untrusting, origin.url("/t")).content == b"body of /t"
            wait_for(lambda: "SSL" in tier(untrusting).last_error, what="a refused handshake")
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_pem))
        with nodes(url, 2) as (a, b):
            get(a, origin.url("/t"))
            written(a)
            assert get(b, origin.url("/t")).content == b"body of /t"
            assert origin_gets(origin, "/t") == 2  # once untrusted, once through the tier


def test_a_full_write_queue_drops_and_counts(origin: Origin, redis_server: RedisServer) -> None:
    origin.routes["/q"] = cacheable
    with nodes(redis_server.url, 1, SharedCacheWriteQueue="1") as (a,):
        get(a, origin.url("/q"))
        written(a)
        entry = a.runtime.cache.store.variants(normalise_url(origin.url("/q")))[0]
        dropped = tier(a).dropped_writes

        def three_stores() -> None:
            for _ in range(3):
                tier(a).store(entry, loopback_origin=False)  # never waits: queued or dropped

        a.call(lambda: gevent.spawn(three_stores))
        wait_for(lambda: tier(a).dropped_writes == dropped + 2, what="two dropped writes")
        wait_for(lambda: tier(a).writes >= 2, what="the queued write")


def test_variants_of_one_url_are_bounded_in_redis(
    origin: Origin, redis_server: RedisServer
) -> None:
    from cproxy.cache.store import MAX_VARIANTS_PER_KEY

    def by_agent(h: OriginHandler) -> None:
        agent = h.headers.get("User-Agent", "")
        h.reply(200, agent.encode(), {"Cache-Control": "max-age=300", "Vary": "User-Agent"})

    origin.routes["/ua"] = by_agent
    key = entry_key("cproxy", normalise_url(origin.url("/ua")))
    with nodes(redis_server.url, 1) as (a,):
        for i in range(MAX_VARIANTS_PER_KEY + 5):
            assert get(a, origin.url("/ua"), **{"User-Agent": f"agent {i}"}).ok
        written(a, MAX_VARIANTS_PER_KEY + 5)
        assert 1 <= redis_server.client().hlen(key) <= MAX_VARIANTS_PER_KEY


def test_a_cluster_that_cannot_be_reached_fails_no_request(origin: Origin) -> None:
    origin.routes["/nc"] = cacheable
    seeds = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with nodes(seeds, 1, subscribed=False) as (a,):
        for _ in range(5):
            assert get(a, origin.url("/nc")).content == b"body of /nc"
        assert tier(a).errors >= 1
        # The type, not its name: redis-py 8 raises a subclass (RedisClusterUnreachableError).
        failed = tier(a).last_error_class
        assert (failed is not None and issubclass(failed, RedisClusterException)) or tier(a).skipped


def test_a_missing_password_file_is_one_message_before_starting(tmp_path: Path) -> None:
    conf = tmp_path / "cproxy.conf"
    conf.write_text(
        "Port = 0\nAdminPort = 0\nWorkers = 2\nSharedCache = redis://127.0.0.1:1/0\n"
        "SharedCachePasswordFile = missing.pass\n"
    )
    for extra in (["--check-config"], []):
        done = subprocess.run(
            [sys.executable, "-m", "cproxy", "-c", str(conf), *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.strip() == (
            f"cproxy: {conf}: SharedCachePasswordFile: cannot read {tmp_path / 'missing.pass'}: "
            "No such file or directory"
        )
