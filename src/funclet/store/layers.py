"""Layers and their versions, over the metadata store's engine and writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from funclet.store import schema
from funclet.store.metadata import Store

_l, _v = schema.layers, schema.layer_versions


@dataclass(frozen=True)
class LayerRow:
    """One layer version (``public``: the layer's ACL, as PutLayerACL set it)."""

    layer_name: str
    version: int
    description: str
    compatible_runtimes: list[str]
    license: str
    code_checksum: str
    code_size: int
    created_ms: int
    public: bool
    deleted: bool = False
    code_crc64: str = ""


def _layer(r: Any) -> LayerRow:
    return LayerRow(r.layer_name, r.version, r.description, list(r.compatible_runtimes),
                    r.license, r.code_checksum, r.code_size, r.created_ms, bool(r.public),
                    r.deleted_ms is not None, r.code_crc64 or "")


_ROWS = select(_v, _l.c.public).join(_l, _l.c.layer_name == _v.c.layer_name)


class LayerStore:
    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._writer = store.writer
        self._dialect = store.dialect

    async def create(self, name: str, description: str, runtimes: list[str], license_: str,
                     checksum: str, size: int, now_ms: int, crc64: str) -> LayerRow:
        """A new version of the layer (the first makes the layer, private)."""

        def write(conn: Connection) -> LayerRow:
            # The layer's row first (another node may make it at the same moment), then
            # locked while its counter moves.
            conn.execute(self._dialect.insert(_l).values(layer_name=name, last_version=0,
                                                         public=0).on_conflict_do_nothing())
            row = conn.execute(select(_l).where(_l.c.layer_name == name)
                               .with_for_update()).one()
            version = row.last_version + 1
            conn.execute(update(_l).where(_l.c.layer_name == name).values(last_version=version))
            conn.execute(insert(_v).values(
                layer_name=name, version=version, description=description,
                compatible_runtimes=runtimes, license=license_, code_checksum=checksum,
                code_size=size, created_ms=now_ms, code_crc64=crc64))
            return LayerRow(name, version, description, runtimes, license_, checksum, size,
                            now_ms, bool(row.public), False, crc64)

        return await self._writer.run(write)

    async def get(self, name: str, version: int, deleted: bool = False) -> LayerRow | None:
        """One version; ``deleted``: also one that was deleted (functions still run it)."""
        query = _ROWS.where(and_(_v.c.layer_name == name, _v.c.version == version))
        if not deleted:
            query = query.where(_v.c.deleted_ms.is_(None))
        async with self._engine.connect() as conn:
            r = (await conn.execute(query)).first()
        return _layer(r) if r else None

    async def versions(self, name: str, start: int, limit: int) -> list[LayerRow]:
        """The layer's versions from ``start`` up (deleted ones left out)."""
        query = (_ROWS.where(and_(_v.c.layer_name == name, _v.c.version >= start,
                                  _v.c.deleted_ms.is_(None)))
                 .order_by(_v.c.version).limit(limit))
        async with self._engine.connect() as conn:
            return [_layer(r) for r in await conn.execute(query)]

    async def latest(self, prefix: str, after: str, limit: int,
                     public_only: bool) -> list[LayerRow]:
        """Each layer's newest version, by layer name (ListLayers)."""
        newest = (select(_v.c.layer_name, func.max(_v.c.version).label("version"))
                  .where(_v.c.deleted_ms.is_(None)).group_by(_v.c.layer_name).subquery())
        query = (_ROWS.join(newest, and_(newest.c.layer_name == _v.c.layer_name,
                                         newest.c.version == _v.c.version))
                 .order_by(_v.c.layer_name).limit(limit))
        if prefix:
            query = query.where(_v.c.layer_name.startswith(prefix, autoescape=True))
        if after:
            query = query.where(_v.c.layer_name > after)
        if public_only:
            query = query.where(_l.c.public == 1)
        async with self._engine.connect() as conn:
            return [_layer(r) for r in await conn.execute(query)]

    async def delete(self, name: str, version: int, now_ms: int) -> bool:
        return bool(await self._writer.run(lambda conn: conn.execute(
            update(_v).where(and_(_v.c.layer_name == name, _v.c.version == version,
                                  _v.c.deleted_ms.is_(None))).values(deleted_ms=now_ms)
        ).rowcount))

    async def set_public(self, name: str, public: bool) -> bool:
        return bool(await self._writer.run(lambda conn: conn.execute(
            update(_l).where(_l.c.layer_name == name).values(public=int(public))).rowcount))
