"""The outbox: delivers destination records, at least once, retrying while targets are down.

Records are written by ``TaskStore.record`` in the same transaction as the task's final
state. This loop takes due ones (each leased for one attempt), sends them through
``Destinations``, and marks them delivered — or schedules the next try with a backoff
(1 s doubling to 60 s, with jitter) and shows the error on the task's
``destinationStatus``. A crash between sending and marking sends it again.

Up to ``_WINDOW`` deliveries are under way at once; more are leased as soon as half the
window is free, so a slow target (a webhook that takes its whole timeout) holds only
its own records back, not a batch of everyone's. The deliveries that ended together are
marked in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from funclet.asyncq.destinations import Destinations, parse
from funclet.store.tasks import TaskStore, now_ms

log = logging.getLogger(__name__)
_WINDOW = 64
_LEASE_MS = 60_000
_IDLE_POLL = 1.0


def retry_after_ms(attempts: int) -> int:
    """Backoff between delivery attempts: 1 s doubling to 60 s, with jitter."""
    base = min(60.0, 2.0 ** (attempts - 1))
    return int((base / 2 + random.random() * base / 2) * 1000)


class Outbox:
    """Runs the delivery loop (see the module docstring)."""

    def __init__(self, tasks: TaskStore, destinations: Destinations) -> None:
        self._tasks = tasks
        self._destinations = destinations
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self._tasks.release_deliveries()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._destinations.close()

    async def _loop(self) -> None:
        under_way: set[asyncio.Task[tuple[dict[str, object], str | None]]] = set()
        try:
            while True:
                try:
                    room = _WINDOW - len(under_way)
                    busy = True  # (the window is more than half full, or more may be due)
                    if room >= _WINDOW // 2:
                        batch = await self._tasks.due_deliveries(room, _LEASE_MS)
                        busy = len(batch) == room
                        under_way |= {asyncio.ensure_future(self._attempt(d)) for d in batch}
                    if busy:  # (room first: wait for a delivery to end)
                        timeout: float | None = None
                        wake = None
                    else:
                        due = await self._tasks.next_delivery_ms()
                        wait = _IDLE_POLL if due is None else max(0.0, (due - now_ms()) / 1000)
                        timeout = min(wait, _IDLE_POLL)
                        wake = asyncio.ensure_future(self._wake.wait())
                    waits = under_way | ({wake} if wake is not None else set())
                    try:
                        await asyncio.wait(waits, timeout=timeout,
                                           return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        if wake is not None:
                            wake.cancel()
                    self._wake.clear()
                    ended = {t for t in under_way if t.done()}
                    under_way -= ended
                    await self._mark([t.result() for t in ended])
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("The outbox failed; it goes on in %.1f s.", _IDLE_POLL)
                    await asyncio.sleep(_IDLE_POLL)
        finally:  # (stopping: what was under way is leased, and due again at the next start)
            for task in under_way:
                task.cancel()

    async def _attempt(self, delivery: dict[str, object]) -> tuple[dict[str, object], str | None]:
        """One delivery: it, and why it failed (None: delivered)."""
        try:
            destination = parse(delivery["destination"], "destination")
            await self._destinations.deliver(
                destination, delivery["body"], f"outbox-{delivery['id']}")  # type: ignore[arg-type]
        except Exception as exc:
            return delivery, f"{type(exc).__name__}: {exc}".strip(": ") or type(exc).__name__
        return delivery, None

    async def _mark(self, outcomes: list[tuple[dict[str, object], str | None]]) -> None:
        """Deliveries that ended: the delivered in one transaction; each failed one's next
        try after its backoff."""
        delivered = [d for d, error in outcomes if error is None]
        if delivered:
            await self._tasks.delivered(delivered)
        for delivery, error in outcomes:
            if error is not None:
                delay = retry_after_ms(int(delivery["attempts"]))  # type: ignore[call-overload]
                await self._tasks.delivery_failed(delivery, error, delay)
                log.warning("Delivering the result of async task %s to %s failed (%s); "
                            "trying again in %d ms.", delivery["task_id"],
                            delivery["destination"], error, delay)
