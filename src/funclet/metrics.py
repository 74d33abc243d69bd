"""Prometheus metrics: what a scrape of ``/metrics`` answers (prometheus-client).

The hot path only adds to plain dicts (an invocation: one count and three bucket
increments, well under a microsecond); at a scrape a custom collector turns them into
counter and histogram families, and asks the platform for its gauges (instances,
limits, async tasks, the outbox). One ``Metrics`` per platform, with a registry of its
own.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# Seconds: from a warm sub-millisecond call to the default 60 s timeout.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0, 300.0)


@dataclass
class _Histogram:
    """Counts per bucket (the last: +Inf) and the sum, per label values."""

    series: dict[tuple[str, ...], tuple[list[int], list[float]]] = field(default_factory=dict)

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = ([0] * (len(BUCKETS) + 1), [0.0])
        entry[0][bisect.bisect_left(BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def family(self, name: str, doc: str, label_names: list[str]) -> HistogramMetricFamily:
        out = HistogramMetricFamily(name, doc, labels=label_names)
        for labels, (counts, total) in sorted(self.series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            out.add_metric(list(labels), buckets, total[0])
        return out


@dataclass
class Gauges:
    """What the platform knows at a scrape (``Platform.gauges``, read just before)."""

    instances: dict[tuple[str, str], int] = field(default_factory=dict)  # (fn, state)
    limit: int = 0
    waiting: int = 0
    async_tasks: dict[str, int] = field(default_factory=dict)  # status -> tasks
    outbox_pending: int = 0
    # instances started ahead, per kind of runtime: (waiting, the size it is kept at)
    ahead: dict[str, tuple[int, int]] = field(default_factory=dict)


class Metrics(Collector):
    """funclet's metrics (see the module docstring and docs/metrics.md)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._invocations: dict[tuple[str, str, str, str, str], int] = {}
        self._durations = _Histogram()
        self._cold_starts = _Histogram()
        self._queue_waits = _Histogram()
        self._fires: dict[str, int] = {}
        self.now = Gauges()  # set just before a scrape is rendered
        self.registry.register(self)

    def invocation(self, function: str, qualifier: str, mode: str, status: str,
                   start_kind: str, duration_ms: float, init_ms: float,
                   queue_ms: float) -> None:
        key = (function, qualifier, mode, status, start_kind)
        self._invocations[key] = self._invocations.get(key, 0) + 1
        labels = (function,)
        self._durations.observe(labels, duration_ms / 1000)
        if start_kind == "cold":
            self._cold_starts.observe(labels, init_ms / 1000)
        self._queue_waits.observe(labels, queue_ms / 1000)

    def trigger_fired(self, kind: str) -> None:
        self._fires[kind] = self._fires.get(kind, 0) + 1

    def forget(self, function: str) -> None:
        """A deleted function's series go (a deploy churning names cannot grow them)."""
        for key in [k for k in self._invocations if k[0] == function]:
            del self._invocations[key]
        for histogram in (self._durations, self._cold_starts, self._queue_waits):
            histogram.series.pop((function,), None)

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "funclet_invocations", "Invocations that ended, by outcome",
            labels=["function", "qualifier", "mode", "status", "start_kind"])
        for labels, count in sorted(self._invocations.items()):
            total.add_metric(list(labels), count)
        yield total
        yield self._durations.family("funclet_invocation_duration_seconds",
                                     "How long handlers ran", ["function"])
        yield self._cold_starts.family("funclet_cold_start_seconds",
                                       "Cold starts: code, process, imports, initializer",
                                       ["function"])
        yield self._queue_waits.family("funclet_queue_wait_seconds",
                                       "Time spent waiting for an instance slot",
                                       ["function"])
        fires = CounterMetricFamily("funclet_trigger_fires", "Trigger fires, by type",
                                    labels=["type"])
        for kind, count in sorted(self._fires.items()):
            fires.add_metric([kind], count)
        yield fires
        now = self.now
        instances = GaugeMetricFamily("funclet_instances", "Live instances on this node",
                                      labels=["function", "state"])
        for (function, state), count in sorted(now.instances.items()):
            instances.add_metric([function, state], count)
        yield instances
        yield _gauge("funclet_account_instances_limit",
                     "The account's limit of running instances", now.limit)
        yield _gauge("funclet_waiting_invocations",
                     "Invocations waiting for an instance slot on this node", now.waiting)
        tasks = GaugeMetricFamily("funclet_async_tasks", "Async tasks, by status",
                                  labels=["status"])
        for status, count in sorted(now.async_tasks.items()):
            tasks.add_metric([status], count)
        yield tasks
        yield _gauge("funclet_outbox_pending", "Destination records not delivered yet",
                     now.outbox_pending)
        ahead = GaugeMetricFamily("funclet_instances_started_ahead",
                                  "Instances started ahead, waiting for a function",
                                  labels=["runtime"])
        size = GaugeMetricFamily("funclet_instances_started_ahead_target",
                                 "How many instances started ahead the rate of cold starts "
                                 "needs", labels=["runtime"])
        for kind, (waiting, target) in sorted(now.ahead.items()):
            ahead.add_metric([kind], waiting)
            size.add_metric([kind], target)
        yield ahead
        yield size


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
