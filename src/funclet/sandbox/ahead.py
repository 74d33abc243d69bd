"""How many instances of a runtime to keep started ahead, and when to start them.

An instance started ahead turns a cold start into a specialisation (its code mounted, its
uid taken, the handler imported): a few milliseconds instead of the whole sandbox set-up,
which takes tens of milliseconds of CPU and kernel locks (namespaces, cgroups, a veth).
Two things follow:

- **Size.** While one instance is being started, cold starts keep coming at the current
  rate; to meet all of them the pool must hold what comes before a refill is in:
  ``ceil((REFILL_DELAY + start_time) / interval)``, between the configured least and
  most. The
  interval between cold starts and the start time are moving averages; a spell without
  cold starts lengthens the interval as it goes on, so the size falls back to the least.
- **Timing.** A refill runs the set-up beside the cold start that took the instance,
  and on two cores they slow each other down (the same kernel locks, the same CPUs): the
  refill waits ``REFILL_DELAY`` seconds, past the cold start's own few milliseconds. A
  cold start that finds no instance waiting does not wait for the delay.

Pure: the caller gives the time. ``Sandbox`` (``__init__.py``) keeps one per runtime.
"""

from __future__ import annotations

import math

REFILL_DELAY = 0.02  # seconds between a cold start taking an instance and its refill
TRIM_AFTER = 60.0  # seconds without a cold start after which surplus instances go (default)
_ALPHA = 0.3  # weight of the newest sample in the moving averages
_FIRST_START = 0.03  # seconds one start-up is assumed to take before one is measured


class AheadSize:
    """The number of instances to keep started ahead for one runtime (see the module)."""

    def __init__(self, least: int, most: int) -> None:
        self.least = least
        self.most = max(least, most)
        self._interval: float | None = None  # between cold starts, averaged
        self._last: float | None = None  # the last cold start
        self._start = _FIRST_START  # one start-up, averaged
        self._measured = False

    def taken(self, now: float) -> None:
        """A cold start took an instance at ``now``."""
        if self._last is not None:
            gap = max(0.0, now - self._last)
            self._interval = gap if self._interval is None else (
                _ALPHA * gap + (1 - _ALPHA) * self._interval)
        self._last = now

    def started(self, seconds: float) -> None:
        """An instance took ``seconds`` to start ahead (the first measure replaces the
        assumed time: Node.js's take twice Python's)."""
        self._start = seconds if not self._measured else (
            _ALPHA * seconds + (1 - _ALPHA) * self._start)
        self._measured = True

    def target(self, now: float) -> int:
        """How many instances should be waiting at ``now``."""
        if self.least == 0:  # none started ahead, by configuration
            return 0
        if self._interval is None or self._last is None:
            return self.least
        interval = max(self._interval, now - self._last, 1e-6)
        need = math.ceil((REFILL_DELAY + self._start) / interval)
        return max(self.least, min(self.most, need))
