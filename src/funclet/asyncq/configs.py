"""FC's async invoke configs, cached in memory for the dispatcher, stored in the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from funclet.asyncq.policy import AsyncConfig, parse_async_config
from funclet.store.tasks import TaskStore

DEFAULT = AsyncConfig()


class AsyncConfigs:
    """Per-function async config; functions without one get FC's defaults."""

    def __init__(self, tasks: TaskStore) -> None:
        self._tasks = tasks
        self._configs: dict[str, tuple[AsyncConfig, int, int]] = {}
        # Told the function whose config changed here (other nodes hear).
        self.on_change: list[Callable[[str], Awaitable[object]]] = []

    async def load(self) -> None:
        self._configs = await self._tasks.configs()

    def of(self, function_name: str) -> AsyncConfig:
        entry = self._configs.get(function_name)
        return entry[0] if entry else DEFAULT

    def names(self) -> list[str]:
        return list(self._configs)

    def get(self, function_name: str) -> tuple[AsyncConfig, int, int] | None:
        return self._configs.get(function_name)

    async def put(self, function_name: str, body: dict[str, Any]) -> tuple[AsyncConfig, int, int]:
        config = parse_async_config(body)
        created, modified = await self._tasks.put_config(function_name, config)
        self._configs[function_name] = (config, created, modified)
        for tell in self.on_change:
            await tell(function_name)
        return self._configs[function_name]

    async def delete(self, function_name: str) -> bool:
        self._configs.pop(function_name, None)
        deleted = await self._tasks.delete_config(function_name)
        if deleted:
            for tell in self.on_change:
                await tell(function_name)
        return deleted
