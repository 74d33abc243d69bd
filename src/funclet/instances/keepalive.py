"""How long idle instances stay: which to reclaim (``expired``), and the adaptive
keep-alive of "Serverless in the Wild" (Shahrad et al., ATC '20): a pure function of a
function's histogram of idle times (``hybrid``) and the tick that applies it.

The hybrid histogram policy. Each function's idle times — from the end of one
invocation to the start of the next — fall into one-minute bins over a range of four
hours (``IdleTimes``). Once the histogram holds enough of them and is *representative*
(its bin counts vary: a coefficient of variation of at least 2, the paper's test; a flat
histogram says nothing), the instance of a function that just went idle is

- kept until the tail (99th percentile) of the idle times, plus a 10 % margin: nearly
  every next invocation finds it warm, and it goes soon after the next one would have
  come; and, when the head (5th percentile, less 10 %) is a minute or more,
- *pre-warmed*: not kept at all until the head, started again then. (A function called
  every 30 minutes needs no instance for 27 of them.)

Otherwise — too few idle times, a flat histogram, or too many idle times past the
four hours (the paper forecasts those with ARIMA; funclet does not) — the fixed
keep-alive applies. It applies, too, where the histogram's windows would buy their
cold starts too dearly: a function called in bursts an hour or more apart would keep
its instance through every quiet hour to save one cold start each. On the histogram
itself, the windows' idle time and cold starts are weighed against the fixed
keep-alive's, a cold start worth ``COLD_START_WORTH_S`` of idle instance time
(funclet's addition to the paper's policy).

Old idle times fade: when a histogram holds ``FORGET_AT`` of them, every count is
halved, so that a histogram stays bounded and a function that changed its pattern is
judged by the new one — its head at once, its tail (where the old pattern weighs until
it is under 1 %) within a few thousand invocations.

In the platform (``Settings.adaptive_keep_alive``, off by default) each pool keeps an
``IdlePattern``: an idle time is the time between the end of its last running
invocation and the start of the next. ``adaptive`` is the reclaim tick's decision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from funclet.instances.instance import Instance
from funclet.instances.state import InstanceState

BIN_S = 60.0  # one-minute bins...
BINS = 240  # ...over four hours
HEAD, TAIL = 0.05, 0.99  # the percentiles of the idle times that set the windows
MARGIN = 0.10
MIN_SAMPLES = 10  # idle times before the histogram is trusted
MIN_CV = 2.0  # the coefficient of variation of the bin counts that makes it representative
MAX_OUT_OF_BOUNDS = 0.5  # past this share of idle times over the range: not trusted
FORGET_AT = 1000
# What one cold start is worth in seconds of an idle instance: the histogram's windows
# are taken only where the cold starts they save (against the fixed keep-alive) cost at
# most this much more idle time each.
COLD_START_WORTH_S = 300.0


def expired(instances: Iterable[Instance], now: float, keep_alive: float) -> list[Instance]:
    """Idle, not provisioned instances last used more than ``keep_alive`` s before ``now``
    (an instance a session is bound to stays while the session lives)."""
    return [
        inst
        for inst in instances
        if inst.state is InstanceState.IDLE
        and not inst.provisioned
        and not inst.sessions
        and now - inst.last_used > keep_alive
    ]


@dataclass
class IdleTimes:
    """One function's histogram of idle times (sparse: a bin's count, where not 0)."""

    bin_s: float = BIN_S  # (the paper's minute; tests and quick trials take less)
    counts: dict[int, float] = field(default_factory=dict)
    total: float = 0.0
    out_of_bounds: float = 0.0  # idle times past the range

    def add(self, idle_s: float) -> None:
        if idle_s < 0:
            return
        index = int(idle_s // self.bin_s)
        if index >= BINS:
            self.out_of_bounds += 1
        else:
            self.counts[index] = self.counts.get(index, 0.0) + 1
        self.total += 1
        if self.total >= FORGET_AT:
            self.counts = {i: c / 2 for i, c in self.counts.items() if c >= 1}
            self.out_of_bounds /= 2
            self.total = sum(self.counts.values()) + self.out_of_bounds


@dataclass
class IdlePattern:
    """What the adaptive keep-alive knows of one pool: its idle times, whether it runs
    anything now (else since when it is idle), its windows (recomputed only when an
    idle time was added), and whether this idle period's pre-warm happened."""

    times: IdleTimes = field(default_factory=IdleTimes)
    running: int = 0
    idle_since: float | None = None
    prewarmed: bool = False
    _windows: tuple[float, Windows] | None = None  # (for this fixed keep-alive)

    def began(self, now: float) -> None:
        if self.running == 0 and self.idle_since is not None:
            self.times.add(now - self.idle_since)
            self._windows = None
        self.running += 1
        self.idle_since = None
        self.prewarmed = False

    def ended(self, now: float) -> None:
        self.running -= 1
        if self.running == 0:
            self.idle_since = now

    def windows(self, fixed_s: float) -> Windows:
        if self._windows is None or self._windows[0] != fixed_s:
            self._windows = (fixed_s, hybrid(self.times, fixed_s))
        return self._windows[1]


def adaptive(instances: Iterable[Instance], now: float, pattern: IdlePattern,
             fixed_s: float) -> tuple[list[Instance], bool]:
    """The adaptive keep-alive's tick for one pool: the idle instances to stop, and
    whether to pre-warm one. While it runs something, extra idle instances go by the
    keep-alive window; once idle, its instances stay only between the pre-warm time and
    the keep-alive's end (after the idle period began), and at the pre-warm time an
    instance is started if none is there."""
    instances = list(instances)
    windows = pattern.windows(fixed_s)
    if pattern.idle_since is None:
        return expired(instances, now, windows.keep_alive_s), False
    age = now - pattern.idle_since
    if age < windows.prewarm_s or age > windows.keep_alive_s:
        return expired(instances, now, -1.0), False  # (every idle one)
    wanted = windows.prewarm_s > 0 and not pattern.prewarmed and not instances
    return [], wanted


@dataclass(frozen=True)
class Windows:
    """What to do with an instance that just went idle: nothing until ``prewarm_s``
    (0: keep it from now), then keep it until ``keep_alive_s`` after it went idle;
    ``adaptive``: the histogram decided (else the fixed keep-alive did)."""

    prewarm_s: float
    keep_alive_s: float
    adaptive: bool


def hybrid(times: IdleTimes, fixed_s: float) -> Windows:
    """The hybrid histogram policy's windows for ``times`` (the module docstring);
    ``fixed_s``: the keep-alive when the histogram cannot decide."""
    fallback = Windows(0.0, fixed_s, False)
    in_range = times.total - times.out_of_bounds
    if in_range < MIN_SAMPLES or times.out_of_bounds > MAX_OUT_OF_BOUNDS * times.total:
        return fallback
    counts = times.counts
    mean = in_range / BINS
    variance = (sum((c - mean) ** 2 for c in counts.values())
                + (BINS - len(counts)) * mean ** 2) / BINS
    if math.sqrt(variance) / mean < MIN_CV:
        return fallback
    head = tail = None
    seen = 0.0
    for index in sorted(counts):
        seen += counts[index]
        if head is None and seen >= HEAD * in_range:
            head = index * times.bin_s  # the bin's start: the earliest idle time it holds
        if seen >= TAIL * in_range:
            tail = (index + 1) * times.bin_s  # its end: the latest
            break
    assert head is not None and tail is not None
    prewarm = head * (1 - MARGIN)
    if prewarm < times.bin_s:
        prewarm = 0.0
    chosen = Windows(prewarm, tail * (1 + MARGIN), True)
    idle, cold = _cost(times, chosen)
    fixed_idle, fixed_cold = _cost(times, fallback)
    if idle - fixed_idle > COLD_START_WORTH_S * (fixed_cold - cold):
        return fallback  # its cold starts saved would cost too much idle time
    return chosen


def _cost(times: IdleTimes, windows: Windows) -> tuple[float, float]:
    """Per idle period, on this histogram (each bin at its middle; past the range, never
    called again in time): the seconds an instance is kept idle, the share of cold
    starts."""
    idle = cold = 0.0
    low, high = windows.prewarm_s, windows.keep_alive_s
    for index, count in times.counts.items():
        x = (index + 0.5) * times.bin_s
        idle += count * max(0.0, min(x, high) - low)
        if not low <= x <= high:
            cold += count
    idle += times.out_of_bounds * (high - low)
    cold += times.out_of_bounds
    return idle / times.total, cold / times.total
