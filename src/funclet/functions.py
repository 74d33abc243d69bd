"""Deploying functions: validate config and code, store both, swap the running version."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from funclet.codestore import CodeStore, Package, crc64
from funclet.errors import (
    FunctionAlreadyExists,
    FunctionNotFound,
    InvalidArgument,
    InvalidCodePackage,
)
from funclet.instances.registry import Registry
from funclet.invoker.admission import Admission
from funclet.models import (
    SNAP_NONE,
    FunctionConfig,
    FunctionVersion,
    function_not_found,
    handler_modules,
    parse_config,
    parse_scaling,
    parse_tags,
)
from funclet.runtimes import Runtime
from funclet.store import FunctionRow, Store

log = logging.getLogger(__name__)


class Functions:
    """CreateFunction, UpdateFunction, DeleteFunction and reads, over store and registry.

    Nothing is stored unless the whole request is valid: config first, then the
    package, then the handler modules against the package's files. A deploy that fails
    after that (a full disk) leaves nothing behind: the package it stored goes too.
    """

    def __init__(
        self,
        store: Store,
        code: CodeStore,
        registry: Registry,
        runtimes: dict[str, Runtime],
        admission: Admission,
    ) -> None:
        self._store = store
        self._code = code
        self._registry = registry
        self._runtimes = runtimes
        self._admission = admission
        # A function's provisioned instances are the cluster's: this node runs its share.
        self.provision_targets: dict[str, int] = {}
        # PutScalingConfig, as stored; its minInstances count as provisioned instances.
        self.scaling: dict[str, dict[str, Any]] = {}
        # DisableFunctionInvocation: (reason, when) of each disabled function; the
        # invoker refuses their invocations (it holds this same dict).
        self.disabled: dict[str, tuple[str, int]] = {}
        self.share: Callable[[str, int], int] = lambda name, target: target
        self.on_delete: list[Callable[[str], Awaitable[object]]] = []
        # Told the name of a function whose stored state changed here (other nodes hear).
        self.on_change: list[Callable[[str], Awaitable[object]]] = []
        # Raises (400) for layers that do not exist or do not take the runtime.
        self.check_layers: Callable[[tuple[str, ...], str], Awaitable[None]] | None = None
        # Per package hash: a deploy that failed removes the package it stored only
        # while no other deploy of that hash is between storing it and its row.
        self._storing: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # lock, users

    async def create(self, body: dict[str, Any]) -> FunctionRow:
        config = parse_config(body)
        tags = parse_tags(body["tags"]) if body.get("tags") is not None else {}
        self._check_runtime(config)
        await self._check_layers(config)
        if await self._store.get_function(config.name) is not None:
            raise FunctionAlreadyExists(config.name)
        data, package = self._package(body, required=True)
        assert data is not None and package is not None
        self._check_handlers(config, package.files)
        now = _now_ms()
        row = FunctionRow(config, str(uuid.uuid4()), 1, package.checksum, package.size, now, now,
                          package.crc64)
        await self._stored(data, package, lambda: self._store.create_function(row))
        if tags:
            await self._store.set_tags("function", row.name, tags, None)
        self._registry.deploy(self._version(row))
        await self._changed(row.name)
        return row

    async def update(self, name: str, body: dict[str, Any]) -> FunctionRow:
        current = await self.get(name)
        config = parse_config(body, base=current.config)
        tags = parse_tags(body["tags"]) if body.get("tags") is not None else None
        self._check_runtime(config)
        if config.layers != current.config.layers or config.runtime != current.config.runtime:
            await self._check_layers(config)
        data, package = self._package(body, required=False)
        if package is not None:
            files = package.files
        else:
            files = _files_of(await self._code.fetch(current.code_checksum))
        self._check_handlers(config, files)
        row = replace(
            current,
            config=config,
            revision=current.revision + 1,
            code_checksum=package.checksum if package else current.code_checksum,
            code_size=package.size if package else current.code_size,
            code_crc64=package.crc64 if package else current.code_crc64,
            modified_ms=_now_ms(),
        )
        await self._stored(data, package, lambda: self._store.update_function(row))
        if tags is not None:  # the list given is the function's tags now
            await self._store.set_tags("function", name, tags, None)
        self._registry.deploy(self._version(row))
        await self._changed(name)
        return row

    async def _stored(self, data: bytes | None, package: Package | None,
                      write_row: Callable[[], Awaitable[None]]) -> None:
        """Store the package (if any), then the row; if the row fails, the package
        this call stored is removed again."""
        if data is None or package is None:
            await write_row()
            return
        lock, users = self._storing.setdefault(package.checksum, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                new = await self._code.put(data, package)
                try:
                    await write_row()
                except BaseException:
                    if new:
                        await self._code.discard(package.checksum)
                    raise
        finally:
            users[0] -= 1
            if not users[0]:
                del self._storing[package.checksum]

    async def delete(self, name: str) -> None:
        await self._store.delete_function(name)
        await self._gone(name)
        await self._changed(name)

    async def _gone(self, name: str) -> None:
        """The function is no longer stored: nothing of it runs here."""
        self.provision_targets.pop(name, None)
        self.scaling.pop(name, None)
        self.disabled.pop(name, None)
        self._registry.undeploy(name)
        self._admission.set_reserved(name, None)
        self._admission.fail_waiters(name, FunctionNotFound(name))
        for forget in self.on_delete:  # e.g. its async invoke config
            await forget(name)

    async def sync(self, name: str) -> None:
        """Another node changed ``name``: run what the store holds now (its current
        version, reserved concurrency and provision target), or nothing if it is gone."""
        row = await self._store.get_function(name)
        if row is None:
            if self._registry.deployed(name):
                await self._gone(name)
            return
        self._registry.deploy(self._version(row))  # the same version: nothing happens
        self._admission.set_reserved(name, (await self._store.reserved_concurrency()).get(name))
        self._apply_scaling(name, (await self._store.scaling_configs()).get(name))
        restriction = (await self._store.restrictions()).get(name)
        if restriction is not None and name not in self.disabled:
            self._disable_here(name, restriction, abort=False)
        elif restriction is not None:
            self.disabled[name] = restriction  # (a new reason)
        else:
            self.disabled.pop(name, None)
        self._provision(name, (await self._store.provision_targets()).get(name, 0))

    async def _changed(self, name: str) -> None:
        for tell in self.on_change:
            await tell(name)

    async def set_reserved_concurrency(self, name: str, body: dict[str, Any]) -> int:
        """FC's PutConcurrencyConfig: cap the function and reserve that many slots."""
        await self.get(name)
        value = body.get("reservedConcurrency")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument("reservedConcurrency must be an integer >= 0")
        most = self._admission.reservable(name)
        if value > most:
            raise InvalidArgument(
                f"reservedConcurrency {value} is more than this function can reserve: "
                f"{most} (the account's {self._admission.max_instances} instances minus "
                f"what other functions reserve)"
            )
        await self._store.set_reserved_concurrency(name, value)
        self._admission.set_reserved(name, value)
        await self._changed(name)
        return value

    async def reserved_concurrency(self, name: str) -> int | None:
        await self.get(name)
        return self._admission.reserved.get(name)

    async def set_scaling(self, name: str, body: dict[str, Any] | None) -> None:
        """PutScalingConfig (None: DeleteScalingConfig): ``minInstances`` are kept
        started; ``horizontalScalingPolicies``, ``scheduledPolicies`` and the rest are
        stored and returned as given."""
        await self.get(name)
        config = None if body is None else parse_scaling(body, self._admission.max_instances)
        await self._store.set_scaling_config(name, config)
        self._apply_scaling(name, config)
        await self._changed(name)

    def _apply_scaling(self, name: str, config: dict[str, Any] | None) -> None:
        if config is None:
            self.scaling.pop(name, None)
        else:
            self.scaling[name] = config
        self._provision(name, self.provision_targets.get(name, 0))

    async def set_provision(self, name: str, body: dict[str, Any]) -> None:
        """FC's PutProvisionConfig: keep ``target`` instances started ahead of time."""
        await self.get(name)
        target = self.target_of(body)
        await self._store.set_provision_target(name, target)
        self._provision(name, target)
        await self._changed(name)

    def target_of(self, body: dict[str, Any]) -> int:
        """PutProvisionConfig's ``target``: 0 to the account's instances."""
        target = body.get("target")
        most = self._admission.max_instances
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target <= most:
            raise InvalidArgument(f"target must be an integer from 0 to {most}")
        return target

    async def clear_reserved_concurrency(self, name: str) -> None:
        await self.get(name)
        await self._store.set_reserved_concurrency(name, None)
        self._admission.set_reserved(name, None)
        await self._changed(name)

    async def change_resource_group(self, name: str, group: str) -> str:
        """ChangeResourceGroup: the function's ``resourceGroupId`` (kept as given) is
        ``group`` from now on; the previous one is returned. Its instances go on (a
        resource group changes nothing they run)."""
        row = await self.get(name)
        old = str(row.config.kept.get("resourceGroupId", ""))
        config = replace(row.config, kept={**row.config.kept, "resourceGroupId": group})
        await self._store.update_function(replace(row, config=config, modified_ms=_now_ms()))
        await self._changed(name)
        return old

    async def disable(self, name: str, body: dict[str, Any]) -> None:
        """DisableFunctionInvocation: refuse its invocations (async tasks wait), stop its
        provisioned instances; ``abortOngoingRequest`` ends running ones too."""
        await self.get(name)
        reason = body.get("reason") or ""
        abort = body.get("abortOngoingRequest") or False
        if not isinstance(reason, str) or len(reason) > 256 or not isinstance(abort, bool):
            raise InvalidArgument("reason must be a string of at most 256 characters and "
                                  "abortOngoingRequest true or false")
        now = _now_ms()
        await self._store.set_restriction(name, reason, now)
        self._disable_here(name, (reason, now), abort)
        await self._changed(name)

    def _disable_here(self, name: str, restriction: tuple[str, int], abort: bool) -> None:
        self.disabled[name] = restriction
        self._registry.set_provision(name, 0)
        self._registry.stop_instances(name, abort)

    async def enable(self, name: str) -> None:
        await self.get(name)
        await self._store.set_restriction(name, None, _now_ms())
        self.disabled.pop(name, None)
        self._provision(name, self.provision_targets.get(name, 0))
        await self._changed(name)

    async def get(self, name: str) -> FunctionRow:
        row = await self._store.get_function(name)
        if row is None:
            raise function_not_found(name)
        return row

    async def page(self, prefix: str, limit: int, after: str) -> list[FunctionRow]:
        return await self._store.list_functions(prefix, limit, after)

    async def load_all(self) -> list[FunctionRow]:
        """Put every stored function's current version in the registry (at start-up)."""
        rows = await self._backfill_crc64(await self._store.list_functions())
        for row in rows:
            self._registry.deploy(self._version(row))
        for name, reserved in (await self._store.reserved_concurrency()).items():
            self._admission.set_reserved(name, reserved)
        self.disabled.update(await self._store.restrictions())
        self.scaling.update(await self._store.scaling_configs())
        for name in self.scaling:
            self._provision(name, 0)
        for name, target in (await self._store.provision_targets()).items():
            self._provision(name, target)
        return rows

    def _provision(self, name: str, target: int) -> None:
        if target:
            self.provision_targets[name] = target
        else:
            self.provision_targets.pop(name, None)
        if name not in self.disabled:  # (a disabled function runs none)
            self._registry.set_provision(name, self.share(name, self.started_target(name)))

    def started_target(self, name: str) -> int:
        """Instances kept started for the function, across the cluster: its provisioned
        target, or its scaling config's minInstances if that is more."""
        return max(self.provision_targets.get(name, 0),
                   int(self.scaling.get(name, {}).get("minInstances") or 0))

    def reshare(self) -> None:
        """The live nodes changed: each function's provisioned instances are shared anew."""
        for name in {*self.provision_targets, *self.scaling}:
            if name not in self.disabled:
                self._registry.set_provision(name, self.share(name, self.started_target(name)))

    @staticmethod
    def _version(row: FunctionRow) -> FunctionVersion:
        return FunctionVersion(row.config, row.revision, row.code_checksum,
                               code_crc64=row.code_crc64)

    async def _backfill_crc64(self, rows: list[FunctionRow]) -> list[FunctionRow]:
        """Rows from before FC's codeChecksum was kept get it from their package (only
        that column, and only while the row still has that package); a package that
        cannot be read now leaves the row as it is (its sha256 is shown meanwhile)."""
        out = []
        for row in rows:
            if not row.code_crc64:
                try:
                    data = await self._code.package(row.code_checksum)
                except Exception as exc:  # the store is down: next start tries again
                    log.warning("The CRC-64 of %s's package could not be computed: %s",
                                row.name, exc)
                    data = None
                if data is not None:
                    row = replace(row, code_crc64=crc64(data))
                    await self._store.set_code_crc64(row.name, row.code_checksum,
                                                     row.code_crc64)
            out.append(row)
        return out

    async def _check_layers(self, config: FunctionConfig) -> None:
        if config.layers and self.check_layers is not None:
            await self.check_layers(config.layers, config.runtime)

    def _check_runtime(self, config: FunctionConfig) -> None:
        if config.runtime not in self._runtimes:
            supported = ", ".join(self._runtimes)
            raise InvalidArgument(
                f"runtime '{config.runtime}' is not supported; supported runtimes: {supported}"
            )
        if self._runtimes[config.runtime].language == "lambda" and (
                config.instance_concurrency > 1):
            raise InvalidArgument(
                f"runtime '{config.runtime}' runs one invocation at a time per instance (the "
                "Lambda Runtime API): instanceConcurrency must be 1")
        if config.snap_start != SNAP_NONE and self._runtimes[config.runtime].language != "python":
            raise InvalidArgument(
                f"snapStart is offered for Python runtimes only, not for '{config.runtime}' "
                "(an instance of another language cannot be forked warm)")

    def _package(
        self, body: dict[str, Any], *, required: bool
    ) -> tuple[bytes | None, Package | None]:
        code = body.get("code")
        if code is None or (isinstance(code, dict) and not code.get("zipFile")):
            if required:
                raise InvalidArgument("code.zipFile is required: a base64-encoded zip archive")
            return None, None
        if not isinstance(code, dict) or not isinstance(code.get("zipFile"), str):
            raise InvalidArgument("code.zipFile must be a base64-encoded zip archive")
        try:
            data = base64.b64decode(code["zipFile"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCodePackage("code.zipFile is not valid base64") from None
        return data, self._code.check(data)

    def _check_handlers(self, config: FunctionConfig, files: frozenset[str]) -> None:
        runtime = self._runtimes[config.runtime]
        for what, handler in handler_modules(config):
            candidates = runtime.handler_files(handler)
            if not candidates:
                continue
            module = handler.rpartition(".")[0]
            found = any(c in files for c in candidates) or (
                runtime.language == "python" and any(
                    f.startswith(module.replace(".", "/") + ".") and f.endswith(".so")
                    for f in files))
            if not found:
                raise InvalidArgument(
                    f"{what} '{handler}': module '{module}' is not in the code package "
                    f"(looked for {' and '.join(candidates)})"
                )


def _files_of(code_dir: str) -> frozenset[str]:
    out = set()
    for root, _dirs, names in os.walk(code_dir):
        rel = os.path.relpath(root, code_dir)
        for n in names:
            out.add(n if rel == "." else f"{rel}/{n}")
    return frozenset(out)


def _now_ms() -> int:
    return int(time.time() * 1000)
