"""Versions and aliases (FC's PublishFunctionVersion, CreateAlias, ...), and what a
``qualifier`` names: ``LATEST`` (the function as it is now), a published version's id,
or an alias, which picks its version (or, by weight, its additional one) per call.

A version is immutable: its config and code are the function's when it was published,
and it runs on instances of its own. Aliases are kept in memory (read at start, and
again when this node or another changes the function), so resolving one costs no
database read; versions are read once, when first invoked here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from funclet.errors import AliasNotFound, InvalidArgument, VersionNotFound
from funclet.functions import Functions
from funclet.instances.registry import Registry
from funclet.models import FunctionVersion
from funclet.store.metadata import Store
from funclet.store.tasks import now_ms
from funclet.store.versions import AliasRow, VersionRow, VersionStore

LATEST = "LATEST"
ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
VERSION_RE = re.compile(r"^[1-9][0-9]{0,9}$")
MAX_DESCRIPTION = 256


def parse_qualifier(qualifier: str | None) -> str:
    """``LATEST``, a version id or an alias name; 400 for anything else."""
    if qualifier is None or qualifier == "":
        return LATEST
    if qualifier == LATEST or VERSION_RE.fullmatch(qualifier) or ALIAS_RE.fullmatch(qualifier):
        return qualifier
    raise InvalidArgument(f"qualifier '{qualifier[:64]}' is not LATEST, a version id or an "
                          "alias name")


class Versions:
    """Publishes and deletes versions, keeps aliases, resolves qualifiers."""

    def __init__(self, store: VersionStore, functions: Functions, registry: Registry,
                 targets: Store) -> None:
        self._store = store
        self._functions = functions
        self._registry = registry
        self._targets = targets  # provision targets per qualifier
        self._aliases: dict[str, dict[str, AliasRow]] = {}
        self._versions: dict[tuple[str, int], FunctionVersion] = {}
        self.on_change: list[Callable[[str], Awaitable[object]]] = []
        self._random = random.random
        # PutProvisionConfig with a qualifier: (function, version or alias) -> target, and
        # the versions each function keeps started now (version id -> instances).
        self.provisioned: dict[tuple[str, str], int] = {}
        self._started: dict[str, dict[str, int]] = {}

    async def load_all(self) -> None:
        self._aliases = {}
        for alias in await self._store.all_aliases():
            self._aliases.setdefault(alias.function_name, {})[alias.alias_name] = alias
        self.provisioned = {k: t for k, t in (
            await self._targets.qualified_provision_targets()).items() if k[1] != LATEST}
        for name in {n for n, _ in self.provisioned}:
            await self.apply_provision(name)

    async def sync(self, name: str) -> None:
        """``name`` changed (here or on another node): read its aliases again, and stop
        running versions that are gone."""
        aliases = await self._store.aliases(name)
        self._aliases[name] = {a.alias_name: a for a in aliases}
        if not aliases:
            del self._aliases[name]
        for key, cached in [(k, v) for k, v in self._versions.items() if k[0] == name]:
            row = await self._store.get(name, key[1])
            if row is None or (row.code_checksum, row.config) != (cached.code_checksum,
                                                                   cached.config):
                # Gone, or another function's now (deleted and made again, ids anew).
                del self._versions[key]
                self._registry.retire_version(name, str(key[1]))
        for target in [k for k in self.provisioned if k[0] == name]:
            del self.provisioned[target]
        self.provisioned.update({k: t for k, t in (
            await self._targets.qualified_provision_targets(name)).items() if k[1] != LATEST})
        await self.apply_provision(name)

    def forget(self, name: str) -> None:
        """The function was deleted: its versions and aliases went with it."""
        self._aliases.pop(name, None)
        for key in [k for k in self._versions if k[0] == name]:
            del self._versions[key]
        for target in [k for k in self.provisioned if k[0] == name]:
            del self.provisioned[target]
        self._started.pop(name, None)

    async def _changed(self, name: str) -> None:
        await self.apply_provision(name)  # an alias may point elsewhere now
        for tell in self.on_change:
            await tell(name)

    # -- provisioned instances of versions and aliases ------------------------------

    async def set_provision(self, name: str, qualifier: str, target: int) -> None:
        """PutProvisionConfig (``target`` 0: DeleteProvisionConfig) for a version or an
        alias: instances of the version it names are kept started (an alias's main
        version; when the alias moves, they move with it)."""
        await self.version_ids(name, qualifier)  # 404 for an unknown one
        await self._targets.set_provision_target(name, target, qualifier)
        if target:
            self.provisioned[(name, qualifier)] = target
        else:
            self.provisioned.pop((name, qualifier), None)
        await self._changed(name)

    def provision_version(self, name: str, qualifier: str) -> str | None:
        """The version id whose instances a qualifier's provision config keeps."""
        if VERSION_RE.fullmatch(qualifier):
            return qualifier
        alias = self._aliases.get(name, {}).get(qualifier)
        return str(alias.version_id) if alias is not None else None

    async def apply_provision(self, name: str) -> None:
        """Keep started what the function's provision configs of versions and aliases
        name now (nothing while its invocations are disabled)."""
        wanted: dict[str, int] = {}
        for (fn, qualifier), target in self.provisioned.items():
            if fn != name or name in self._functions.disabled:
                continue
            version_id = self.provision_version(fn, qualifier)
            if version_id is not None:
                wanted[version_id] = wanted.get(version_id, 0) + target
        for version_id in {*wanted, *self._started.get(name, {})}:
            target = wanted.get(version_id, 0)
            try:
                version = await self._version(name, int(version_id))
            except VersionNotFound:
                continue
            self._registry.set_version_provision(version, self._functions.share(
                f"{name}/{version_id}", target))
        if wanted:
            self._started[name] = wanted
        else:
            self._started.pop(name, None)

    def reshare(self) -> None:
        """The live nodes changed: each version's provisioned instances anew."""
        for name, wanted in self._started.items():
            for version_id, target in wanted.items():
                version = self._versions.get((name, int(version_id)))
                if version is not None:
                    self._registry.set_version_provision(version, self._functions.share(
                        f"{name}/{version_id}", target))

    # -- versions -----------------------------------------------------------------

    async def publish(self, name: str, body: dict[str, Any]) -> VersionRow:
        await self._functions.get(name)
        row, _new = await self._store.publish(name, _description(body))
        await self._changed(name)
        return row

    async def page(self, name: str, limit: int, direction: str,
                   token: str) -> tuple[list[VersionRow], str]:
        """ListFunctionVersions: ``BACKWARD`` (newest first, FC's default) or
        ``FORWARD``; the next token is the last id of a full page."""
        await self._functions.get(name)
        if direction not in ("BACKWARD", "FORWARD"):
            raise InvalidArgument(f"direction must be BACKWARD or FORWARD, got '{direction}'")
        if token and not VERSION_RE.fullmatch(token):
            raise InvalidArgument("nextToken is not one this API gave")
        rows = await self._store.page(name, limit + 1, direction == "BACKWARD",
                                      int(token) if token else None)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, str(rows[-1].version_id) if more else ""

    async def get(self, name: str, version_id: str) -> VersionRow:
        await self._functions.get(name)
        row = await self._store.get(name, _version_id(name, version_id))
        if row is None:
            raise VersionNotFound(name, version_id)
        return row

    async def delete(self, name: str, version_id: str) -> None:
        await self._functions.get(name)
        number = _version_id(name, version_id)
        await self._store.delete(name, number)
        self._versions.pop((name, number), None)
        self._registry.retire_version(name, str(number))
        await self._drop_provision(name, str(number))
        await self._changed(name)

    # -- aliases ------------------------------------------------------------------

    async def create_alias(self, name: str, body: dict[str, Any]) -> AliasRow:
        await self._functions.get(name)
        alias_name = body.get("aliasName")
        if not isinstance(alias_name, str) or not ALIAS_RE.fullmatch(alias_name) or (
                alias_name == LATEST):
            raise InvalidArgument(
                "aliasName is required: 1-128 letters, digits, '_' and '-', starting with a "
                "letter or '_', and not LATEST")
        now = now_ms()
        alias = AliasRow(name, alias_name, *_routing(body, None), _description(body),
                         now, now)
        return await self._put(alias, create=True)

    async def update_alias(self, name: str, alias_name: str, body: dict[str, Any]) -> AliasRow:
        current = await self.get_alias(name, alias_name)
        version_id, weight = _routing(body, current)
        description = (_description(body) if body.get("description") is not None
                       else current.description)
        alias = AliasRow(name, alias_name, version_id, weight, description,
                         current.created_ms, now_ms())
        return await self._put(alias, create=False)

    async def _put(self, alias: AliasRow, create: bool) -> AliasRow:
        row = await self._store.put_alias(alias, create)
        self._aliases.setdefault(alias.function_name, {})[alias.alias_name] = row
        await self._changed(alias.function_name)
        return row

    async def get_alias(self, name: str, alias_name: str) -> AliasRow:
        await self._functions.get(name)
        for alias in await self._store.aliases(name):
            if alias.alias_name == alias_name:
                return alias
        raise AliasNotFound(name, alias_name)

    async def list_aliases(self, name: str, prefix: str, limit: int,
                           token: str) -> tuple[list[AliasRow], str]:
        await self._functions.get(name)
        rows = [a for a in await self._store.aliases(name)
                if a.alias_name.startswith(prefix) and a.alias_name > token]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, rows[-1].alias_name if more else ""

    async def delete_alias(self, name: str, alias_name: str) -> None:
        await self._functions.get(name)
        await self._store.delete_alias(name, alias_name)
        self._aliases.get(name, {}).pop(alias_name, None)
        await self._drop_provision(name, alias_name)
        await self._changed(name)

    def aliases_of(self, name: str) -> list[AliasRow]:
        """The function's aliases, from memory (by name)."""
        return sorted(self._aliases.get(name, {}).values(), key=lambda a: a.alias_name)

    def alias_names(self, name: str) -> list[str]:
        return [a.alias_name for a in self.aliases_of(name)]

    async def counts(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """(how many published versions, the newest id) of each function that has any."""
        return await self._store.counts(names)

    async def page_all(self, name: str, limit: int = 100) -> list[VersionRow]:
        """The function's newest versions (the console's)."""
        return await self._store.page(name, limit, True, None)

    async def _drop_provision(self, name: str, qualifier: str) -> None:
        """A deleted version's or alias's provision config goes with it."""
        if self.provisioned.pop((name, qualifier), None) is not None:
            await self._targets.set_provision_target(name, 0, qualifier)

    # -- qualifiers ---------------------------------------------------------------

    def resolve_now(self, name: str, qualifier: str) -> FunctionVersion | None:
        """``resolve`` from memory alone: None when it would need the store."""
        if VERSION_RE.fullmatch(qualifier):
            return self._versions.get((name, int(qualifier)))
        alias = self._aliases.get(name, {}).get(qualifier)
        if alias is None:
            return None
        version_id = alias.version_id
        for other, weight in alias.additional_weight.items():
            if self._random() < weight:
                version_id = int(other)
        return self._versions.get((name, version_id))

    async def resolve(self, name: str, qualifier: str) -> FunctionVersion:
        """The published version a qualifier (not LATEST) runs now: a version id's, or
        the alias's pick (its additional version by weight)."""
        if VERSION_RE.fullmatch(qualifier):
            return await self._version(name, int(qualifier))
        alias = self._aliases.get(name, {}).get(qualifier)
        if alias is None:
            await self._functions.get(name)  # 404 for the function first
            raise AliasNotFound(name, qualifier)
        version_id = alias.version_id
        for other, weight in alias.additional_weight.items():
            if self._random() < weight:
                version_id = int(other)
        return await self._version(name, version_id)

    async def version_ids(self, name: str, qualifier: str) -> set[str]:
        """The versions a qualifier may run: itself, or an alias's one or two."""
        if qualifier == LATEST:
            return {LATEST}
        if VERSION_RE.fullmatch(qualifier):
            return {str((await self.get(name, qualifier)).version_id)}
        alias = await self.get_alias(name, qualifier)
        return {str(alias.version_id), *alias.additional_weight}

    async def resolve_row(self, name: str, qualifier: str) -> VersionRow:
        """GetFunction's: the version a version id or an alias names (its main one)."""
        if VERSION_RE.fullmatch(qualifier):
            return await self.get(name, qualifier)
        alias = await self.get_alias(name, qualifier)
        return await self.get(name, str(alias.version_id))

    async def _version(self, name: str, version_id: int) -> FunctionVersion:
        version = self._versions.get((name, version_id))
        if version is None:
            row = await self._store.get(name, version_id)
            if row is None:
                await self._functions.get(name)
                raise VersionNotFound(name, str(version_id))
            version = FunctionVersion(row.config, row.revision, row.code_checksum,
                                      str(version_id), row.code_crc64)
            self._versions[(name, version_id)] = version
        return version


def _version_id(name: str, text: str) -> int:
    if not VERSION_RE.fullmatch(text):
        raise VersionNotFound(name, text[:64])
    return int(text)


def _description(body: dict[str, Any]) -> str:
    description = body.get("description")
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidArgument(f"description must be a string of at most {MAX_DESCRIPTION} "
                              "characters")
    return description


def _routing(body: dict[str, Any], current: AliasRow | None) -> tuple[int, dict[str, float]]:
    """An alias's ``versionId`` and ``additionalVersionWeight`` from a request body
    (an update keeps what it does not name)."""
    raw = body.get("versionId")
    if raw is None and current is not None:
        version_id = current.version_id
    elif isinstance(raw, str) and VERSION_RE.fullmatch(raw):
        version_id = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw < 10**10:
        version_id = raw
    else:
        raise InvalidArgument("versionId is required: a published version's id (LATEST "
                              "cannot be aliased)")
    weights = body.get("additionalVersionWeight")
    if weights is None:
        weights = dict(current.additional_weight) if current is not None else {}
    if not isinstance(weights, dict) or len(weights) > 1:
        raise InvalidArgument("additionalVersionWeight must map at most one version id to "
                              "a weight from 0 to 1")
    out: dict[str, float] = {}
    for other, weight in weights.items():
        if not isinstance(other, str) or not VERSION_RE.fullmatch(other):
            raise InvalidArgument(f"additionalVersionWeight: '{other}' is not a version id")
        if int(other) == version_id:
            raise InvalidArgument("additionalVersionWeight names the alias's own versionId")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not (
                0 <= weight <= 1):
            raise InvalidArgument(f"additionalVersionWeight: the weight of version {other} "
                                  "must be a number from 0 to 1")
        out[other] = float(weight)
    return version_id, out
