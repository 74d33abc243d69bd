"""FC's async invoke configs, cached in memory for the dispatcher, stored in the database.

A config belongs to a function and a qualifier (LATEST, a version, an alias). A task
runs under its qualifier's config; without one, under the function's LATEST config
(set once, it covers every qualifier that has none of its own); else FC's defaults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from funclet.asyncq.policy import AsyncConfig, parse_async_config
from funclet.store.tasks import TaskStore

DEFAULT = AsyncConfig()
LATEST = "LATEST"
Entry = tuple[AsyncConfig, int, int]  # the config, created and modified (ms)


class AsyncConfigs:
    """Per function and qualifier; without one, LATEST's; without that, FC's defaults."""

    def __init__(self, tasks: TaskStore) -> None:
        self._tasks = tasks
        self._configs: dict[tuple[str, str], Entry] = {}
        # Told the function whose config changed here (other nodes hear).
        self.on_change: list[Callable[[str], Awaitable[object]]] = []

    async def load(self) -> None:
        self._configs = await self._tasks.configs()

    def of(self, function_name: str, qualifier: str = LATEST) -> AsyncConfig:
        entry = self._configs.get((function_name, qualifier)) or self._configs.get(
            (function_name, LATEST))
        return entry[0] if entry else DEFAULT

    def keys(self) -> list[tuple[str, str]]:
        """(function, qualifier) of every config, in order."""
        return sorted(self._configs)

    def get(self, function_name: str, qualifier: str = LATEST) -> Entry | None:
        return self._configs.get((function_name, qualifier))

    async def put(self, function_name: str, body: dict[str, Any],
                  qualifier: str = LATEST) -> Entry:
        config = parse_async_config(body)
        created, modified = await self._tasks.put_config(function_name, qualifier, config)
        self._configs[(function_name, qualifier)] = (config, created, modified)
        for tell in self.on_change:
            await tell(function_name)
        return self._configs[(function_name, qualifier)]

    async def delete(self, function_name: str, qualifier: str | None = None) -> bool:
        """One qualifier's config, or (``None``: the function is gone) all of them."""
        for key in [k for k in self._configs if k[0] == function_name
                    and (qualifier is None or k[1] == qualifier)]:
            del self._configs[key]
        deleted = await self._tasks.delete_config(function_name, qualifier)
        if deleted:
            for tell in self.on_change:
                await tell(function_name)
        return deleted
