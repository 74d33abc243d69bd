"""Sessions: the requests of one session go to the instance the session is bound to.

A function with ``sessionAffinity`` names each request's session by a header
(``HEADER_FIELD``: the client's id, or one funclet makes and returns in the same
header) or by FC's cookie (``GENERATED_COOKIE``: funclet sets
``x-fc-cookie-session-id``). A session is bound to an instance on its first request
(or by CreateSession, which starts one ahead) and its requests run there while it
lives: at most ``sessionConcurrencyPerInstance`` sessions share an instance, and a
request that finds the instance full waits for room on it. A session ends past its
TTL (from its creation) or its idle timeout (since its last request), or on
DeleteSession; with ``instanceIsolationMode`` ``SESSION_EXCLUSIVE`` its instance goes
with it. If the instance goes first (crashed, redeployed), the next request binds the
session anew. PauseSession (session isolation only) stops the instance's processes;
ResumeSession, or a request with ``enableAutoResume``, lets them go on.

Sessions live on the node whose instance holds them, in memory like the instances;
ended ones are remembered (``_ENDED_KEPT`` per node) for ListSessions and
``disableSessionIdReuse``. Async invocations have no session (as in FC).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any

from funclet.errors import ApiError, InvalidArgument
from funclet.instances.instance import Instance
from funclet.instances.state import InstanceState
from funclet.models import (
    GENERATED_COOKIE,
    HEADER_FIELD,
    SESSION_COOKIE,
    SESSION_EXCLUSIVE,
    SESSION_ID_RE,
    Affinity,
)

if TYPE_CHECKING:
    from funclet.instances.pool import Pool

log = logging.getLogger(__name__)

ACTIVE, PAUSED, EXPIRED = "Active", "Paused", "Expired"
_ENDED_KEPT = 10_000  # ended sessions remembered per node (oldest forgotten first)
_CLOUD_ONLY = ("nasConfig", "ossMountConfig", "polarFsConfig", "juiceFsConfig", "network",
               "snapshotId")


class SessionNotFound(ApiError):
    code = "SessionNotFound"
    status = 404

    def __init__(self, name: str, session_id: str) -> None:
        super().__init__(f"function '{name}' has no session '{session_id[:64]}'")


class SessionAlreadyExists(ApiError):
    code = "SessionAlreadyExists"
    status = 409

    def __init__(self, name: str, session_id: str) -> None:
        super().__init__(f"function '{name}' already has an active session '{session_id}'")


class SessionUnavailable(ApiError):
    """A request for a session that cannot take it: paused, or ended and not reusable."""

    code = "SessionUnavailable"
    status = 409


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Session:
    session_id: str
    function_name: str
    qualifier: str  # what it was created with (LATEST, a version, an alias)
    pool: Pool  # the version it runs: its instances
    kind: str  # HEADER_FIELD or GENERATED_COOKIE
    ttl_s: int
    idle_s: int
    disable_reuse: bool
    auto_pause: bool = False
    auto_resume: bool = False
    allow_internet: bool | None = None
    status: str = ACTIVE
    instance: Instance | None = None
    running: int = 0  # its requests running now
    binding: asyncio.Future[None] | None = None  # its first request is placing it
    created_ms: int = field(default_factory=_now_ms)
    modified_ms: int = field(default_factory=_now_ms)
    born: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)

    def to_fc(self) -> dict[str, Any]:
        inst = self.instance
        live = inst is not None and inst.state is not InstanceState.STOPPED
        out: dict[str, Any] = {
            "sessionId": self.session_id,
            "functionName": self.function_name,
            "qualifier": self.qualifier,
            "sessionAffinityType": self.kind,
            "sessionTTLInSeconds": self.ttl_s,
            "sessionIdleTimeoutInSeconds": self.idle_s,
            "disableSessionIdReuse": self.disable_reuse,
            "enableAutoPause": self.auto_pause,
            "enableAutoResume": self.auto_resume,
            "sessionStatus": self.status,
            "containerId": inst.instance_id if live and inst is not None else "",
            "createdTime": _iso(self.created_ms),
            "lastModifiedTime": _iso(self.modified_ms),
        }
        if self.allow_internet is not None:
            out["allowInternetAccess"] = self.allow_internet
        return out

    def over(self, now: float) -> bool:
        """Past its TTL, or idle (no request running) past its idle timeout."""
        if now - self.born >= self.ttl_s:
            return True
        return bool(self.idle_s) and not self.running and now - self.last_used >= self.idle_s


@dataclass(frozen=True)
class Ended:
    """An ended session as the API shows it: its answer only (no pool, no instance, so
    that the ended sessions kept do not hold retired versions' pools)."""

    session_id: str
    qualifier: str
    created_ms: int
    disable_reuse: bool
    answer: dict[str, Any]
    status: str = EXPIRED

    def to_fc(self) -> dict[str, Any]:
        return self.answer


def session_of(affinity: Affinity, headers: Mapping[str, str]) -> tuple[str, bool]:
    """The session a request names (its header, or FC's cookie), or a new id:
    ``(id, made)``. A malformed id is a 400."""
    if affinity.kind == HEADER_FIELD:
        given = headers.get(affinity.header, "")
        where = f"header '{affinity.header}'"
    else:
        given = ""
        raw = headers.get("cookie", "")
        if SESSION_COOKIE in raw:
            try:
                morsel = SimpleCookie(raw).get(SESSION_COOKIE)
            except CookieError:
                morsel = None
            given = morsel.value if morsel is not None else ""
        where = f"cookie '{SESSION_COOKIE}'"
    if not given:
        return uuid.uuid4().hex, True
    if not SESSION_ID_RE.fullmatch(given):
        raise InvalidArgument(
            f"the session id in {where} is malformed: 1-64 letters, digits, '_' and '-', "
            "not starting with '-'")
    return given, False


def response_headers(affinity: Affinity, session_id: str, made: bool) -> list[tuple[str, str]]:
    """What the response says about its session: the header (HEADER_FIELD), or the
    cookie when funclet made the session (GENERATED_COOKIE)."""
    if affinity.kind == HEADER_FIELD:
        return [(affinity.header, session_id)]
    if made:
        return [("set-cookie", f"{SESSION_COOKIE}={session_id}; Max-Age={affinity.ttl_s}")]
    return []


class Sessions:
    """The sessions of this node's instances (see the module docstring)."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, str], Session] = {}
        self._ended: OrderedDict[tuple[str, str], Ended] = OrderedDict()

    # -- the invoker's side -----------------------------------------------------------

    def enter(self, pool: Pool, session_id: str, qualifier: str) -> Session:
        """The live session a request names (resumed if it may be), or a new one on
        ``pool``; a paused session, or an ended one whose id may not be reused, refuses."""
        name = pool.version.name
        key = (name, session_id)
        session = self._live.get(key)
        if session is not None and session.over(time.monotonic()):
            self._end(session)
            session = None
        if session is None:
            self._check_reuse(name, session_id)
            session = self._new(pool, session_id, qualifier, {})
        elif session.status == PAUSED:
            if not session.auto_resume:
                raise SessionUnavailable(
                    f"session '{session_id}' of function '{name}' is paused: resume it "
                    "(ResumeSession) first, or set enableAutoResume")
            self._resume(session)
        session.running += 1
        return session

    def bind(self, session: Session, inst: Instance) -> None:
        old = session.instance
        if old is not None and old is not inst:
            old.sessions.discard(session.session_id)
        session.instance = inst
        inst.sessions.add(session.session_id)

    def left(self, session: Session) -> None:
        """A request of ``session`` ended. A session that got no instance (its request
        was throttled, or its instance failed to start) is dropped: it never began."""
        session.running -= 1
        session.last_used = time.monotonic()
        key = (session.function_name, session.session_id)
        if session.instance is None and not session.running and self._live.get(key) is session:
            del self._live[key]

    def tick(self, now: float) -> None:
        """End the sessions past their TTL or idle timeout (every reclaim tick); with
        ``enableAutoPause`` an idle isolated session is paused instead."""
        for session in [s for s in self._live.values() if s.over(now)]:
            if (session.auto_pause and session.status == ACTIVE
                    and now - session.born < session.ttl_s
                    and not self._why_not_pausable(session)):
                self._pause(session)
                session.last_used = now
                continue
            self._end(session)

    def forget_function(self, name: str) -> None:
        for key in [k for k in self._live if k[0] == name]:
            self._end(self._live[key])
        for key in [k for k in self._ended if k[0] == name]:
            del self._ended[key]

    # -- the API's side -----------------------------------------------------------------

    def create(self, pool: Pool, qualifier: str, body: dict[str, Any]) -> Session:
        """CreateSession: a session bound to no instance yet (the caller binds one)."""
        name = pool.version.name
        _refuse_cloud_only(body)
        session_id = body.get("sessionId") or uuid.uuid4().hex
        if not isinstance(session_id, str) or not SESSION_ID_RE.fullmatch(session_id):
            raise InvalidArgument("sessionId must be 1-64 letters, digits, '_' and '-', not "
                                  "starting with '-'")
        live = self._live.get((name, session_id))
        if live is not None and not live.over(time.monotonic()):
            raise SessionAlreadyExists(name, session_id)
        if live is not None:
            self._end(live)
        self._check_reuse(name, session_id)
        return self._new(pool, session_id, qualifier, body)

    def get(self, name: str, session_id: str) -> Session | Ended:
        session = self._live.get((name, session_id))
        if session is not None and session.over(time.monotonic()):
            self._end(session)
        elif session is not None:
            return session
        ended = self._ended.get((name, session_id))
        if ended is None:
            raise SessionNotFound(name, session_id)
        return ended

    def page(self, name: str, status: str | None = None, session_id: str | None = None,
             qualifier: str | None = None) -> list[Session | Ended]:
        """A function's sessions (live, then ended), oldest first, filtered."""
        now = time.monotonic()
        for session in [s for k, s in self._live.items() if k[0] == name and s.over(now)]:
            self._end(session)
        found: list[Session | Ended] = [s for k, s in self._live.items() if k[0] == name]
        found += [s for k, s in self._ended.items() if k[0] == name]
        return sorted(
            (s for s in found if (status is None or s.status == status)
             and (session_id is None or s.session_id == session_id)
             and (qualifier is None or s.qualifier == qualifier)),
            key=lambda s: (s.created_ms, s.session_id))

    def update(self, name: str, session_id: str, body: dict[str, Any]) -> Session:
        session = self._not_ended(name, session_id)
        _refuse_cloud_only(body)
        self._apply(session, body)
        session.modified_ms = _now_ms()
        return session

    def delete(self, name: str, session_id: str) -> None:
        session = self._live.get((name, session_id))
        if session is None:
            if (name, session_id) in self._ended:
                del self._ended[(name, session_id)]
                return
            raise SessionNotFound(name, session_id)
        self._end(session)
        self._ended.pop((name, session_id), None)

    def pause(self, name: str, session_id: str) -> Session:
        session = self._not_ended(name, session_id)
        if session.status == PAUSED:
            return session
        problem = self._why_not_pausable(session)
        if problem:
            raise SessionUnavailable(f"session '{session_id}' cannot be paused: {problem}")
        self._pause(session)
        return session

    def resume(self, name: str, session_id: str) -> Session:
        session = self._not_ended(name, session_id)
        if session.status == PAUSED:
            self._resume(session)
        return session

    # -- helpers -------------------------------------------------------------------

    def _not_ended(self, name: str, session_id: str) -> Session:
        session = self.get(name, session_id)
        if isinstance(session, Ended):
            raise SessionUnavailable(f"session '{session_id}' of function '{name}' has ended")
        return session

    def _new(self, pool: Pool, session_id: str, qualifier: str,
             body: dict[str, Any]) -> Session:
        affinity = pool.version.config.affinity
        assert affinity is not None
        session = Session(session_id, pool.version.name, qualifier, pool, affinity.kind,
                          affinity.ttl_s, affinity.idle_s, affinity.disable_reuse)
        self._apply(session, body)
        self._ended.pop((session.function_name, session_id), None)
        self._live[(session.function_name, session_id)] = session
        return session

    @staticmethod
    def _apply(session: Session, body: dict[str, Any]) -> None:
        """CreateSession's and UpdateSession's fields."""
        if body.get("sessionTTLInSeconds") is not None:
            session.ttl_s = _seconds(body, "sessionTTLInSeconds", 1)
        if body.get("sessionIdleTimeoutInSeconds") is not None:
            session.idle_s = _seconds(body, "sessionIdleTimeoutInSeconds", 0)
        if session.idle_s > session.ttl_s:
            raise InvalidArgument("sessionIdleTimeoutInSeconds cannot exceed "
                                  "sessionTTLInSeconds")
        for key, attr in (("disableSessionIdReuse", "disable_reuse"),
                          ("enableAutoPause", "auto_pause"),
                          ("enableAutoResume", "auto_resume"),
                          ("allowInternetAccess", "allow_internet")):
            if body.get(key) is not None:
                if not isinstance(body[key], bool):
                    raise InvalidArgument(f"{key} must be true or false")
                setattr(session, attr, body[key])
        if session.auto_pause and session.pool.version.config.isolation != SESSION_EXCLUSIVE:
            raise InvalidArgument("enableAutoPause needs instanceIsolationMode "
                                  "SESSION_EXCLUSIVE (a paused instance holds one session)")

    def _check_reuse(self, name: str, session_id: str) -> None:
        ended = self._ended.get((name, session_id))
        if ended is not None and ended.disable_reuse:
            raise SessionUnavailable(
                f"session '{session_id}' of function '{name}' has ended and its id may not "
                "be reused (disableSessionIdReuse)")

    @staticmethod
    def _why_not_pausable(session: Session) -> str:
        inst = session.instance
        if session.pool.version.config.isolation != SESSION_EXCLUSIVE:
            return ("PauseSession needs instanceIsolationMode SESSION_EXCLUSIVE: the "
                    "instance is shared with other sessions")
        if inst is None or not session.pool.holds(inst):
            return "the session has no instance now (its next request binds one)"
        if inst.in_flight or inst.state is not InstanceState.IDLE:
            return "a request of the session is running; pause it once it has ended"
        return ""

    def _pause(self, session: Session) -> None:
        assert session.instance is not None
        session.pool.pause(session.instance)
        session.status = PAUSED
        session.modified_ms = _now_ms()
        log.info("Paused session %s of %s (instance %s).", session.session_id,
                 session.function_name, session.instance.instance_id)

    def _resume(self, session: Session) -> None:
        if session.instance is not None:
            session.pool.resume(session.instance)
        session.status = ACTIVE
        session.last_used = time.monotonic()
        session.modified_ms = _now_ms()

    def _end(self, session: Session) -> None:
        key = (session.function_name, session.session_id)
        if self._live.get(key) is session:
            del self._live[key]
        inst = session.instance
        if inst is not None:
            session.pool.end_session(inst, session.session_id)
        session.status = EXPIRED
        session.modified_ms = _now_ms()
        session.instance = None
        self._ended[key] = Ended(session.session_id, session.qualifier, session.created_ms,
                                 session.disable_reuse, session.to_fc())
        self._ended.move_to_end(key)
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)


def _seconds(body: dict[str, Any], key: str, low: int) -> int:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 21_600:
        raise InvalidArgument(f"{key} must be an integer from {low} to 21600")
    return value


def _refuse_cloud_only(body: dict[str, Any]) -> None:
    for key in _CLOUD_ONLY:
        if body.get(key):
            raise InvalidArgument(f"{key} is not supported by funclet: per-session mounts, "
                                  "networks and snapshots are Alibaba Cloud's")


__all__ = ["GENERATED_COOKIE", "HEADER_FIELD", "Session", "Sessions", "response_headers",
           "session_of"]
