"""The redis-py internals `cproxy.sharedtier.client.cooperative_cluster_sleeps` relies on.

``RedisCluster`` sleeps (0.25 s on CLUSTERDOWN, 0.05 s on TRYAGAIN) through ``time.sleep``
looked up in ``redis.cluster``'s globals, which cproxy replaces with a ``time`` whose
``sleep`` is gevent's. A redis-py that slept another way (``from time import sleep``, a
helper of another module) would block the event loop again while the replacement did
nothing: these tests fail on such a release, on the installed redis-py, before a cluster
failover shows it. tests/test_shared_tier.py measures the loop on a real cluster.
"""

from __future__ import annotations

import inspect
import re
import time

import gevent
import redis.cluster

from cproxy.sharedtier.client import COOPERATIVE_TIME, cooperative_cluster_sleeps


def test_every_sleep_of_redis_cluster_goes_through_its_time_global() -> None:
    source = inspect.getsource(redis.cluster)
    # Every call of a sleep (Lock's ``sleep=`` argument is a number for redis.lock, which
    # cproxy does not use).
    sleeps = [m.start() for m in re.finditer(r"\bsleep\s*\(", source)]
    spelled = [m.start() + len("time.") for m in re.finditer(r"(?<![\w.])time\.sleep\(", source)]
    assert sleeps, "redis.cluster no longer sleeps: remove cooperative_cluster_sleeps"
    assert sleeps == spelled, "redis.cluster sleeps other than through time.sleep"
    # The sleep cproxy meets in a failover is still there, in the method it runs.
    assert "time.sleep(" in inspect.getsource(redis.cluster.RedisCluster._execute_command)
    assert redis.cluster.__dict__.get("time") in (time, COOPERATIVE_TIME)


def test_the_cooperative_time_is_what_redis_cluster_finds() -> None:
    cooperative_cluster_sleeps()
    cooperative_cluster_sleeps()  # idempotent
    found = redis.cluster.RedisCluster._execute_command.__globals__["time"]
    assert found is COOPERATIVE_TIME
    assert found.sleep is gevent.sleep
    assert found.monotonic is time.monotonic  # everything else is the standard library's
    assert found.perf_counter is time.perf_counter


def test_the_cooperative_sleep_lets_other_greenlets_run() -> None:
    ran = []
    other = gevent.spawn(ran.append, "other")
    started = time.monotonic()
    COOPERATIVE_TIME.sleep(0.05)
    assert ran == ["other"]
    assert time.monotonic() - started >= 0.05
    other.join(5)
