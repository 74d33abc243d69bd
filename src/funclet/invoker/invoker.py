"""The invoker: drives one invocation from admission to its record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from funclet.errors import ApiError, FunctionDisabled, InvocationError, VersionNotFound
from funclet.instances.exchange import HttpExchange, ResponseStream
from funclet.instances.pool import First, Lease, Pool
from funclet.instances.registry import Registry
from funclet.instances.state import StartKind
from funclet.invoker.admission import SLOT, Admission
from funclet.metrics import Metrics
from funclet.models import Affinity, FunctionVersion
from funclet.sessions import (
    Session,
    Sessions,
    SessionUnavailable,
    response_headers,
    session_of,
)
from funclet.store.recorder import InvocationRecord, Recorder


@dataclass
class Invocation:
    """The outcome of one invocation, as the API answers it."""

    request_id: str
    function_name: str
    code_checksum: str
    body: bytes = b""
    log: str = ""
    error: InvocationError | None = None
    start_kind: StartKind | None = None
    instance_id: str = ""
    init_ms: float = 0.0
    duration_ms: float = 0.0
    queue_ms: float = 0.0
    version_id: str = "LATEST"  # the version that ran
    qualifier: str = "LATEST"  # what the caller invoked (a version, an alias, LATEST)
    affinity: Affinity | None = None  # the function's session affinity, if it has one
    session_id: str = ""  # the session it ran in
    session_made: bool = False  # ...which this invocation started (no id was given)
    client_context: str = ""  # Lambda's X-Amz-Client-Context (JSON), for the handler


class Invoker:
    """Runs invocations through admission, a pool's instance and the recorder."""

    def __init__(
        self,
        registry: Registry,
        admission: Admission,
        recorder: Recorder,
        max_wait: float | None = None,
        miss: Callable[[str], Awaitable[object]] | None = None,
        resolve: Callable[[str, str], Awaitable[FunctionVersion]] | None = None,
        resolve_now: Callable[[str, str], FunctionVersion | None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._registry = registry
        self._admission = admission
        self._recorder = recorder
        self._max_wait = max_wait
        # A function not deployed here may just have been deployed on another node:
        # ``miss`` applies what the store holds for it, and the lookup is tried again.
        self._miss = miss
        # A qualifier other than LATEST: the published version it runs (``Versions``);
        # ``resolve_now`` answers from memory when it can (no await on the hot path).
        self._resolve = resolve
        self._resolve_now = resolve_now
        self._metrics = metrics
        # Functions whose invocations are disabled: (reason, when) (``Functions``).
        self.disabled: dict[str, tuple[str, int]] = {}
        self.sessions = Sessions()

    async def invoke(
        self, function_name: str, event: bytes, request_id: str, mode: str = "sync",
        http: HttpExchange | None = None, qualifier: str = "LATEST",
        headers: Mapping[str, str] | None = None, client_context: str = "",
        stream: ResponseStream | None = None,
    ) -> Invocation:
        """``headers``: the request's (lower-case names), which name its session when
        the function has session affinity; without them (async) there is no session.
        ``client_context``: Lambda's (JSON), for the handler's context; ``stream``: where
        a handler that streams sends its response."""
        # 1. The function's version and its pool (raises FunctionNotFound); the store is
        # asked only when this node does not have it (no await on the hot path).
        pool = self._pool_now(function_name, qualifier) or await self.pool(
            function_name, qualifier)
        out = Invocation(request_id, function_name, pool.version.code_crc64,
                         version_id=pool.version.version_id, qualifier=qualifier,
                         client_context=client_context)
        started_ms = time.time() * 1000
        session: Session | None = None
        affinity = pool.version.config.affinity
        if affinity is not None and headers is not None:  # its session (or a 400, 409)
            out.affinity = affinity
            out.session_id, out.session_made = session_of(affinity, headers)
            session = self.sessions.enter(pool, out.session_id, qualifier)
            if http is not None:
                http.session_headers = response_headers(affinity, out.session_id,
                                                        out.session_made)
        try:
            # 2-3. Admission and placement: a warm instance, a new one, or a wait (or
            # 429); a session's request goes to its instance.
            # A plain event goes with the spec on a cold start (pool.First).
            first = First(request_id, event, qualifier, client_context) \
                if http is None and stream is None else None
            try:
                lease = await (self._admit_session(session, out) if session is not None
                               else self._admit(pool, out, first=first))
            except InvocationError as exc:  # the cold start failed
                out.error, out.start_kind, out.log = exc, StartKind.COLD, exc.log
                out.instance_id = exc.instance_id
            else:
                await self._run(lease, out, event, http, stream)
        finally:
            if session is not None:
                self.sessions.left(session)
        # 6. The record, written off the hot path; the metrics.
        self._recorder.invocation(_record(out, mode, started_ms))
        if self._metrics is not None:
            self._metrics.invocation(
                function_name, qualifier, mode, "failed" if out.error else "succeeded",
                out.start_kind.value if out.start_kind else "", out.duration_ms, out.init_ms,
                out.queue_ms)
        return out

    async def open_session(self, function_name: str, qualifier: str, body: dict[str, Any],
                           request_id: str) -> Session:
        """CreateSession: a new session, bound to an instance started (or found) for it."""
        pool = self._pool_now(function_name, qualifier) or await self.pool(
            function_name, qualifier)
        if pool.version.config.affinity is None:
            raise SessionUnavailable(
                f"function '{function_name}' has no session affinity (sessionAffinity is "
                "NONE): set HEADER_FIELD or GENERATED_COOKIE to create sessions")
        session = self.sessions.create(pool, qualifier, body)
        session.running += 1
        out = Invocation(request_id, function_name, pool.version.code_crc64)
        try:
            lease = await self._admit_session(session, out)
        except InvocationError as exc:
            self.sessions.delete(function_name, session.session_id)
            raise SessionUnavailable(f"the session's instance failed to start: "
                                     f"{exc.error_type}: {exc.message}") from None
        except BaseException:
            self.sessions.delete(function_name, session.session_id)
            raise
        finally:
            self.sessions.left(session)
        lease.pool.release(lease)  # it stays bound to the session, idle
        return session

    async def pool(self, function_name: str, qualifier: str = "LATEST",
                   refuse_disabled: bool = True) -> Pool:
        """The pool of the version ``qualifier`` names now; a function that is not here
        yet is looked for in the store. A disabled function's is refused
        (``FunctionDisabled``) unless ``refuse_disabled`` is false."""
        if refuse_disabled and self.disabled and function_name in self.disabled:
            raise FunctionDisabled(function_name, self.disabled[function_name][0])
        if qualifier != "LATEST" and self._resolve is not None:
            return self._registry.version_pool(await self._resolve(function_name, qualifier))
        try:
            return self._registry.pool(function_name)
        except ApiError:
            if self._miss is None:
                raise
        await self._miss(function_name)
        return self._registry.pool(function_name)

    async def _admit_session(self, session: Session, out: Invocation) -> Lease:
        """A lease on the session's instance (waiting for room on it), or, if it has
        none (new, or its instance went), on one it is bound to now."""
        while True:
            inst, pool = session.instance, session.pool
            if inst is not None and pool.holds(inst):
                lease = await pool.lease_on(inst, self._wait_limit(pool))
                if lease is not None:
                    return lease
            if session.binding is not None:  # another request of it is placing it
                await asyncio.shield(session.binding)
                continue
            session.binding = asyncio.get_running_loop().create_future()
            try:
                pool = session.pool = self._current(pool)  # (LATEST may have changed)
                lease = await self._admit(pool, out, new_session=True)
                if len(lease.instance.sessions) >= pool.version.config.sessions_per_instance:
                    pool.release(lease)  # others bound it while it started: another one
                    continue
                self.sessions.bind(session, lease.instance)
                return lease
            finally:
                session.binding.set_result(None)
                session.binding = None

    def _wait_limit(self, pool: Pool) -> float:
        return self._max_wait if self._max_wait is not None else pool.version.config.timeout

    async def _admit(self, pool: Pool, out: Invocation, new_session: bool = False,
                     first: First | None = None) -> Lease:
        fn = pool.version.name
        admission = self._admission
        if not admission.has_waiters(fn):
            lease = pool.try_warm(new_session) or await pool.join_starting(new_session)
            if lease is not None:
                return lease
        if not admission.try_slot(fn):
            waited = time.perf_counter()
            got = await admission.wait(fn, self._wait_limit(pool), pool.version.version_id,
                                       new_session)
            out.queue_ms = (time.perf_counter() - waited) * 1000
            if got is not SLOT:
                return got  # type: ignore[no-any-return]
            try:  # the function may have changed (or gone) while we waited
                pool = self._current(pool)
            except ApiError:
                admission.release_slot(fn)
                raise
            # Room may have come free on the way, or an instance that is starting (granted
            # a slot with this one, in a burst) may have room for it: no new instance.
            try:
                lease = pool.try_warm(new_session) or await pool.join_starting(new_session)
            except BaseException:
                admission.release_slot(fn)
                raise
            if lease is not None:
                admission.release_slot(fn)
                return lease
        # The slot is ours; the new instance holds it until it stops.
        return await pool.cold_start(out.request_id, first)

    def _pool_now(self, function_name: str, qualifier: str) -> Pool | None:
        """The pool when memory has all it takes (the usual case), else None."""
        if self.disabled and function_name in self.disabled:
            return None
        if qualifier == "LATEST":
            return self._registry.deployed_pool(function_name)
        version = self._resolve_now(function_name, qualifier) if self._resolve_now else None
        return self._registry.version_pool(version) if version is not None else None

    def _current(self, pool: Pool) -> Pool:
        """LATEST's pool now (a deploy swaps it), or the same version's (immutable;
        gone if the version was deleted)."""
        version = pool.version
        if version.version_id == "LATEST":
            return self._registry.pool(version.name)
        current = self._registry.published(version.name, version.version_id)
        if current is None:
            raise VersionNotFound(version.name, version.version_id)
        return current

    @staticmethod
    async def _run(lease: Lease, out: Invocation, event: bytes,
                   http: HttpExchange | None, stream: ResponseStream | None) -> None:
        out.start_kind, out.instance_id = lease.start_kind, lease.instance.instance_id
        out.init_ms = lease.init_ms
        out.code_checksum = lease.pool.version.code_crc64
        out.version_id = lease.pool.version.version_id
        # 4. The run, under the function's deadline.
        run_started = time.perf_counter()
        try:
            reply = await lease.pool.run(lease, out.request_id, event, http, out.qualifier,
                                         out.client_context, stream)
            out.body, out.log = reply.body, lease.init_log + reply.log
        except InvocationError as exc:
            out.error, out.log = exc, lease.init_log + exc.log
        finally:
            out.duration_ms = (time.perf_counter() - run_started) * 1000
            # 5. The instance goes back to its pool (or away, if it was lost).
            lease.pool.release(lease)


def _record(out: Invocation, mode: str, started_ms: float) -> InvocationRecord:
    error = out.error
    return InvocationRecord(
        request_id=out.request_id,
        function_name=out.function_name,
        mode=mode,
        start_kind=out.start_kind.value if out.start_kind else None,
        instance_id=out.instance_id,
        init_ms=out.init_ms,
        duration_ms=out.duration_ms,
        queue_ms=out.queue_ms,
        status="failed" if error else "succeeded",
        error_type=error.error_type if error else None,
        error_message=error.message if error else None,
        log=out.log,
        started_ms=int(started_ms),
        version_id=None if out.version_id == "LATEST" else out.version_id,
    )
