"""FC 3.0's versions and aliases: ``/functions/{name}/versions`` and ``/aliases``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX, decode_token, encode_token, platform_of
from funclet.api.responses import fc_time, int_param, json_body, json_response
from funclet.store.versions import AliasRow, VersionRow


def version_json(row: VersionRow) -> dict[str, Any]:
    created = fc_time(row.created_ms)
    return {"versionId": str(row.version_id), "description": row.description,
            "createdTime": created, "lastModifiedTime": created}


def alias_json(row: AliasRow) -> dict[str, Any]:
    return {"aliasName": row.alias_name, "versionId": str(row.version_id),
            "additionalVersionWeight": row.additional_weight,
            "description": row.description, "createdTime": fc_time(row.created_ms),
            "lastModifiedTime": fc_time(row.modified_ms)}



async def publish_version(request: Request) -> Response:
    row = await platform_of(request).versions.publish(request.path_params["name"],
                                                    await json_body(request))
    return json_response(version_json(row))


async def list_versions(request: Request) -> Response:
    token = request.query_params.get("nextToken") or ""
    direction = request.query_params.get("direction") or "BACKWARD"
    rows, after = await platform_of(request).versions.page(
        request.path_params["name"], int_param(request, "limit", 20, 1, 100), direction,
        decode_token(token) if token else "")
    out: dict[str, Any] = {"versions": [version_json(r) for r in rows], "direction": direction}
    if after:
        out["nextToken"] = encode_token(after)
    return json_response(out)


async def delete_version(request: Request) -> Response:
    platform, name = platform_of(request), request.path_params["name"]
    await platform.versions.delete(name, request.path_params["version"])
    await platform.async_configs.delete(name, request.path_params["version"])  # its own
    return Response(status_code=204)


async def create_alias(request: Request) -> Response:
    row = await platform_of(request).versions.create_alias(request.path_params["name"],
                                                         await json_body(request))
    return json_response(alias_json(row))


async def get_alias(request: Request) -> Response:
    row = await platform_of(request).versions.get_alias(request.path_params["name"],
                                                      request.path_params["alias"])
    return json_response(alias_json(row))


async def update_alias(request: Request) -> Response:
    row = await platform_of(request).versions.update_alias(
        request.path_params["name"], request.path_params["alias"], await json_body(request))
    return json_response(alias_json(row))


async def list_aliases(request: Request) -> Response:
    token = request.query_params.get("nextToken") or ""
    rows, after = await platform_of(request).versions.list_aliases(
        request.path_params["name"], request.query_params.get("prefix", ""),
        int_param(request, "limit", 20, 1, 100), decode_token(token) if token else "")
    out: dict[str, Any] = {"aliases": [alias_json(r) for r in rows]}
    if after:
        out["nextToken"] = encode_token(after)
    return json_response(out)


async def delete_alias(request: Request) -> Response:
    platform, name = platform_of(request), request.path_params["name"]
    await platform.versions.delete_alias(name, request.path_params["alias"])
    await platform.async_configs.delete(name, request.path_params["alias"])  # its own
    return Response(status_code=204)


_FN = f"{PREFIX}/functions/{{name}}"
routes = [
    Route(f"{_FN}/versions", publish_version, methods=["POST"]),
    Route(f"{_FN}/versions", list_versions, methods=["GET"]),
    Route(f"{_FN}/versions/{{version}}", delete_version, methods=["DELETE"]),
    Route(f"{_FN}/aliases", create_alias, methods=["POST"]),
    Route(f"{_FN}/aliases", list_aliases, methods=["GET"]),
    Route(f"{_FN}/aliases/{{alias}}", get_alias, methods=["GET"]),
    Route(f"{_FN}/aliases/{{alias}}", update_alias, methods=["PUT"]),
    Route(f"{_FN}/aliases/{{alias}}", delete_alias, methods=["DELETE"]),
]
