"""FC 3.0's async task and async invoke config endpoints."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.configs import name_page
from funclet.api.functions import (
    PREFIX,
    encode_token,
    function_arn,
    known_function,
    page_after,
)
from funclet.api.responses import fc_time, int_param, json_body, json_response
from funclet.asyncq.policy import TaskStatus
from funclet.errors import AsyncConfigNotFound, AsyncTaskNotFound, InvalidArgument
from funclet.platform import Platform
from funclet.versions import LATEST, parse_qualifier

TASK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def task_json(platform: Platform, row: dict[str, Any], with_payload: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "taskId": row["task_id"],
        "requestId": row["request_id"],
        "functionArn": function_arn(platform, row["function_name"]),
        "qualifier": row.get("qualifier") or "LATEST",
        "status": row["status"],
        "alreadyRetriedTimes": max(0, row["attempts"] - 1),
        "startedTime": row["started_ms"],
        "endTime": row["end_ms"],
        "durationMs": int(row["duration_ms"]) if row["duration_ms"] is not None else None,
        "instanceId": row["instance_id"],
        "taskErrorMessage": row["error_message"],
        "returnPayload": row["return_payload"],
        "destinationStatus": row.get("destination_status"),
        "events": row["events"],
    }
    if with_payload:
        out["taskPayload"] = row["payload"].decode("utf-8", "replace")
    return out


async def get_task(request: Request) -> Response:
    platform, name = await known_function(request)
    task_id = request.path_params["task_id"]
    row = await platform.tasks.get(name, task_id)
    if row is None:
        raise AsyncTaskNotFound(task_id)
    return json_response(task_json(platform, row, True))


async def list_tasks(request: Request) -> Response:
    platform, name = await known_function(request)
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in {s.value for s in TaskStatus}:
        raise InvalidArgument(
            f"status must be one of {', '.join(s.value for s in TaskStatus)}, got '{status}'")
    order = (q.get("sortOrderByTime") or "desc").lower()
    if order not in ("asc", "desc"):
        raise InvalidArgument("sortOrderByTime must be 'asc' or 'desc'")
    limit = int_param(request, "limit", 20, 1, 100)
    begin = int_param(request, "startedTimeBegin", -1, 0, 2**62)
    end = int_param(request, "startedTimeEnd", -1, 0, 2**62)
    before = page_after(request)
    qualifier = q.get("qualifier") or None
    rows = await platform.tasks.list(
        name, status, begin if begin >= 0 else None, end if end >= 0 else None,
        q.get("prefix", ""), limit + 1, before, newest_first=order == "desc",
        qualifier=None if qualifier is None else parse_qualifier(qualifier))
    with_payload = q.get("includePayload", "").lower() == "true"
    out: dict[str, Any] = {"tasks": [task_json(platform, r, with_payload) for r in rows[:limit]]}
    if len(rows) > limit:
        last = rows[limit - 1]
        out["nextToken"] = encode_token(f"{last['created_ms']}:{last['task_id']}")
    return json_response(out)


async def stop_task(request: Request) -> Response:
    platform, name = await known_function(request)
    task_id = request.path_params["task_id"]
    status = await platform.tasks.stop(name, task_id)
    if status is None:
        raise AsyncTaskNotFound(task_id)
    if status == TaskStatus.STOPPING:
        platform.dispatcher.stop_running(task_id)
    return json_response({})


def _config_json(platform: Platform, name: str, qualifier: str, entry: Any) -> dict[str, Any]:
    config, created, modified = entry
    return {**config.to_fc(function_arn(platform, name)), "qualifier": qualifier,
            "createdTime": fc_time(created), "lastModifiedTime": fc_time(modified)}


async def _config_target(request: Request) -> tuple[Platform, str, str]:
    """The path's function and the qualifier (LATEST, a version, an alias), both known."""
    platform, name = await known_function(request)
    qualifier = parse_qualifier(request.query_params.get("qualifier"))
    if qualifier != LATEST:
        await platform.versions.version_ids(name, qualifier)  # 404 for an unknown one
    return platform, name, qualifier


async def put_async_config(request: Request) -> Response:
    platform, name, qualifier = await _config_target(request)
    entry = await platform.async_configs.put(name, await json_body(request), qualifier)
    return json_response(_config_json(platform, name, qualifier, entry))


async def get_async_config(request: Request) -> Response:
    platform, name, qualifier = await _config_target(request)
    entry = platform.async_configs.get(name, qualifier)
    if entry is None:
        raise AsyncConfigNotFound(name, qualifier)
    return json_response(_config_json(platform, name, qualifier, entry))


async def delete_async_config(request: Request) -> Response:
    platform, name, qualifier = await _config_target(request)
    if not await platform.async_configs.delete(name, qualifier):
        raise AsyncConfigNotFound(name, qualifier)
    return Response(status_code=204)


async def list_async_configs(request: Request) -> Response:
    """ListAsyncInvokeConfigs: every config, by function name and qualifier."""
    platform: Platform = request.app.state.platform
    keys = {f"{name}/{qualifier}": (name, qualifier)
            for name, qualifier in platform.async_configs.keys()}
    page, token = name_page(request, list(keys))
    out: dict[str, Any] = {"configs": [
        _config_json(platform, *keys[k], platform.async_configs.get(*keys[k])) for k in page]}
    if token:
        out["nextToken"] = token
    return json_response(out)


_F = f"{PREFIX}/functions/{{name}}"
routes = [
    Route(f"{PREFIX}/async-invoke-configs", list_async_configs, methods=["GET"]),
    Route(f"{_F}/async-tasks", list_tasks, methods=["GET"]),
    Route(f"{_F}/async-tasks/{{task_id}}", get_task, methods=["GET"]),
    Route(f"{_F}/async-tasks/{{task_id}}/stop", stop_task, methods=["PUT"]),
    Route(f"{_F}/async-invoke-config", put_async_config, methods=["PUT"]),
    Route(f"{_F}/async-invoke-config", get_async_config, methods=["GET"]),
    Route(f"{_F}/async-invoke-config", delete_async_config, methods=["DELETE"]),
]
