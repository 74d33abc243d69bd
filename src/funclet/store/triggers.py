"""Triggers in the metadata store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from funclet.store import schema
from funclet.store.metadata import Store

_t = schema.triggers
_NEXT_FIRE = (update(_t)
              .where(and_(_t.c.function_name == bindparam("b_function"),
                          _t.c.trigger_name == bindparam("b_trigger")))
              .values(next_fire_ms=bindparam("b_next")))


@dataclass(frozen=True)
class TriggerRow:
    function_name: str
    trigger_name: str
    trigger_id: str
    trigger_type: str
    config: dict[str, Any]
    description: str
    qualifier: str
    invocation_role: str
    source_arn: str
    created_ms: int
    modified_ms: int
    next_fire_ms: int | None = None


class TriggerStore:
    """Reads and writes ``triggers``."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._writer = store.writer

    async def create(self, row: TriggerRow) -> bool:
        """``False`` if the function already has a trigger of that name."""
        try:
            await self._writer.run(lambda conn: conn.execute(insert(_t).values(**asdict(row))))
        except IntegrityError:
            return False
        return True

    async def update(self, row: TriggerRow) -> None:
        values = asdict(row)
        await self._writer.run(lambda conn: conn.execute(update(_t).where(and_(
            _t.c.function_name == row.function_name,
            _t.c.trigger_name == row.trigger_name)).values(**values)))

    async def delete(self, function_name: str, trigger_name: str | None = None) -> int:
        """Delete one trigger, or (``trigger_name`` None) all of a function's."""
        where = _t.c.function_name == function_name
        if trigger_name is not None:
            where = and_(where, _t.c.trigger_name == trigger_name)
        return await self._writer.run(
            lambda conn: int(conn.execute(delete(_t).where(where)).rowcount or 0))

    async def all(self) -> list[TriggerRow]:
        async with self._engine.connect() as conn:
            return [TriggerRow(**r._mapping) for r in await conn.execute(select(_t))]

    async def of_function(self, function_name: str) -> list[TriggerRow]:
        async with self._engine.connect() as conn:
            return [TriggerRow(**r._mapping) for r in await conn.execute(
                select(_t).where(_t.c.function_name == function_name))]

    async def set_next_fires(self, fires: list[tuple[str, str, int | None]]) -> None:
        """(function, trigger, next fire ms) for each timer that moved on."""
        params = [{"b_function": f, "b_trigger": t, "b_next": n} for f, t, n in fires]
        await self._writer.run(lambda conn: conn.execute(_NEXT_FIRE, params))
