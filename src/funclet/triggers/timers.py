"""Timer triggers: each fire is an async invocation whose event carries the *scheduled*
time, not the time it happened to run.

The next fire time of each timer is stored (``triggers.next_fire_ms``). A fire is an
async task with an id made of the trigger's id and its scheduled second, so a fire that
is sent again (funclet stopped between the accept and storing the next time) is an
idempotent repeat and runs once. After downtime, a timer whose fires were missed fires
once, with the latest missed time, then goes on with its schedule: never a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from funclet.store.triggers import TriggerStore
from funclet.triggers.config import TimerConfig
from funclet.triggers.schedule import Schedule

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (function name, trigger name)
# (function name, event, task id): accept an async invocation durably
Enqueue = Callable[[str, bytes, str, str], Awaitable[object]]  # function, event, task id, qualifier
_RETRY_MS = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def fc_trigger_time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@dataclass
class _Timer:
    key: Key
    trigger_id: str
    schedule: Schedule
    payload: str
    next_ms: int
    qualifier: str = "LATEST"  # what it invokes
    not_before_ms: int = 0  # after a failed enqueue: when to try again


class Timers:
    """Fires enabled timers on schedule (see the module docstring)."""

    def __init__(self, store: TriggerStore, enqueue: Enqueue) -> None:
        self._store = store
        self._enqueue = enqueue
        self._timers: dict[Key, _Timer] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(self, key: Key, trigger_id: str, config: TimerConfig,
            next_ms: int | None = None, qualifier: str = "LATEST") -> int | None:
        """Add or replace a timer; returns its next fire time (None: disabled). A stored
        ``next_ms`` in the past is a missed fire: it fires at once."""
        self._timers.pop(key, None)
        self._changed.set()
        if not config.enable:
            return None
        if next_ms is None:
            next_ms = config.schedule.next_after(now_ms())
        self._timers[key] = _Timer(key, trigger_id, config.schedule, config.payload, next_ms,
                                   qualifier)
        return next_ms

    def next_fire_ms(self, key: Key) -> int | None:
        timer = self._timers.get(key)
        return timer.next_ms if timer else None

    def remove(self, key: Key) -> None:
        if self._timers.pop(key, None) is not None:
            self._changed.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                now = now_ms()
                due = [t for t in self._timers.values()
                       if t.next_ms <= now and t.not_before_ms <= now]
                if due:
                    await self._fire(due, now)
                    continue
                upcoming = min((max(t.next_ms, t.not_before_ms) for t in self._timers.values()),
                               default=None)
                self._changed.clear()
                timeout = None if upcoming is None else (upcoming - now) / 1000
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The timer loop failed; it goes on in 1 s.")
                await asyncio.sleep(1)

    async def _fire(self, due: list[_Timer], now: int) -> None:
        scheduled = [t.schedule.latest_at_or_before(now) for t in due]
        results = await asyncio.gather(
            *(self._send(t, at) for t, at in zip(due, scheduled, strict=True)),
            return_exceptions=True)
        moved: list[tuple[str, str, int | None]] = []
        for timer, at, result in zip(due, scheduled, results, strict=True):
            if self._timers.get(timer.key) is not timer:
                continue  # changed or removed meanwhile: its new state was stored
            if isinstance(result, BaseException):
                log.warning("Timer trigger %s/%s could not enqueue its %s fire (%s); "
                            "trying again in 1 s.", *timer.key, fc_trigger_time(at), result)
                timer.not_before_ms = now_ms() + _RETRY_MS  # (a long outage: missed fires)
                continue
            if at > timer.next_ms:
                log.warning("Timer trigger %s/%s missed its fires from %s; it fired once "
                            "for %s.", *timer.key, fc_trigger_time(timer.next_ms),
                            fc_trigger_time(at))
            timer.next_ms = timer.schedule.next_after(at)
            moved.append((*timer.key, timer.next_ms))
        if moved:
            await self._store.set_next_fires(moved)

    async def _send(self, timer: _Timer, at: int) -> None:
        function_name, trigger_name = timer.key
        event = orjson.dumps({"triggerTime": fc_trigger_time(at), "triggerName": trigger_name,
                              "payload": timer.payload})
        await self._enqueue(function_name, event, f"timer-{timer.trigger_id}-{at // 1000}",
                            timer.qualifier)
