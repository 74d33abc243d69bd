"""Placement: the instances of one function version, warm reuse and cold starts.

``acquire`` follows one fallback order: an instance with room (warm) → a new
instance (cold). ``run`` sends the invocation to the instance and enforces its
deadline; ``release`` hands the instance back. Stopping runs the preStop hook
first when the instance is stopped on purpose (reclaimed, undeployed, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from funclet.errors import (
    FunctionTimeout,
    HandledError,
    HandlerError,
    InitializationError,
    InstanceCrashed,
    InvocationError,
    LayerNotFound,
    ResponseTooLarge,
    Throttled,
)
from funclet.ids import new_instance_id
from funclet.instances.exchange import EVENT, HttpExchange, ResponseStream
from funclet.instances.instance import Instance
from funclet.instances.keepalive import IdlePattern
from funclet.instances.state import InstanceState, StartKind, StopReason
from funclet.models import (
    LAMBDA_SEMANTICS,
    REQUEST_EXCLUSIVE,
    SESSION_EXCLUSIVE,
    SHARE,
    CustomRuntimeConfig,
    FunctionVersion,
    function_arn,
)
from funclet.runtimes import protocol
from funclet.sandbox import (
    ChannelClosed,
    Exit,
    OversizedFrame,
    Sandbox,
    SandboxProcess,
    SnapshotFailed,
    ZygoteFailed,
)
from funclet.sandbox.channel import INIT, Channel, Frame

log = logging.getLogger(__name__)

InstanceListener = Callable[[Instance], None]
# (function, lend, evict-or-None, version, accepts) -> True when the room was taken; see
# Admission.offer_room. ``accepts(new_session)``: may a waiter of that kind take it?
RoomListener = Callable[[str, Callable[[], "Lease"], Callable[[], None] | None, str,
                         Callable[[bool], bool] | None], bool]
CodeFetcher = Callable[[str], Awaitable[str]]  # checksum -> unpacked code folder
LayerFetcher = Callable[[tuple[str, ...]], Awaitable[str]]  # layer ARNs -> merged folder
_GRACEFUL = frozenset({StopReason.RECLAIMED, StopReason.UNDEPLOYED, StopReason.SHUTDOWN,
                       StopReason.EVICTED, StopReason.ISOLATED})


@dataclass
class Lease:
    """An instance lent to one invocation."""

    instance: Instance
    process: SandboxProcess
    start_kind: StartKind
    pool: Pool
    init_ms: float = 0.0
    init_log: str = ""
    # The first invocation, sent behind the spec (``First``): its id, its reply.
    sent: tuple[str, asyncio.Future[Frame]] | None = None


@dataclass(frozen=True)
class First:
    """The invocation that causes a cold start (an event, no stream): where the runtime
    takes it early (``Runtime.invoke_ahead``) it is sent right behind the spec, and the
    instance starts it as soon as it is ready, without a round trip through here."""

    request_id: str
    event: bytes
    qualifier: str = "LATEST"
    client_context: str = ""


@dataclass
class Reply:
    body: bytes
    log: str


class _Expired(Exception):
    pass


async def _send_body(channel: Channel, request_id: str, http: HttpExchange) -> None:
    """Stream a web app's request body to its instance; past ``max_body`` the body ends."""
    size = 0
    try:
        async for chunk in http.request_body:
            size += len(chunk)
            if size > http.max_body:
                log.warning("The request body of %s is over %d bytes; the rest is dropped.",
                            request_id, http.max_body)
                break
            if chunk:
                channel.send({"type": protocol.BODY, "id": request_id, "more": True}, chunk)
                await channel.drain()  # the instance reads at its own pace: no pile-up here
        channel.send({"type": protocol.BODY, "id": request_id, "more": False})
    except (ChannelClosed, OSError):
        pass  # the instance went away: the invocation reports it


@dataclass(frozen=True)
class PoolDeps:
    """What every pool shares: where processes and code come from, who is told what."""

    sandbox: Sandbox
    fetch_code: CodeFetcher
    base_env: dict[str, str]
    on_change: InstanceListener  # an instance changed state
    on_room: RoomListener  # an instance has room again
    take_slot: Callable[[str], bool]  # admission, for provisioned instances
    fetch_layers: LayerFetcher | None = None  # a function's layers, merged: a folder


class Pool:
    """The instances of one function version (see the module docstring)."""

    def __init__(self, version: FunctionVersion, deps: PoolDeps, provision_target: int = 0,
                 pattern: IdlePattern | None = None):
        self.version = version
        self._deps = deps
        self._sandbox = deps.sandbox
        self._fetch_code = deps.fetch_code
        self._base_env = deps.base_env
        self._on_change = deps.on_change
        self._on_room = deps.on_room
        self.provision_target = provision_target
        self.provision_error = ""
        self.pattern = pattern  # its idle times, with the adaptive keep-alive (keepalive.py)
        self._provision_retry_at = 0.0
        self._instances: dict[str, Instance] = {}
        self._processes: dict[str, SandboxProcess] = {}
        self._starting: dict[str, asyncio.Future[SandboxProcess]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.draining = False
        # Its instances are forked from a snapshot of its version (``sandbox/snapshots.py``).
        self.snapshot_key = (f"{version.name}@{version.version_id}#{version.revision}"
                             if version.config.snapshots(version.version_id) else "")
        self._empty_since: float | None = None  # since when it has had no instance
        # Invocations of a session waiting for room on the session's own instance.
        self._room_waiters: dict[str, deque[asyncio.Future[Lease | None]]] = {}
        # Placement looks at sessions and isolation only when the function has them.
        self._picky = (version.config.isolation != SHARE
                       or version.config.affinity is not None)

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    def try_warm(self, new_session: bool = False) -> Lease | None:
        """A warm instance with room, most recently used first (so that surplus
        instances go idle and get reclaimed); ``None`` when every instance is full.
        ``new_session``: for a session not bound yet (room for one more session)."""
        best: Instance | None = None
        picky = self._picky
        for inst in self._instances.values():
            if inst.has_room and inst.state is not InstanceState.STARTING and (
                not picky or self.accepts(inst, new_session)) and (
                best is None or (inst.provisioned, inst.last_used)
                > (best.provisioned, best.last_used)
            ):
                best = inst
        return self._lend(best) if best is not None else None

    def accepts(self, inst: Instance, new_session: bool) -> bool:
        """May ``inst`` take an invocation without a session of its own (async, timers),
        or (``new_session``) one whose session is bound now? With instance isolation an
        instance serves one request, or one session, and nothing else."""
        cfg = self.version.config
        if cfg.isolation == REQUEST_EXCLUSIVE:
            return not inst.used
        if cfg.isolation == SESSION_EXCLUSIVE:
            return not inst.used and not inst.sessions
        return not new_session or len(inst.sessions) < cfg.sessions_per_instance

    async def join_starting(self, new_session: bool = False) -> Lease | None:
        """Ride on an instance that is still starting and will have room (instance
        concurrency): wait for its cold start instead of starting another one."""
        for inst in self._instances.values():
            if inst.instance_id in self._starting and inst.has_room and (
                    not self._picky or self.accepts(inst, new_session)):
                return await self._join(inst)
        return None

    async def _join(self, inst: Instance) -> Lease:
        inst.begin()
        try:
            process = await asyncio.shield(self._starting[inst.instance_id])
        except InvocationError as exc:  # its start failed: so does this invocation
            raise InitializationError(exc.message, exc.error_type,
                                      exc.stack_trace) from None
        except asyncio.CancelledError:
            if inst.state is not InstanceState.STOPPED:
                inst.end()
            raise
        return Lease(inst, process, StartKind.WARM, self)

    # -- sessions: one instance, asked for by name ----------------------------------

    def holds(self, inst: Instance) -> bool:
        return self._instances.get(inst.instance_id) is inst

    async def lease_on(self, inst: Instance, timeout: float) -> Lease | None:
        """A lease on ``inst`` itself (a session's instance): now if it has room, once its
        cold start ends if it is starting, else when room frees on it (within
        ``timeout``: ``Throttled`` past it). ``None`` if it is gone or going."""
        if not self.holds(inst) or inst.paused or inst.state not in (
                InstanceState.STARTING, InstanceState.IDLE, InstanceState.BUSY):
            return None
        if inst.has_room:
            if inst.instance_id in self._starting:
                return await self._join(inst)
            return self._lend(inst)
        waiter: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()
        queue = self._room_waiters.setdefault(inst.instance_id, deque())
        queue.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            raise Throttled(
                f"instance {inst.instance_id} of the session is busy with "
                f"{inst.concurrency} requests (instanceConcurrency); this one waited "
                f"{timeout:g} s for room on it") from None
        except asyncio.CancelledError:
            handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
            if handed is not None:
                self.release(handed)  # handed over just as we were cancelled
            raise
        finally:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if not queue and self._room_waiters.get(inst.instance_id) is queue:
                del self._room_waiters[inst.instance_id]

    def pause(self, inst: Instance) -> None:
        """Stop every process of ``inst`` (PauseSession); it takes nothing until resumed."""
        process = self._processes.get(inst.instance_id)
        if process is None:
            return
        process.pause()
        inst.paused = True
        self._on_change(inst)

    def resume(self, inst: Instance) -> None:
        process = self._processes.get(inst.instance_id)
        if process is not None and inst.paused:
            process.resume()
        inst.paused = False
        self._on_change(inst)
        if self.holds(inst):
            self._offer_room(inst)

    def end_session(self, inst: Instance, session_id: str) -> None:
        """A session bound to ``inst`` ended; with session isolation the instance goes
        with it (now if idle, else when its request ends)."""
        inst.sessions.discard(session_id)
        if inst.paused:
            self.resume(inst)
        if (self.version.config.isolation == SESSION_EXCLUSIVE and not inst.sessions
                and inst.in_flight == 0 and inst.state is InstanceState.IDLE):
            self._stop_later(inst, StopReason.ISOLATED)

    def _lend(self, inst: Instance) -> Lease:
        inst.begin()
        kind = StartKind.PROVISIONED if inst.provisioned else StartKind.WARM
        return Lease(inst, self._processes[inst.instance_id], kind, self)

    async def cold_start(self, request_id: str, first: First | None = None) -> Lease:
        """Start a new instance for this invocation (``first``: it, when it may be sent
        ahead). The caller holds its admission slot."""
        inst = self._new_instance(provisioned=False)
        inst.begin()
        return await self._start(inst, request_id, first)

    def _new_instance(self, provisioned: bool) -> Instance:
        self._empty_since = None
        cfg = self.version.config
        return Instance(new_instance_id(), cfg.name, self.version.revision,
                        cfg.instance_concurrency, provisioned=provisioned,
                        version_id=self.version.version_id)

    async def _start(self, inst: Instance, request_id: str, first: First | None = None
                     ) -> Lease:
        self._instances[inst.instance_id] = inst
        started = asyncio.get_running_loop().create_future()
        started.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen if unused
        self._starting[inst.instance_id] = started
        self._on_change(inst)
        try:
            lease = await self._initialise(inst, request_id, first)
        except InvocationError as exc:
            exc.instance_id = inst.instance_id
            started.set_exception(exc)
            raise
        except BaseException:  # cancelled mid-start: the half-started instance goes
            self._kill(inst, StopReason.START_FAILED)
            started.set_exception(InstanceCrashed("The instance's start was cancelled",
                                                  "Runtime.StartInterrupted"))
            raise
        finally:
            del self._starting[inst.instance_id]
        started.set_result(lease.process)
        return lease

    async def _initialise(self, inst: Instance, request_id: str, first: First | None = None
                          ) -> Lease:
        """The cold start: fetch the code, fork the process, wait for the runtime's ``ready``
        (with ``first`` sent behind the spec, where the runtime takes it early)."""
        cfg = self.version.config
        started = time.perf_counter()
        try:
            code_dir = await self._fetch_code(self.version.code_checksum)
            spec = self._spec(inst, request_id, code_dir)
            if cfg.layers and self._deps.fetch_layers is not None:
                spec["optDir"] = await self._deps.fetch_layers(cfg.layers)
            process = await self._sandbox.create(cfg.runtime, spec)
        except SnapshotFailed as exc:  # the template's imports or initializer failed
            self._forget(inst, StopReason.START_FAILED)
            error = InitializationError(exc.error.get("errorMessage", str(exc)),
                                        exc.error.get("errorType", "Runtime.SnapshotError"),
                                        exc.error.get("stackTrace", []))
            error.log = exc.log
            raise error from None
        except (ZygoteFailed, OSError, LayerNotFound) as exc:
            self._forget(inst, StopReason.START_FAILED)
            raise InitializationError(str(exc), "Runtime.StartFailed") from exc
        self._processes[inst.instance_id] = process
        process.channel.on_close = functools.partial(self._lost, inst)
        sent = None
        if first is not None and self._sandbox.invoke_ahead(cfg.runtime):
            reply = process.channel.expect(first.request_id)
            reply.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen if unused
            process.channel.send(self._invoke_head(first.request_id, first.qualifier,
                                                   first.client_context, ahead=True),
                                 first.event)
            sent = (first.request_id, reply)
        try:
            # Imports and module code get the function's timeout; the initializer its own.
            header = await self._init_step(inst, process, cfg.timeout,
                                           "Instance initialization (imports and module code)")
            if header["type"] == protocol.INITIALIZING:
                assert cfg.initializer is not None
                header = await self._init_step(inst, process, cfg.initializer.timeout,
                                               "Initializer")
        except BaseException:
            if sent is not None:
                process.channel.forget(sent[0])
            raise
        if header["type"] == protocol.INIT_ERROR:
            self._kill(inst, StopReason.START_FAILED)
            err = header["error"]
            error = InitializationError(err["errorMessage"], err["errorType"], err["stackTrace"])
            error.log = header.get("log", "")
            raise error
        if inst.state is not InstanceState.STARTING:
            raise InitializationError(
                f"The instance was stopped while it started ({inst.stop_reason})",
                "Runtime.StartInterrupted",
            )
        inst.started()
        process.handler_kind = header.get("handlerKind", "event")
        init_ms = (time.perf_counter() - started) * 1000
        log.debug("Cold start of instance %s took %.1f ms.", inst.instance_id, init_ms)
        if self.draining and inst.in_flight == 0:  # replaced while it started
            self._stop_later(inst, StopReason.UNDEPLOYED)
        else:
            self._offer_room(inst)
        return Lease(inst, process, StartKind.COLD, self, init_ms,
                     process.init_log + header.get("log", ""), sent)

    async def _init_step(
        self, inst: Instance, process: SandboxProcess, timeout: float, what: str
    ) -> dict[str, Any]:
        """Wait for the next start-up frame, within ``timeout``."""
        try:
            header, _ = await self._await(process.channel.expect(INIT), timeout)
        except _Expired:
            self._kill(inst, StopReason.START_FAILED)
            raise InitializationError(
                f"{what} timed out after {timeout:g} seconds", "InitializationTimeout"
            ) from None
        except OversizedFrame as exc:
            raise InitializationError(self._oversized(inst, exc),
                                      "Runtime.ResponseTooLarge") from None
        except ChannelClosed:
            ended = await _exit_of(process)
            self._kill(inst, StopReason.START_FAILED)
            if ended is not None and ended.oom:
                raise InitializationError(
                    f"Instance ran out of memory during initialization: it exceeded its "
                    f"memorySize of {self.version.config.memory_size} MB",
                    "Runtime.OutOfMemory",
                ) from None
            raise InitializationError(
                "Process exited unexpectedly during initialization "
                f"(exit code {ended.code if ended else None})",
                "Runtime.ExitError",
            ) from None
        return header  # type: ignore[no-any-return]

    async def run(self, lease: Lease, request_id: str, event: bytes,
                  http: HttpExchange | None = None, qualifier: str = "LATEST",
                  client_context: str = "", stream: ResponseStream | None = None) -> Reply:
        """Run one invocation on the leased instance, within the function's timeout.
        With ``http``, a web app gets the request itself, an event handler its event;
        with ``stream``, a handler that streams sends its response there as it goes (one
        that does not answers as always); ``qualifier``: what the caller invoked,
        ``client_context`` Lambda's (JSON): the context says them."""
        timeout = self.version.config.timeout
        channel = lease.process.channel
        sent, lease.sent = lease.sent, None
        if sent is not None and (sent[0] != request_id or http is not None
                                 or stream is not None):
            raise RuntimeError("the invocation sent ahead is not the one run")
        head = self._invoke_head(request_id, qualifier, client_context)
        pump: asyncio.Task[None] | None = None
        if http is not None:
            http.mode = lease.process.handler_kind
            if http.mode == EVENT:
                event = await http.event()
            else:
                head["http"] = http.head
                stream = http
        if stream is not None:
            if http is None:
                head["stream"] = True
            channel.streams[request_id] = stream.on_frame
            stream.flow = functools.partial(_flow, channel, request_id)
            stream.version_id = self.version.version_id
        reply = channel.expect(request_id) if sent is None else sent[1]
        pattern = self.pattern
        if pattern is not None:
            pattern.began(time.monotonic())
        try:
            if sent is None:
                channel.send(head, event)
            if "http" in head:
                assert http is not None
                pump = asyncio.get_running_loop().create_task(
                    _send_body(channel, request_id, http))
            header, body = await self._await(reply, timeout)
        except _Expired:
            self._kill(lease.instance, StopReason.TIMED_OUT)
            raise FunctionTimeout(timeout) from None
        except asyncio.CancelledError:
            # Nobody waits for this invocation any more (shutdown): its instance goes.
            self._kill(lease.instance, StopReason.SHUTDOWN)
            raise
        except OversizedFrame as exc:
            raise ResponseTooLarge(self._oversized(lease.instance, exc)) from None
        except ChannelClosed:
            ended = await _exit_of(lease.process)
            if ended is not None and ended.oom:
                self._kill(lease.instance, StopReason.OUT_OF_MEMORY)
                raise InstanceCrashed(
                    f"Function ran out of memory: it exceeded its memorySize of "
                    f"{self.version.config.memory_size} MB and was killed",
                    "Runtime.OutOfMemory",
                ) from None
            self._kill(lease.instance, StopReason.CRASHED)
            raise InstanceCrashed(
                "Process exited unexpectedly before completing request "
                f"(exit code {ended.code if ended else None})",
                "Runtime.ExitError",
            ) from None
        finally:
            if pattern is not None:
                pattern.ended(time.monotonic())
            if pump is not None:
                pump.cancel()
            if stream is not None:
                channel.streams.pop(request_id, None)
                stream.end()
            elif http is not None:
                http.end()
        if header["type"] == protocol.ERROR:
            if header.get("exiting"):  # the runtime ended with it: the instance is gone
                self._kill(lease.instance, StopReason.CRASHED)
            err = header["error"]
            kind = HandledError if header.get("handled") else HandlerError
            error = kind(err["errorMessage"], err["errorType"], err["stackTrace"])
            error.log = header.get("log", "")
            raise error
        return Reply(body, header.get("log", ""))

    def _invoke_head(self, request_id: str, qualifier: str, client_context: str,
                     ahead: bool = False) -> dict[str, Any]:
        """An ``invoke`` frame's header: its deadline the function's timeout from now, or,
        sent ahead of the instance being ready, from when the instance starts it."""
        timeout = self.version.config.timeout
        head: dict[str, Any] = {"type": protocol.INVOKE, "id": request_id,
                                "qualifier": qualifier}
        if ahead:
            head["deadlineIn"] = int(timeout * 1000)
        else:
            head["deadline"] = int((time.time() + timeout) * 1000)
        if client_context:
            head["clientContext"] = client_context
        return head

    def memory_peak(self, instance_id: str) -> int | None:
        """The most memory a live instance has used, in bytes (None: gone, or unknown)."""
        process = self._processes.get(instance_id)
        return process.memory_peak() if process is not None else None

    def _lost(self, inst: Instance) -> None:
        """The instance's process went away on its own (killed, crashed) while not running
        an invocation; forget it so that it is never handed out as warm."""
        if inst.in_flight == 0 and inst.state in (InstanceState.IDLE, InstanceState.DRAINING):
            process = self._processes.get(inst.instance_id)
            if process is not None and process.channel.oversized is not None:
                self._oversized(inst, process.channel.oversized)
                return
            log.warning("Instance %s of %s exited while idle.", inst.instance_id,
                        inst.function_name)
            self._kill(inst, StopReason.CRASHED)

    def _oversized(self, inst: Instance, exc: OversizedFrame) -> str:
        """Stop an instance whose channel ended over a frame too large; say so."""
        self._kill(inst, StopReason.FRAME_TOO_LARGE)
        log.error("Instance %s of %s sent a frame whose %s is %d bytes, over the limit of "
                  "%d bytes; it was stopped (frame_too_large).", inst.instance_id,
                  inst.function_name, exc.part, exc.size, exc.limit)
        return (f"The instance sent a frame whose {exc.part} is {exc.size} bytes, over the "
                f"limit of {exc.limit} bytes; the instance was stopped")

    def release(self, lease: Lease) -> None:
        inst = lease.instance
        if inst.state is InstanceState.STOPPED:
            return
        inst.end()
        if lease.start_kind is StartKind.COLD and lease.process.after_first is not None:
            after, lease.process.after_first = lease.process.after_first, None
            after()
        if inst.in_flight == 0 and (self.draining or inst.state is InstanceState.DRAINING):
            self._stop_later(inst, StopReason.UNDEPLOYED)
        elif inst.in_flight == 0 and self._picky and self._done_with(inst):
            self._stop_later(inst, StopReason.ISOLATED)
        else:
            self._offer_room(inst)

    def _done_with(self, inst: Instance) -> bool:
        """Instance isolation: its request, or its session, is over."""
        isolation = self.version.config.isolation
        return isolation == REQUEST_EXCLUSIVE or (
            isolation == SESSION_EXCLUSIVE and not inst.sessions)

    def _offer_room(self, inst: Instance) -> None:
        """Tell admission about each free place on the instance (waiters take them):
        first to the invocations of its sessions that wait for it."""
        waiters = self._room_waiters.get(inst.instance_id)
        while waiters and inst.has_room and inst.state is not InstanceState.STARTING:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._lend(inst))
        accepts = functools.partial(self.accepts, inst) if self._picky else None
        while inst.has_room and not self.draining and inst.state is not InstanceState.STARTING:
            if accepts is not None and not (accepts(False) or accepts(True)):
                return
            idle = inst.in_flight == 0 and not inst.provisioned and not inst.sessions
            taken = self._on_room(
                inst.function_name,
                functools.partial(self._lend, inst),
                functools.partial(self.evict, inst) if idle else None,
                self.version.version_id,
                accepts,
            )
            if not taken or inst.state is not InstanceState.BUSY:
                return

    def evict(self, inst: Instance) -> None:
        """Stop an idle instance to give its slot to another function's invocation."""
        self._stop_later(inst, StopReason.EVICTED)

    def reclaim(self, victims: list[Instance]) -> None:
        """Stop idle instances past their keep-alive (chosen by ``keepalive.expired``)."""
        for inst in victims:
            self._stop_later(inst, StopReason.RECLAIMED)

    def reclaim_snapshot(self, now: float, keep_alive: float) -> None:
        """Its snapshot's template goes once the version has had no instance for
        ``keep_alive`` seconds (the next cold start makes it again)."""
        if self.snapshot_key and self._empty_since is not None and \
                now - self._empty_since >= keep_alive:
            self._empty_since = None
            self._sandbox.snapshots.retire(self.snapshot_key)

    async def drain(self, reason: StopReason) -> None:
        """Stop every instance: idle ones now, busy ones when their invocations end (and
        its snapshot with the last of them)."""
        self.draining = True
        if self.snapshot_key:
            self._sandbox.snapshots.retire(self.snapshot_key)
        for inst in list(self._instances.values()):
            if inst.state is InstanceState.IDLE:
                self._stop_later(inst, reason)
            elif inst.state is InstanceState.BUSY:
                inst.drain()
                self._on_change(inst)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def kill_all(self, reason: StopReason = StopReason.SHUTDOWN) -> None:
        for inst in list(self._instances.values()):
            self._kill(inst, reason)

    def stop_idle(self, reason: StopReason) -> None:
        """Stop the idle instances (provisioned ones too); busy ones go on."""
        for inst in list(self._instances.values()):
            if inst.state is InstanceState.IDLE:
                self._stop_later(inst, reason)

    # -- provisioned instances -------------------------------------------------

    @property
    def provisioned_current(self) -> int:
        """Provisioned instances that are up (idle or busy)."""
        return sum(1 for i in self._instances.values()
                   if i.provisioned and i.state in (InstanceState.IDLE, InstanceState.BUSY))

    def reconcile(self, now: float) -> None:
        """Start missing provisioned instances, each with an admission slot; hand
        surplus ones back to on-demand (keep-alive then reclaims them)."""
        if self.draining:
            return
        have = [i for i in self._instances.values()
                if i.provisioned and i.state is not InstanceState.DRAINING]
        surplus = len(have) - self.provision_target
        for inst in sorted(have, key=lambda i: i.in_flight)[:max(surplus, 0)]:
            inst.provisioned = False
        if surplus >= 0 or now < self._provision_retry_at:
            return
        for _ in range(-surplus):
            if not self._deps.take_slot(self.version.name):
                self.provision_error = (
                    "no instance slot is free (the account's or the function's limit)")
                self._provision_retry_at = now + 0.25  # an idle instance may be going
                return
            task = asyncio.get_running_loop().create_task(self._provision_one())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def prewarm(self) -> bool:
        """Start an on-demand instance ahead of the invocation the adaptive keep-alive
        expects, with an admission slot (False: none is free, or the pool drains)."""
        if self.draining or not self._deps.take_slot(self.version.name):
            return False
        task = asyncio.get_running_loop().create_task(self._prewarm_one())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        return True

    async def _prewarm_one(self) -> None:
        inst = self._new_instance(provisioned=False)
        try:
            await self._start(inst, f"prewarm-{inst.instance_id}")
        except InvocationError as exc:
            log.warning("A pre-warmed instance of %s failed to start: %s: %s",
                        inst.function_name, exc.error_type, exc.message)
            return
        log.debug("Pre-warmed instance %s of %s.", inst.instance_id, inst.function_name)

    async def _provision_one(self) -> None:
        inst = self._new_instance(provisioned=True)
        try:
            lease = await self._start(inst, f"provision-{inst.instance_id}")
        except InvocationError as exc:
            self.provision_error = f"{exc.error_type}: {exc.message}"
            self._provision_retry_at = time.monotonic() + 5.0
            log.warning("Provisioned instance of %s failed to start: %s", inst.function_name,
                        self.provision_error)
            return
        if self.provisioned_current >= self.provision_target:
            self.provision_error = ""
        if lease.init_log:
            log.info("Provisioned instance %s started:\n%s", inst.instance_id,
                     lease.init_log.rstrip())

    # -- stopping --------------------------------------------------------

    def _stop_later(self, inst: Instance, reason: StopReason) -> None:
        if inst.state is not InstanceState.DRAINING:
            inst.drain()
        task = asyncio.get_running_loop().create_task(self._stop(inst, reason))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop(self, inst: Instance, reason: StopReason) -> None:
        process = self._processes.get(inst.instance_id)
        if process is not None and inst.paused:  # (a stopped process runs no preStop)
            process.resume()
            inst.paused = False
        hook = self.version.config.pre_stop
        if process is not None and hook is not None and reason in _GRACEFUL:
            reply = process.channel.expect(protocol.PRE_STOP)
            with contextlib.suppress(ChannelClosed, _Expired):
                process.channel.send({"type": protocol.PRE_STOP, "id": inst.instance_id,
                                      "deadline": int((time.time() + hook.timeout) * 1000)})
                header, _ = await self._await(reply, hook.timeout)
                if header.get("log"):
                    log.info("preStop of instance %s logged:\n%s", inst.instance_id,
                             header["log"].rstrip())
        self._kill(inst, reason)
        log.info("Stopped instance %s of %s (%s).", inst.instance_id, inst.function_name, reason)

    def _kill(self, inst: Instance, reason: StopReason) -> None:
        process = self._processes.pop(inst.instance_id, None)
        if process is not None:
            process.kill()
        self._forget(inst, reason)

    def _forget(self, inst: Instance, reason: StopReason) -> None:
        self._instances.pop(inst.instance_id, None)
        if not self._instances:
            self._empty_since = time.monotonic()
        for waiter in self._room_waiters.pop(inst.instance_id, ()):
            if not waiter.done():
                waiter.set_result(None)  # its session is bound anew
        if inst.state is not InstanceState.STOPPED:
            inst.stop(reason)
            self._on_change(inst)

    # -- helpers -----------------------------------------------------------

    @staticmethod
    async def _await(fut: asyncio.Future[Any], timeout: float) -> Any:
        """Await a reply, or raise ``_Expired`` past ``timeout`` (no task per call)."""
        def expire() -> None:
            if not fut.done():
                fut.set_exception(_Expired())

        handle = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await fut
        finally:
            handle.cancel()

    def _spec(self, inst: Instance, request_id: str, code_dir: str) -> dict[str, Any]:
        cfg = self.version.config
        log = cfg.kept.get("logConfig") or {}  # FC's logConfig, kept as given
        env = {
            **self._base_env,
            "FC_FUNCTION_NAME": cfg.name,
            "FC_FUNCTION_HANDLER": cfg.handler,
            "FC_FUNCTION_MEMORY_SIZE": str(cfg.memory_size),
            "FC_FUNCTION_TIMEOUT": str(cfg.timeout),
            "FC_INSTANCE_ID": inst.instance_id,
            "FC_FUNC_CODE_PATH": code_dir,
            "FC_QUALIFIER": self.version.version_id,
            # FC 2.0's: the service of a 2.0 function ('svc$fn'), else the function
            "FC_SERVICE_NAME": cfg.name.split("$", 1)[0],
            **(self._lambda_env(inst) if cfg.semantics == LAMBDA_SEMANTICS else {}),
            **cfg.environment,
        }
        hooks = {}
        if cfg.initializer:
            hooks["initializer"] = {"handler": cfg.initializer.handler,
                                    "timeout": cfg.initializer.timeout}
        if cfg.pre_stop:
            hooks["preStop"] = {"handler": cfg.pre_stop.handler, "timeout": cfg.pre_stop.timeout}
        return {
            "functionName": cfg.name,
            "handler": cfg.handler,
            "memorySize": cfg.memory_size,
            "timeout": cfg.timeout,
            "instanceConcurrency": cfg.instance_concurrency,
            "internetAccess": cfg.internet_access,
            "region": env["FC_REGION"],
            "accountId": env["FC_ACCOUNT_ID"],
            "codeDir": code_dir,
            "versionId": self.version.version_id,
            "logProject": str(log.get("project") or ""),
            "logStore": str(log.get("logstore") or ""),
            "requestId": request_id,
            "env": env,
            "functionArn": function_arn(env["FC_REGION"], env["FC_ACCOUNT_ID"], cfg.name),
            "customRuntime": (cfg.custom_runtime or CustomRuntimeConfig()).to_fc(),
            "serverPort": (cfg.custom_runtime or CustomRuntimeConfig()).port,
            "semantics": cfg.semantics,
            **({"snapshot": self.snapshot_key} if self.snapshot_key else {}),
            **hooks,
        }

    def _lambda_env(self, inst: Instance) -> dict[str, str]:
        """Lambda's environment variables, for a function created through Lambda's API
        (``LAMBDA_TASK_ROOT`` is set by the runtime: where the code is mounted)."""
        cfg, version = self.version.config, self.version.version_id
        region = self._base_env["FC_REGION"]
        return {
            "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST" if version == "LATEST" else version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": inst.instance_id,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": "AWS_Lambda_" + (f"{cfg.runtime}.x" if cfg.runtime.startswith(
                "nodejs") else cfg.runtime),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if self.snapshot_key else "on-demand",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "_HANDLER": cfg.handler,
            "TZ": ":UTC",
        }


def _flow(channel: Channel, key: str, hold: bool) -> None:
    """A web app's response consumer is behind (``hold``) or caught up again."""
    if hold:
        channel.hold(key)
    else:
        channel.let_go(key)


async def _exit_of(process: SandboxProcess) -> Exit | None:
    """How the process ended (the zygote reports it just after the socket closes)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            return await asyncio.shield(process.exited)
    return None


__all__ = ["InvocationError", "Lease", "Pool", "Reply"]
