"""The platform's nodes: every funclet registers itself in the database at start,
heartbeats every ``HEARTBEAT_S`` seconds (with its count of live instances), and marks
itself stopped on a clean stop. A node whose last heartbeat is older than
``DEAD_AFTER_S`` is dead: it was killed, or lost the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from typing import Any

from funclet import __version__
from funclet.store.metadata import Store
from funclet.store.tasks import now_ms

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0
DEAD_AFTER_S = 10.0  # five heartbeats missed


def state(row: dict[str, Any], now_ms: int) -> str:
    """``alive``, ``stopped`` (cleanly) or ``dead`` (silent past ``DEAD_AFTER_S``)."""
    if row["stopped_ms"] is not None:
        return "stopped"
    return "alive" if now_ms - row["heartbeat_ms"] <= DEAD_AFTER_S * 1000 else "dead"


class Nodes:
    """This node's registration and heartbeat, and the list of all nodes."""

    def __init__(self, store: Store, node_id: str, address: str,
                 live_instances: Callable[[], int]) -> None:
        self.node_id = node_id
        self._store = store
        self._address = address
        self._live = live_instances
        self._task: asyncio.Task[None] | None = None
        self.alive: list[str] = [node_id]  # the live nodes' ids, sorted, as last seen
        self.on_members: list[Callable[[], object]] = []  # told when ``alive`` changes

    async def start(self) -> None:
        await self._store.register_node(self.node_id, self._address, __version__,
                                        now_ms(), self._live())
        await self._members()
        self._task = asyncio.get_running_loop().create_task(self._beat())
        log.info("This is node %s (%s).", self.node_id, self._address)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._store.heartbeat(self.node_id, now_ms(), self._live())
                await self._members()
            except Exception as exc:  # the next one tries again
                log.warning("Node %s could not heartbeat: %s", self.node_id, exc)

    async def _members(self) -> None:
        alive = sorted({n["node_id"] for n in await self.list() if n["state"] == "alive"}
                       | {self.node_id})
        if alive != self.alive:
            self.alive = alive
            for tell in self.on_members:
                tell()

    def share(self, key: str, total: int) -> int:
        """This node's part of ``total`` things spread over the live nodes (e.g. a
        function's provisioned instances): an even split, the remainder going to the
        nodes after one picked by ``key`` (so that not every remainder lands on one)."""
        count = len(self.alive)
        me = self.alive.index(self.node_id)
        first = zlib.crc32(key.encode()) % count
        return total // count + (1 if (me - first) % count < total % count else 0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._store.deregister_node(self.node_id, now_ms())

    async def list(self) -> list[dict[str, Any]]:
        now = now_ms()
        return [{**row, "state": state(row, now)} for row in await self._store.list_nodes()]
