"""Triggers: what turns an event into an invocation — timers, HTTP requests, messages.

``Triggers`` is FC's trigger API over the store, with every trigger kept in memory and
handed to the part that runs it: timers to ``Timers``, message-queue triggers to
``Consumers``; HTTP triggers are looked up by the API's HTTP trigger route.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from funclet.errors import InvalidArgument, TriggerAlreadyExists, TriggerNotFound
from funclet.store.triggers import TriggerRow, TriggerStore
from funclet.triggers.config import (
    BROKERS,
    HTTP,
    TIMER,
    BrokerConfig,
    HttpConfig,
    Parsed,
    TimerConfig,
    check_name,
    check_type,
    parse_config,
)
from funclet.triggers.consumers import Consumers
from funclet.triggers.timers import Timers

__all__ = ["Triggers", "TriggerRow"]


class Triggers:
    """CreateTrigger, UpdateTrigger, DeleteTrigger and reads (see the module docstring)."""

    def __init__(
        self,
        store: TriggerStore,
        timers: Timers,
        consumers: Consumers,
        function_exists: Callable[[str], Awaitable[object]],
        check_qualifier: Callable[[str, str], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._timers = timers
        self._consumers = consumers
        self._function_exists = function_exists  # raises FunctionNotFound
        # Raises for a qualifier that names no version or alias of the function.
        self._check_qualifier = check_qualifier
        self._triggers: dict[tuple[str, str], tuple[TriggerRow, Parsed]] = {}
        self._http: dict[str, tuple[TriggerRow, HttpConfig]] = {}  # per request: by function
        # Told the function whose triggers changed here (other nodes hear).
        self.on_change: list[Callable[[str], Awaitable[object]]] = []

    async def load(self) -> None:
        for row in await self._store.all():
            _, parsed = parse_config(row.trigger_type, row.config)
            self._triggers[(row.function_name, row.trigger_name)] = (row, parsed)
            self._start(row, parsed)

    async def create(self, function_name: str, body: dict[str, Any]) -> TriggerRow:
        await self._function_exists(function_name)
        name = check_name(body.get("triggerName"))
        kind = check_type(body.get("triggerType"))
        if "triggerConfig" not in body and kind != HTTP:
            raise InvalidArgument(f"triggerConfig is required for a {kind} trigger")
        config, parsed = parse_config(kind, body.get("triggerConfig"))
        if (function_name, name) in self._triggers:
            raise TriggerAlreadyExists(
                f"function '{function_name}' already has a trigger '{name}'")
        if kind == HTTP and self.http(function_name) is not None:
            raise TriggerAlreadyExists(
                f"function '{function_name}' already has an HTTP trigger; it may have one")
        qualifier = await self._qualifier(function_name, body)
        now = int(time.time() * 1000)
        row = TriggerRow(
            function_name, name, str(uuid.uuid4()), kind, config,
            _text(body, "description"), qualifier,
            _text(body, "invocationRole"), _text(body, "sourceArn"), now, now,
            _first_fire(parsed, now))
        # Stored first: a trigger that could not be stored never runs.
        if not await self._store.create(row):
            raise TriggerAlreadyExists(
                f"function '{function_name}' already has a trigger '{name}'")
        self._start(row, parsed)
        self._triggers[(function_name, name)] = (row, parsed)
        await self._changed(function_name)
        return row

    async def update(self, function_name: str, name: str, body: dict[str, Any]) -> TriggerRow:
        """Check the whole request, store it, and only then replace the running trigger:
        a refused or failed update leaves the old one stored and running."""
        row, parsed = self._entry(function_name, name)
        if body.get("triggerType", row.trigger_type) != row.trigger_type:
            raise InvalidArgument("triggerType cannot change: delete the trigger and create "
                                  "it again")
        config, parsed = (parse_config(row.trigger_type, body["triggerConfig"])
                          if "triggerConfig" in body else (row.config, parsed))
        changes: dict[str, Any] = {
            field: _text(body, key) for field, key in (
                ("description", "description"),
                ("invocation_role", "invocationRole"), ("source_arn", "sourceArn"))
            if key in body
        }
        if body.get("qualifier") is not None:
            changes["qualifier"] = await self._qualifier(function_name, body)
        now = int(time.time() * 1000)
        row = replace(row, config=config, modified_ms=now,
                      next_fire_ms=_first_fire(parsed, now), **changes)
        await self._store.update(row)
        self._start(row, parsed)  # replaces the running one
        self._triggers[(function_name, name)] = (row, parsed)
        await self._changed(function_name)
        return row

    async def delete(self, function_name: str, name: str) -> None:
        row, _ = self._entry(function_name, name)
        self._stop(row)
        del self._triggers[(function_name, name)]
        await self._store.delete(function_name, name)
        await self._changed(function_name)

    async def delete_function(self, function_name: str) -> None:
        """The function is gone: so are its triggers."""
        for key in [k for k in self._triggers if k[0] == function_name]:
            self._stop(self._triggers.pop(key)[0])
        await self._store.delete(function_name)

    async def sync(self, function_name: str) -> None:
        """Another node changed the function's triggers: run what the store holds now
        (a trigger that is unchanged keeps running as it is)."""
        stored = {row.trigger_name: row for row in await self._store.of_function(function_name)}
        for key in [k for k in self._triggers if k[0] == function_name]:
            if key[1] not in stored:
                self._stop(self._triggers.pop(key)[0])
        for name, row in stored.items():
            current = self._triggers.get((function_name, name))
            if current is not None and (current[0].trigger_id, current[0].modified_ms) == (
                    row.trigger_id, row.modified_ms):
                continue
            if current is not None and current[0].trigger_id != row.trigger_id:
                self._stop(current[0])  # deleted and made anew under the same name
            _, parsed = parse_config(row.trigger_type, row.config)
            self._start(row, parsed)
            self._triggers[(function_name, name)] = (row, parsed)

    async def _changed(self, function_name: str) -> None:
        for tell in self.on_change:
            await tell(function_name)

    def get(self, function_name: str, name: str) -> TriggerRow:
        return self._entry(function_name, name)[0]

    def list(self, function_name: str, prefix: str, limit: int, after: str) -> list[TriggerRow]:
        names = sorted(n for f, n in self._triggers if f == function_name
                       and n.startswith(prefix) and n > after)
        return [self._triggers[(function_name, n)][0] for n in names[:limit]]

    def http(self, function_name: str) -> tuple[TriggerRow, HttpConfig] | None:
        """The function's HTTP trigger, if it has one."""
        return self._http.get(function_name)

    def next_fire_ms(self, row: TriggerRow) -> int | None:
        """A timer's next scheduled fire (None: not a timer, or disabled)."""
        return self._timers.next_fire_ms((row.function_name, row.trigger_name))

    def status(self, row: TriggerRow) -> tuple[str, str | None]:
        """FC's trigger ``status`` ("OK", or a message-queue trigger's connection state:
        "Connecting", "Connected", "Error") and the last error, if any."""
        if row.trigger_type in BROKERS:
            return self._consumers.status((row.function_name, row.trigger_name))
        return "OK", None

    def _entry(self, function_name: str, name: str) -> tuple[TriggerRow, Parsed]:
        entry = self._triggers.get((function_name, name))
        if entry is None:
            raise TriggerNotFound(function_name, name)
        return entry

    async def _qualifier(self, function_name: str, body: dict[str, Any]) -> str:
        """The trigger's ``qualifier`` (LATEST when not given), once it names something:
        a trigger of a version or alias that does not exist would fail at every fire."""
        qualifier = _text(body, "qualifier") or "LATEST"
        if self._check_qualifier is not None:
            await self._check_qualifier(function_name, qualifier)
        return qualifier

    def _start(self, row: TriggerRow, parsed: Parsed) -> None:
        """Hand the trigger to what runs it (replacing the one running under its name);
        a timer goes on from its stored next fire."""
        key = (row.function_name, row.trigger_name)
        if isinstance(parsed, TimerConfig):
            self._timers.put(key, row.trigger_id, parsed, row.next_fire_ms, row.qualifier)
        if isinstance(parsed, BrokerConfig):
            self._consumers.put(key, row.trigger_id, parsed, row.qualifier)
        if isinstance(parsed, HttpConfig):
            self._http[row.function_name] = (row, parsed)

    def _stop(self, row: TriggerRow) -> None:
        key = (row.function_name, row.trigger_name)
        if row.trigger_type == TIMER:
            self._timers.remove(key)
        elif row.trigger_type in BROKERS:
            self._consumers.remove(key)
        elif row.trigger_type == HTTP:
            self._http.pop(row.function_name, None)


def _first_fire(parsed: Parsed, now: int) -> int | None:
    """A new or changed timer's first fire after ``now`` (None: not a timer, or off)."""
    if isinstance(parsed, TimerConfig) and parsed.enable:
        return parsed.schedule.next_after(now)
    return None


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string")
    return value
