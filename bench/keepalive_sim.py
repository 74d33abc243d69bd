"""Keep-alive policies on an invocation trace: cold-start share and idle instance time.

    python bench/keepalive_sim.py                 # a generated trace (seed 1)
    python bench/keepalive_sim.py --trace t.csv   # a trace of your own
    python bench/keepalive_sim.py --write t.csv   # write the generated trace out

Runs funclet's own policy code (``funclet.instances.keepalive.hybrid``, the hybrid
histogram policy of "Serverless in the Wild", ATC '20) against fixed keep-alives of
60, 180 and 600 s, as the paper's simulator does: one instance per function; an
invocation is warm when the function's instance is loaded at that moment, else cold;
an instance is loaded from the end of an invocation (or from its pre-warm time) until
its keep-alive runs out; idle time is the time it is loaded and runs nothing. A pre-warm
is a start too, but nobody waits for it: it is counted apart.

A trace is CSV, one invocation a line: ``function,start_s,duration_s`` (a header line
is allowed), in any order. The generated one has the shapes the paper reports: timer
functions (periods of 1 to 60 minutes, jittered), rare ones (hours apart), frequent
ones (seconds apart, Poisson), and bursty ones (a burst of calls, then quiet for an
hour or more) — over ``--hours`` (24 by default).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from funclet.instances.keepalive import IdleTimes, Windows, hybrid  # noqa: E402

Invocation = tuple[str, float, float]  # function, start (s), duration (s)
Policy = Callable[[IdleTimes], Windows]


def generated(hours: float, seed: int, functions: int = 400) -> list[Invocation]:
    rnd = random.Random(seed)
    end = hours * 3600
    out: list[Invocation] = []
    for n in range(functions):
        shape = rnd.choices(["timer", "rare", "frequent", "bursty"], [40, 25, 20, 15])[0]
        name = f"{shape}-{n}"
        duration = rnd.uniform(0.05, 2.0)
        t = rnd.uniform(0, 3600)
        if shape == "timer":
            period = rnd.choice([1, 2, 5, 10, 15, 30, 60]) * 60
            while t < end:
                out.append((name, t, duration))
                t += period * rnd.uniform(0.98, 1.02)
        elif shape in ("rare", "frequent"):
            mean = rnd.uniform(3600, 6 * 3600) if shape == "rare" else rnd.uniform(5, 120)
            while t < end:
                out.append((name, t, duration))
                t += rnd.expovariate(1 / mean)
        else:
            while t < end:
                for _ in range(rnd.randint(5, 50)):
                    out.append((name, t, duration))
                    t += rnd.expovariate(1 / 2.0)
                t += rnd.uniform(3600, 3 * 3600)
    return out


def read_trace(path: Path) -> list[Invocation]:
    out: list[Invocation] = []
    with path.open() as f:
        for row in csv.reader(f):
            if not row or row[0] == "function":
                continue
            out.append((row[0], float(row[1]), float(row[2]) if len(row) > 2 else 0.0))
    return out


@dataclass
class Outcome:
    invocations: int = 0
    cold: int = 0
    prewarms: int = 0
    idle_s: float = 0.0


def simulate(trace: Iterable[Invocation], policy: Policy) -> Outcome:
    by_function: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, start, duration in trace:
        by_function[name].append((start, duration))
    out = Outcome()
    for calls in by_function.values():
        calls.sort()
        times = IdleTimes()
        busy_until = loaded_from = loaded_until = -1.0
        for start, duration in calls:
            out.invocations += 1
            if start < busy_until:  # it joins the running invocation's instance
                busy_until = max(busy_until, start + duration)
                continue
            if busy_until >= 0:
                times.add(start - busy_until)
                # Idle: what of [busy_until, start] the instance was loaded.
                out.idle_s += max(0.0, min(start, loaded_until) - max(busy_until, loaded_from))
            if not loaded_from <= start <= loaded_until:
                out.cold += 1
            busy_until = start + duration
            windows = policy(times)
            loaded_from = busy_until + windows.prewarm_s
            loaded_until = busy_until + windows.keep_alive_s
            if windows.prewarm_s > 0:
                out.prewarms += 1
        out.idle_s += max(0.0, loaded_until - loaded_from)  # after the last one
    return out


def _fixed(seconds: float) -> Policy:
    return lambda _times: Windows(0.0, float(seconds), False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, help="a trace file (CSV) instead of the "
                                                    "generated one")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", type=Path, help="write the generated trace here")
    args = parser.parse_args()
    trace = read_trace(args.trace) if args.trace else generated(args.hours, args.seed)
    if args.write:
        with args.write.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["function", "start_s", "duration_s"])
            writer.writerows((n, f"{s:.3f}", f"{d:.3f}") for n, s, d in trace)
    policies: dict[str, Policy] = {f"fixed {s} s": _fixed(s) for s in (60, 180, 600)}
    policies["hybrid histogram (fallback 180 s)"] = lambda times: hybrid(times, 180.0)
    policies["hybrid without pre-warm"] = lambda times: Windows(
        0.0, hybrid(times, 180.0).keep_alive_s, False)
    results = {label: simulate(trace, policy) for label, policy in policies.items()}
    base = results["fixed 180 s"]
    functions = len({name for name, _, _ in trace})
    print(f"\n{len(trace):,} invocations of {functions} functions "
          f"({'from ' + str(args.trace) if args.trace else f'generated, seed {args.seed}'})\n")
    print(f"| {'policy':<34} | {'cold starts':>11} | {'share':>6} | {'vs 180 s':>8} | "
          f"{'idle instance-h':>15} | {'vs 180 s':>8} | {'pre-warms':>9} |")
    print(f"|{'-' * 36}|{'-' * 13}|{'-' * 8}|{'-' * 10}|{'-' * 17}|{'-' * 10}|{'-' * 11}|")
    for label, r in results.items():
        print(f"| {label:<34} | {r.cold:>11,} | {r.cold / r.invocations:>6.1%} | "
              f"{r.cold / base.cold:>8.2f} | {r.idle_s / 3600:>15,.1f} | "
              f"{r.idle_s / base.idle_s:>8.2f} | {r.prewarms:>9,} |")
    hy = results["hybrid histogram (fallback 180 s)"]
    met = hy.cold < base.cold and hy.idle_s < base.idle_s
    print(f"\nhybrid against fixed 180 s: {hy.cold / base.cold:.2f}x the cold starts, "
          f"{hy.idle_s / base.idle_s:.2f}x the idle instance time "
          f"(target: fewer of both): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
