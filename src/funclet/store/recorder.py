"""Writes invocation and instance records in batches, off the invocation path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from funclet.logs import LiveLogs, clip_lines

if TYPE_CHECKING:
    from funclet.instances.instance import Instance
    from funclet.store.metadata import Store

log = logging.getLogger(__name__)


@dataclass
class InvocationRecord:
    request_id: str
    function_name: str
    mode: str
    start_kind: str | None
    instance_id: str
    init_ms: float
    duration_ms: float
    queue_ms: float
    status: str
    error_type: str | None
    error_message: str | None
    log: str
    started_ms: int
    version_id: str | None = None  # the published version that ran; None: LATEST


class Recorder:
    """Queues records in memory and flushes them every ``interval`` seconds.

    ``invocation`` and ``instance`` only append to a list: nothing on the hot path
    waits for the database. ``flush`` (also called on shutdown) writes what is queued.
    Every ``prune_every`` seconds, records older than ``retention_s`` and invocation
    records past the ``keep`` newest are deleted: without it the tables (and the disk)
    grew with every invocation, and so did the cost of writing each record.
    """

    def __init__(self, store: Store, node_id: str = "", interval: float = 0.05,
                 live: LiveLogs | None = None, retention_s: float = 7 * 86400,
                 keep: int = 1_000_000, prune_every: float = 60.0) -> None:
        self._store = store
        self._live = live
        self._node_id = node_id or None  # which node ran them, in every record
        self._interval = interval
        self._invocations: list[dict[str, Any]] = []
        self._instances: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._retention_s, self._keep, self._prune_every = retention_s, keep, prune_every
        self._pruner: asyncio.Task[None] | None = None
        self._also_pruned: list[Callable[[], Awaitable[int]]] = []

    def also_prune(self, prune: Callable[[], Awaitable[int]]) -> None:
        """Run ``prune`` (the rows it deleted back) at each round of pruning too."""
        self._also_pruned.append(prune)

    def invocation(self, record: InvocationRecord) -> None:
        flat = dict(vars(record), node_id=self._node_id)
        self._invocations.append(flat)
        self._wake.set()
        if self._live is not None:
            self._live.publish(flat)

    def instance(self, inst: Instance) -> None:
        self._instances[inst.instance_id] = {
            "instance_id": inst.instance_id,
            "function_name": inst.function_name,
            "revision": inst.revision,
            "version_id": None if inst.version_id == "LATEST" else inst.version_id,
            "state": inst.state.value,
            "stop_reason": inst.stop_reason.value if inst.stop_reason else None,
            "created_ms": inst.created_ms,
            "destroyed_ms": inst.destroyed_ms,
            "node_id": self._node_id,
        }
        self._wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._pruner = loop.create_task(self._prune_forever())

    async def prune(self) -> int:
        """Delete the records past their retention now; how many went."""
        before_ms = int((time.time() - self._retention_s) * 1000)
        gone = await self._store.prune_records(before_ms, self._keep)
        for prune in self._also_pruned:
            gone += await prune()
        return gone

    async def _prune_forever(self) -> None:
        while True:
            try:
                if gone := await self.prune():
                    log.info("Pruned %d records past their retention (invocations, "
                             "instances, finished async tasks).", gone)
            except Exception as exc:  # (the next round tries again)
                log.warning("Pruning old records failed: %s", exc)
            await asyncio.sleep(self._prune_every)

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            await asyncio.sleep(self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("Writing invocation records failed; they are kept for the next try.")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> None:
        """Write what is queued now (one writer at a time; readers call it first)."""
        async with self._lock:
            invocations, self._invocations = self._invocations, []
            instances, self._instances = self._instances, {}
            if not invocations and not instances:
                return
            for rec in invocations:
                rec["log"] = clip_lines(rec["log"])
            try:
                await self._store.write(invocations, list(instances.values()))
            except BaseException:
                self._invocations[:0] = invocations
                for key, value in instances.items():
                    self._instances.setdefault(key, value)
                raise

    async def close(self) -> None:
        """Let the writer finish its batch (never cancel it mid-write), then flush the rest."""
        self._closing = True
        self._wake.set()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._task is not None:
            await self._task
        await self.flush()
