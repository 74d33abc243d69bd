"""Durable async tasks and async invoke configs, over the metadata store's engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from funclet.asyncq.policy import FINAL, WAITING, AsyncConfig, TaskStatus
from funclet.errors import TaskIdTaken
from funclet.store import schema
from funclet.store.metadata import Store

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


def _event(status: TaskStatus, detail: str = "") -> dict[str, Any]:
    return {"status": status.value, "timestamp": now_ms(), "eventDetail": detail}


class TaskStore:
    """Reads and writes ``async_tasks``; each state change is one transaction."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._dialect = store.dialect
        self._savepoints = self._engine.dialect.name != "sqlite"
        self._accepts: list[tuple[Task, int, asyncio.Future[bool]]] = []
        self._ops: list[tuple[Callable[[AsyncConnection], Awaitable[Any]],
                              asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    # -- group commit ---------------------------------------------------------------

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _batched(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in the next shared transaction; return once it is committed."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.append((op, fut))
        self._kick()
        return await fut

    async def _write(self) -> None:
        """The writer: whatever queued while the last commit ran goes in one transaction
        (group commit); each caller learns its own result once that commits."""
        while self._ops or self._accepts:
            ops, self._ops = self._ops, []
            accepts = self._accepts[:_ACCEPT_BATCH]
            self._accepts = self._accepts[_ACCEPT_BATCH:]
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            inserted: set[str] = set()
            owners: dict[str, str] = {}
            try:
                async with self._engine.begin() as conn:
                    if accepts:
                        inserted = await self._insert(conn, accepts)
                        repeats = {a[0].task_id for a in accepts} - inserted
                        if repeats:  # an idempotent repeat, or another function's id?
                            t = schema.async_tasks
                            owners = {r.task_id: r.function_name for r in await conn.execute(
                                select(t.c.task_id, t.c.function_name)
                                .where(t.c.task_id.in_(repeats)))}
                    for op, fut in ops:
                        try:
                            if self._savepoints:  # PostgreSQL: one failure, not all
                                async with conn.begin_nested():
                                    results.append((fut, await op(conn), None))
                            else:
                                results.append((fut, await op(conn), None))
                        except Exception as exc:
                            results.append((fut, None, exc))
            except Exception as exc:
                for fut in [f for _, _, f in accepts] + [f for _, f in ops]:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for task, _, fut in accepts:  # the first of each id in the batch is the new one
                fresh = task.task_id in inserted
                inserted.discard(task.task_id)
                if fut.done():
                    continue
                owner = owners.get(task.task_id, task.function_name)
                if not fresh and owner != task.function_name:
                    fut.set_exception(TaskIdTaken(task.task_id))
                else:
                    fut.set_result(fresh)
            for fut, value, error in results:
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(value)

    async def accept(self, task: Task, delay_s: int) -> bool:
        """Store a new task durably; ``False`` if its id exists (an idempotent repeat).
        Returns once its row is committed (group commit: one transaction carries many)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._accepts.append((task, delay_s, fut))
        self._kick()
        return await fut

    async def _insert(
        self, conn: AsyncConnection, accepts: list[tuple[Task, int, asyncio.Future[bool]]]
    ) -> set[str]:
        t = schema.async_tasks
        rows: dict[str, dict[str, Any]] = {}
        for task, delay_s, _ in accepts:
            rows.setdefault(task.task_id, {
                "task_id": task.task_id, "request_id": task.request_id,
                "function_name": task.function_name, "status": TaskStatus.ENQUEUED.value,
                "payload": task.payload, "created_ms": task.created_ms,
                "run_after_ms": task.created_ms + delay_s * 1000, "attempts": 0,
                "events": [{**_event(TaskStatus.ENQUEUED), "eventId": 1}],
            })
        stmt = self._dialect.insert(t).on_conflict_do_nothing().returning(t.c.task_id)
        return {r.task_id for r in await conn.execute(stmt.values(list(rows.values())))}

    async def claim(self, limit: int) -> list[Task]:
        """Mark up to ``limit`` due tasks Running (oldest first) and return them."""
        t = schema.async_tasks

        async def op(conn: AsyncConnection) -> list[Task]:
            now = now_ms()
            rows = (await conn.execute(
                select(t.c.task_id).where(and_(
                    t.c.status.in_([s.value for s in WAITING]), t.c.run_after_ms <= now))
                .order_by(t.c.run_after_ms).limit(limit)
            )).all()
            if not rows:
                return []
            claimed = (await conn.execute(
                update(t).where(and_(t.c.task_id.in_([r.task_id for r in rows]),
                                     t.c.status.in_([s.value for s in WAITING])))
                .values(status=TaskStatus.RUNNING.value, attempts=t.c.attempts + 1,
                        started_ms=func.coalesce(t.c.started_ms, now))
                .returning(t.c.task_id, t.c.request_id, t.c.function_name, t.c.payload,
                           t.c.created_ms, t.c.attempts)
            )).all()
            return [Task(r.task_id, r.request_id, r.function_name, TaskStatus.RUNNING,
                         r.payload, r.created_ms, r.attempts) for r in claimed]

        return await self._batched(op)

    async def next_due_ms(self) -> int | None:
        t = schema.async_tasks
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(t.c.run_after_ms).where(t.c.status.in_([s.value for s in WAITING]))
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
        """

        async def op(conn: AsyncConnection) -> bool:
            return await self._record(conn, task, status, detail, run_after_ms, uncount,
                                      delivery, fields)

        return await self._batched(op)

    async def _record(
        self,
        conn: AsyncConnection,
        task: Task,
        status: TaskStatus,
        detail: str,
        run_after_ms: int | None,
        uncount: bool,
        delivery: tuple[str, bytes] | None,
        fields: dict[str, Any],
    ) -> bool:
        t = schema.async_tasks
        row = (await conn.execute(
            select(t.c.status, t.c.events).where(t.c.task_id == task.task_id))).first()
        if row is None:
            return False
        current = TaskStatus(row.status)
        if current is TaskStatus.STOPPING:  # a stop was asked for while it ran
            status, detail = TaskStatus.STOPPED, f"stopped on request ({detail})"
            delivery = None
        elif current in FINAL:
            return False
        events = list(row.events)
        events.append({**_event(status, detail), "eventId": len(events) + 1})
        values: dict[str, Any] = {"status": status.value, "events": events, **fields}
        if status in FINAL:
            values["end_ms"] = now_ms()
        if run_after_ms is not None:
            values["run_after_ms"] = run_after_ms
        if uncount:
            values["attempts"] = t.c.attempts - 1
        if "return_payload" in values and values["return_payload"] is not None:
            values["return_payload"] = values["return_payload"][:RETURN_PAYLOAD_LIMIT]
        if delivery is not None:
            values["destination_status"] = "Pending"
            now = now_ms()
            await conn.execute(insert(schema.outbox).values(
                task_id=task.task_id, function_name=task.function_name,
                destination=delivery[0], body=delivery[1], status="pending",
                attempts=0, next_attempt_ms=now, created_ms=now))
        await conn.execute(update(t).where(t.c.task_id == task.task_id).values(**values))
        return True

    # -- the outbox --------------------------------------------------------------

    async def due_deliveries(self, limit: int, lease_ms: int) -> list[dict[str, Any]]:
        """Pending deliveries that are due, leased for ``lease_ms`` (one attempt each)."""
        o = schema.outbox
        now = now_ms()
        async with self._engine.begin() as conn:
            rows = (await conn.execute(
                select(o).where(and_(o.c.status == "pending", o.c.next_attempt_ms <= now))
                .order_by(o.c.next_attempt_ms).limit(limit))).all()
            if rows:
                await conn.execute(
                    update(o).where(o.c.id.in_([r.id for r in rows]))
                    .values(attempts=o.c.attempts + 1, next_attempt_ms=now + lease_ms))
        return [dict(r._mapping, attempts=r.attempts + 1) for r in rows]

    async def delivered(self, delivery: dict[str, Any]) -> None:
        o, t = schema.outbox, schema.async_tasks
        async with self._engine.begin() as conn:
            await conn.execute(update(o).where(o.c.id == delivery["id"])
                               .values(status="delivered", delivered_ms=now_ms(),
                                       last_error=None))
            await conn.execute(update(t).where(t.c.task_id == delivery["task_id"])
                               .values(destination_status="Succeeded"))

    async def delivery_failed(self, delivery: dict[str, Any], error: str, retry_ms: int) -> None:
        o, t = schema.outbox, schema.async_tasks
        async with self._engine.begin() as conn:
            await conn.execute(update(o).where(o.c.id == delivery["id"])
                               .values(next_attempt_ms=now_ms() + retry_ms, last_error=error))
            await conn.execute(update(t).where(t.c.task_id == delivery["task_id"]).values(
                destination_status=f"Retrying (attempt {delivery['attempts']}): {error}"[:256]))

    async def next_delivery_ms(self) -> int | None:
        o = schema.outbox
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(o.c.next_attempt_ms).where(o.c.status == "pending")
                                      .order_by(o.c.next_attempt_ms).limit(1))).first()
        return row.next_attempt_ms if row else None

    async def release_deliveries(self) -> None:
        """At start-up: deliveries leased by a run that ended are due again now."""
        o = schema.outbox
        async with self._engine.begin() as conn:
            await conn.execute(update(o).where(o.c.status == "pending")
                               .values(next_attempt_ms=now_ms()))

    async def stop(self, function_name: str, task_id: str) -> str | None:
        """StopAsyncTask: a waiting task stops now, a running one when its attempt ends."""
        t = schema.async_tasks
        async with self._engine.begin() as conn:
            row = (await conn.execute(select(t.c.status, t.c.events).where(and_(
                t.c.task_id == task_id, t.c.function_name == function_name)))).first()
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
            changed = await conn.execute(update(t).where(and_(
                t.c.task_id == task_id, t.c.status == current.value)).values(**values))
            if not changed.rowcount:  # it moved on meanwhile: report where it is now
                return current.value
        return status.value

    async def requeue_orphans(self, running: set[str]) -> int:
        """Tasks marked Running (or Stopping) that nobody runs — their attempt died
        inside funclet — go back to the queue (or to Stopped)."""
        t = schema.async_tasks

        async def op(conn: AsyncConnection) -> int:
            rows = (await conn.execute(select(t.c.task_id, t.c.status).where(
                t.c.status.in_([TaskStatus.RUNNING.value, TaskStatus.STOPPING.value])))).all()
            orphans = [r for r in rows if r.task_id not in running]
            for r in orphans:
                if r.status == TaskStatus.STOPPING.value:
                    values: dict[str, Any] = {"status": TaskStatus.STOPPED.value,
                                              "end_ms": now_ms()}
                else:
                    values = {"status": TaskStatus.ENQUEUED.value,
                              "attempts": t.c.attempts - 1}
                await conn.execute(update(t).where(and_(
                    t.c.task_id == r.task_id, t.c.status == r.status)).values(**values))
            return len(orphans)

        return await self._batched(op)

    async def close(self) -> None:
        """Let the writer commit what is queued."""
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def recover(self) -> int:
        """After a crash or restart, tasks left Running run again (their attempt is taken
        back: it never finished); Stopping ones are Stopped."""
        t = schema.async_tasks
        async with self._engine.begin() as conn:
            stopped = await conn.execute(
                update(t).where(t.c.status == TaskStatus.STOPPING.value)
                .values(status=TaskStatus.STOPPED.value, end_ms=now_ms()))
            rerun = await conn.execute(
                update(t).where(t.c.status == TaskStatus.RUNNING.value)
                .values(status=TaskStatus.ENQUEUED.value, attempts=t.c.attempts - 1))
        return int(rerun.rowcount or 0) + int(stopped.rowcount or 0)

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
        if before is not None:
            ms, task_id = before
            cmp = (t.c.created_ms < ms) if newest_first else (t.c.created_ms > ms)
            tie = (t.c.task_id < task_id) if newest_first else (t.c.task_id > task_id)
            query = query.where(cmp | and_(t.c.created_ms == ms, tie))
        async with self._engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    # -- async invoke configs ------------------------------------------------------

    async def put_config(self, function_name: str, config: AsyncConfig) -> tuple[int, int]:
        c = schema.async_configs
        now = now_ms()
        values = {"max_retries": config.max_retries, "max_age": config.max_age_seconds,
                  "on_success": config.on_success, "on_failure": config.on_failure,
                  "async_task": config.async_task}
        async with self._engine.begin() as conn:
            row = (await conn.execute(
                select(c.c.created_ms).where(c.c.function_name == function_name))).first()
            created = row.created_ms if row else now
            await conn.execute(delete(c).where(c.c.function_name == function_name))
            await conn.execute(insert(c).values(function_name=function_name, config=values,
                                                created_ms=created, modified_ms=now))
        return created, now

    async def configs(self) -> dict[str, tuple[AsyncConfig, int, int]]:
        c = schema.async_configs
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(c))
            return {
                r.function_name: (
                    AsyncConfig(r.config["max_retries"], r.config["max_age"],
                                r.config.get("on_success"), r.config.get("on_failure"),
                                r.config.get("async_task", True)),
                    r.created_ms, r.modified_ms,
                ) for r in rows
            }

    async def delete_config(self, function_name: str) -> bool:
        c = schema.async_configs
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(c).where(c.c.function_name == function_name))
        return bool(result.rowcount)
