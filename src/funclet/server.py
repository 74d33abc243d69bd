"""Running the platform: uvicorn serving the API inside funclet's own event loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import os
import resource
from pathlib import Path

import uvicorn

from funclet.api import build_app
from funclet.api.connections import ConnectionLimits, bounded_protocol
from funclet.codestore import open_blobs
from funclet.config import Settings
from funclet.datalock import DataFolderLock, NodeLock
from funclet.errors import ApiError, FunctionAlreadyExists, TriggerAlreadyExists
from funclet.packaging import (
    DependencyError,
    dependency_cache,
    read_full_manifest,
    vendor_requirements,
    zip_dir,
)
from funclet.platform import Platform
from funclet.store import migrate

log = logging.getLogger("funclet")


def serve(settings: Settings, examples: Path | None = None) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Broker clients log every failed reconnect with a traceback; funclet says it once,
    # in a sentence (the trigger's or the destination's state says why).
    for noisy in ("aiormq", "aio_pika", "nats"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    for chatty in ("alembic", "botocore", "aiobotocore"):  # funclet says what it did
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # First of all: a second funclet on this folder would sweep the first one's cgroups.
    lock = DataFolderLock.acquire(settings.data_dir)
    try:
        # Before anything starts: a database that cannot be used is one line, not a
        # failed start-up (DatabaseUnusable).
        url = settings.resolved_database_url
        before, after = migrate.upgrade(url)
        if before != after:
            log.info("Database: %s, schema revision %s -> %s.", migrate.where(url),
                     before or "none (empty)", after)
        asyncio.run(_check_code_store(settings))
        node = NodeLock.acquire(url, settings.resolved_node_id)
        try:
            _serve(settings, examples)
        finally:
            node.release()
    finally:
        lock.release()


def _serve(settings: Settings, examples: Path | None) -> None:
    open_files = raise_open_files()
    platform = Platform(settings)
    # File descriptors the connections may not take: instances' sockets, zygotes, the
    # database, broker clients, code being unpacked.
    reserve = 1024 + 8 * settings.max_instances
    limits = ConnectionLimits(
        idle_timeout=settings.http_idle_timeout_seconds,
        header_timeout=settings.http_header_timeout_seconds,
        max_connections=max(64, min(settings.max_connections, open_files - reserve)),
    )
    log.info("Open files: up to %d; HTTP connections: up to %d, idle ones closed after "
             "%g s.", open_files, limits.max_connections, limits.idle_timeout)
    config = uvicorn.Config(
        build_app(platform),
        host=settings.host,
        port=settings.port,
        loop="none",
        http=bounded_protocol(limits),
        timeout_keep_alive=settings.http_idle_timeout_seconds,
        lifespan="on",
        access_log=False,
        # The peer address is the socket's: X-Forwarded-For must not let a function (or
        # anyone on loopback) pass for another client. (It also saves a middleware.)
        proxy_headers=False,
        # On SIGTERM, running invocations get this long; then they are cancelled and
        # their instances killed.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        log_level=settings.log_level,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            if examples is not None:
                await deploy_examples(platform, examples)
            _settle_gc()
        await task

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner:
        runner.run(main())


async def _check_code_store(settings: Settings) -> None:
    """Before anything starts: a code store that cannot be used is one line
    (``CodeStoreUnusable``), not a failed start-up."""
    blobs = open_blobs(settings.code_store, settings.resolved_code_dir)
    await blobs.open()
    await blobs.close()


def raise_open_files() -> int:
    """Raise this process's open-files limit as far as it goes (the soft limit to the
    hard one; as root the hard one too, to ``fs.nr_open`` up to 1,048,576); returns the
    soft limit now in force. Instances set their own, lower, limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.geteuid() == 0:
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            ceiling = hard
        wanted = max(hard, min(ceiling, 1_048_576))
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def _settle_gc() -> None:
    """Once started: what start-up built (modules, the app, SQLAlchemy's tables) lives as
    long as the process, so it leaves the collector's generations (``gc.freeze``) and a
    full collection no longer walks it; young collections run every 10,000 allocations,
    not 700. Under async load the collector had taken 13 % of the event loop's time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def deploy_examples(platform: Platform, folder: Path) -> None:
    """Create (or update) one function per example folder that has a ``function.json``."""
    names = []
    for example in sorted(p for p in folder.iterdir() if (p / "function.json").exists()):
        manifest = read_full_manifest(example)
        body = manifest.function
        body.setdefault("functionName", example.name)
        if any((example / f).exists() for f in ("requirements.txt", "package.json")):
            log.info("Installing the dependencies of example %s (the first time, this can "
                     "take a minute) ...", example.name)
        try:
            vendored = await asyncio.to_thread(
                vendor_requirements, example, body.get("runtime", platform.default_runtime),
                dependency_cache())
        except DependencyError as exc:
            log.error("Example %s was not deployed: %s", example.name, exc)
            continue
        body["code"] = {"zipFile": base64.b64encode(zip_dir(example, vendored)).decode()}
        try:
            try:
                await platform.functions.create(body)
            except FunctionAlreadyExists:
                body.pop("functionName")
                await platform.functions.update(example.name, body)
            if manifest.reserved_concurrency is not None:
                await platform.functions.set_reserved_concurrency(
                    example.name, {"reservedConcurrency": manifest.reserved_concurrency})
            for trigger in manifest.triggers:
                try:
                    await platform.triggers.create(example.name, trigger)
                except TriggerAlreadyExists:
                    await platform.triggers.update(
                        example.name, trigger["triggerName"],
                        {k: v for k, v in trigger.items() if k != "triggerName"})
        except ApiError as exc:
            log.error("Example %s was not deployed: %s", example.name, exc.message)
            continue
        names.append(example.name)
    s = platform.settings
    print(f"\nDeployed the examples: {', '.join(names)}.", flush=True)
    if names:
        print(
            f"Invoke one:\n  curl -s -X POST http://{s.host}:{s.port}/2023-03-30/functions/"
            f"{names[0]}/invocations -d '{{\"name\": \"funclet\"}}'\n"
            f"  .venv/bin/funclet invoke {names[0]} --payload '{{\"name\": \"funclet\"}}' --log\n",
            flush=True,
        )
