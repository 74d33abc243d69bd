"""Admission as pure logic: slots, FIFO waiting, fairness across functions, hand-offs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from funclet.errors import Throttled
from funclet.invoker.admission import SLOT, Admission


def _admission(max_instances: int = 2, max_queue: int = 10) -> tuple[Admission, list[str]]:
    evicted: list[str] = []

    def evict(allow: Callable[[str], bool]) -> bool:
        evicted.append("shared" if allow("anyone") else "reserved")
        return False

    return Admission(max_instances, max_queue, evict), evicted


def test_slots_are_granted_up_to_the_account_limit() -> None:
    adm, _ = _admission(2)
    assert adm.try_slot("a") and adm.try_slot("b")
    assert not adm.try_slot("a")
    adm.release_slot("b")
    assert adm.try_slot("a")
    assert adm.live == {"a": 2}


def test_a_reservation_caps_its_function_and_leaves_the_rest_shared() -> None:
    adm, _ = _admission(3)
    adm.set_reserved("r", 1)
    assert adm.shared_capacity == 2
    assert adm.try_slot("r") and not adm.try_slot("r")
    assert adm.try_slot("x") and adm.try_slot("y") and not adm.try_slot("z")
    assert adm.reservable("r") == 3  # nobody else reserves anything
    adm.set_reserved("s", 2)
    assert adm.reservable("r") == 1 and adm.reservable("s") == 2


async def test_waiters_get_freed_slots_oldest_first_across_functions() -> None:
    adm, evicted = _admission(1)
    assert adm.try_slot("hot")
    order: list[str] = []

    async def wait(fn: str) -> None:
        assert await adm.wait(fn, 5) is SLOT
        order.append(fn)

    tasks = [asyncio.create_task(wait(fn)) for fn in ("hot", "cold", "hot", "cold")]
    await asyncio.sleep(0)
    assert adm.waiting == 4
    assert evicted == ["shared"] * 4  # each waiter asked for an idle instance to go
    assert not adm.try_slot("cold")  # a newcomer never jumps the queue
    holder = "hot"
    for expected in ("hot", "cold", "hot", "cold"):
        adm.release_slot(holder)
        await asyncio.sleep(0.01)
        assert order[-1] == expected
        holder = expected
    await asyncio.gather(*tasks)


async def test_a_waiter_blocked_by_its_reservation_does_not_block_others() -> None:
    adm, _ = _admission(2)
    adm.set_reserved("capped", 1)
    assert adm.try_slot("capped")
    blocked = asyncio.create_task(adm.wait("capped", 5))
    await asyncio.sleep(0)
    assert adm.try_slot("free")  # the shared pool still has its slot
    adm.release_slot("capped")
    assert await blocked is SLOT


async def test_room_on_an_instance_goes_to_the_oldest_waiter_of_that_function() -> None:
    adm, _ = _admission(1)
    assert adm.try_slot("f")
    first = asyncio.create_task(adm.wait("f", 5))
    second = asyncio.create_task(adm.wait("f", 5))
    await asyncio.sleep(0)
    assert adm.offer_room("f", lambda: "lease-1", None)
    assert adm.offer_room("f", lambda: "lease-2", None)
    assert not adm.offer_room("f", lambda: "lease-3", None)
    assert (await first, await second) == ("lease-1", "lease-2")


async def test_an_idle_instance_is_evicted_for_another_functions_waiter() -> None:
    adm, _ = _admission(1)
    assert adm.try_slot("a")
    waiting = asyncio.create_task(adm.wait("b", 5))
    await asyncio.sleep(0)
    evictions: list[str] = []
    assert adm.offer_room("a", lambda: "unused", lambda: evictions.append("a"))
    assert evictions == ["a"]
    adm.release_slot("a")  # the evicted instance stopped
    assert await waiting is SLOT


@pytest.mark.parametrize(("setup", "function", "message"), [
    ({"reserved": 0}, "f", "disabled: its reservedConcurrency is 0"),
    ({"queue": 0}, "f", "wait queue is full"),
    ({}, "f", "limit of 1 running instances; the invocation waited 0.01 s"),
    ({"reserved": 1}, "f", "reservedConcurrency of 1 instances"),
])
async def test_throttled_past_each_bound_with_a_message_naming_it(
    setup: dict[str, int], function: str, message: str
) -> None:
    adm, _ = _admission(1, setup.get("queue", 10))
    if "reserved" in setup:
        adm.set_reserved(function, setup["reserved"])
    if setup.get("reserved") != 0:
        assert adm.try_slot(function)
    with pytest.raises(Throttled, match=message):
        await adm.wait(function, 0.01)
    assert adm.waiting == 0


async def test_a_cancelled_waiter_gives_back_what_it_was_handed() -> None:
    adm, _ = _admission(1)
    assert adm.try_slot("f")
    task = asyncio.create_task(adm.wait("f", 5))
    await asyncio.sleep(0)
    adm.release_slot("f")  # granted to the waiter...
    task.cancel()          # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adm.live == {}
    assert adm.try_slot("f")


# -- with a cluster: slots leased, given back when unused ---------------------------------

class _Cluster:
    """Records what the admission asks of the cluster's slot ledger."""

    def __init__(self) -> None:
        self.wanted: list[str] = []
        self.returned: list[tuple[str, int]] = []

    def want(self, pool: str) -> None:
        self.wanted.append(pool)

    def give_back(self, pool: str, count: int) -> None:
        self.returned.append((pool, count))


def _clustered(max_instances: int = 6) -> tuple[Admission, _Cluster]:
    cluster = _Cluster()
    adm = Admission(max_instances, 10, lambda allow: False, cluster=cluster)  # type: ignore[arg-type]
    return adm, cluster


async def test_a_clustered_node_leases_what_its_waiters_need_and_gives_back_the_rest() -> None:
    adm, cluster = _clustered()
    assert not adm.try_slot("a")  # holds nothing yet: nothing is granted locally
    waiter = asyncio.ensure_future(adm.wait("a", 5))
    await asyncio.sleep(0)
    assert cluster.wanted == [""] and adm.needed("") == 1
    adm.add_capacity("", 3)  # the cluster leased more than was needed by now
    assert await waiter is SLOT
    assert adm.held[""] == 1 and cluster.returned == [("", 2)]  # the surplus, at once
    adm.release_slot("a")  # the instance stopped: its slot goes back too
    assert adm.held[""] == 0 and cluster.returned == [("", 2), ("", 1)]


async def test_a_waiter_that_gives_up_gives_its_leased_slot_back() -> None:
    adm, cluster = _clustered()
    waiter = asyncio.ensure_future(adm.wait("a", 0.05))
    await asyncio.sleep(0)
    with pytest.raises(Throttled):
        await waiter
    adm.add_capacity("", 1)  # the lease came after the wait ended
    assert adm.held[""] == 0 and cluster.returned == [("", 1)]


def test_a_slot_leased_for_a_provisioned_instance_is_kept_only_while_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import funclet.invoker.admission as admission

    adm, cluster = _clustered()
    assert not adm.slot_for_provisioning("p")  # asks the cluster, keeps one spare
    assert cluster.wanted == [""] and adm.needed("") == 1
    adm.add_capacity("", 1)
    assert adm.held[""] == 1 and not cluster.returned  # kept for the next try
    monkeypatch.setattr(admission, "_SPARE_S", -1.0)  # the provisioner stopped asking
    adm.settle()
    assert adm.held[""] == 0 and cluster.returned == [("", 1)]
