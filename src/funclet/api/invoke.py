"""InvokeFunction: ``POST /2023-03-30/functions/{name}/invocations``.

The busiest route is served by ``InvokeRoute``, the innermost middleware, straight
from the ASGI scope: past the middlewares that check who is calling (custom domains,
RefuseInstances, Authenticate), and before Starlette's exception middleware, router,
route and request/response wrappers, each of which made a ``Request`` of its own and
wrapped ``send`` once more. Everything else (and 2.0's InvokeFunction, which comes
here through its route) takes the router.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping

import orjson
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from funclet.api.auth import is_http_trigger
from funclet.api.functions import PREFIX
from funclet.api.responses import error_response, new_request_id
from funclet.api.tasks import TASK_ID_RE
from funclet.asyncq.policy import TaskStatus
from funclet.errors import ApiError, InvalidArgument, PayloadTooLarge, ShuttingDown
from funclet.instances.state import StartKind
from funclet.logs import tail
from funclet.platform import Platform
from funclet.sessions import response_headers
from funclet.store.tasks import Task, now_ms
from funclet.versions import LATEST, parse_qualifier

_PATH = re.compile(f"{PREFIX}/functions/([^/]+)/invocations")


class InvokeRoute:
    """FC 3.0's InvokeFunction without the router (see the module docstring); any other
    request goes on to ``app``. Requests for an HTTP trigger by its host name
    (``{function}.{http_domain}``) are the trigger's, whatever their path."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self._platform = platform
        self._domain = platform.settings.http_domain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (
                m := _PATH.fullmatch(scope["path"])) is not None and not (
                self._domain and is_http_trigger(scope, self._domain)):
            try:
                response = await invocation(self._platform, scope, receive,
                                            lambda: (m[1], _qualifier(scope)))
            except ClientDisconnect:  # (nobody to answer: api/app.py's _client_gone)
                return
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def invoke_function(request: Request) -> Response:
    """The route InvokeRoute stands in front of (it is the router's, for the record)."""
    return await invoke(request, lambda: (request.path_params["name"],
                                          _qualifier(request.scope)))


async def invoke(request: Request, target: Callable[[], tuple[str, str]]) -> Response:
    """InvokeFunction through a route (FC 2.0's, ``api/fc2.py``)."""
    return await invocation(request.app.state.platform, request.scope, request.receive,
                            target)


async def invocation(platform: Platform, scope: Scope, receive: Receive,
                     target: Callable[[], tuple[str, str]]) -> Response:
    """InvokeFunction (FC 3.0's, and 2.0's): ``target`` says which function and
    qualifier the request names (or raises its 400)."""
    request_id = new_request_id()
    headers = Headers(scope=scope)
    try:
        name, qualifier = target()
        mode = headers.get("x-fc-invocation-type", "Sync").lower()
        if mode == "async":
            return await _accept(platform, receive, headers, request_id, name, qualifier)
        if mode != "sync":
            raise InvalidArgument(
                f"x-fc-invocation-type must be 'Sync' or 'Async', got '{mode}'")
        event = await read_body(receive, headers, platform.settings.max_sync_payload)
        out = await platform.invoker.invoke(name, event, request_id, qualifier=qualifier,
                                            headers=headers)
    except ApiError as exc:
        return error_response(exc, request_id)
    except asyncio.CancelledError:
        # Shutdown's grace period is over; the instance is already killed. Tell the caller.
        return error_response(ShuttingDown(), request_id)
    answer = {
        "x-fc-request-id": request_id,
        "x-fc-code-checksum": out.code_checksum,
        "x-fc-invocation-service-version": out.version_id,
        "x-funclet-start-kind": out.start_kind.value if out.start_kind else "",
        "x-funclet-instance-id": out.instance_id,
        "x-funclet-node-id": platform.node_id,
        "x-funclet-duration-ms": f"{out.duration_ms:.3f}",
        "x-funclet-queue-ms": f"{out.queue_ms:.3f}",
    }
    if out.affinity is not None:
        answer.update(response_headers(out.affinity, out.session_id, out.session_made))
    if out.start_kind is StartKind.COLD:
        answer["x-funclet-init-duration-ms"] = f"{out.init_ms:.3f}"
    if headers.get("x-fc-log-type", "").lower() == "tail":
        answer["x-fc-log-result"] = tail(out.log)
    if out.error is not None:
        answer["x-fc-error-type"] = out.error.fc_error_type
        return Response(orjson.dumps(out.error.body()), 200, answer, "application/json")
    # The handler's bytes, opaque to the platform: say so (RFC 9110 §8.3).
    return Response(out.body, 200, answer, "application/octet-stream")


async def _accept(platform: Platform, receive: Receive, headers: Headers, request_id: str,
                  name: str, qualifier: str) -> Response:
    """Async: store the task durably, then answer 202 (the dispatcher runs it later)."""
    await platform.invoker.pool(name, qualifier)  # 404 for a function or qualifier not there
    event = await read_body(receive, headers, platform.settings.max_async_payload, "async ")
    return await accept_async(platform, name, event, request_id, headers, qualifier)


# Query strings seen, each with the qualifier it names (checked once): a caller sends
# the same few again and again. Bounded: emptied when full.
_QUALIFIERS: dict[bytes, str] = {}
_QUALIFIERS_KEPT = 256


def _qualifier(scope: Scope) -> str:
    query: bytes = scope.get("query_string") or b""
    if not query:  # (most calls: nothing to parse)
        return LATEST
    qualifier = _QUALIFIERS.get(query)
    if qualifier is None:
        qualifier = parse_qualifier(Request(scope).query_params.get("qualifier"))  # (or a 400)
        if len(_QUALIFIERS) >= _QUALIFIERS_KEPT:
            _QUALIFIERS.clear()
        _QUALIFIERS[query] = qualifier
    return qualifier


async def accept_async(platform: Platform, name: str, event: bytes, request_id: str,
                       headers: Mapping[str, str], qualifier: str = LATEST) -> Response:
    """Store an async task for ``event`` as the request's ``x-fc-async-*`` headers say;
    202 once it is committed."""
    if len(event) > platform.settings.max_async_payload:
        raise PayloadTooLarge(f"the event is {len(event)} bytes, over the async invocation "
                              f"limit of {platform.settings.max_async_payload} bytes")
    delay = headers.get("x-fc-async-delay", "0")
    if not re.fullmatch(r"[0-9]{1,4}", delay) or int(delay) > 3600:
        raise InvalidArgument(f"x-fc-async-delay must be 0 to 3600 seconds, got '{delay}'")
    task_id = headers.get("x-fc-async-task-id") or request_id
    if not TASK_ID_RE.fullmatch(task_id):
        raise InvalidArgument(
            "x-fc-async-task-id must be 1-128 letters, digits, '_' or '-'")
    task = Task(task_id, request_id, name, TaskStatus.ENQUEUED, event, now_ms(), 0, qualifier)
    fresh = await platform.dispatcher.accept(task, int(delay))
    out = {"x-fc-request-id": request_id, "x-fc-async-task-id": task_id,
           "x-funclet-node-id": platform.node_id}
    if not fresh:  # the same task id again: it runs once
        out["x-funclet-async-task-duplicate"] = "true"
    return Response(status_code=202, headers=out)


async def read_event(request: Request, limit: int, kind: str = "sync ") -> bytes:
    return await read_body(request.receive, request.headers, limit, kind)


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int,
                    kind: str = "sync ") -> bytes:
    """The request's body, refused (413) past ``limit`` before more of it is held."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the event is {declared} bytes, over the {kind}invocation limit of {limit} bytes"
        )
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the event is over the {kind}invocation limit of {limit} bytes"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


routes = [Route(f"{PREFIX}/functions/{{name}}/invocations", invoke_function, methods=["POST"])]
