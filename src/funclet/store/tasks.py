"""Durable async tasks and async invoke configs, over the metadata store's engine."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from funclet.asyncq.policy import FINAL, AsyncConfig, TaskStatus
from funclet.errors import TaskIdTaken
from funclet.store import schema
from funclet.store.metadata import PRUNE_BATCH, Store, delete_in_batches, gone_nodes

T = TypeVar("T")
RETURN_PAYLOAD_LIMIT = 32 * 1024
_ACCEPT_BATCH = 500  # rows per INSERT (SQLite allows 32,766 bound values)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Task:
    task_id: str
    request_id: str
    function_name: str
    status: TaskStatus
    payload: bytes
    created_ms: int
    attempts: int
    qualifier: str = "LATEST"  # what it invokes: LATEST, a version or an alias


def _event(status: TaskStatus, detail: str = "") -> dict[str, Any]:
    return {"status": status.value, "timestamp": now_ms(), "eventDetail": detail}


@dataclass
class _Change:
    """One ``record`` call, waiting for the writer's next transaction."""

    task: Task
    status: TaskStatus
    detail: str
    run_after_ms: int | None
    uncount: bool
    delivery: tuple[str, bytes] | None
    fields: dict[str, Any]
    done: asyncio.Future[bool]


_t = schema.async_tasks
# Built once: SQLAlchemy then reuses their compiled form (the writer is the hot path).
_STATES = select(_t.c.task_id, _t.c.request_id, _t.c.function_name, _t.c.status,
                 _t.c.events).where(_t.c.task_id.in_(bindparam("ids", expanding=True)))
_CHANGE = update(_t).where(_t.c.task_id == bindparam("b_task_id")).values(
    status=bindparam("b_status"),
    events=bindparam("b_events", type_=_t.c.events.type),
    attempts=_t.c.attempts - bindparam("b_uncount"),
    end_ms=func.coalesce(bindparam("b_end_ms", type_=_t.c.end_ms.type), _t.c.end_ms),
    run_after_ms=func.coalesce(bindparam("b_run_after_ms", type_=_t.c.run_after_ms.type),
                               _t.c.run_after_ms),
    duration_ms=func.coalesce(bindparam("b_duration_ms", type_=_t.c.duration_ms.type),
                              _t.c.duration_ms),
    instance_id=func.coalesce(bindparam("b_instance_id", type_=_t.c.instance_id.type),
                              _t.c.instance_id),
    return_payload=case((bindparam("b_set_return", type_=Boolean()),
                         bindparam("b_return_payload", type_=_t.c.return_payload.type)),
                        else_=_t.c.return_payload),
    error_message=case((bindparam("b_set_error", type_=Boolean()),
                        bindparam("b_error_message", type_=_t.c.error_message.type)),
                       else_=_t.c.error_message),
    destination_status=func.coalesce(
        bindparam("b_destination_status", type_=_t.c.destination_status.type),
        _t.c.destination_status),
)
_OUTBOX_ADD = insert(schema.outbox)


def _status_in(values: tuple[str, ...]) -> Any:
    """``status IN (...)`` with the values inline, as the partial indexes are written."""
    return _t.c.status.in_(bindparam(f"status_{'_'.join(values)}", list(values),
                                     expanding=True, literal_execute=True))


_IS_WAITING = _status_in(schema.TASKS_WAITING)
_IS_RUNNING = _status_in(schema.TASKS_RUNNING)
# On PostgreSQL the nodes claim side by side: a row another node is claiming is skipped,
# not waited for (SQLite has one writer, and no FOR UPDATE).
_DUE = (select(_t.c.task_id)
        .where(and_(_IS_WAITING, _t.c.run_after_ms <= bindparam("now")))
        .order_by(_t.c.run_after_ms).limit(bindparam("limit"))
        .with_for_update(skip_locked=True))
# One statement: the due tasks (oldest first) become Running, on this node, and come back.
_CLAIM = (update(_t)
          .where(and_(_t.c.task_id.in_(_DUE.scalar_subquery()), _IS_WAITING))
          .values(status=TaskStatus.RUNNING.value, attempts=_t.c.attempts + 1,
                  node_id=bindparam("node"),
                  started_ms=func.coalesce(_t.c.started_ms, bindparam("now")))
          .returning(_t.c.task_id, _t.c.request_id, _t.c.function_name, _t.c.payload,
                     _t.c.created_ms, _t.c.attempts, _t.c.qualifier))


_Result = tuple[asyncio.Future[Any], Any, BaseException | None]


class TaskStore:
    """Reads and writes ``async_tasks``: reads on the async engine, writes through the
    store's writer (one transaction run whole, see ``Writer``)."""

    def __init__(self, store: Store, node_id: str = "", dead_after_ms: int = 10_000) -> None:
        """``node_id``: the node this is (its claims carry it); a node silent for
        ``dead_after_ms`` is dead, and its running tasks run again elsewhere."""
        self._node = node_id or None
        self._dead_after_ms = dead_after_ms
        self._engine = store.engine
        self._writer = store.writer
        self._dialect = store.dialect
        self._savepoints = self._engine.dialect.name != "sqlite"
        self._accepts: list[tuple[Task, int, bool, asyncio.Future[bool]]] = []
        self._changes: list[_Change] = []
        self._add = self._dialect.insert(_t).on_conflict_do_nothing()
        self._ops: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        self._batcher: asyncio.Task[None] | None = None

    # -- group commit ---------------------------------------------------------------

    def _kick(self) -> None:
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.get_running_loop().create_task(self._write())

    async def _batched(self, op: Callable[[Connection], T]) -> T:
        """Run ``op`` in the next shared transaction; return once it is committed."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, fut))
        self._kick()
        return await fut

    async def _write(self) -> None:
        """Whatever queued while the last commit ran goes in one transaction (group
        commit); each caller learns its own result once that commits. Accepts and state
        changes go in a few statements for the whole batch."""
        turn = 0
        while self._ops or self._accepts or self._changes:
            accepts = self._accepts[:_ACCEPT_BATCH]
            self._accepts = self._accepts[_ACCEPT_BATCH:]
            # Callers wait on accepts; state changes and claims are the platform's own
            # work. With accepts queued, every other transaction is theirs alone.
            turn += 1
            if accepts and turn % 2:
                ops, changes = [], []
            else:
                ops, self._ops = self._ops, []
                changes, self._changes = self._changes, []
            try:
                results = await self._writer.run(
                    functools.partial(self._transaction, accepts=accepts, changes=changes,
                                      ops=ops))
            except Exception as exc:
                futures = [f for *_, f in accepts] + [c.done for c in changes] + [
                    f for _, f in ops]
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for fut, value, error in results:
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(value)

    def _transaction(
        self, conn: Connection,
        accepts: list[tuple[Task, int, bool, asyncio.Future[bool]]],
        changes: list[_Change],
        ops: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]],
    ) -> list[_Result]:
        """One batch, run by the writer: the futures are only carried back (on a
        writer thread, they must not be touched)."""
        results: list[_Result] = []
        if accepts:
            results += self._insert(conn, accepts)
        if changes:
            results += self._change(conn, changes)
        for op, fut in ops:
            try:
                if self._savepoints:  # PostgreSQL: one failure, not all
                    with conn.begin_nested():
                        results.append((fut, op(conn), None))
                else:
                    results.append((fut, op(conn), None))
            except Exception as exc:
                results.append((fut, None, exc))
        return results

    async def accept(self, task: Task, delay_s: int, running: bool = False) -> bool:
        """Store a new task durably; ``False`` if its id exists (an idempotent repeat).
        Returns once its row is committed (group commit: one transaction carries many).
        ``running``: stored as claimed (its first attempt begins at once)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._accepts.append((task, delay_s, running, fut))
        self._kick()
        return await fut

    def _insert(
        self, conn: Connection,
        accepts: list[tuple[Task, int, bool, asyncio.Future[bool]]],
    ) -> list[_Result]:
        """Insert new tasks; a task id already there is an idempotent repeat when the
        same function sent it, else ``TaskIdTaken``."""
        rows: dict[str, dict[str, Any]] = {}
        for task, delay_s, running, _ in accepts:
            rows.setdefault(task.task_id, {
                "task_id": task.task_id, "request_id": task.request_id,
                "function_name": task.function_name,
                "status": (TaskStatus.RUNNING if running else TaskStatus.ENQUEUED).value,
                "payload": task.payload, "created_ms": task.created_ms,
                "run_after_ms": task.created_ms + delay_s * 1000, "attempts": int(running),
                "started_ms": task.created_ms if running else None,
                "node_id": self._node if running else None,
                "qualifier": None if task.qualifier == "LATEST" else task.qualifier,
                "events": [{**_event(TaskStatus.ENQUEUED), "timestamp": task.created_ms,
                            "eventId": 1}],  # accepted when the request came
            })
        conn.execute(self._add, list(rows.values()))
        results: list[_Result] = []
        if all(task.task_id == task.request_id for task, *_ in accepts):
            # Ids that are request ids (no caller chose them) are new: nothing to read.
            return [(fut, True, None) for *_, fut in accepts]
        stored = {r.task_id: r for r in conn.execute(_STATES, {"ids": list(rows)})}
        for task, *_, fut in accepts:
            row = stored[task.task_id]
            # Ours if it carries this request's id: the first of each id in the batch.
            fresh = row.request_id == task.request_id
            if not fresh and row.function_name != task.function_name:
                results.append((fut, None, TaskIdTaken(task.task_id)))
            else:
                results.append((fut, fresh, None))
        return results

    async def claim(self, limit: int) -> list[Task]:
        """Mark up to ``limit`` due tasks Running (oldest first) and return them."""

        def op(conn: Connection) -> list[Task]:
            claimed = conn.execute(_CLAIM, {"now": now_ms(), "limit": limit,
                                            "node": self._node}).all()
            return [Task(r.task_id, r.request_id, r.function_name, TaskStatus.RUNNING,
                         r.payload, r.created_ms, r.attempts, r.qualifier or "LATEST")
                    for r in claimed]

        return await self._batched(op)

    async def next_due_ms(self) -> int | None:
        t = schema.async_tasks
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(t.c.run_after_ms).where(_IS_WAITING)
                .order_by(t.c.run_after_ms).limit(1))).first()
        return row.run_after_ms if row else None

    async def record(
        self,
        task: Task,
        status: TaskStatus,
        *,
        detail: str = "",
        run_after_ms: int | None = None,
        uncount: bool = False,
        delivery: tuple[str, bytes] | None = None,
        **fields: Any,
    ) -> bool:
        """Move a task on, appending an event; ``False`` if it was stopped meanwhile.

        ``uncount`` takes the attempt back (it waited for capacity and never ran).
        ``delivery`` (destination URI, record) goes to the outbox in the same
        transaction as the final state, so it is sent if and only if the state stands.
        ``fields``: ``duration_ms``, ``instance_id``, ``return_payload``, ``error_message``.
        """
        unknown = set(fields) - {"duration_ms", "instance_id", "return_payload",
                                 "error_message"}
        if unknown:
            raise TypeError(f"record() got unknown fields {sorted(unknown)}")
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._changes.append(_Change(task, status, detail, run_after_ms, uncount, delivery,
                                     fields, fut))
        self._kick()
        return await fut

    def _change(self, conn: Connection, changes: list[_Change]) -> list[_Result]:
        """Apply a batch of ``record`` calls: one read, one update, one outbox insert."""
        ids = list({c.task.task_id for c in changes})
        state = {r.task_id: (TaskStatus(r.status), list(r.events))
                 for r in conn.execute(_STATES, {"ids": ids})}
        params: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        results: list[_Result] = []
        for c in changes:
            task_id = c.task.task_id
            if task_id not in state:
                results.append((c.done, False, None))
                continue
            current, events = state[task_id]
            status, detail, delivery = c.status, c.detail, c.delivery
            if current is TaskStatus.STOPPING:  # a stop was asked for while it ran
                status, detail = TaskStatus.STOPPED, f"stopped on request ({detail})"
                delivery = None
            elif current in FINAL:
                results.append((c.done, False, None))
                continue
            last = events[-1] if events else None
            if last and last["status"] == status.value and last["eventDetail"] == detail:
                # The same again (a task waiting on a disabled function, on capacity):
                # the last event's time moves, the list does not grow.
                events = [*events[:-1], {**last, "timestamp": now_ms()}]
            else:
                events = [*events, {**_event(status, detail), "eventId": len(events) + 1}]
            state[task_id] = (status, events)
            now = now_ms()
            payload = c.fields.get("return_payload")
            params.append({
                "b_task_id": task_id, "b_status": status.value, "b_events": events,
                "b_uncount": int(c.uncount),
                "b_end_ms": now if status in FINAL else None,
                "b_run_after_ms": c.run_after_ms,
                "b_duration_ms": c.fields.get("duration_ms"),
                "b_instance_id": c.fields.get("instance_id"),
                "b_set_return": "return_payload" in c.fields,
                "b_return_payload": payload[:RETURN_PAYLOAD_LIMIT] if payload else payload,
                "b_set_error": "error_message" in c.fields,
                "b_error_message": c.fields.get("error_message"),
                "b_destination_status": "Pending" if delivery is not None else None,
            })
            if delivery is not None:
                deliveries.append({
                    "task_id": task_id, "function_name": c.task.function_name,
                    "destination": delivery[0], "body": delivery[1], "status": "pending",
                    "attempts": 0, "next_attempt_ms": now, "created_ms": now})
            results.append((c.done, True, None))
        if params:
            conn.execute(_CHANGE, params)
        if deliveries:
            conn.execute(_OUTBOX_ADD, deliveries)
        return results

    # -- the outbox --------------------------------------------------------------

    async def due_deliveries(self, limit: int, lease_ms: int) -> list[dict[str, Any]]:
        """Pending deliveries that are due, leased for ``lease_ms`` (one attempt each)."""
        o = schema.outbox

        def lease(conn: Connection) -> list[dict[str, Any]]:
            now = now_ms()
            rows = conn.execute(  # (another node's lease being taken: skipped)
                select(o).where(and_(o.c.status == "pending", o.c.next_attempt_ms <= now))
                .order_by(o.c.next_attempt_ms).limit(limit)
                .with_for_update(skip_locked=True)).all()
            if rows:
                conn.execute(update(o).where(o.c.id.in_([r.id for r in rows]))
                             .values(attempts=o.c.attempts + 1, next_attempt_ms=now + lease_ms))
            return [dict(r._mapping, attempts=r.attempts + 1) for r in rows]

        return await self._writer.run(lease)

    async def delivered(self, deliveries: Sequence[dict[str, Any]]) -> None:
        """Deliveries that succeeded, marked in one transaction."""
        o, t = schema.outbox, schema.async_tasks

        def write(conn: Connection) -> None:
            conn.execute(update(o).where(o.c.id.in_([d["id"] for d in deliveries]))
                         .values(status="delivered", delivered_ms=now_ms(), last_error=None))
            conn.execute(update(t).where(t.c.task_id.in_([d["task_id"] for d in deliveries]))
                         .values(destination_status="Succeeded"))

        await self._writer.run(write)

    async def delivery_failed(self, delivery: dict[str, Any], error: str, retry_ms: int) -> None:
        o, t = schema.outbox, schema.async_tasks

        def write(conn: Connection) -> None:
            conn.execute(update(o).where(o.c.id == delivery["id"])
                         .values(next_attempt_ms=now_ms() + retry_ms, last_error=error))
            conn.execute(update(t).where(t.c.task_id == delivery["task_id"]).values(
                destination_status=f"Retrying (attempt {delivery['attempts']}): {error}"[:256]))

        await self._writer.run(write)

    async def next_delivery_ms(self) -> int | None:
        o = schema.outbox
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(o.c.next_attempt_ms).where(o.c.status == "pending")
                                      .order_by(o.c.next_attempt_ms).limit(1))).first()
        return row.next_attempt_ms if row else None

    async def release_deliveries(self) -> None:
        """At start-up: deliveries leased by a run that ended are due again now."""
        o = schema.outbox
        await self._writer.run(lambda conn: conn.execute(
            update(o).where(o.c.status == "pending").values(next_attempt_ms=now_ms())))

    async def stop(self, function_name: str, task_id: str) -> str | None:
        """StopAsyncTask: a waiting task stops now, a running one when its attempt ends."""
        t = schema.async_tasks

        def write(conn: Connection) -> str | None:
            row = conn.execute(select(t.c.status, t.c.events).where(and_(
                t.c.task_id == task_id, t.c.function_name == function_name))).first()
            if row is None:
                return None
            current = TaskStatus(row.status)
            if current in FINAL:
                return current.value
            status = TaskStatus.STOPPING if current is TaskStatus.RUNNING else TaskStatus.STOPPED
            events = [*row.events, {**_event(status, "stop requested"),
                                    "eventId": len(row.events) + 1}]
            values: dict[str, Any] = {"status": status.value, "events": events}
            if status is TaskStatus.STOPPED:
                values["end_ms"] = now_ms()
            changed = conn.execute(update(t).where(and_(
                t.c.task_id == task_id, t.c.status == current.value)).values(**values))
            if not changed.rowcount:  # it moved on meanwhile: report where it is now
                return current.value
            return status.value

        return await self._writer.run(write)

    async def requeue_orphans(self, running: set[str]) -> int:
        """Tasks marked Running (or Stopping) that nobody runs go back to the queue (or
        to Stopped): this node's whose attempt died inside funclet, and those of nodes
        that are dead (silent past the bound) or stopped. Another live node's are its own."""
        return await self._batched(lambda conn: self._requeue(conn, running))

    def _requeue(self, conn: Connection, running: set[str]) -> int:
        t = schema.async_tasks
        rows = conn.execute(select(t.c.task_id, t.c.status, t.c.node_id, t.c.attempts,
                                   t.c.events).where(and_(
            _IS_RUNNING,
            or_(t.c.node_id.is_(None), t.c.node_id == self._node,
                t.c.node_id.in_(gone_nodes(self._dead_after_ms))),
        ))).all()
        orphans = [r for r in rows if r.task_id not in running or r.node_id != self._node]
        for r in orphans:
            events = list(r.events)
            if r.status == TaskStatus.STOPPING.value:
                status, detail = TaskStatus.STOPPED, "stopped on request"
            else:
                status = TaskStatus.ENQUEUED
                detail = (f"attempt {r.attempts} did not finish (node {r.node_id} is gone); "
                          "it runs again" if r.node_id not in (None, self._node) else
                          f"attempt {r.attempts} did not finish; it runs again")
            events.append({**_event(status, detail), "eventId": len(events) + 1})
            values: dict[str, Any] = {"status": status.value, "events": events,
                                      "node_id": None}
            if status is TaskStatus.STOPPED:
                values["end_ms"] = now_ms()
            else:
                values["attempts"] = t.c.attempts - 1
            conn.execute(update(t).where(and_(
                t.c.task_id == r.task_id, t.c.status == r.status)).values(**values))
        return len(orphans)

    async def close(self) -> None:
        """Let the writer commit what is queued."""
        if self._batcher is not None and not self._batcher.done():
            await asyncio.shield(self._batcher)

    async def recover(self) -> int:
        """At start and at stop: this node's tasks left Running run again (their attempt
        is taken back: it never finished), Stopping ones are Stopped; so are the tasks
        of nodes that are gone (``requeue_orphans`` with nothing running here)."""
        return await self._writer.run(lambda conn: self._requeue(conn, set()))

    async def get(self, function_name: str, task_id: str) -> dict[str, Any] | None:
        t = schema.async_tasks
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t).where(and_(
                t.c.task_id == task_id, t.c.function_name == function_name)))).first()
        return dict(row._mapping) if row else None

    async def list(
        self,
        function_name: str,
        status: str | None,
        begin_ms: int | None,
        end_ms: int | None,
        prefix: str,
        limit: int,
        before: tuple[int, str] | None,
        newest_first: bool = True,
        qualifier: str | None = None,
    ) -> list[dict[str, Any]]:
        t = schema.async_tasks
        query = select(t).where(t.c.function_name == function_name).limit(limit)
        order = (t.c.created_ms.desc(), t.c.task_id.desc()) if newest_first else (
            t.c.created_ms, t.c.task_id)
        query = query.order_by(*order)
        if status:
            query = query.where(t.c.status == status)
        if begin_ms is not None:  # FC's startedTimeBegin/End: when the task started
            query = query.where(t.c.started_ms >= begin_ms)
        if end_ms is not None:
            query = query.where(t.c.started_ms <= end_ms)
        if prefix:
            query = query.where(t.c.task_id.startswith(prefix, autoescape=True))
        if qualifier is not None:  # (LATEST's tasks store none)
            query = query.where(t.c.qualifier.is_(None) if qualifier == "LATEST"
                                else t.c.qualifier == qualifier)
        if before is not None:
            ms, task_id = before
            cmp = (t.c.created_ms < ms) if newest_first else (t.c.created_ms > ms)
            tie = (t.c.task_id < task_id) if newest_first else (t.c.task_id > task_id)
            query = query.where(cmp | and_(t.c.created_ms == ms, tie))
        async with self._engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def prune(self, before_ms: int, keep: int, batch: int = PRUNE_BATCH) -> int:
        """Delete finished tasks created before ``before_ms`` or past the ``keep`` newest
        tasks (never a waiting or running one, nor one whose destination record is still
        to be delivered), and destination records delivered before ``before_ms``; how
        many rows went (in batches: ``delete_in_batches``)."""
        t, o = schema.async_tasks, schema.outbox
        async with self._engine.connect() as conn:  # the keep-th newest's time, if any
            nth = (await conn.execute(select(t.c.created_ms).order_by(
                t.c.created_ms.desc()).offset(keep).limit(1))).scalar()
        cut = max(before_ms, int(nth) + 1) if nth is not None else before_ms
        finished = select(t.c.task_id).where(
            t.c.created_ms < cut, t.c.status.in_([s.value for s in FINAL]),
            t.c.task_id.not_in(select(o.c.task_id).where(o.c.status == "pending")),
        ).order_by(t.c.created_ms).limit(batch)
        delivered = select(o.c.id).where(o.c.status == "delivered",
                                         o.c.next_attempt_ms < before_ms).limit(batch)
        return await delete_in_batches(self._writer, batch, [
            delete(o).where(o.c.id.in_(delivered)),
            delete(t).where(t.c.task_id.in_(finished))])

    async def counts(self) -> tuple[dict[str, int], int]:
        """Async tasks by status, and destination records not delivered yet (metrics)."""
        t, o = schema.async_tasks, schema.outbox
        async with self._engine.connect() as conn:
            by_status = {r.status: int(r.n) for r in await conn.execute(
                select(t.c.status, func.count().label("n")).group_by(t.c.status))}
            pending = (await conn.execute(select(func.count()).select_from(o).where(
                o.c.status == "pending"))).scalar()
        return by_status, int(pending or 0)

    # -- async invoke configs ------------------------------------------------------

    async def put_config(self, function_name: str, qualifier: str,
                         config: AsyncConfig) -> tuple[int, int]:
        c = schema.async_invoke_configs
        now = now_ms()
        values = {"max_retries": config.max_retries, "max_age": config.max_age_seconds,
                  "on_success": config.on_success, "on_failure": config.on_failure,
                  "async_task": config.async_task}
        key = and_(c.c.function_name == function_name, c.c.qualifier == qualifier)

        def write(conn: Connection) -> int:
            row = conn.execute(select(c.c.created_ms).where(key)).first()
            created = int(row.created_ms) if row else now
            conn.execute(delete(c).where(key))
            conn.execute(insert(c).values(function_name=function_name, qualifier=qualifier,
                                          config=values, created_ms=created,
                                          modified_ms=now))
            return created

        return await self._writer.run(write), now

    async def configs(self) -> dict[tuple[str, str], tuple[AsyncConfig, int, int]]:
        """Every async invoke config, by (function, qualifier)."""
        c = schema.async_invoke_configs
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(c))
            return {
                (r.function_name, r.qualifier): (
                    AsyncConfig(r.config["max_retries"], r.config["max_age"],
                                r.config.get("on_success"), r.config.get("on_failure"),
                                r.config.get("async_task", True)),
                    r.created_ms, r.modified_ms,
                ) for r in rows
            }

    async def delete_config(self, function_name: str, qualifier: str | None) -> bool:
        """One qualifier's config, or (``None``) all of the function's."""
        c = schema.async_invoke_configs
        key = c.c.function_name == function_name
        if qualifier is not None:
            key = and_(key, c.c.qualifier == qualifier)
        return await self._writer.run(lambda conn: bool(
            conn.execute(delete(c).where(key)).rowcount))
