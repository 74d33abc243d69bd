"""InvokeFunction: ``POST /2023-03-30/functions/{name}/invocations``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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


async def invoke_function(request: Request) -> Response:
    return await invoke(request, lambda: (request.path_params["name"], _qualifier(request)))


async def invoke(request: Request, target: Callable[[], tuple[str, str]]) -> Response:
    """InvokeFunction (FC 3.0's, and 2.0's ``api/fc2.py``): ``target`` says which function
    and qualifier the request names (or raises its 400)."""
    platform: Platform = request.app.state.platform
    request_id = new_request_id()
    try:
        name, qualifier = target()
        mode = request.headers.get("x-fc-invocation-type", "Sync").lower()
        if mode == "async":
            return await _accept(request, platform, request_id, name, qualifier)
        if mode != "sync":
            raise InvalidArgument(
                f"x-fc-invocation-type must be 'Sync' or 'Async', got '{mode}'")
        event = await read_event(request, platform.settings.max_sync_payload)
        out = await platform.invoker.invoke(name, event, request_id, qualifier=qualifier,
                                            headers=request.headers)
    except ApiError as exc:
        return error_response(exc, request_id)
    except asyncio.CancelledError:
        # Shutdown's grace period is over; the instance is already killed. Tell the caller.
        return error_response(ShuttingDown(), request_id)
    headers = {
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
        headers.update(response_headers(out.affinity, out.session_id, out.session_made))
    if out.start_kind is StartKind.COLD:
        headers["x-funclet-init-duration-ms"] = f"{out.init_ms:.3f}"
    if request.headers.get("x-fc-log-type", "").lower() == "tail":
        headers["x-fc-log-result"] = tail(out.log)
    if out.error is not None:
        headers["x-fc-error-type"] = out.error.fc_error_type
        return Response(orjson.dumps(out.error.body()), 200, headers, "application/json")
    # The handler's bytes, opaque to the platform: say so (RFC 9110 §8.3).
    return Response(out.body, 200, headers, "application/octet-stream")


async def _accept(request: Request, platform: Platform, request_id: str, name: str,
                  qualifier: str) -> Response:
    """Async: store the task durably, then answer 202 (the dispatcher runs it later)."""
    await platform.invoker.pool(name, qualifier)  # 404 for a function or qualifier not there
    event = await read_event(request, platform.settings.max_async_payload, "async ")
    return await accept_async(platform, name, event, request_id, request.headers, qualifier)


# Query strings seen, each with the qualifier it names (checked once): a caller sends
# the same few again and again. Bounded: emptied when full.
_QUALIFIERS: dict[bytes, str] = {}
_QUALIFIERS_KEPT = 256


def _qualifier(request: Request) -> str:
    query: bytes = request.scope.get("query_string") or b""
    if not query:  # (most calls: nothing to parse)
        return LATEST
    qualifier = _QUALIFIERS.get(query)
    if qualifier is None:
        qualifier = parse_qualifier(request.query_params.get("qualifier"))  # (or a 400)
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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the event is {declared} bytes, over the {kind}invocation limit of {limit} bytes"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the event is over the {kind}invocation limit of {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


routes = [Route(f"{PREFIX}/functions/{{name}}/invocations", invoke_function, methods=["POST"])]
