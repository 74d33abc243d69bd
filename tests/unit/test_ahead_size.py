"""How many instances to keep started ahead: a pure function of the cold starts' rate
and the time one start-up takes, in tables."""

from __future__ import annotations

import pytest

from funclet.sandbox.ahead import AheadSize


def _size(least: int, most: int, takes: list[float], start_s: float | None = None
          ) -> AheadSize:
    size = AheadSize(least, most)
    if start_s is not None:
        for _ in range(30):  # the moving average settles on it
            size.started(start_s)
    for at in takes:
        size.taken(at)
    return size


@pytest.mark.parametrize(("least", "most", "takes", "start_s", "now", "expected"), [
    # No cold start yet: the least.
    (2, 16, [], 0.03, 0.0, 2),
    # One cold start: no rate yet.
    (2, 16, [0.0], 0.03, 0.0, 2),
    # A cold start every 8 ms, 30 ms to start one after a 20 ms delay: 7 come before
    # a refill is in.
    (2, 16, [i * 0.008 for i in range(20)], 0.03, 0.152, 7),
    # A cold start every 2 ms: capped at the most.
    (2, 16, [i * 0.002 for i in range(50)], 0.03, 0.098, 16),
    # A cold start every 200 ms: the least covers it.
    (2, 16, [i * 0.2 for i in range(20)], 0.03, 3.8, 2),
    # The burst is over: 1 s after the last of a run every 8 ms, back to the least.
    (2, 16, [i * 0.008 for i in range(20)], 0.03, 1.152, 2),
    # Slow start-ups (300 ms) at 10 cold starts a second: 4 come before a refill is in.
    (1, 16, [i * 0.1 for i in range(20)], 0.3, 1.9, 4),
    # A cold start a second, 1 least: one waiting is enough.
    (1, 16, [float(i) for i in range(20)], 0.03, 19.0, 1),
    # None started ahead, by configuration: none, whatever the rate.
    (0, 16, [i * 0.002 for i in range(50)], 0.03, 0.098, 0),
    # A most below the least: the least.
    (4, 2, [i * 0.002 for i in range(50)], 0.03, 0.098, 4),
])
def test_target(least: int, most: int, takes: list[float], start_s: float, now: float,
                expected: int) -> None:
    assert _size(least, most, takes, start_s).target(now) == expected


def test_the_interval_is_a_moving_average_so_one_gap_does_not_empty_it() -> None:
    # Every 8 ms, then one gap of 100 ms, then 8 ms again: the next target stays above
    # the least (the average moved, it did not jump).
    takes = [i * 0.008 for i in range(20)]
    takes += [takes[-1] + 0.1 + i * 0.008 for i in range(2)]
    assert _size(1, 16, takes, 0.03).target(takes[-1]) > 1


def test_a_start_time_not_yet_measured_is_assumed_then_the_first_one_counts() -> None:
    # Before any start-up is measured, 30 ms is assumed: every 8 ms needs 7; the first
    # measured one (70 ms, Node.js) replaces it at once: 12.
    size = _size(2, 16, [i * 0.008 for i in range(20)])
    assert size.target(0.152) == 7
    size.started(0.07)
    assert size.target(0.152) == 12
