"""FC 3.0's trigger API: CreateTrigger, GetTrigger, UpdateTrigger, DeleteTrigger,
ListTriggers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX, decode_token, encode_token, known_function
from funclet.api.responses import fc_time, int_param, json_body, json_response
from funclet.platform import Platform
from funclet.triggers import TriggerRow


def trigger_json(platform: Platform, row: TriggerRow, base_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "triggerId": row.trigger_id,
        "triggerName": row.trigger_name,
        "triggerType": row.trigger_type,
        "triggerConfig": orjson.dumps(row.config).decode(),  # FC sends a JSON string
        "description": row.description,
        "qualifier": row.qualifier,
        "invocationRole": row.invocation_role,
        "sourceArn": row.source_arn,
        "targetArn": platform.function_arn(row.function_name),
        "createdTime": fc_time(row.created_ms),
        "lastModifiedTime": fc_time(row.modified_ms),
    }
    out["status"], last_error = platform.triggers.status(row)
    if last_error:
        out["lastError"] = last_error  # funclet's: why a message-queue trigger is not connected
    if row.trigger_type == "http":
        out["httpTrigger"] = platform.http_urls(row.function_name, base_url)
    if (next_fire := platform.triggers.next_fire_ms(row)) is not None:
        out["nextFireTime"] = fc_time(next_fire)  # funclet's: a timer's next fire
    return out


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def create_trigger(request: Request) -> Response:
    platform, name = await known_function(request)
    row = await platform.triggers.create(name, await json_body(request))
    return json_response(trigger_json(platform, row, _base_url(request)))


async def get_trigger(request: Request) -> Response:
    platform, name = await known_function(request)
    row = platform.triggers.get(name, request.path_params["trigger"])
    return json_response(trigger_json(platform, row, _base_url(request)))


async def update_trigger(request: Request) -> Response:
    platform, name = await known_function(request)
    row = await platform.triggers.update(name, request.path_params["trigger"],
                                         await json_body(request))
    return json_response(trigger_json(platform, row, _base_url(request)))


async def delete_trigger(request: Request) -> Response:
    platform, name = await known_function(request)
    await platform.triggers.delete(name, request.path_params["trigger"])
    return Response(status_code=204)


async def list_triggers(request: Request) -> Response:
    platform, name = await known_function(request)
    limit = int_param(request, "limit", 20, 1, 100)
    token = request.query_params.get("nextToken") or ""
    after = decode_token(token) if token else ""
    rows = platform.triggers.list(name, request.query_params.get("prefix", ""), limit + 1, after)
    base = _base_url(request)
    out: dict[str, Any] = {"triggers": [trigger_json(platform, r, base) for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(rows[limit - 1].trigger_name)
    return json_response(out)


_ONE = f"{PREFIX}/functions/{{name}}/triggers/{{trigger}}"
routes = [
    Route(f"{PREFIX}/functions/{{name}}/triggers", create_trigger, methods=["POST"]),
    Route(f"{PREFIX}/functions/{{name}}/triggers", list_triggers, methods=["GET"]),
    Route(_ONE, get_trigger, methods=["GET"]),
    Route(_ONE, update_trigger, methods=["PUT"]),
    Route(_ONE, delete_trigger, methods=["DELETE"]),
]
