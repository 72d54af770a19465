"""cproxy.server.admission: connection caps and slots, as plain logic (the hostile tests
in test_hostile_clients.py and test_hostile_load.py attack the running proxy)."""

from __future__ import annotations

import gevent

from cproxy.server.admission import Admission, Slots, auto_max_connections

_clock = [0.0]


class Conn:
    def __init__(self, ip: str) -> None:
        self.client_ip = ip
        self.evicted = False
        self.input = False
        self.waiting_since = 0.0

    def wait(self) -> None:
        """It begins to wait for a request head (as ClientConnection._read_head says)."""
        _clock[0] += 1.0
        self.waiting_since = _clock[0]

    def evict(self) -> None:
        self.evicted = True

    def has_input(self) -> bool:
        return self.input


def test_the_per_address_cap_evicts_that_addresss_longest_waiting_connection() -> None:
    adm = Admission(max_total=100, max_per_address=2)
    a1, a2, b1 = Conn("a"), Conn("a"), Conn("b")
    for c in (a1, a2, b1):
        assert adm.admit(c)
        c.wait()
    a3 = Conn("a")
    assert adm.admit(a3)
    assert (a1.evicted, a2.evicted, b1.evicted) == (True, False, False)
    assert {ip: len(m) for ip, m in adm.per_address.items()} == {"a": 2, "b": 1}
    adm.leave(a1)  # the evicted connection's own close changes nothing more
    assert {ip: len(m) for ip, m in adm.per_address.items()} == {"a": 2, "b": 1}
    assert adm.open == 3


def test_served_connections_are_never_evicted_and_the_newcomer_is_refused() -> None:
    adm = Admission(max_total=100, max_per_address=1)
    served = Conn("a")
    assert adm.admit(served)
    served.wait()
    served.waiting_since = 0.0  # its head is in
    late = Conn("a")
    assert not adm.admit(late)
    assert not served.evicted and adm.refused == 1


def test_the_total_cap_evicts_the_longest_waiting_of_anyone() -> None:
    adm = Admission(max_total=2, max_per_address=10)
    first, second = Conn("a"), Conn("b")
    for c in (first, second):
        assert adm.admit(c)
    second.wait()  # `first` is being served; `second` waits
    assert adm.admit(Conn("c"))
    assert (first.evicted, second.evicted) == (False, True)
    assert adm.stats()["evicted"] == 1


def test_leave_forgets_an_address() -> None:
    adm = Admission(max_total=10, max_per_address=10)
    c = Conn("a")
    assert adm.admit(c)
    c.wait()
    adm.leave(c)
    assert adm.per_address == {} and adm.open == 0


def test_the_automatic_total_is_half_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert auto_max_connections() == max(16, (soft - 64) // 2)


def test_slots_hold_requests_past_the_size_in_order_and_resize_live() -> None:
    slots = Slots(1)
    order: list[int] = []

    def request(n: int) -> None:
        slots.acquire()
        try:
            order.append(n)
            gevent.sleep(0)
        finally:
            slots.release()

    slots.acquire()
    waiters = [gevent.spawn(request, n) for n in range(3)]
    gevent.sleep(0)
    assert slots.waiting == 3 and order == []
    slots.resize(2)  # one more slot at once: the first waiter goes
    gevent.sleep(0)
    assert order == [0]
    slots.release()
    gevent.joinall(waiters, timeout=5)
    assert order == [0, 1, 2] and slots.active == 0 and slots.waiting == 0


def test_a_slot_waiter_killed_leaves_the_queue_or_passes_its_slot_on() -> None:
    slots = Slots(1)
    slots.acquire()
    gone, last = gevent.spawn(slots.acquire), gevent.spawn(slots.acquire)
    gevent.sleep(0)
    assert slots.waiting == 2
    gone.kill()  # still queued: it just leaves
    assert slots.waiting == 1 and slots.active == 1
    slots.release()  # handed to ``last``, counted as it goes
    assert last.join(timeout=5) is None and last.dead
    assert slots.active == 1 and slots.waiting == 0
    handed = gevent.spawn(slots.acquire)
    gevent.sleep(0)
    slots.release()  # ``last``'s slot is handed over ...
    handed.kill()  # ... and a kill right after it neither loses nor doubles it
    assert slots.active == 1 and slots.waiting == 0
    slots.release()
    assert slots.active == 0 and slots.waiting == 0
    slots.acquire()  # a free slot is taken at once, without waiting
    assert slots.active == 1


def test_eviction_passes_over_a_connection_whose_request_is_arriving() -> None:
    adm = Admission(max_total=100, max_per_address=2)
    busy, idle = Conn("a"), Conn("a")
    for c in (busy, idle):
        assert adm.admit(c)
        c.wait()
    busy.input = True  # its request is in the socket, not yet read
    assert adm.admit(Conn("a"))
    assert (busy.evicted, idle.evicted) == (False, True)
