"""Function versions and aliases, over the metadata store's engine and writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from funclet.errors import (
    AliasAlreadyExists,
    AliasNotFound,
    VersionInUse,
    VersionNotFound,
)
from funclet.models import FunctionConfig, function_not_found, parse_config
from funclet.store import schema
from funclet.store.metadata import Store, _row
from funclet.store.tasks import now_ms


@dataclass(frozen=True)
class VersionRow:
    """A published version: what the function was when it was published."""

    function_name: str
    version_id: int
    description: str
    revision: int
    config: FunctionConfig
    code_checksum: str
    code_size: int
    created_ms: int
    code_crc64: str = ""


@dataclass(frozen=True)
class AliasRow:
    function_name: str
    alias_name: str
    version_id: int
    additional_weight: dict[str, float]  # {version id: share of the invocations, 0..1}
    description: str
    created_ms: int
    modified_ms: int


def _version(r: Any) -> VersionRow:
    return VersionRow(r.function_name, r.version_id, r.description, r.revision,
                      parse_config(r.config), r.code_checksum, r.code_size, r.created_ms,
                      r.code_crc64 or "")


def _alias(r: Any) -> AliasRow:
    return AliasRow(r.function_name, r.alias_name, r.version_id,
                    {str(k): float(v) for k, v in dict(r.additional_weight).items()},
                    r.description, r.created_ms, r.modified_ms)


_v, _a, _c = schema.function_versions, schema.aliases, schema.function_counters


class VersionStore:
    """Reads on the async engine; every write one transaction through the writer."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._writer = store.writer

    # -- versions -------------------------------------------------------------------

    async def publish(self, name: str, description: str) -> tuple[VersionRow, bool]:
        """Publish the function as it is now: (the version, whether it is new). When
        nothing changed since the last version, that version is the answer."""

        def write(conn: Connection) -> tuple[VersionRow, bool]:
            f = schema.functions
            # (Locked: publishes of one function from several nodes go one at a time.)
            current = conn.execute(select(f).where(f.c.name == name).with_for_update()).first()
            if current is None:
                raise function_not_found(name)
            row = _row(current)
            last = conn.execute(select(_v).where(_v.c.function_name == name)
                                .order_by(_v.c.version_id.desc()).limit(1)).first()
            if last is not None and last.code_checksum == row.code_checksum and (
                    parse_config(last.config) == row.config):
                return _version(last), False
            counter = conn.execute(select(_c.c.last_version)
                                   .where(_c.c.function_name == name)).scalar()
            version_id = (counter or 0) + 1
            if counter is None:
                conn.execute(insert(_c).values(function_name=name, last_version=version_id))
            else:
                conn.execute(update(_c).where(_c.c.function_name == name)
                             .values(last_version=version_id))
            version = VersionRow(name, version_id, description, row.revision, row.config,
                                 row.code_checksum, row.code_size, now_ms(), row.code_crc64)
            conn.execute(insert(_v).values(**{**version.__dict__, "config": row.config.to_fc(),
                                              "code_crc64": row.code_crc64 or None}))
            return version, True

        return await self._writer.run(write)

    async def get(self, name: str, version_id: int) -> VersionRow | None:
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(_v).where(and_(
                _v.c.function_name == name, _v.c.version_id == version_id)))).first()
        return _version(r) if r else None

    async def page(self, name: str, limit: int, newest_first: bool,
                   after: int | None) -> list[VersionRow]:
        query = select(_v).where(_v.c.function_name == name).limit(limit).order_by(
            _v.c.version_id.desc() if newest_first else _v.c.version_id)
        if after is not None:
            query = query.where(_v.c.version_id < after if newest_first
                                else _v.c.version_id > after)
        async with self._engine.connect() as conn:
            return [_version(r) for r in await conn.execute(query)]

    async def counts(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """Each function's published versions: (how many, the newest id), one statement."""
        if not names:
            return {}
        query = (select(_v.c.function_name, func.count(), func.max(_v.c.version_id))
                 .where(_v.c.function_name.in_(names)).group_by(_v.c.function_name))
        async with self._engine.connect() as conn:
            return {r[0]: (int(r[1]), int(r[2])) for r in await conn.execute(query)}

    async def delete(self, name: str, version_id: int) -> None:
        """Refused while an alias routes to the version."""

        def write(conn: Connection) -> None:
            users = sorted(a.alias_name for a in map(_alias, conn.execute(
                select(_a).where(_a.c.function_name == name)))
                if a.version_id == version_id or str(version_id) in a.additional_weight)
            if users:
                raise VersionInUse(f"version {version_id} of function '{name}' is in use by "
                                   f"alias {', '.join(repr(u) for u in users)}: point the "
                                   "alias elsewhere first")
            gone = conn.execute(delete(_v).where(and_(
                _v.c.function_name == name, _v.c.version_id == version_id))).rowcount
            if not gone:
                raise VersionNotFound(name, str(version_id))

        await self._writer.run(write)

    # -- aliases --------------------------------------------------------------------

    async def put_alias(self, alias: AliasRow, create: bool) -> AliasRow:
        """Create (``create``) or replace an alias; the versions it names must exist."""

        def write(conn: Connection) -> AliasRow:
            f = schema.functions  # (locked: one alias write per function at a time)
            conn.execute(select(f.c.name).where(f.c.name == alias.function_name)
                         .with_for_update())
            wanted = {alias.version_id, *map(int, alias.additional_weight)}
            have = {r.version_id for r in conn.execute(select(_v.c.version_id).where(and_(
                _v.c.function_name == alias.function_name, _v.c.version_id.in_(wanted))))}
            if missing := sorted(wanted - have):
                raise VersionNotFound(alias.function_name, str(missing[0]))
            key = and_(_a.c.function_name == alias.function_name,
                       _a.c.alias_name == alias.alias_name)
            existing = conn.execute(select(_a).where(key)).first()
            if create and existing is not None:
                raise AliasAlreadyExists(alias.function_name, alias.alias_name)
            if not create and existing is None:
                raise AliasNotFound(alias.function_name, alias.alias_name)
            row = alias if existing is None else AliasRow(
                **{**alias.__dict__, "created_ms": existing.created_ms})
            conn.execute(delete(_a).where(key))
            conn.execute(insert(_a).values(**row.__dict__))
            return row

        return await self._writer.run(write)

    async def aliases(self, name: str) -> list[AliasRow]:
        async with self._engine.connect() as conn:
            return [_alias(r) for r in await conn.execute(
                select(_a).where(_a.c.function_name == name).order_by(_a.c.alias_name))]

    async def all_aliases(self) -> list[AliasRow]:
        async with self._engine.connect() as conn:
            return [_alias(r) for r in await conn.execute(select(_a))]

    async def delete_alias(self, name: str, alias_name: str) -> None:
        gone = await self._writer.run(lambda conn: conn.execute(delete(_a).where(and_(
            _a.c.function_name == name, _a.c.alias_name == alias_name))).rowcount)
        if not gone:
            raise AliasNotFound(name, alias_name)

