"""FC 3.0's layers: ``/layers/{name}/versions``, ``/layerarn/{arn}``, ``/layers/{name}/acl``."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.code import code_url
from funclet.api.functions import PREFIX, decode_token, encode_token, platform_of
from funclet.api.responses import fc_time, int_param, json_body, json_response
from funclet.errors import InvalidArgument
from funclet.store.layers import LayerRow


def layer_json(request: Request, row: LayerRow) -> dict[str, Any]:
    platform = platform_of(request)
    return {
        "layerName": row.layer_name, "version": row.version,
        "layerVersionArn": platform.layers.arn(row.layer_name, row.version),
        "description": row.description, "compatibleRuntime": row.compatible_runtimes,
        "license": row.license, "codeChecksum": row.code_crc64 or row.code_checksum,
        "codeSize": row.code_size,
        "createTime": fc_time(row.created_ms), "acl": "1" if row.public else "0",
        "code": {"repositoryType": "funclet", "location": code_url(request, row.code_checksum)},
    }


async def create_version(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.layers.create_version(request.path_params["layer"],
                                               await json_body(request))
    return json_response(layer_json(request, row))


async def get_version(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.layers.get(request.path_params["layer"], request.path_params["version"])
    return json_response(layer_json(request, row))


async def get_by_arn(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.layers.by_arn(unquote(request.path_params["arn"]))
    return json_response(layer_json(request, row))


async def list_versions(request: Request) -> Response:
    """ListLayerVersions: from ``startVersion`` up; ``nextVersion`` when there are more."""
    platform = platform_of(request)
    limit = int_param(request, "limit", 20, 1, 100)
    start = int_param(request, "startVersion", 1, 1, 2**31)
    rows = await platform.layers.versions(request.path_params["layer"], start, limit + 1)
    out: dict[str, Any] = {"layers": [layer_json(request, r) for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextVersion"] = rows[limit].version
    return json_response(out)


async def list_layers(request: Request) -> Response:
    """ListLayers: each layer's newest version, by name (``public=true``: public ones)."""
    platform = platform_of(request)
    q = request.query_params
    limit = int_param(request, "limit", 20, 1, 100)
    token = q.get("nextToken")
    rows = await platform.layers.page(q.get("prefix", ""), decode_token(token) if token else "",
                                      limit + 1, q.get("public", "").lower() == "true")
    out: dict[str, Any] = {"layers": [layer_json(request, r) for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(rows[limit - 1].layer_name)
    return json_response(out)


async def delete_version(request: Request) -> Response:
    await platform_of(request).layers.delete(request.path_params["layer"],
                                           request.path_params["version"])
    return Response(status_code=204)


async def put_acl(request: Request) -> Response:
    """PutLayerACL: ``public=true|false`` (or ``acl=1|0``) in the query."""
    q = request.query_params
    raw = (q.get("public") or "").lower()
    acl = q.get("acl")
    if raw in ("true", "false"):
        public = raw == "true"
    elif acl in ("0", "1"):
        public = acl == "1"
    else:
        raise InvalidArgument("public must be true or false (or acl 1 or 0)")
    await json_body(request)  # (an empty body)
    await platform_of(request).layers.set_public(request.path_params["layer"], public)
    return Response(status_code=200)


_L = f"{PREFIX}/layers/{{layer}}"
routes = [
    Route(f"{PREFIX}/layers", list_layers, methods=["GET"]),
    Route(f"{_L}/versions", create_version, methods=["POST"]),
    Route(f"{_L}/versions", list_versions, methods=["GET"]),
    Route(f"{_L}/versions/{{version}}", get_version, methods=["GET"]),
    Route(f"{_L}/versions/{{version}}", delete_version, methods=["DELETE"]),
    Route(f"{_L}/acl", put_acl, methods=["PUT"]),
    Route(f"{PREFIX}/layerarn/{{arn:path}}", get_by_arn, methods=["GET"]),
]
