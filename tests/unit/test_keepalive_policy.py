"""The hybrid histogram keep-alive policy: a pure function of idle times, in tables."""

from __future__ import annotations

import pytest

from funclet.instances.instance import Instance
from funclet.instances.keepalive import (
    BIN_S,
    FORGET_AT,
    MIN_SAMPLES,
    IdlePattern,
    IdleTimes,
    Windows,
    adaptive,
    hybrid,
)

FIXED = 180.0


def _times(idle_seconds: list[float]) -> IdleTimes:
    times = IdleTimes()
    for idle in idle_seconds:
        times.add(idle)
    return times


@pytest.mark.parametrize(("idle", "expected"), [
    # Too few idle times: the fixed keep-alive.
    ([600.0] * (MIN_SAMPLES - 1), Windows(0.0, FIXED, False)),
    # A timer every 10 minutes: nothing kept until its bin's start less 10 % (9 min),
    # then an instance until the bin's end (11 min) plus 10 %.
    ([600.0] * 20, Windows(600.0 * 0.9, 660.0 * 1.1, True)),
    # Called within the minute, always: kept from the end, to the first bin's end + 10 %.
    ([5.0, 20.0, 40.0] * 10, Windows(0.0, 66.0, True)),
    # Mostly within a minute, 1 in 20 after ~2 h (a burst, then quiet): the tail is the
    # quiet time; keeping the instance through 2 h to save one cold start in 20 costs
    # far more than a cold start is worth: the fixed keep-alive.
    ([1.0] * 95 + [7230.0] * 5, Windows(0.0, FIXED, False)),
    # Mostly 30 s apart, 2 in 100 after ~4 min: 5.5 min of keep-alive saves those cold
    # starts for 1.8 s more idle time each period (a cold start is worth 300 s).
    ([30.0] * 90 + [150.0] * 8 + [250.0] * 2, Windows(0.0, 330.0, True)),
    # Idle times spread evenly over the four hours: a flat histogram says nothing.
    ([i * 60.0 + 30 for i in range(240)], Windows(0.0, FIXED, False)),
    # Mostly past the four hours (the paper forecasts these; funclet does not).
    ([5 * 3600.0] * 20 + [60.0] * 10, Windows(0.0, FIXED, False)),
])
def test_the_windows_follow_the_histogram(idle: list[float], expected: Windows) -> None:
    got = hybrid(_times(idle), FIXED)
    assert got.adaptive == expected.adaptive
    assert got.prewarm_s == pytest.approx(expected.prewarm_s)
    assert got.keep_alive_s == pytest.approx(expected.keep_alive_s)


def test_a_head_under_a_minute_is_no_prewarm() -> None:
    # Head at the second bin (60 s), less 10 %: 54 s, under a minute: kept from the end.
    got = hybrid(_times([61.0] * 20), FIXED)
    assert got == Windows(0.0, 120.0 * 1.1, True)


def test_old_idle_times_fade_and_the_new_pattern_wins() -> None:
    times = _times([600.0] * (FORGET_AT - 1))  # every 10 minutes, for a long while
    assert hybrid(times, FIXED).prewarm_s > 0
    for _ in range(6 * FORGET_AT):  # then every 30 s
        times.add(30.0)
    assert times.total < FORGET_AT and len(times.counts) <= 2  # bounded
    assert hybrid(times, FIXED) == Windows(0.0, BIN_S * 1.1, True)


def test_negative_idle_times_are_ignored() -> None:
    times = _times([-1.0] * 50)
    assert times.total == 0 and hybrid(times, FIXED) == Windows(0.0, FIXED, False)


def _timer_pattern(idle_since: float | None) -> IdlePattern:
    """A pool called every 10 minutes: pre-warm at 540 s, keep until 726 s."""
    pattern = IdlePattern()
    for n in range(20):
        pattern.began(n * 600.0)
        pattern.ended(n * 600.0)
    if idle_since is None:
        pattern.began(20 * 600.0)
    else:
        pattern.idle_since = idle_since
    return pattern


def _idle(last_used: float) -> Instance:
    inst = Instance("i", "f", 1)
    inst.started()
    inst.last_used = last_used
    return inst


@pytest.mark.parametrize(("age", "instances", "stopped", "prewarm"), [
    (10.0, 1, 1, False),  # just idle: not needed until the pre-warm time
    (10.0, 0, 0, False),
    (600.0, 0, 0, True),  # in the window with no instance: pre-warm one
    (600.0, 1, 0, False),  # ...with one: keep it
    (800.0, 1, 1, False),  # past the keep-alive
    (800.0, 0, 0, False),
])
def test_the_tick_stops_and_prewarms_by_the_windows(
        age: float, instances: int, stopped: int, prewarm: bool) -> None:
    now = 100_000.0
    pattern = _timer_pattern(idle_since=now - age)
    windows = pattern.windows(FIXED)
    assert (windows.prewarm_s, windows.keep_alive_s) == pytest.approx((540.0, 726.0))
    live = [_idle(now - age) for _ in range(instances)]
    victims, wanted = adaptive(live, now, pattern, FIXED)
    assert (len(victims), wanted) == (stopped, prewarm)
    pattern.prewarmed = True  # (once per idle period)
    assert adaptive([], now, pattern, FIXED)[1] is False


def test_while_it_runs_extra_idle_instances_go_by_the_keep_alive() -> None:
    now = 100_000.0
    pattern = _timer_pattern(idle_since=None)
    old, recent = _idle(now - 800.0), _idle(now - 100.0)
    assert adaptive([old, recent], now, pattern, FIXED) == ([old], False)
    pattern.ended(now)
    assert pattern.idle_since == now and pattern.prewarmed is False
