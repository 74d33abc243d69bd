"""FC 3.0's function, instance and (funclet's) invocation-record endpoints."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.code import code_url
from funclet.api.responses import fc_time, int_param, json_body, json_response, new_request_id
from funclet.errors import InvalidArgument, InvocationNotFound
from funclet.instances.instance import Instance
from funclet.instances.state import FC_STATUS, InstanceState
from funclet.platform import Platform
from funclet.store import FunctionRow
from funclet.versions import LATEST, parse_qualifier

PREFIX = "/2023-03-30"
_MS = re.compile(r"[0-9]{1,18}")


def function_arn(platform: Platform, name: str) -> str:
    return platform.function_arn(name)


def function_json(platform: Platform, row: FunctionRow,
                  extras: tuple[dict[str, str], dict[str, int]] | None = None) -> dict[str, Any]:
    """FC's Function; ``extras``: its tags and its layers' sizes (``extras_of``)."""
    tags, sizes = extras or ({}, {})
    out = {
        **row.config.to_fc(),
        "functionArn": function_arn(platform, row.name),
        "functionId": row.function_id,
        "codeChecksum": row.code_crc64 or row.code_checksum,  # FC's: the CRC-64
        "codeSha256": row.code_checksum,  # funclet's: the store's key
        "codeSize": row.code_size,
        "createdTime": fc_time(row.created_ms),
        "lastModifiedTime": fc_time(row.modified_ms),
        "state": "Active",
        "stateReason": "",
        "stateReasonCode": "",
        "lastUpdateStatus": "Successful",
        "lastUpdateStatusReason": "",
        "lastUpdateStatusReasonCode": "",
        "tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "layers": [{"arn": arn, "size": sizes.get(arn, 0)} for arn in row.config.layers],
    }
    if (restriction := platform.functions.disabled.get(row.name)) is not None:
        out["invocationRestriction"] = {"disable": True, "reason": restriction[0],
                                        "lastModifiedTime": fc_time(restriction[1])}
    return out


async def extras_of(platform: Platform, rows: list[FunctionRow]
                  ) -> dict[str, tuple[dict[str, str], dict[str, int]]]:
    """What function_json needs beyond the row, for each of ``rows``."""
    tags = await platform.store.tags_of("function", [r.name for r in rows])
    return {r.name: (tags.get(r.name, {}), await platform.layers.sizes(r.config.layers))
            for r in rows}


async def known_function(request: Request) -> tuple[Platform, str]:
    """The platform and the path's function name, once the function is known to exist."""
    platform = platform_of(request)
    name = request.path_params["name"]
    await platform.functions.get(name)
    return platform, name


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def create_function(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.functions.create(await json_body(request))
    return json_response(function_json(platform, row, (await extras_of(platform, [row]))[row.name]))


async def row_at(platform: Platform, name: str, qualifier: str) -> FunctionRow:
    """The function as LATEST is, or as the version ``qualifier`` names was published."""
    row = await platform.functions.get(name)
    if qualifier != LATEST:
        version = await platform.versions.resolve_row(name, qualifier)
        row = replace(row, config=version.config, revision=version.revision,
                      code_checksum=version.code_checksum, code_size=version.code_size,
                      modified_ms=version.created_ms, code_crc64=version.code_crc64)
    return row


async def get_function(request: Request) -> Response:
    """LATEST, or (``qualifier``) a version as published, an alias's version."""
    platform = platform_of(request)
    name = request.path_params["name"]
    row = await row_at(platform, name, parse_qualifier(request.query_params.get("qualifier")))
    return json_response(function_json(platform, row, (await extras_of(platform, [row]))[name]))


async def update_function(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.functions.update(request.path_params["name"], await json_body(request))
    return json_response(function_json(platform, row, (await extras_of(platform, [row]))[row.name]))


async def get_function_code(request: Request) -> Response:
    """GetFunctionCode: where the package (of LATEST, or of a qualifier's version)
    downloads from, and its checksum."""
    return await code_location(request, request.path_params["name"],
                               parse_qualifier(request.query_params.get("qualifier")))


async def code_location(request: Request, name: str, qualifier: str) -> Response:
    """GetFunctionCode's answer (3.0's and 2.0's): a download URL and the checksum."""
    row = await row_at(platform_of(request), name, qualifier)
    return json_response({"url": code_url(request, row.code_checksum),
                          "checksum": row.code_crc64 or row.code_checksum})


async def disable_invocation(request: Request) -> Response:
    await platform_of(request).functions.disable(request.path_params["name"],
                                               await json_body(request))
    return json_response({"success": True})


async def enable_invocation(request: Request) -> Response:
    await platform_of(request).functions.enable(request.path_params["name"])
    return json_response({"success": True})


async def delete_function(request: Request) -> Response:
    await platform_of(request).functions.delete(request.path_params["name"])
    return Response(status_code=204)


async def list_functions(request: Request) -> Response:
    platform = platform_of(request)
    limit = int_param(request, "limit", 20, 1, 100)
    token = request.query_params.get("nextToken") or ""
    after = decode_token(token) if token else ""
    rows = await platform.functions.page(request.query_params.get("prefix", ""), limit + 1, after)
    extras = await extras_of(platform, rows[:limit])
    out: dict[str, Any] = {"functions": [function_json(platform, r, extras[r.name])
                                         for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(rows[limit - 1].name)
    return json_response(out)


def _instance_json(inst: Instance | dict[str, Any], node_id: str) -> dict[str, Any]:
    """A live instance (on this node, ``node_id``) or a stored one (its own node's)."""
    if isinstance(inst, Instance):
        state, reason = inst.state.value, inst.stop_reason
        iid, created, destroyed = inst.instance_id, inst.created_ms, inst.destroyed_ms
        version = inst.version_id
    else:
        state, reason = inst["state"], inst["stop_reason"]
        iid, created, destroyed = inst["instance_id"], inst["created_ms"], inst["destroyed_ms"]
        node_id = inst.get("node_id") or ""
        version = inst.get("version_id") or LATEST
    return {
        "instanceId": iid,
        "versionId": "0" if version == LATEST else version,  # (FC: 0 for LATEST)
        "qualifier": version,
        "status": FC_STATUS[InstanceState(state)],
        "createdTimeMs": created,
        "destroyedTimeMs": destroyed,
        "state": state,
        "stopReason": reason,
        "nodeId": node_id,
    }


async def list_instances(request: Request) -> Response:
    """Live instances first, then recently stopped ones (with their stop reason)."""
    platform, name = await known_function(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    qualifier = request.query_params.get("qualifier")
    versions = None if qualifier is None else await platform.versions.version_ids(
        name, parse_qualifier(qualifier))  # an alias: both of its versions
    live = [i for i in platform.registry.instances(name)
            if versions is None or i.version_id in versions]
    seen = {i.instance_id for i in live}
    await platform.recorder.flush()
    stored = [
        r for r in await platform.store.list_instances(name, limit)
        if r["instance_id"] not in seen and (
            versions is None or (r.get("version_id") or LATEST) in versions)
    ]
    include_stopped = request.query_params.get("withAllActive", "").lower() != "true"
    items = [_instance_json(i, platform.node_id) for i in live]
    if include_stopped:
        items += [_instance_json(r, "") for r in stored if r["state"] == "stopped"]
    request_id = new_request_id()
    return json_response({"instances": items[:limit], "requestId": request_id}, 200, request_id)


def invocation_json(rec: dict[str, Any], with_log: bool) -> dict[str, Any]:
    out = {
        "requestId": rec["request_id"],
        "functionName": rec["function_name"],
        "mode": rec["mode"],
        "status": rec["status"],
        "startKind": rec["start_kind"],
        "instanceId": rec["instance_id"],
        "initDurationMs": rec["init_ms"],
        "durationMs": rec["duration_ms"],
        "queueMs": rec["queue_ms"],
        "errorType": rec["error_type"],
        "errorMessage": rec["error_message"],
        "startedTime": fc_time(rec["started_ms"]),
        "startedTimeMs": rec["started_ms"],
        "nodeId": rec.get("node_id") or "",
        "versionId": rec.get("version_id") or "LATEST",
    }
    if with_log:
        out["log"] = rec["log"]
    return out


async def list_invocations(request: Request) -> Response:
    platform, name = await known_function(request)
    limit = int_param(request, "limit", 20, 1, 100)
    status = request.query_params.get("status") or None
    if status is not None and status not in ("succeeded", "failed"):
        raise InvalidArgument(f"status must be 'succeeded' or 'failed', got '{status}'")
    before = page_after(request)
    await platform.recorder.flush()
    rows = await platform.store.list_invocations(name, status, limit + 1, before)
    out: dict[str, Any] = {"invocations": [invocation_json(r, False) for r in rows[:limit]]}
    if len(rows) > limit:
        last = rows[limit - 1]
        out["nextToken"] = encode_token(f"{last['started_ms']}:{last['request_id']}")
    return json_response(out)


async def get_invocation(request: Request) -> Response:
    platform = platform_of(request)
    name, request_id = request.path_params["name"], request.path_params["request_id"]
    await platform.recorder.flush()
    rec = await platform.store.get_invocation(request_id)
    if rec is None or rec["function_name"] != name:
        raise InvocationNotFound(request_id)
    return json_response(invocation_json(rec, True))


def page_after(request: Request) -> tuple[int, str] | None:
    """A ``nextToken`` of time-ordered pages: (milliseconds, id) of the last row seen."""
    token = request.query_params.get("nextToken")
    if not token:
        return None
    ms, _, last_id = decode_token(token).partition(":")
    # ASCII digits only (str.isdigit takes '²'), and few enough for a 64-bit column.
    if not _MS.fullmatch(ms) or not last_id:
        raise InvalidArgument("invalid nextToken: it is not one this API returned")
    return int(ms), last_id


def encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def decode_token(token: str) -> str:
    """The shared reader of every list's ``nextToken`` (base64url of UTF-8 text)."""
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except ValueError:  # not base64, or not UTF-8 (UnicodeDecodeError is one)
        raise InvalidArgument("invalid nextToken: it is not one this API returned") from None


routes = [
    Route(f"{PREFIX}/functions", create_function, methods=["POST"]),
    Route(f"{PREFIX}/functions", list_functions, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}", get_function, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}", update_function, methods=["PUT"]),
    Route(f"{PREFIX}/functions/{{name}}", delete_function, methods=["DELETE"]),
    Route(f"{PREFIX}/functions/{{name}}/instances", list_instances, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/code", get_function_code, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/invoke/disable", disable_invocation, methods=["POST"]),
    Route(f"{PREFIX}/functions/{{name}}/invoke/enable", enable_invocation, methods=["POST"]),
    Route(f"{PREFIX}/functions/{{name}}/invocations", list_invocations, methods=["GET"]),
    Route(
        f"{PREFIX}/functions/{{name}}/invocations/{{request_id}}", get_invocation, methods=["GET"]
    ),
]
