"""Where instances' processes come from: one zygote per runtime, forked on demand.

Knows processes, sockets and signals; knows nothing of pools or invocations.
Namespaces, cgroups, uid and rlimits arrive here with the limits issue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from funclet.runtimes import Runtime
from funclet.sandbox.channel import Channel, ChannelClosed
from funclet.sandbox.zygote import SandboxProcess, Zygote, ZygoteFailed

__all__ = ["Channel", "ChannelClosed", "Sandbox", "SandboxProcess", "ZygoteFailed"]


class Sandbox:
    """Creates instance processes for any known runtime."""

    def __init__(self, runtimes: dict[str, Runtime], run_dir: Path) -> None:
        self._runtimes = runtimes
        self._run_dir = run_dir
        self._zygotes: dict[str, Zygote] = {}
        self._lock = asyncio.Lock()

    async def warm_up(self, runtime: str) -> None:
        """Start the runtime's zygote ahead of the first cold start."""
        await self._zygote(runtime)

    async def create(self, runtime: str, spec: dict[str, Any]) -> SandboxProcess:
        zygote = await self._zygote(runtime)
        return await zygote.spawn(spec)

    async def _zygote(self, runtime: str) -> Zygote:
        zygote = self._zygotes.get(runtime)
        if zygote is not None and zygote.alive:
            return zygote
        async with self._lock:
            zygote = self._zygotes.get(runtime)
            if zygote is None or not zygote.alive:
                rt = self._runtimes[runtime]
                zygote = Zygote(rt.name, rt.zygote_argv(), self._run_dir / f"{rt.name}.log")
                await zygote.start()
                self._zygotes[runtime] = zygote
            return zygote

    async def close(self) -> None:
        for zygote in self._zygotes.values():
            await zygote.stop()
        self._zygotes.clear()
