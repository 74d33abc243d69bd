"""The metadata store: SQLAlchemy Core over aiosqlite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Integer,
    and_,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from funclet.errors import FunctionAlreadyExists
from funclet.models import FunctionConfig, function_not_found, parse_config
from funclet.store import migrate, schema
from funclet.store.writer import Writer, json_dumps, sqlite_pragmas

START_CODES = {"cold": 1, "warm": 2, "provisioned": 3}  # invocation_histograms' keys
# The most rows invocation_histograms returns (what a window's counts can take in memory;
# real windows have a few thousand: durations and waits fall in few classes at once).
HISTOGRAM_ROWS = 200_000
PRUNE_BATCH = 1000  # records deleted per transaction (prune_records)


def histogram_key(key: int) -> tuple[int, bool, str | None, int]:
    """An ``invocation_histograms`` key: (bucket, succeeded, start kind, duration class)."""
    rest, duration = divmod(key, 1024)
    rest, start = divmod(rest, 4)
    bucket, ok = divmod(rest, 2)
    kinds = {code: kind for kind, code in START_CODES.items()}
    return bucket, bool(ok), kinds.get(start), duration - 512


@dataclass(frozen=True)
class FunctionRow:
    """A deployed function as stored: its config, code and bookkeeping."""

    config: FunctionConfig
    function_id: str
    revision: int
    code_checksum: str
    code_size: int
    created_ms: int
    modified_ms: int
    code_crc64: str = ""  # FC's codeChecksum ("" for a row from before it was kept)

    @property
    def name(self) -> str:
        return self.config.name


def gone_nodes(dead_after_ms: int) -> Any:
    """The ids of the nodes that are gone now: stopped cleanly, or silent for longer
    than ``dead_after_ms`` (``funclet.nodes``). What they held (running tasks, instance
    records, slot leases) is nobody's."""
    n = schema.nodes
    return select(n.c.node_id).where(or_(
        n.c.stopped_ms.isnot(None), n.c.heartbeat_ms < int(time.time() * 1000) - dead_after_ms))


def _row(r: Any) -> FunctionRow:
    return FunctionRow(
        config=parse_config(r.config),
        function_id=r.function_id,
        revision=r.revision,
        code_checksum=r.code_checksum,
        code_size=r.code_size,
        created_ms=r.created_ms,
        modified_ms=r.modified_ms,
        code_crc64=r.code_crc64 or "",
    )


def _values(row: FunctionRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "function_id": row.function_id,
        "revision": row.revision,
        "config": row.config.to_fc(),
        "code_checksum": row.code_checksum,
        "code_size": row.code_size,
        "created_ms": row.created_ms,
        "modified_ms": row.modified_ms,
        "code_crc64": row.code_crc64 or None,
    }


class Store:
    """Reads and writes metadata. SQLite runs in WAL mode with ``synchronous=NORMAL``.

    Reads go through ``engine`` (async); every write goes through ``writer``, the
    database's one writer (see ``Writer``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # Reads only: with one connection they queue in the pool (an await).
        options: dict[str, Any] = (
            {"pool_size": 1, "max_overflow": 0} if url.startswith("sqlite") else {}
        )
        self.engine: AsyncEngine = create_async_engine(
            url, json_serializer=json_dumps, json_deserializer=orjson.loads, **options)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        self.writer = Writer(url)
        self._checkpoints: asyncio.Task[None] | None = None
        self.dialect: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        # The recorder's statements, built once (building an upsert makes its column
        # proxies afresh, 150 µs: 14 % of the platform's time in a run of cold starts).
        self._add_attempts = _record_attempts(self.dialect)
        self._add_instances = _upsert_instances(self.dialect)

    async def open(self) -> None:
        """Bring the schema to this funclet's (``migrate.upgrade``); start checkpoints."""
        await asyncio.to_thread(migrate.upgrade, self.url)
        self._checkpoints = asyncio.get_running_loop().create_task(self.writer.checkpoints())

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        await self.engine.dispose()
        await asyncio.to_thread(self.writer.close)

    # -- functions -----------------------------------------------------------

    async def create_function(self, row: FunctionRow) -> None:
        try:
            await self.writer.run(
                lambda conn: conn.execute(insert(schema.functions).values(**_values(row))))
        except IntegrityError:
            raise FunctionAlreadyExists(row.name) from None

    async def update_function(self, row: FunctionRow) -> None:
        t = schema.functions
        changed = await self.writer.run(
            lambda conn: conn.execute(update(t).where(t.c.name == row.name)
                                      .values(**_values(row))).rowcount)
        if changed == 0:
            raise function_not_found(row.name)

    async def set_code_crc64(self, name: str, sha256: str, crc: str) -> None:
        t = schema.functions
        await self.writer.run(lambda conn: conn.execute(
            update(t).where(and_(t.c.name == name, t.c.code_checksum == sha256))
            .values(code_crc64=crc)))

    async def get_function(self, name: str) -> FunctionRow | None:
        t = schema.functions
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(t).where(t.c.name == name))).first()
        return _row(r) if r else None

    async def delete_function(self, name: str) -> None:
        t = schema.functions

        def delete_rows(conn: Connection) -> int:
            result = conn.execute(delete(t).where(t.c.name == name))
            for c in (schema.concurrency_configs, schema.provision_targets,
                      schema.function_versions, schema.aliases, schema.function_counters,
                      schema.function_restrictions, schema.scaling_configs,
                      schema.function_urls):
                conn.execute(delete(c).where(c.c.function_name == name))
            g = schema.tags
            conn.execute(delete(g).where(and_(g.c.resource_type == "function",
                                              g.c.resource_id == name)))
            return int(result.rowcount or 0)

        if await self.writer.run(delete_rows) == 0:
            raise function_not_found(name)

    # -- per-function configs ----------------------------------------------------

    async def set_reserved_concurrency(self, name: str, reserved: int | None) -> None:
        c = schema.concurrency_configs

        def put(conn: Connection) -> None:
            conn.execute(delete(c).where(c.c.function_name == name))
            if reserved is not None:
                conn.execute(insert(c).values(function_name=name,
                                              reserved_concurrency=reserved))

        await self.writer.run(put)

    async def reserved_concurrency(self) -> dict[str, int]:
        c = schema.concurrency_configs
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(c))
            return {r.function_name: r.reserved_concurrency for r in rows}

    async def set_provision_target(self, name: str, target: int,
                                   qualifier: str = "LATEST") -> None:
        p = schema.provision_targets

        def put(conn: Connection) -> None:
            conn.execute(delete(p).where(and_(p.c.function_name == name,
                                              p.c.qualifier == qualifier)))
            if target:
                conn.execute(insert(p).values(function_name=name, qualifier=qualifier,
                                              target=target))

        await self.writer.run(put)

    async def set_scaling_config(self, name: str, config: dict[str, Any] | None) -> None:
        c = schema.scaling_configs

        def put(conn: Connection) -> None:
            if config is None:
                conn.execute(delete(c).where(c.c.function_name == name))
                return
            stmt = self.dialect.insert(c).values(function_name=name, config=config)
            conn.execute(stmt.on_conflict_do_update(index_elements=[c.c.function_name],
                                                    set_={"config": stmt.excluded.config}))

        await self.writer.run(put)

    async def scaling_configs(self) -> dict[str, dict[str, Any]]:
        c = schema.scaling_configs
        async with self.engine.connect() as conn:
            return {r.function_name: dict(r.config) for r in await conn.execute(select(c))}

    async def put_domain(self, name: str, config: dict[str, Any], now_ms: int,
                         create: bool) -> int | None:
        """Create (``create``) or replace a custom domain; its created time, or None when
        it exists (create) or does not (replace)."""
        d = schema.custom_domains

        def write(conn: Connection) -> int | None:
            if create:  # (two nodes creating it at once: one wins, the other is told)
                made = conn.execute(self.dialect.insert(d).values(
                    domain_name=name, config=config, created_ms=now_ms, modified_ms=now_ms,
                ).on_conflict_do_nothing().returning(d.c.domain_name)).first()
                return now_ms if made is not None else None  # (rowcount said 1 on PostgreSQL)
            row = conn.execute(select(d.c.created_ms).where(d.c.domain_name == name)
                               .with_for_update()).first()
            if row is None:
                return None
            conn.execute(update(d).where(d.c.domain_name == name)
                         .values(config=config, modified_ms=now_ms))
            return int(row.created_ms)

        return await self.writer.run(write)

    async def put_function_url(self, url_id: str, name: str, qualifier: str,
                               config: dict[str, Any], now_ms: int, create: bool) -> bool:
        """Create (``create``; False when the function and qualifier have one) or change
        a Function URL's config (False when there is none)."""
        u = schema.function_urls

        def write(conn: Connection) -> bool:
            if create:
                return conn.execute(self.dialect.insert(u).values(
                    url_id=url_id, function_name=name, qualifier=qualifier, config=config,
                    created_ms=now_ms, modified_ms=now_ms).on_conflict_do_nothing()
                    .returning(u.c.url_id)).first() is not None
            return bool(conn.execute(update(u).where(and_(
                u.c.function_name == name, u.c.qualifier == qualifier)).values(
                config=config, modified_ms=now_ms)).rowcount)

        return await self.writer.run(write)

    async def function_urls(self, name: str | None = None, url_id: str | None = None
                            ) -> list[dict[str, Any]]:
        """Function URLs: a function's (by qualifier), or the one with ``url_id``."""
        u = schema.function_urls
        query = select(u).order_by(u.c.function_name, u.c.qualifier)
        if name is not None:
            query = query.where(u.c.function_name == name)
        if url_id is not None:
            query = query.where(u.c.url_id == url_id)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def delete_function_url(self, name: str, qualifier: str) -> bool:
        u = schema.function_urls
        return bool(await self.writer.run(lambda conn: conn.execute(delete(u).where(and_(
            u.c.function_name == name, u.c.qualifier == qualifier))).rowcount))

    async def delete_domain(self, name: str) -> bool:
        d = schema.custom_domains
        return bool(await self.writer.run(lambda conn: conn.execute(
            delete(d).where(d.c.domain_name == name)).rowcount))

    async def domains(self) -> list[dict[str, Any]]:
        d = schema.custom_domains
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(
                select(d).order_by(d.c.domain_name))]

    async def secret(self, name: str) -> str:
        """The platform's secret ``name``: made (random) by the first node that asks,
        the same for every node after."""
        s = schema.secrets

        def get(conn: Connection) -> str:
            conn.execute(self.dialect.insert(s).values(
                name=name, value=secrets.token_hex(32)).on_conflict_do_nothing())
            return str(conn.execute(select(s.c.value).where(s.c.name == name)).scalar_one())

        return await self.writer.run(get)

    async def provision_targets(self) -> dict[str, int]:
        """LATEST's targets, by function."""
        return {name: target for (name, qualifier), target in
                (await self.qualified_provision_targets()).items() if qualifier == "LATEST"}

    async def qualified_provision_targets(self, name: str | None = None
                                          ) -> dict[tuple[str, str], int]:
        """Every target (of ``name``'s, if given), by (function, qualifier)."""
        p = schema.provision_targets
        query = select(p) if name is None else select(p).where(p.c.function_name == name)
        async with self.engine.connect() as conn:
            return {(r.function_name, r.qualifier): r.target
                    for r in await conn.execute(query)}

    async def set_restriction(self, name: str, reason: str | None, now_ms: int) -> None:
        """Disable the function's invocations (``reason``), or enable them (None)."""
        r = schema.function_restrictions

        def put(conn: Connection) -> None:
            if reason is None:
                conn.execute(delete(r).where(r.c.function_name == name))
                return
            stmt = self.dialect.insert(r).values(function_name=name, reason=reason,
                                                 modified_ms=now_ms)
            conn.execute(stmt.on_conflict_do_update(  # (nodes disabling it at once)
                index_elements=[r.c.function_name],
                set_={"reason": stmt.excluded.reason, "modified_ms": stmt.excluded.modified_ms}))

        await self.writer.run(put)

    async def restrictions(self) -> dict[str, tuple[str, int]]:
        """Disabled functions: (reason, when)."""
        r = schema.function_restrictions
        async with self.engine.connect() as conn:
            return {row.function_name: (row.reason, row.modified_ms)
                    for row in await conn.execute(select(r))}

    async def set_tags(self, kind: str, resource: str, tags: dict[str, str],
                       remove: list[str] | None) -> None:
        """Add (or change) ``tags``; remove the keys in ``remove`` (None: every key)."""
        g = schema.tags
        mine = and_(g.c.resource_type == kind, g.c.resource_id == resource)

        def put(conn: Connection) -> None:
            if remove is None:
                conn.execute(delete(g).where(mine))
            elif remove:
                conn.execute(delete(g).where(mine, g.c.tag_key.in_(remove)))
            for key, value in tags.items():  # (upserts: other nodes may tag it too)
                stmt = self.dialect.insert(g).values(resource_type=kind, resource_id=resource,
                                                     tag_key=key, tag_value=value)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[g.c.resource_type, g.c.resource_id, g.c.tag_key],
                    set_={"tag_value": stmt.excluded.tag_value}))

        await self.writer.run(put)

    async def tags_of(self, kind: str, resources: list[str] | None = None
                      ) -> dict[str, dict[str, str]]:
        """Tags by resource (only ``resources``, when given), keys sorted."""
        g = schema.tags
        query = select(g).where(g.c.resource_type == kind).order_by(g.c.resource_id,
                                                                   g.c.tag_key)
        if resources is not None:
            query = query.where(g.c.resource_id.in_(resources))
        out: dict[str, dict[str, str]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                out.setdefault(row.resource_id, {})[row.tag_key] = row.tag_value
        return out

    async def list_functions(
        self, prefix: str = "", limit: int | None = None, after: str = ""
    ) -> list[FunctionRow]:
        """Functions by name; ``after`` is the last name of the previous page."""
        t = schema.functions
        query = select(t).order_by(t.c.name)
        if prefix:
            query = query.where(t.c.name.startswith(prefix, autoescape=True))
        if after:
            query = query.where(t.c.name > after)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [_row(r) for r in await conn.execute(query)]

    async def code_usage(self) -> tuple[int, int]:
        """How many functions there are, and their packages' bytes (LATEST's)."""
        t = schema.functions
        async with self.engine.connect() as conn:
            count, size = (await conn.execute(
                select(func.count(), func.coalesce(func.sum(t.c.code_size), 0)))).one()
        return int(count), int(size)

    # -- invocations and instances -------------------------------------------

    async def write(
        self, invocations: Sequence[dict[str, Any]], instances: Sequence[dict[str, Any]]
    ) -> None:
        """One batch from the recorder, in one transaction."""

        def write(conn: Connection) -> None:
            if invocations:
                conn.execute(self._add_attempts, _merged(invocations))
            if instances:  # (every one with the same keys: the recorder's)
                conn.execute(self._add_instances, list(instances))

        await self.writer.run(write)

    async def prune_records(self, before_ms: int, keep: int, batch: int = PRUNE_BATCH) -> int:
        """Delete invocation records older than ``before_ms`` or past the ``keep`` newest,
        and records of instances stopped before ``before_ms`` (never a live one's); how
        many went. In transactions of at most ``batch`` rows, each a short write, so that
        the writer (on SQLite, the event loop itself) serves invocations in between."""
        t, i = schema.invocations, schema.instances
        async with self.engine.connect() as conn:  # the keep-th newest's time, if any
            nth = (await conn.execute(select(t.c.started_ms).order_by(
                t.c.started_ms.desc()).offset(keep).limit(1))).scalar()
        cut = max(before_ms, int(nth) + 1) if nth is not None else before_ms
        old_invocations = select(t.c.request_id).where(t.c.started_ms < cut).order_by(
            t.c.started_ms).limit(batch)
        old_instances = select(i.c.instance_id).where(
            i.c.state == "stopped", i.c.destroyed_ms < before_ms).limit(batch)
        return await delete_in_batches(self.writer, batch, [
            delete(t).where(t.c.request_id.in_(old_invocations)),
            delete(i).where(i.c.instance_id.in_(old_instances))])

    async def list_invocations(
        self,
        function_name: str | None,
        status: str | None = None,
        limit: int = 20,
        before: tuple[int, str] | None = None,
        start_kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, of one function or (``None``) of all; ``before`` (started_ms,
        request_id) of the last row seen pages back."""
        t = schema.invocations
        query = select(t).order_by(t.c.started_ms.desc(), t.c.request_id.desc()).limit(limit)
        if function_name is not None:
            query = query.where(t.c.function_name == function_name)
        if status:
            query = query.where(t.c.status == status)
        if start_kind:
            query = query.where(t.c.start_kind == start_kind)
        if before is not None:
            ms, request_id = before
            query = query.where(
                or_(
                    t.c.started_ms < ms,
                    and_(t.c.started_ms == ms, t.c.request_id < request_id),
                )
            )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def last_invocations(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each function's newest invocation (status, started_ms): one statement, an
        index seek per function."""
        if not names:
            return {}
        t = schema.invocations
        newest = [
            select(t.c.function_name, t.c.status, t.c.started_ms)
            .where(t.c.function_name == name)
            .order_by(t.c.started_ms.desc()).limit(1).subquery()
            for name in names
        ]
        query = union_all(*(select(sub) for sub in newest))
        async with self.engine.connect() as conn:
            return {r.function_name: dict(r._mapping) for r in await conn.execute(query)}

    async def invocation_histograms(
        self, function_name: str | None, since_ms: int, step_ms: int,
    ) -> list[Any]:
        """What the console's charts draw, counted by the database in one pass:
        invocations per (time bucket, succeeded, start kind, duration class, queue wait
        class), with the longest wait. A class ``k`` holds the values in
        [2^(k/4), 2^((k+1)/4)) ms. The first four are one integer (``HISTOGRAM_KEY``
        says how to take it apart): grouping by one column is what makes this fast."""
        t = schema.invocations

        def klass(column: Any) -> Any:
            return cast(func.floor(func.ln(column + 0.001) * (4 / math.log(2))), Integer)

        ok = case((t.c.status == "succeeded", 1), else_=0)
        start = case(*((t.c.start_kind == kind, code) for kind, code in START_CODES.items()),
                     else_=0)
        key = ((((t.c.started_ms - since_ms) // step_ms) * 2 + ok) * 4 + start) * 1024 + (
            klass(t.c.duration_ms) + 512)
        query = (select(key.label("key"), klass(t.c.queue_ms).label("wait"),
                        func.count().label("n"), func.max(t.c.queue_ms).label("longest"))
                 .where(t.c.started_ms >= since_ms).group_by("key", "wait")
                 .limit(HISTOGRAM_ROWS))
        if function_name is not None:
            query = query.where(t.c.function_name == function_name)
        async with self.engine.connect() as conn:
            return list(await conn.execute(query))

    async def instance_spans(self, function_name: str | None, since_ms: int,
                             limit: int = 50_000) -> list[tuple[int, int | None]]:
        """(created_ms, destroyed_ms) of the instances alive at some point since
        ``since_ms`` (at most ``limit``, the newest)."""
        t = schema.instances
        query = (select(t.c.created_ms, t.c.destroyed_ms)
                 .where(or_(t.c.destroyed_ms.is_(None), t.c.destroyed_ms >= since_ms))
                 .order_by(t.c.created_ms.desc()).limit(limit))
        if function_name is not None:
            query = query.where(t.c.function_name == function_name)
        async with self.engine.connect() as conn:
            return [(r.created_ms, r.destroyed_ms) for r in await conn.execute(query)]

    async def get_invocation(self, request_id: str) -> dict[str, Any] | None:
        t = schema.invocations
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(t).where(t.c.request_id == request_id))).first()
        return dict(r._mapping) if r else None

    async def close_stale_instances(self, node_id: str, dead_after_ms: int) -> None:
        """Instances recorded as live by an earlier run of this node that ended without
        stopping them, or by a node that is gone (stopped, or silent past the bound)."""
        t = schema.instances
        await self.writer.run(lambda conn: conn.execute(
            update(t)
            .where(and_(t.c.state != "stopped", or_(
                t.c.node_id.is_(None), t.c.node_id == node_id,
                t.c.node_id.in_(gone_nodes(dead_after_ms)))))
            .values(state="stopped", stop_reason="shutdown", destroyed_ms=t.c.created_ms)))

    async def health(self) -> str | None:
        """None when the database answers (within 2 s); else why not."""
        try:
            async with asyncio.timeout(2):
                async with self.engine.connect() as conn:
                    await conn.execute(select(1))
        except Exception as exc:
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            return f"the database does not answer: {why[0] if why else type(exc).__name__}"
        return None

    # -- nodes -----------------------------------------------------------------------

    async def register_node(self, node_id: str, address: str, version: str, now_ms: int,
                            instances: int) -> None:
        """A node starts: its row made, or made new (a node restarted under its id)."""
        t = schema.nodes
        values = {"node_id": node_id, "address": address, "version": version,
                  "started_ms": now_ms, "heartbeat_ms": now_ms, "stopped_ms": None,
                  "instances": instances}
        stmt = self.dialect.insert(t).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.node_id], set_={k: stmt.excluded[k] for k in values
                                                if k != "node_id"})
        s = schema.slot_leases

        def register(conn: Connection) -> None:
            conn.execute(stmt)
            conn.execute(delete(s).where(s.c.node_id == node_id))  # a new run holds none

        await self.writer.run(register)

    async def heartbeat(self, node_id: str, now_ms: int, instances: int) -> None:
        t = schema.nodes
        await self.writer.run(lambda conn: conn.execute(
            update(t).where(t.c.node_id == node_id)
            .values(heartbeat_ms=now_ms, instances=instances)))

    async def deregister_node(self, node_id: str, now_ms: int) -> None:
        """A node stops cleanly: stopped, holding no slots."""
        t, s = schema.nodes, schema.slot_leases

        def deregister(conn: Connection) -> None:
            conn.execute(update(t).where(t.c.node_id == node_id)
                         .values(heartbeat_ms=now_ms, stopped_ms=now_ms, instances=0))
            conn.execute(delete(s).where(s.c.node_id == node_id))

        await self.writer.run(deregister)

    async def list_nodes(self) -> list[dict[str, Any]]:
        t = schema.nodes
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(t).order_by(t.c.node_id))]

    async def list_instances(self, function_name: str, limit: int = 100) -> list[dict[str, Any]]:
        t = schema.instances
        query = (
            select(t)
            .where(t.c.function_name == function_name)
            .order_by(t.c.created_ms.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]


async def delete_in_batches(writer: Writer, batch: int, statements: list[Any]) -> int:
    """Run each ``DELETE`` (of at most ``batch`` rows) until it deletes fewer: each a
    short transaction of its own, so that the writer (on SQLite, the event loop itself)
    serves invocations in between; how many rows went."""
    gone = 0
    for statement in statements:
        while True:
            deleted = await writer.run(functools.partial(_rows_deleted, statement))
            gone += deleted
            if deleted < batch:
                break
            await asyncio.sleep(0)  # the loop's other work between two batches
    return gone


def _rows_deleted(statement: Any, conn: Connection) -> int:
    return int(conn.execute(statement).rowcount)


def _record_attempts(dialect: Any) -> Any:
    """Invocation records: a new request id inserts; a later attempt of the same one (an
    async task's retry, run under the task's request id) takes its outcome and appends
    its log; the same record written again (a retried batch) changes nothing."""
    t = schema.invocations
    stmt = dialect.insert(t)
    later = {k: stmt.excluded[k] for k in (
        "mode", "start_kind", "instance_id", "init_ms", "duration_ms", "queue_ms", "status",
        "error_type", "error_message", "started_ms", "node_id", "version_id")}
    later["log"] = t.c.log + stmt.excluded.log
    return stmt.on_conflict_do_update(index_elements=[t.c.request_id], set_=later,
                                      where=t.c.started_ms < stmt.excluded.started_ms)


def _upsert_instances(dialect: Any) -> Any:
    """Instance records: a new instance inserts; a known one takes its state."""
    t = schema.instances
    stmt = dialect.insert(t)
    changing = {k: stmt.excluded[k] for k in ("state", "stop_reason", "destroyed_ms")}
    return stmt.on_conflict_do_update(index_elements=[t.c.instance_id], set_=changing)


def _merged(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per request id (a statement may not touch a row twice): attempts of one
    request id in the same batch become the last one, with every log in order."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        seen = out.get(record["request_id"])
        if seen is None:
            out[record["request_id"]] = record
        elif record["started_ms"] > seen["started_ms"]:
            out[record["request_id"]] = {**record, "log": seen["log"] + record["log"]}
    return list(out.values())
