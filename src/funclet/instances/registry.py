"""The deployed functions' current versions, each with its pool, and reclaiming."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from funclet.instances.instance import Instance
from funclet.instances.keepalive import IdlePattern, IdleTimes, adaptive, expired
from funclet.instances.pool import Pool, PoolDeps
from funclet.instances.state import InstanceState, StopReason
from funclet.models import FunctionVersion, function_not_found

log = logging.getLogger(__name__)


class Registry:
    """Maps a function name to the pool of its current version.

    Deploying a new version swaps the pool at once; the old pool drains in the
    background (idle instances stop now, busy ones when their invocation ends).
    """

    def __init__(self, deps: PoolDeps, keep_alive: float, adaptive: bool = False,
                 bin_s: float = 60.0) -> None:
        self._deps = deps
        self._keep_alive = keep_alive
        # With the adaptive keep-alive: each pool's idle pattern, by (function, version),
        # kept across deploys of LATEST (``keepalive.IdlePattern``).
        self._adaptive = adaptive
        self._patterns: dict[tuple[str, str], IdlePattern] = {}
        self._bin_s = bin_s
        self._provision: dict[str, int] = {}  # provisioned-instance targets by function
        self._pools: dict[str, Pool] = {}  # each function's LATEST
        # Published versions that ran here, by (function, version id): immutable, each
        # with instances of its own, reclaimed like LATEST's.
        self._published: dict[tuple[str, str], Pool] = {}
        self._draining: set[Pool] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def pool(self, name: str) -> Pool:
        try:
            return self._pools[name]
        except KeyError:
            raise function_not_found(name) from None

    def deploy(self, version: FunctionVersion) -> None:
        old = self._pools.get(version.name)
        if old is not None and old.version == version:
            return
        pool = Pool(version, self._deps, self._provision.get(version.name, 0),
                    self._pattern(version))
        self._pools[version.name] = pool
        if old is not None:
            self._retire(old)
        pool.reconcile(time.monotonic())

    def deployed_pool(self, name: str) -> Pool | None:
        return self._pools.get(name)

    def version_pool(self, version: FunctionVersion) -> Pool:
        """The pool of a published version (made on its first invocation here)."""
        key = (version.name, version.version_id)
        pool = self._published.get(key)
        if pool is None:
            pool = self._published[key] = Pool(version, self._deps, 0, self._pattern(version))
        return pool

    def _pattern(self, version: FunctionVersion) -> IdlePattern | None:
        if not self._adaptive:
            return None
        key = (version.name, version.version_id)
        pattern = self._patterns.get(key)
        if pattern is None:
            pattern = self._patterns[key] = IdlePattern(IdleTimes(self._bin_s))
        return pattern

    def published(self, name: str, version_id: str) -> Pool | None:
        return self._published.get((name, version_id))

    def retire_version(self, name: str, version_id: str) -> None:
        """A deleted version: its instances stop (busy ones when their run ends)."""
        pool = self._published.pop((name, version_id), None)
        self._patterns.pop((name, version_id), None)
        if pool is not None:
            self._retire(pool)

    def stop_instances(self, name: str, abort: bool) -> None:
        """Every instance of the function stops: idle ones now, busy ones when their
        run ends, or (``abort``) now too."""
        for pool in self._every_pool():
            if pool.version.name != name:
                continue
            if abort:
                pool.kill_all(StopReason.DISABLED)
            else:
                pool.stop_idle(StopReason.DISABLED)

    def layer_lists(self) -> set[tuple[str, ...]]:
        """The layer lists of every pool here (draining ones too): their merged folders
        are in use."""
        return {p.version.config.layers for p in self._every_pool() if p.version.config.layers}

    def _every_pool(self) -> tuple[Pool, ...]:
        return (*self._pools.values(), *self._published.values(), *self._draining)

    def set_provision(self, name: str, target: int) -> None:
        """Keep ``target`` instances of the function started ahead of time."""
        if target:
            self._provision[name] = target
        else:
            self._provision.pop(name, None)
        pool = self._pools.get(name)
        if pool is not None:
            pool.provision_target = target
            pool.reconcile(time.monotonic())

    def set_version_provision(self, version: FunctionVersion, target: int) -> None:
        """Keep ``target`` instances of a published version started ahead of time."""
        pool = self.version_pool(version)
        pool.provision_target = target
        pool.reconcile(time.monotonic())

    def undeploy(self, name: str) -> None:
        self._provision.pop(name, None)
        old = self._pools.pop(name, None)
        if old is not None:
            self._retire(old)
        for key in [k for k in self._published if k[0] == name]:
            self._retire(self._published.pop(key))
        for key in [k for k in self._patterns if k[0] == name]:
            del self._patterns[key]

    def instances(self, name: str) -> list[Instance]:
        """Live instances of every version of the function, draining ones included."""
        pools = [p for p in self._every_pool() if p.version.name == name]
        return [inst for pool in pools for inst in pool.instances]

    def deployed(self, name: str) -> bool:
        return name in self._pools

    def names(self) -> list[str]:
        """The functions deployed here."""
        return list(self._pools)

    def live_count(self) -> int:
        """Live instances of every function on this node."""
        return sum(len(pool.instances) for pool in self._every_pool())

    def evict_idle(self, allow: Callable[[str], bool]) -> bool:
        """Evict the least recently used idle instance of a function ``allow`` accepts."""
        best: tuple[Pool, Instance] | None = None
        for pool in self._every_pool():
            if not allow(pool.version.name):
                continue
            for inst in pool.instances:
                if inst.state is InstanceState.IDLE and not inst.provisioned and (
                    not inst.sessions) and (
                    best is None or inst.last_used < best[1].last_used
                ):
                    best = (pool, inst)
        if best is None:
            return False
        best[0].evict(best[1])
        return True

    def reclaim(self, now: float) -> None:
        """The periodic tick: reclaim idle instances, top up provisioned ones."""
        for pool in [*self._pools.values(), *self._published.values()]:
            own = pool.version.config.keep_alive_seconds  # (a function's own wins)
            pool.reclaim_snapshot(now, own or self._keep_alive)
            if pool.pattern is None or own:
                pool.reclaim(expired(pool.instances, now, own or self._keep_alive))
            else:
                victims, prewarm = adaptive(pool.instances, now, pool.pattern,
                                            self._keep_alive)
                pool.reclaim(victims)
                if prewarm and pool.prewarm():
                    pool.pattern.prewarmed = True
            pool.reconcile(now)

    async def reclaim_forever(self, interval: float,
                              after: Callable[[], None] | None = None) -> None:
        """Every ``interval``: reclaim, then ``after`` (the admission settles its slots)."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.reclaim(time.monotonic())
                if after is not None:
                    after()
            except Exception:
                log.exception("Reclaiming idle instances failed; trying again in %.1f s.", interval)

    async def close(self) -> None:
        """Stop every instance, running preStop hooks."""
        pools = list(self._every_pool())
        self._pools.clear()
        self._published.clear()
        await asyncio.gather(*(p.drain(StopReason.SHUTDOWN) for p in pools))
        for pool in pools:
            pool.kill_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _retire(self, pool: Pool) -> None:
        self._draining.add(pool)

        async def drain() -> None:
            await pool.drain(StopReason.UNDEPLOYED)
            while pool.instances:
                await asyncio.sleep(0.05)
            self._draining.discard(pool)

        task = asyncio.get_running_loop().create_task(drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
