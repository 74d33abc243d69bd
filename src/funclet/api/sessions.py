"""FC 3.0's sessions: ``/functions/{name}/sessions`` (see ``funclet.sessions``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX, decode_token, encode_token, platform_of
from funclet.api.responses import int_param, json_body, json_response, new_request_id
from funclet.errors import InvalidArgument
from funclet.sessions import ACTIVE, EXPIRED, PAUSED, SessionNotFound, Sessions
from funclet.versions import LATEST, parse_qualifier

_STATUSES = (ACTIVE, PAUSED, EXPIRED)


def _qualifier(request: Request) -> str | None:
    raw = request.query_params.get("qualifier")
    return parse_qualifier(raw) if raw else None


async def _function(request: Request) -> str:
    """The path's function (404 if it or the qualifier does not exist)."""
    name: str = request.path_params["name"]
    await platform_of(request).invoker.pool(name, _qualifier(request) or LATEST,
                                            refuse_disabled=False)
    return name


async def _session(request: Request) -> tuple[Sessions, str, str]:
    """The path's function and session (404 if either, or a qualifier given that is not
    the session's, does not exist): the sessions, the function's name, the id."""
    name = await _function(request)
    sessions = platform_of(request).invoker.sessions
    session_id: str = request.path_params["sessionId"]
    session = sessions.get(name, session_id)
    qualifier = _qualifier(request)
    if qualifier is not None and qualifier != session.qualifier:
        raise SessionNotFound(name, session_id)
    return sessions, name, session_id


async def create_session(request: Request) -> Response:
    platform = platform_of(request)
    request_id = new_request_id()
    session = await platform.invoker.open_session(
        request.path_params["name"], _qualifier(request) or LATEST, await json_body(request),
        request_id)
    return json_response(session.to_fc(), request_id=request_id)


async def get_session(request: Request) -> Response:
    sessions, name, session_id = await _session(request)
    return json_response(sessions.get(name, session_id).to_fc())


async def update_session(request: Request) -> Response:
    sessions, name, session_id = await _session(request)
    return json_response(sessions.update(name, session_id, await json_body(request)).to_fc())


async def delete_session(request: Request) -> Response:
    sessions, name, session_id = await _session(request)
    sessions.delete(name, session_id)
    return Response(status_code=204)


async def pause_session(request: Request) -> Response:
    sessions, name, session_id = await _session(request)
    return json_response(sessions.pause(name, session_id).to_fc())


async def resume_session(request: Request) -> Response:
    sessions, name, session_id = await _session(request)
    return json_response(sessions.resume(name, session_id).to_fc())


async def list_sessions(request: Request) -> Response:
    """ListSessions: oldest first, filtered by ``sessionStatus``, ``sessionId`` and
    ``qualifier``; ``nextToken`` is the last one returned."""
    name = await _function(request)
    status = request.query_params.get("sessionStatus") or None
    if status is not None and status not in _STATUSES:
        raise InvalidArgument(f"sessionStatus must be one of {', '.join(_STATUSES)}")
    limit = int_param(request, "limit", 20, 1, 100)
    token = request.query_params.get("nextToken") or ""
    after = decode_token(token) if token else ""
    found = platform_of(request).invoker.sessions.page(
        name, status, request.query_params.get("sessionId") or None, _qualifier(request))
    if after:
        found = [s for s in found if f"{s.created_ms:015d}/{s.session_id}" > after]
    page = found[:limit]
    out: dict[str, object] = {"sessions": [s.to_fc() for s in page]}
    if len(found) > limit:
        last = page[-1]
        out["nextToken"] = encode_token(f"{last.created_ms:015d}/{last.session_id}")
    return json_response(out)


_SESSIONS = f"{PREFIX}/functions/{{name}}/sessions"
routes = [
    Route(_SESSIONS, create_session, methods=["POST"]),
    Route(_SESSIONS, list_sessions, methods=["GET"]),
    Route(f"{_SESSIONS}/{{sessionId}}", get_session, methods=["GET"]),
    Route(f"{_SESSIONS}/{{sessionId}}", update_session, methods=["PUT"]),
    Route(f"{_SESSIONS}/{{sessionId}}", delete_session, methods=["DELETE"]),
    Route(f"{_SESSIONS}/{{sessionId}}/pause", pause_session, methods=["PUT"]),
    Route(f"{_SESSIONS}/{{sessionId}}/resume", resume_session, methods=["PUT"]),
]
