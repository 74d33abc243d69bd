"""The cluster's instance slots, when nodes share a PostgreSQL database.

The account may run ``max_instances`` instances across all nodes, and a function with
a reservation R at most (and at least) R; every node is started with the same
``max_instances``. Each node leases from the database the slots its instances use, per
pool (``""`` the shared one, else a reserved function's name), in ``slot_leases``:

- a node whose admission has waiters without a slot asks for as many as they need
  (``want``): one transaction, serialised by an advisory lock, grants what the pool's
  capacity leaves after every *live* node's leases;
- when there is not enough, it evicts its own idle instances of that pool and asks the
  other nodes to evict theirs (``NOTIFY funclet_slots``); each evicted instance's slot,
  once it has stopped, goes to the evicting node's own waiters first, else back to the
  database (``give_back``), and the asker is told (``freed``) and asks again. It also
  asks again every ``_RETRY_S``, so that a notice lost costs half a second;
- a node gives back at once every slot it holds beyond what its instances and waiters
  use (and the spare ones its provisioned instances are starting with);
- a dead node's leases stop counting the moment it is declared dead (no heartbeat for
  ``nodes.DEAD_AFTER_S``); a node that starts or stops cleanly drops its own
  (``Store.register_node``, ``Store.deregister_node``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, and_, func, select, text, update
from sqlalchemy.dialects import postgresql

from funclet.store import schema
from funclet.store.metadata import gone_nodes
from funclet.store.writer import Writer

if TYPE_CHECKING:
    from funclet.invoker.admission import Admission

log = logging.getLogger(__name__)
CHANNEL = "funclet_slots"
_LOCK = 0x66756E636C6574 + 2  # "funclet" + 2: the slot ledger's advisory lock
_RETRY_S = 0.5


class ClusterSlots:
    """This node's leases on the cluster's slots (see the module docstring)."""

    def __init__(self, writer: Writer, node_id: str, max_instances: int, dead_after_ms: int,
                 notify: Callable[[str, str], Awaitable[None]]) -> None:
        self._writer = writer
        self._node = node_id
        self._max = max_instances
        self._dead_after_ms = dead_after_ms
        self._notify = notify
        self._admission: Admission | None = None
        self._asking: dict[str, asyncio.Task[None]] = {}
        self._freed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    def attach(self, admission: Admission) -> None:
        self._admission = admission

    # -- asking -------------------------------------------------------------------------

    def want(self, pool: str) -> None:
        """The admission's waiters of ``pool`` need slots: ask until they have them."""
        if pool not in self._asking:
            task = asyncio.get_running_loop().create_task(self._ask(pool))
            self._asking[pool] = task
            task.add_done_callback(lambda _: self._asking.pop(pool, None))

    async def _ask(self, pool: str) -> None:
        assert self._admission is not None
        asked_others = 0.0
        while (need := self._admission.needed(pool)) > 0:
            try:
                got = await self._writer.run(lambda conn: self._lease(conn, pool, need))
            except Exception as exc:
                log.warning("Leasing instance slots failed (%s); trying again.", exc)
                got = 0
            if got:
                self._admission.add_capacity(pool, got)
            if got < need:
                self._admission.make_room(pool)  # this node's idle instances first
                if time.monotonic() - asked_others > _RETRY_S:
                    asked_others = time.monotonic()
                    await self._say({"evict": pool, "count": need - got})
                self._freed.clear()
                try:
                    async with asyncio.timeout(_RETRY_S):
                        await self._freed.wait()
                except TimeoutError:
                    pass

    def _lease(self, conn: Connection, pool: str, need: int) -> int:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
        reserved = {r.function_name: r.reserved_concurrency
                    for r in conn.execute(select(schema.concurrency_configs))}
        capacity = reserved.get(pool, 0) if pool else self._max - sum(reserved.values())
        s = schema.slot_leases
        used = conn.execute(  # what the live nodes hold (a gone node's leases do not count)
            select(func.coalesce(func.sum(s.c.held), 0))
            .where(and_(s.c.pool == pool,
                        s.c.node_id.not_in(gone_nodes(self._dead_after_ms))))).scalar_one()
        grant = max(0, min(need, int(capacity) - int(used)))
        if grant:
            stmt = postgresql.insert(s).values(node_id=self._node, pool=pool, held=grant)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[s.c.node_id, s.c.pool], set_={"held": s.c.held + grant}))
        return grant

    # -- giving back --------------------------------------------------------------------

    def give_back(self, pool: str, count: int) -> None:
        """``count`` slots of ``pool`` this node no longer uses go back to the cluster."""
        task = asyncio.get_running_loop().create_task(self._give_back(pool, count))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _give_back(self, pool: str, count: int) -> None:
        s = schema.slot_leases
        try:
            await self._writer.run(lambda conn: conn.execute(
                update(s).where(and_(s.c.node_id == self._node, s.c.pool == pool))
                .values(held=func.greatest(s.c.held - count, 0))))
            await self._say({"freed": pool})
        except Exception as exc:  # the lease stays counted until this node is gone
            log.warning("Giving back %d instance slots failed: %s", count, exc)

    # -- the other nodes ----------------------------------------------------------------

    async def _say(self, message: dict[str, Any]) -> None:
        await self._notify(CHANNEL, orjson.dumps({"node": self._node, **message}).decode())

    def heard(self, payload: str) -> None:
        """Another node's notice: it asks for idle instances to go, or slots came free."""
        message = orjson.loads(payload)
        if message.get("node") == self._node or self._admission is None:
            return
        if "freed" in message:
            self._freed.set()
        elif "evict" in message:
            pool = str(message["evict"])
            if self._admission.needed(pool) == 0:  # this node's own waiters come first
                self._admission.evict_idle(pool, int(message.get("count", 1)))
