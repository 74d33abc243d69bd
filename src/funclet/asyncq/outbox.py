"""The outbox: delivers destination records, at least once, retrying while targets are down.

Records are written by ``TaskStore.record`` in the same transaction as the task's final
state. This loop takes due ones (each leased for one attempt), sends them through
``Destinations``, and marks them delivered — or schedules the next try with a backoff
(1 s doubling to 60 s, with jitter) and shows the error on the task's
``destinationStatus``. A crash between sending and marking sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from funclet.asyncq.destinations import Destinations, parse
from funclet.store.tasks import TaskStore, now_ms

log = logging.getLogger(__name__)
_BATCH = 32
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
        while True:
            try:
                batch = await self._tasks.due_deliveries(_BATCH, _LEASE_MS)
                if batch:
                    await asyncio.gather(*(self._deliver(d) for d in batch))
                    continue
                due = await self._tasks.next_delivery_ms()
                wait = _IDLE_POLL if due is None else max(0.0, (due - now_ms()) / 1000)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait, _IDLE_POLL)):
                        await self._wake.wait()
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The outbox failed; it goes on in %.1f s.", _IDLE_POLL)
                await asyncio.sleep(_IDLE_POLL)

    async def _deliver(self, delivery: dict[str, object]) -> None:
        destination = parse(delivery["destination"], "destination")
        try:
            await self._destinations.deliver(
                destination, delivery["body"], f"outbox-{delivery['id']}")  # type: ignore[arg-type]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".strip(": ") or type(exc).__name__
            delay = retry_after_ms(int(delivery["attempts"]))  # type: ignore[call-overload]
            await self._tasks.delivery_failed(delivery, error, delay)
            log.warning("Delivering the result of async task %s to %s failed (%s); "
                        "trying again in %d ms.", delivery["task_id"], destination.uri,
                        error, delay)
            return
        await self._tasks.delivered(delivery)
