from __future__ import annotations

import pytest

from funclet.instances.instance import Instance
from funclet.instances.keepalive import expired
from funclet.instances.state import TRANSITIONS, IllegalTransition, InstanceState, StopReason

S = InstanceState


def _instance(concurrency: int = 1) -> Instance:
    return Instance("c-1", "fn", 1, concurrency)


def test_a_cold_start_goes_starting_busy_idle_and_stops_once() -> None:
    inst = _instance()
    inst.begin()
    assert (inst.state, inst.in_flight, inst.has_room) == (S.STARTING, 1, False)
    inst.started()
    assert (inst.state, inst.in_flight, inst.has_room) == (S.BUSY, 1, False)
    inst.end()
    assert (inst.state, inst.in_flight, inst.has_room) == (S.IDLE, 0, True)
    inst.stop(StopReason.RECLAIMED)
    assert inst.state is S.STOPPED and inst.stop_reason is StopReason.RECLAIMED
    assert inst.destroyed_ms is not None
    inst.stop(StopReason.CRASHED)  # stopping twice keeps the first reason
    assert inst.stop_reason is StopReason.RECLAIMED


def test_instance_concurrency_keeps_an_instance_busy_until_all_end() -> None:
    inst = _instance(concurrency=2)
    inst.begin()
    assert inst.has_room  # a second invocation may join it while it starts
    inst.started()
    inst.begin()
    assert not inst.has_room
    inst.end()
    assert inst.state is S.BUSY and inst.has_room
    inst.end()
    assert inst.state is S.IDLE


@pytest.mark.parametrize(("start", "target"), [
    (S.STOPPED, S.IDLE), (S.STOPPED, S.BUSY), (S.DRAINING, S.IDLE), (S.DRAINING, S.BUSY),
    (S.STARTING, S.DRAINING),
])
def test_illegal_transitions_raise(start: InstanceState, target: InstanceState) -> None:
    assert target not in TRANSITIONS[start]
    inst = _instance()
    inst.state = start
    with pytest.raises(IllegalTransition):
        inst._move(target)


def test_a_draining_instance_has_no_room() -> None:
    inst = _instance()
    inst.started()
    assert inst.state is S.IDLE
    inst.drain()
    assert not inst.has_room


@pytest.mark.parametrize(("state", "idle_for", "keep_alive", "reclaimed"), [
    (S.IDLE, 10.0, 5.0, True),
    (S.IDLE, 5.0, 5.0, False),
    (S.IDLE, 1.0, 5.0, False),
    (S.BUSY, 100.0, 5.0, False),
    (S.STARTING, 100.0, 5.0, False),
    (S.DRAINING, 100.0, 5.0, False),
])
def test_keep_alive_reclaims_only_idle_instances_past_it(
    state: InstanceState, idle_for: float, keep_alive: float, reclaimed: bool
) -> None:
    inst = _instance()
    inst.state = state
    inst.last_used = 1000.0
    assert (expired([inst], 1000.0 + idle_for, keep_alive) == [inst]) is reclaimed
