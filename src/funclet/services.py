"""FC 2.0's services, over 3.0's functions.

FC 2.0 groups functions under services and keeps the role, logs, network and tracing
at the service; 3.0 has functions only, each with those fields of its own. funclet
maps them onto one name: function ``fn`` of service ``svc`` *is* the 3.0 function
``svc$fn`` (no 3.0 name holds a ``$`` otherwise). Both APIs see the same function (its
code, instances, triggers, versions, records). A service is a row of its own
(``services``); its ``internetAccess``, ``role``, ``logConfig`` and ``tracingConfig``
are copied onto each of its functions when the function is created through 2.0 and
whenever the service changes. A 3.0 function named ``svc$fn`` whose service does not
exist is still invocable through 2.0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from funclet.errors import ApiError, InvalidArgument
from funclet.functions import Functions
from funclet.models import CLOUD_ONLY, NAME_RE
from funclet.store import schema
from funclet.store.metadata import Store
from funclet.store.tasks import now_ms

SEPARATOR = "$"
# A service's fields that its functions carry in 3.0 (copied onto them).
INHERITED = ("internetAccess", "role", "logConfig", "tracingConfig")
_KINDS: dict[str, tuple[type, str]] = {
    "description": (str, "a string"), "role": (str, "a string"),
    "logConfig": (dict, "an object"), "tracingConfig": (dict, "an object"),
    "internetAccess": (bool, "true or false"),
}


class ServiceNotFound(ApiError):
    code = "ServiceNotFound"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"service '{name[:128]}' does not exist")


class ServiceAlreadyExists(ApiError):
    code = "ServiceAlreadyExists"
    status = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"service '{name}' already exists")


class ServiceNotEmpty(ApiError):
    code = "ServiceNotEmpty"
    status = 400


@dataclass(frozen=True)
class ServiceRow:
    name: str
    service_id: str
    config: dict[str, Any]
    created_ms: int
    modified_ms: int


def function_name(service: str, function: str) -> str:
    """The 3.0 function of ``function`` under ``service`` (400 if either is malformed)."""
    check_name(service, "serviceName")
    check_name(function, "functionName")
    name = f"{service}{SEPARATOR}{function}"
    if len(name) > 128:
        raise InvalidArgument(
            f"service and function name together are {len(name)} characters: funclet keeps "
            f"a 2.0 function as the 3.0 function '{{service}}${{function}}', at most 128")
    return name


def check_name(name: str, what: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(f"{what} '{name[:128]}' is invalid: 1-128 characters, letters, "
                              "digits, '_' and '-', not starting with a digit or '-'")


def _parse(body: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    for key, why in CLOUD_ONLY.items():
        if key in ("vpcConfig", "nasConfig", "ossMountConfig") and _set(body.get(key)):
            raise InvalidArgument(f"{key} is not supported by funclet: {why}")
    out = dict(base or {"internetAccess": True, "description": ""})
    for key, (kind, what) in _KINDS.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise InvalidArgument(f"{key} must be {what}")
        if key == "description" and isinstance(value, str) and len(value) > 256:
            raise InvalidArgument("description must be at most 256 characters")
        out[key] = value
    return out


def _set(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_set(v) for v in value.values())
    if isinstance(value, list):
        return any(_set(v) for v in value)
    return bool(value) and value not in (-1,)


def _row(r: Any) -> ServiceRow:
    return ServiceRow(r.name, r.service_id, dict(r.config), r.created_ms, r.modified_ms)


class Services:
    """Create, read, change and delete services; keep their functions in step."""

    def __init__(self, store: Store, functions: Functions) -> None:
        self._engine = store.engine
        self._writer = store.writer
        self._functions = functions

    async def create(self, body: dict[str, Any]) -> ServiceRow:
        name = body.get("serviceName")
        if not isinstance(name, str):
            raise InvalidArgument("serviceName is required and must be a string")
        check_name(name, "serviceName")
        now = now_ms()
        row = ServiceRow(name, str(uuid.uuid4()), _parse(body), now, now)
        s = schema.services

        def write(conn: Connection) -> None:
            if conn.execute(select(s.c.name).where(s.c.name == name)).first() is not None:
                raise ServiceAlreadyExists(name)
            conn.execute(insert(s).values(**row.__dict__))

        await self._writer.run(write)
        return row

    async def get(self, name: str) -> ServiceRow:
        s = schema.services
        async with self._engine.connect() as conn:
            r = (await conn.execute(select(s).where(s.c.name == name))).first()
        if r is None:
            raise ServiceNotFound(name)
        return _row(r)

    async def page(self, prefix: str, limit: int, after: str) -> list[ServiceRow]:
        s = schema.services
        query = select(s).order_by(s.c.name).limit(limit)
        if prefix:
            query = query.where(s.c.name.startswith(prefix, autoescape=True))
        if after:
            query = query.where(s.c.name > after)
        async with self._engine.connect() as conn:
            return [_row(r) for r in await conn.execute(query)]

    async def update(self, name: str, body: dict[str, Any]) -> ServiceRow:
        old = await self.get(name)
        config = _parse(body, old.config)
        s = schema.services
        modified = now_ms()

        def write(conn: Connection) -> None:
            if not conn.execute(update(s).where(s.c.name == name).values(
                    config=config, modified_ms=modified)).rowcount:
                raise ServiceNotFound(name)

        await self._writer.run(write)
        changes = {k: config[k] for k in INHERITED if config.get(k) != old.config.get(k)
                   and config.get(k) is not None}
        if changes:  # its functions carry these fields in 3.0
            for fn in await self.functions(name):
                await self._functions.update(fn, changes)
        return ServiceRow(name, old.service_id, config, old.created_ms, modified)

    async def delete(self, name: str) -> None:
        await self.get(name)
        left = await self.functions(name, limit=1)
        if left:
            raise ServiceNotEmpty(f"service '{name}' still has functions (e.g. "
                                  f"'{left[0].split(SEPARATOR, 1)[1]}'): delete them first")
        s = schema.services

        def write(conn: Connection) -> None:
            conn.execute(delete(s).where(s.c.name == name))

        await self._writer.run(write)

    async def functions(self, service: str, limit: int = 10_000) -> list[str]:
        """The 3.0 names of the service's functions."""
        rows = await self._functions.page(f"{service}{SEPARATOR}", limit, "")
        return [r.name for r in rows]

    def inherited(self, service: ServiceRow) -> dict[str, Any]:
        """What a new function of ``service`` takes from it."""
        return {k: service.config[k] for k in INHERITED if service.config.get(k) is not None}
