"""The console's charts: invocations and errors over time, latency percentiles, cold
against warm starts, running instances against the account limit with the queue wait.

The database counts (``Store.invocation_histograms``, one pass: per time bucket, outcome
and start kind, histograms of durations and of queue waits in classes a quarter of a
power of two wide); this module
turns the counts into series (percentiles interpolated inside their class, as
Prometheus's ``histogram_quantile`` does: within 19 % of the true value) and the series
into inline SVG, drawn on the server: no script, nothing fetched.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from funclet.platform import Platform
from funclet.store.metadata import histogram_key

WINDOWS = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
_BUCKETS = 60
_ZERO_CLASS = -26  # 2^(-26/4) ≈ 0.011 ms
_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_COLOURS = ("#1a73e8", "#b3261e", "#137333", "#e37400", "#6b7480")
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 180, 52, 22, 10


@dataclass
class Chart:
    title: str
    unit: str
    series: list[tuple[str, list[float | None]]]
    limit: tuple[str, float] | None = None  # a horizontal line (the account limit)
    notes: list[str] = field(default_factory=list)
    colours: tuple[str, ...] = _COLOURS


def _quantile(classes: dict[int, int], q: float) -> float | None:
    total = sum(classes.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for k in sorted(classes):
        n = classes[k]
        if seen + n >= rank:
            if k < _ZERO_CLASS:  # (values under 0.01 ms: none to speak of)
                return 0.0
            low, high = 2 ** (k / 4), 2 ** ((k + 1) / 4)
            return low + (high - low) * ((rank - seen) / n)
        seen += n
    return 2 ** ((max(classes) + 1) / 4)


async def charts(platform: Platform, function: str | None, window: str) -> dict[str, Any]:
    """Every chart of a window (``WINDOWS``) for one function or (None) all."""
    span_s = WINDOWS[window]
    step_ms = span_s * 1000 // _BUCKETS
    now_ms = int(time.time() * 1000)
    since_ms = now_ms - step_ms * _BUCKETS
    await platform.recorder.flush()
    counts = await platform.store.invocation_histograms(function, since_ms, step_ms)
    spans = await platform.store.instance_spans(function, since_ms)

    calls, errors = [0.0] * _BUCKETS, [0.0] * _BUCKETS
    starts: dict[str, list[float | None]] = {k: [0.0] * _BUCKETS
                                             for k in ("cold", "warm", "provisioned")}
    latency: list[dict[int, int]] = [defaultdict(int) for _ in range(_BUCKETS)]
    queue: list[dict[int, int]] = [defaultdict(int) for _ in range(_BUCKETS)]
    longest: list[float | None] = [None] * _BUCKETS
    for row in counts:
        b, ok, kind, k = histogram_key(row.key)
        if not 0 <= b < _BUCKETS:
            continue
        calls[b] += row.n
        if not ok:
            errors[b] += row.n
        if kind is not None:
            series = starts[kind]
            series[b] = (series[b] or 0.0) + row.n
        latency[b][k] += row.n
        queue[b][int(row.wait)] += row.n
        longest[b] = max(longest[b] or 0.0, float(row.longest or 0.0))

    running = [0.0] * _BUCKETS
    edges: list[tuple[int, int]] = []  # (ms, +1 started / -1 stopped)
    for created, destroyed in spans:
        edges.append((max(created, since_ms), 1))
        if destroyed is not None:
            edges.append((destroyed, -1))
    edges.sort()
    live, i = 0, 0
    for b in range(_BUCKETS):  # the most instances up at once in each bucket
        end = since_ms + (b + 1) * step_ms
        peak = live
        while i < len(edges) and edges[i][0] < end:
            live += edges[i][1]
            peak = max(peak, live)
            i += 1
        running[b] = peak

    step = f"{step_ms // 1000} s" if step_ms < 60_000 else f"{step_ms // 60_000} min"
    out = [
        Chart(f"Invocations and errors (per {step})", "", [
            ("invocations", list(calls)), ("errors", list(errors))]),
        Chart("Duration percentiles", "ms", [
            (label, [_quantile(h, q) for h in latency]) for label, q in _QUANTILES]),
        Chart(f"Cold and warm starts (per {step})", "", [
            (kind, values) for kind, values in starts.items()],
            colours=("#e37400", "#137333", "#1a73e8")),
        Chart("Running instances", "", [("running", list(running))],
              limit=("account limit", platform.settings.max_instances) if function is None
              else None),
        Chart("Wait for an instance (queue)", "ms", [
            ("p50", [_quantile(h, 0.5) for h in queue]),
            ("p99", [_quantile(h, 0.99) for h in queue]),
            ("longest", longest)],
            notes=["Invocations wait here when the account's running instances reach "
                   "the limit (or the function's own)."]),
    ]
    return {"charts": [(c, svg(c, since_ms, step_ms)) for c in out], "window": window,
            "total": int(sum(calls)), "failed": int(sum(errors))}


def svg(chart: Chart, since_ms: int, step_ms: int) -> Markup:
    """A line chart: one polyline a series, a dashed line for the limit, the axis' top
    value and the window's first and last times."""
    values = [v for _, series in chart.series for v in series if v is not None]
    top = max([*values, chart.limit[1] if chart.limit else 0.0, 0.0])
    top = _nice(top)
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T
    n = max(len(s) for _, s in chart.series)

    def x(i: int) -> float:
        return _PAD_L + plot_w * (i + 0.5) / n

    def y(v: float) -> float:
        return _PAD_T + plot_h * (1 - (v / top if top else 0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" '
             f'role="img" class="chart"><title>{escape(chart.title)}</title>',
             f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{plot_w}" height="{plot_h}" '
             'fill="#fff" stroke="#e3e6ea"/>']
    for frac in (0.5, 1.0):
        parts.append(f'<text x="{_PAD_L - 4}" y="{y(top * frac) + 4:.1f}" '
                     f'text-anchor="end" font-size="11">{_fmt(top * frac)}'
                     f'{escape(chart.unit)}</text>')
    parts.append(f'<text x="{_PAD_L - 4}" y="{y(0) + 4:.1f}" text-anchor="end" '
                 'font-size="11">0</text>')
    for i, anchor in ((0, "start"), (n - 1, "end")):
        when = time.strftime("%H:%M", time.localtime((since_ms + i * step_ms) / 1000))
        parts.append(f'<text x="{x(i):.1f}" y="{_H - 6}" text-anchor="{anchor}" '
                     f'font-size="11">{when}</text>')
    if chart.limit:
        label, level = chart.limit
        parts.append(f'<line x1="{_PAD_L}" x2="{_PAD_L + plot_w}" y1="{y(level):.1f}" '
                     f'y2="{y(level):.1f}" stroke="#b3261e" stroke-dasharray="5 4"/>'
                     f'<text x="{_PAD_L + plot_w - 4}" y="{y(level) + 13:.1f}" '
                     f'text-anchor="end" font-size="11" fill="#b3261e">{escape(label)} '
                     f'{_fmt(level)}</text>')
    for (_, series), colour in zip(chart.series, chart.colours, strict=False):
        runs: list[list[str]] = [[]]  # a gap (no value) breaks the line
        for i, v in enumerate(series):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for run in (r for r in runs if r):
            shape = (f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                     f'points="{" ".join(run)}"/>' if len(run) > 1 else
                     f'<circle r="2" fill="{colour}" cx="{run[0].split(",")[0]}" '
                     f'cy="{run[0].split(",")[1]}"/>')
            parts.append(shape)
    parts.append("</svg>")
    legend = "".join(f'<span class="legend" style="color:{colour}">&#9632; {escape(label)}'
                     "</span>" for (label, _), colour in zip(chart.series, chart.colours,
                                                                strict=False))
    return Markup("".join(parts) + f'<div class="legends">{legend}</div>')


def _nice(top: float) -> float:
    """The axis' top: 1, 2 or 5 times a power of ten, at or above ``top``."""
    if top <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(top))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= top))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.2g}"
