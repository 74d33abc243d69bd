"""The platform: every part built from the settings, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from funclet.asyncq.configs import AsyncConfigs
from funclet.asyncq.destinations import Destinations
from funclet.asyncq.dispatcher import Dispatcher
from funclet.asyncq.outbox import Outbox
from funclet.asyncq.policy import TaskStatus
from funclet.changes import Changes
from funclet.codestore import CodeStore, open_blobs
from funclet.codestore.archive import Limits
from funclet.config import Settings
from funclet.domains import Domains
from funclet.functions import Functions
from funclet.ids import new_request_id
from funclet.instances.instance import Instance
from funclet.instances.pool import PoolDeps
from funclet.instances.registry import Registry
from funclet.instances.state import InstanceState
from funclet.invoker import Invoker
from funclet.invoker.admission import Admission
from funclet.layers import Layers
from funclet.logs import LiveLogs
from funclet.metrics import Gauges, Metrics
from funclet.models import function_arn
from funclet.nodes import DEAD_AFTER_S, Nodes
from funclet.runtimes import discover, protocol
from funclet.sandbox import FrameLimits, Sandbox, SandboxConfig
from funclet.services import Services
from funclet.slots import CHANNEL as SLOTS_CHANNEL
from funclet.slots import ClusterSlots
from funclet.store import Recorder, Store
from funclet.store.layers import LayerStore
from funclet.store.tasks import Task, TaskStore, now_ms
from funclet.store.triggers import TriggerStore
from funclet.store.versions import VersionStore
from funclet.triggers import Triggers
from funclet.triggers.consumers import Consumers
from funclet.triggers.timers import Timers
from funclet.versions import Versions, parse_qualifier

log = logging.getLogger(__name__)


class Platform:
    """Owns the store, code store, sandbox, registry, invoker and recorder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtimes = discover(settings.python_interpreters)
        self.store = Store(settings.resolved_database_url)
        self.code = CodeStore(
            settings.resolved_code_dir,
            settings.max_code_size,
            Limits(settings.max_unpacked_size, settings.max_compression_ratio),
            open_blobs(settings.code_store, settings.resolved_code_dir),
        )
        self.node_id = settings.resolved_node_id
        # When another node's running tasks and instance records are nobody's: past the
        # heartbeat bound on a shared database; at once on SQLite, where the data lock
        # lets one node at a time hold the database (a restart after kill -9 is another
        # node id: its tasks run again now, not 10 s later).
        clustered = settings.resolved_database_url.startswith("postgresql")
        self._gone_after_ms = int(DEAD_AFTER_S * 1000) if clustered else 0
        self.live_logs = LiveLogs()  # the console's live logs: what this node records
        self.recorder = Recorder(self.store, self.node_id, live=self.live_logs,
                                 retention_s=settings.records_retention_days * 86400,
                                 keep=settings.max_invocation_records,
                                 prune_every=settings.records_prune_interval_seconds)
        data_dir = str(settings.data_dir.resolve())
        # What instances must never see: the data folder, and each part of it that may
        # be configured to live elsewhere (code packages, the database, run files).
        hide = [data_dir, str(settings.resolved_code_dir), str(settings.run_dir)]
        if settings.resolved_database_url.startswith("sqlite") and (
            "///" in settings.resolved_database_url
        ):
            hide.append(str(Path(settings.resolved_database_url.split("///", 1)[1]).parent))
        self.sandbox = Sandbox(self.runtimes, settings.run_dir, SandboxConfig.detect(
            settings.sandbox, hide=tuple(dict.fromkeys(hide)), tmp_mb=settings.tmp_size_mb,
            # One cgroup folder per data folder: two funclets never touch each other's.
            name=f"funclet-{hashlib.sha256(data_dir.encode()).hexdigest()[:10]}",
        ), prestart=settings.prestarted_instances, frame_limits=FrameLimits(
            # What an instance may send back: a sync response (a streamed body comes in
            # frames of at most MAX_BODY_CHUNK).
            body=max(settings.max_sync_payload, protocol.MAX_BODY_CHUNK),
        ), prestart_max=settings.prestarted_instances_max,
            prestart_idle=settings.prestarted_idle_seconds, max_templates=settings.max_instances)
        base_env = {
            "FC_REGION": settings.region,
            "FC_ACCOUNT_ID": settings.account_id,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/tmp",
        }
        # Nodes that share a database share its limits: slots are leased from it.
        self.slots = ClusterSlots(
            self.store.writer, self.node_id, settings.max_instances, int(DEAD_AFTER_S * 1000),
            lambda channel, payload: self.changes.notify(channel, payload),
        ) if settings.resolved_database_url.startswith("postgresql") else None
        self.admission = Admission(
            settings.max_instances,
            settings.max_queue_length,
            evict=lambda allow: self.registry.evict_idle(allow),
            cluster=self.slots,
        )
        if self.slots is not None:
            self.slots.attach(self.admission)
        deps = PoolDeps(
            sandbox=self.sandbox,
            fetch_code=self.code.fetch,
            base_env=base_env,
            on_change=self._instance_changed,
            on_room=self.admission.offer_room,
            take_slot=self.admission.slot_for_provisioning,
            fetch_layers=lambda arns: self.layers.merged(arns),
        )
        self.registry = Registry(deps, settings.keep_alive_seconds,
                                 settings.adaptive_keep_alive,
                                 settings.adaptive_keep_alive_bin_seconds)
        self.nodes = Nodes(self.store, self.node_id, f"{settings.host}:{settings.port}",
                           self.registry.live_count)
        self.metrics = Metrics()  # /metrics (api/app.py)
        self.invoker = Invoker(
            self.registry, self.admission, self.recorder, settings.max_queue_wait_seconds,
            miss=self._sync_if_shared,
            resolve=lambda name, qualifier: self.versions.resolve(name, qualifier),
            resolve_now=lambda name, qualifier: self.versions.resolve_now(name, qualifier),
            metrics=self.metrics,
        )
        self.functions = Functions(
            self.store, self.code, self.registry, self.runtimes, self.admission
        )
        self.versions = Versions(VersionStore(self.store), self.functions, self.registry,
                                 self.store)
        self.services = Services(self.store, self.functions)  # FC 2.0's (api/fc2.py)
        # (disabled and enabled again: versions' provisioned instances stop and start)
        self.functions.on_change.append(self.versions.apply_provision)
        self.layers = Layers(LayerStore(self.store), self.code, settings.region,
                             settings.account_id, settings.resolved_code_dir / "layers-merged")
        self.functions.check_layers = self.layers.check
        self.domains = Domains(self.store, settings.http_domain)
        self.url_key = b""  # (read from the store at start)
        self.invoker.disabled = self.functions.disabled  # one dict: Functions changes it
        self.tasks = TaskStore(self.store, self.node_id, self._gone_after_ms)
        self.recorder.also_prune(lambda: self.tasks.prune(
            int((time.time() - settings.async_task_retention_days * 86400) * 1000),
            settings.max_async_tasks))
        self.async_configs = AsyncConfigs(self.tasks)
        if self.slots is not None:  # provisioned instances: each live node its share
            self.functions.share = self.nodes.share
            self.nodes.on_members.append(self.functions.reshare)
            self.nodes.on_members.append(self.versions.reshare)
        self.functions.on_delete.append(self.async_configs.delete)
        self.functions.on_delete.append(self._forget_function)
        self.outbox = Outbox(self.tasks, Destinations(self._enqueue_async))
        # Async work may hold at most half the account's instances: sync callers keep room.
        self.dispatcher = Dispatcher(
            self.tasks, self.invoker, self.async_configs.of, settings.max_instances // 2,
            self.function_arn, self.outbox.wake,
        )
        if self.slots is not None:  # ... of the cluster's instances: each node its share
            self.nodes.on_members.append(lambda: self.dispatcher.limit(
                self.nodes.share("async", settings.max_instances // 2)))
        trigger_store = TriggerStore(self.store)
        self.timers = Timers(trigger_store, self._counted_enqueue("timer"))
        self.consumers = Consumers(self._enqueue_async,
                                   self.node_id if self.slots is not None else "",
                                   on_fire=self.metrics.trigger_fired)
        self.triggers = Triggers(
            trigger_store, self.timers, self.consumers, self.functions.get,
            lambda name, qualifier: self.versions.version_ids(name, parse_qualifier(qualifier)))
        self.functions.on_delete.append(self.triggers.delete_function)
        # What one node changes, every other node applies (PostgreSQL: NOTIFY/LISTEN).
        self.changes = Changes(
            settings.resolved_database_url, self.node_id, self.store.writer,
            self._sync_function, self._sync_all,
            {SLOTS_CHANNEL: self.slots.heard} if self.slots is not None else None)
        for hooks in (self.functions.on_change, self.triggers.on_change,
                      self.async_configs.on_change, self.versions.on_change):
            hooks.append(self.changes.publish)
        self._reclaimer: asyncio.Task[None] | None = None
        self._layer_collector: asyncio.Task[None] | None = None
        self.api_token = self._api_token() if settings.auth_required else settings.api_token

    def _api_token(self) -> str | None:
        """The configured token; else the one generated at first start (printed once)."""
        if self.settings.api_token or self.settings.access_keys:
            return self.settings.api_token
        path = self.settings.data_dir / "api-token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        print(
            f"The API requires authentication. Generated an API token (kept in {path}):\n"
            f"  {token}\nSend it as 'Authorization: Bearer <token>' (the CLI: --token or "
            "FUNCLET_API_TOKEN).",
            flush=True,
        )
        return token

    def function_arn(self, name: str) -> str:
        return function_arn(self.settings.region, self.settings.account_id, name)

    def http_urls(self, function_name: str, base_url: str) -> dict[str, str]:
        """Where a function's HTTP trigger answers: under ``/http/`` on the API's address,
        or at ``{function}.{domain}`` when a base domain is configured."""
        url = f"{base_url}/http/{function_name}/"
        if self.settings.http_domain:
            scheme, _, rest = base_url.partition("://")
            port = rest.rpartition(":")[2] if ":" in rest else ""
            url = f"{scheme}://{function_name}.{self.settings.http_domain}"
            url += f":{port}/" if port and port.isdigit() else "/"
        return {"urlInternet": url, "urlIntranet": url}

    async def _enqueue_async(self, function_name: str, payload: bytes, task_id: str,
                             qualifier: str = "LATEST") -> None:
        """An async invocation from inside funclet (a destination that is a function, a
        timer, a message); ``task_id`` makes an event that is sent again run once."""
        # Raises if it is not there. A disabled function's task is accepted: it waits in
        # the queue until the function is enabled (a timer's fire, a message: not lost).
        await self.invoker.pool(function_name, qualifier, refuse_disabled=False)
        request_id = new_request_id()
        task = Task(task_id or request_id, request_id, function_name, TaskStatus.ENQUEUED,
                    payload, now_ms(), 0, qualifier)
        await self.dispatcher.accept(task, 0)

    async def _sync_function(self, name: str) -> None:
        """Another node changed ``name``: apply what the store holds for it now."""
        await self.functions.sync(name)
        await self.async_configs.load()
        if await self.store.get_function(name) is not None:
            await self.versions.sync(name)
            await self.triggers.sync(name)

    async def _sync_if_shared(self, name: str) -> None:
        """A function this node does not run: on a shared database another node may
        have just deployed it (its notice on the way)."""
        if self.changes.enabled:
            await self.functions.sync(name)

    async def _sync_all(self) -> None:
        names = {row.name for row in await self.store.list_functions()}
        for name in sorted(names | set(self.registry.names())):
            await self._sync_function(name)

    def _counted_enqueue(self, kind: str) -> Callable[..., Awaitable[None]]:
        """``_enqueue_async``, each fire counted as a ``kind`` trigger's (metrics)."""
        async def enqueue(*args: Any, **kwargs: Any) -> None:
            await self._enqueue_async(*args, **kwargs)
            self.metrics.trigger_fired(kind)

        return enqueue

    async def gauges(self) -> Gauges:
        """What /metrics reports beside the counters: this node's instances, the limit,
        the waiting invocations, async tasks by status, the outbox."""
        instances: dict[tuple[str, str], int] = {}
        for name in self.registry.names():
            for inst in self.registry.instances(name):
                key = (name, inst.state.value)
                instances[key] = instances.get(key, 0) + 1
        by_status, pending = await self.tasks.counts()
        return Gauges(instances, self.settings.max_instances, self.admission.waiting,
                      by_status, pending, self.sandbox.ahead())

    async def _forget_function(self, name: str) -> None:
        self.metrics.forget(name)
        self.sandbox.forget(name)
        self.versions.forget(name)
        self.invoker.sessions.forget_function(name)

    def _after_reclaim(self) -> None:
        """Each reclaim tick: sessions past their time end, unused slots go back."""
        self.invoker.sessions.tick(time.monotonic())
        self.admission.settle()

    def _instance_changed(self, inst: Instance) -> None:
        self.recorder.instance(inst)
        if inst.state is InstanceState.STOPPED:
            self.admission.release_slot(inst.function_name)

    @property
    def default_runtime(self) -> str:
        return f"python{sys.version_info.major}.{sys.version_info.minor}"

    async def start(self) -> None:
        s = self.settings
        await self.sandbox.open(s.network_cidr, tuple(s.expose_host_ports), s.dns_server,
                                s.uid_range_start, s.uid_range_size)
        await self.store.open()
        await self.code.open()
        await self.store.close_stale_instances(self.node_id, self._gone_after_ms)
        if swept := await asyncio.to_thread(self.sandbox.config.sweep):
            log.warning("Removed %d instance cgroups left by an earlier run.", swept)
        self.recorder.start()
        await self.nodes.start()
        self.layers.clear()  # (no instance runs yet: no merged layers are in use)
        rows = await self.functions.load_all()
        await self.versions.load_all()
        await self.domains.load()
        # Signs code download URLs (GetFunctionCode): the platform's, alike on every node.
        self.url_key = bytes.fromhex(await self.store.secret("code-url-key"))
        if self.changes.enabled:  # other nodes' domains, within a second
            self.domains.refresh_forever()
        for runtime in {self.default_runtime, *(r.config.runtime for r in rows)}:
            if runtime in self.runtimes:
                await self.sandbox.warm_up(runtime)
        await self.async_configs.load()
        if requeued := await self.tasks.recover():
            log.warning("Re-queued %d async tasks that an earlier run left running.", requeued)
        self.dispatcher.start()
        await self.outbox.start()
        await self.triggers.load()
        await self.changes.start()
        self.timers.start()
        self._reclaimer = asyncio.get_running_loop().create_task(
            self.registry.reclaim_forever(self.settings.reclaim_interval_seconds,
                                          self._after_reclaim)
        )
        self._layer_collector = asyncio.get_running_loop().create_task(
            self.layers.collect_forever(self.registry.layer_lists))
        log.info(
            "funclet is ready: %d functions, runtimes %s.", len(rows), ", ".join(self.runtimes)
        )
        if self.settings.auth_required:
            log.info("API authentication is on: %s.", ", ".join(filter(None, [
                "a bearer token" if self.api_token else "",
                f"{len(self.settings.access_keys)} access keys (FC signatures)"
                if self.settings.access_keys else "",
            ])))
        else:
            log.info("API authentication is off: the API listens on loopback only "
                     "(serve --require-auth turns it on).")

    async def stop(self) -> None:
        await self.changes.stop()
        await self.timers.stop()
        await self.consumers.stop()  # unacknowledged messages stay with their brokers
        await self.dispatcher.stop()
        await self.outbox.stop()
        await self.tasks.close()
        for task in (self._reclaimer, self._layer_collector):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.registry.close()
        await self.sandbox.close()
        await self.recorder.close()
        # Last: until now its running tasks were its own (stopped, they are anyone's).
        await self.nodes.stop()
        await self.domains.stop()
        await self.code.close()
        await self.store.close()
