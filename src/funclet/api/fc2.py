"""FC 2.0's API (``/2016-08-15/``), as its SDKs (``aliyun-fc2``, ``@alicloud/fc2``) and
old tutorials call it: services, functions under a service, invocations, triggers, and
``/proxy/`` for HTTP triggers. Function ``fn`` of service ``svc`` is 3.0's function
``svc$fn`` (``funclet.services``); ``{service}.{qualifier}`` in a path names a version
or alias. Errors come in 2.0's shape, ``{"ErrorCode", "ErrorMessage", "RequestId"}``;
``Authorization: FC ak:signature`` is checked by ``api/auth.py``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from funclet.api import invoke as invoke_api
from funclet.api.functions import (
    code_location,
    decode_token,
    encode_token,
    extras_of,
    function_json,
    platform_of,
    row_at,
)
from funclet.api.responses import ERROR_SHAPE, FC2, fc_time, int_param, json_body, json_response
from funclet.api.triggers import trigger_json
from funclet.errors import InvalidArgument
from funclet.platform import Platform
from funclet.services import SEPARATOR, ServiceRow, check_name, function_name
from funclet.store import FunctionRow
from funclet.versions import LATEST, parse_qualifier

V2 = "/2016-08-15"
_PROXY = f"{V2}/proxy/"


class Fc2Requests:
    """For requests under ``/2016-08-15/``: errors in 2.0's shape; ``/proxy/{service}
    [.{qualifier}]/{function}/{path}`` goes to the function's HTTP trigger (as
    ``/http/{service}${function}/{path}``, with the qualifier, and what its signature
    covers kept for ``api/auth.py``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(V2 + "/"):
            await self.app(scope, receive, send)
            return
        token = ERROR_SHAPE.set(FC2)
        try:
            if scope["path"].startswith(_PROXY):
                scope = _proxied(scope)
            await self.app(scope, receive, send)
        finally:
            ERROR_SHAPE.reset(token)


def _proxied(scope: Scope) -> Scope:
    path: str = scope["path"]
    service, _, rest = path[len(_PROXY):].partition("/")
    function, slash, tail = rest.partition("/")
    service, dot, qualifier = service.partition(".")
    if not service or not function:
        return scope  # no such route: a 404 in 2.0's shape
    try:
        name = function_name(service, function)
        if dot:
            qualifier = parse_qualifier(qualifier)
    except InvalidArgument:
        return scope
    raw = scope.get("raw_path") or path.encode()
    raw_parts = raw.split(b"/", 5)  # b"", b"2016-08-15", b"proxy", svc, fn, rest
    raw_tail = b"/" + raw_parts[5] if len(raw_parts) > 5 else b"/"
    return {
        **scope,
        "path": f"/http/{name}/{tail}" if slash else f"/http/{name}/",
        "raw_path": b"/http/" + name.encode() + raw_tail,
        "funclet_qualifier": qualifier if dot else None,
        "funclet_signed": (path, scope.get("query_string", b"").decode("latin-1")),
    }


def _service_and_qualifier(request: Request) -> tuple[str, str]:
    """The path's ``{service}[.{qualifier}]``."""
    service, dot, qualifier = request.path_params["service"].partition(".")
    check_name(service, "serviceName")
    return service, parse_qualifier(qualifier) if dot else LATEST


def _name(request: Request) -> tuple[str, str]:
    """The 3.0 function the path names, and the qualifier."""
    service, qualifier = _service_and_qualifier(request)
    return function_name(service, request.path_params["function"]), qualifier


def service_json(platform: Platform, row: ServiceRow) -> dict[str, Any]:
    config = row.config
    return {
        "serviceName": row.name,
        "serviceId": row.service_id,
        "description": config.get("description", ""),
        "role": config.get("role", ""),
        "logConfig": config.get("logConfig", {"project": "", "logstore": ""}),
        "internetAccess": config.get("internetAccess", True),
        "tracingConfig": config.get("tracingConfig", {}),
        "vpcConfig": {"vpcId": "", "vSwitchIds": [], "securityGroupId": ""},
        "nasConfig": {"userId": -1, "groupId": -1, "mountPoints": []},
        "createdTime": fc_time(row.created_ms),
        "lastModifiedTime": fc_time(row.modified_ms),
    }


def function2_json(platform: Platform, row: FunctionRow,
                   extras: tuple[dict[str, str], dict[str, int]] | None = None
                   ) -> dict[str, Any]:
    """2.0's Function: 3.0's, with the short name, the initializer at the top and the
    layers as ARNs."""
    out = function_json(platform, row, extras)
    out["functionName"] = row.name.split(SEPARATOR, 1)[-1]
    lifecycle = dict(out.pop("instanceLifecycleConfig", {}))
    init = lifecycle.pop("initializer", None)
    out["initializer"] = init["handler"] if init else ""
    out["initializationTimeout"] = init["timeout"] if init else 0
    out["instanceLifecycleConfig"] = lifecycle
    out["layers"] = list(row.config.layers)
    if row.config.custom_runtime is not None:
        out["caPort"] = row.config.custom_runtime.port
    out.pop("codeSha256", None)
    return out


def _function_body(body: dict[str, Any]) -> dict[str, Any]:
    """A 2.0 CreateFunction/UpdateFunction body as 3.0's."""
    out = {k: v for k, v in body.items() if k not in (
        "functionName", "initializer", "initializationTimeout", "caPort", "code")}
    if body.get("code") is not None:
        code = body["code"]
        if not isinstance(code, dict):
            raise InvalidArgument("code must be an object with zipFile (a base64 zip)")
        if code.get("ossBucketName") or code.get("ossObjectName"):
            raise InvalidArgument("code.ossBucketName/ossObjectName: OSS is Alibaba "
                                  "Cloud's; send the package as code.zipFile")
        out["code"] = {"zipFile": code.get("zipFile")}
    lifecycle = dict(body.get("instanceLifecycleConfig") or {})
    if (lifecycle.pop("preFreeze", None) or {}).get("handler"):
        raise InvalidArgument("instanceLifecycleConfig.preFreeze is not supported (FC 3.0 "
                              "dropped it, and so does funclet): use preStop")
    if body.get("initializer"):
        lifecycle["initializer"] = {"handler": body["initializer"],
                                    "timeout": body.get("initializationTimeout") or 3}
    if lifecycle or "instanceLifecycleConfig" in body or body.get("initializer"):
        out["instanceLifecycleConfig"] = lifecycle
    if body.get("caPort") is not None:
        out["customRuntimeConfig"] = {**(body.get("customRuntimeConfig") or {}),
                                      "port": body["caPort"]}
    kind = body.get("instanceType")  # (kept as given: an elastic instance here)
    if kind not in (None, "e1", "c1"):
        raise InvalidArgument(f"instanceType {kind!r} is not supported: funclet runs "
                              "elastic instances (e1, c1), no GPU")
    if body.get("gpuMemorySize"):
        raise InvalidArgument("gpuMemorySize is not supported: funclet runs no GPU instances")
    out.pop("gpuMemorySize", None)
    return out


# -- services -------------------------------------------------------------------------


async def create_service(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.services.create(await json_body(request))
    return json_response(service_json(platform, row))


async def get_service(request: Request) -> Response:
    platform = platform_of(request)
    service, _ = _service_and_qualifier(request)
    return json_response(service_json(platform, await platform.services.get(service)))


async def update_service(request: Request) -> Response:
    platform = platform_of(request)
    service, _ = _service_and_qualifier(request)
    row = await platform.services.update(service, await json_body(request))
    return json_response(service_json(platform, row))


async def delete_service(request: Request) -> Response:
    platform = platform_of(request)
    service, _ = _service_and_qualifier(request)
    await platform.services.delete(service)
    return Response(status_code=204)


def _page(request: Request) -> tuple[int, str]:
    limit = int_param(request, "limit", 20, 1, 100)
    token = request.query_params.get("nextToken") or ""
    after = decode_token(token) if token else (request.query_params.get("startKey") or "")
    if after and not token:  # startKey: from that name on. Names are ASCII: no name
        # falls between startKey and this string just below it.
        after = after[:-1] + chr(max(ord(after[-1]) - 1, 0)) + "\U0010ffff"
    return limit, after


async def list_services(request: Request) -> Response:
    platform = platform_of(request)
    limit, after = _page(request)
    rows = await platform.services.page(request.query_params.get("prefix", ""), limit + 1,
                                        after)
    out: dict[str, Any] = {"services": [service_json(platform, r) for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(rows[limit - 1].name)
    return json_response(out)


# -- functions ------------------------------------------------------------------------


async def create_function(request: Request) -> Response:
    platform = platform_of(request)
    service, _ = _service_and_qualifier(request)
    body = await json_body(request)
    short = body.get("functionName")
    if not isinstance(short, str):
        raise InvalidArgument("functionName is required and must be a string")
    owner = await platform.services.get(service)
    three = {**platform.services.inherited(owner), **_function_body(body),
             "functionName": function_name(service, short)}
    row = await platform.functions.create(three)
    return json_response(function2_json(platform, row))


async def get_function(request: Request) -> Response:
    platform = platform_of(request)
    name, qualifier = _name(request)
    row = await row_at(platform, name, qualifier)
    return json_response(function2_json(platform, row, (await extras_of(platform, [row]))[name]))


async def update_function(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = _name(request)
    row = await platform.functions.update(name, _function_body(await json_body(request)))
    return json_response(function2_json(platform, row))


async def delete_function(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = _name(request)
    await platform.functions.delete(name)
    return Response(status_code=204)


async def get_function_code(request: Request) -> Response:
    return await code_location(request, *_name(request))


async def list_functions(request: Request) -> Response:
    platform = platform_of(request)
    service, _ = _service_and_qualifier(request)
    limit, after = _page(request)
    prefix = f"{service}{SEPARATOR}"
    rows = await platform.functions.page(prefix + request.query_params.get("prefix", ""),
                                         limit + 1, prefix + after if after else "")
    extras = await extras_of(platform, rows[:limit])
    out: dict[str, Any] = {"functions": [function2_json(platform, r, extras[r.name])
                                         for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(rows[limit - 1].name.split(SEPARATOR, 1)[1])
    return json_response(out)


async def invoke_function(request: Request) -> Response:
    return await invoke_api.invoke(request, lambda: _name(request))


# -- triggers -------------------------------------------------------------------------


def _trigger2_json(request: Request, platform: Platform, row: Any) -> dict[str, Any]:
    out = trigger_json(platform, row, str(request.base_url).rstrip("/"))
    out["triggerConfig"] = orjson.loads(out["triggerConfig"])  # 2.0: an object
    out.pop("targetArn", None)
    if row.trigger_type == "http":
        service, _, function = row.function_name.partition(SEPARATOR)
        url = f"{str(request.base_url).rstrip('/')}{_PROXY}{service}/{function}/"
        out["urlInternet"] = out["urlIntranet"] = url
        out.pop("httpTrigger", None)
    return out


async def _function_of(request: Request) -> tuple[Platform, str]:
    platform = platform_of(request)
    name, _ = _name(request)
    await platform.functions.get(name)
    return platform, name


async def create_trigger(request: Request) -> Response:
    platform, name = await _function_of(request)
    row = await platform.triggers.create(name, await json_body(request))
    return json_response(_trigger2_json(request, platform, row))


async def get_trigger(request: Request) -> Response:
    platform, name = await _function_of(request)
    row = platform.triggers.get(name, request.path_params["trigger"])
    return json_response(_trigger2_json(request, platform, row))


async def update_trigger(request: Request) -> Response:
    platform, name = await _function_of(request)
    row = await platform.triggers.update(name, request.path_params["trigger"],
                                         await json_body(request))
    return json_response(_trigger2_json(request, platform, row))


async def delete_trigger(request: Request) -> Response:
    platform, name = await _function_of(request)
    await platform.triggers.delete(name, request.path_params["trigger"])
    return Response(status_code=204)


async def list_triggers(request: Request) -> Response:
    platform, name = await _function_of(request)
    limit, after = _page(request)
    rows = platform.triggers.list(name, request.query_params.get("prefix", ""), limit + 1,
                                  after)
    out: dict[str, Any] = {"triggers": [_trigger2_json(request, platform, r)
                                        for r in rows[:limit]]}
    if len(rows) > limit:
        out["nextToken"] = encode_token(rows[limit - 1].trigger_name)
    return json_response(out)


async def account_settings(request: Request) -> Response:
    return json_response({"availableAZs": [], "region": platform_of(request).settings.region})


_S = f"{V2}/services"
_FN = f"{_S}/{{service}}/functions/{{function}}"
routes = [
    Route(f"{V2}/account-settings", account_settings, methods=["GET"]),
    Route(_S, create_service, methods=["POST"]),
    Route(_S, list_services, methods=["GET"]),
    Route(f"{_S}/{{service}}", get_service, methods=["GET"]),
    Route(f"{_S}/{{service}}", update_service, methods=["PUT"]),
    Route(f"{_S}/{{service}}", delete_service, methods=["DELETE"]),
    Route(f"{_S}/{{service}}/functions", create_function, methods=["POST"]),
    Route(f"{_S}/{{service}}/functions", list_functions, methods=["GET"]),
    Route(_FN, get_function, methods=["GET"]),
    Route(_FN, update_function, methods=["PUT"]),
    Route(_FN, delete_function, methods=["DELETE"]),
    Route(f"{_FN}/code", get_function_code, methods=["GET"]),
    Route(f"{_FN}/invocations", invoke_function, methods=["POST"]),
    Route(f"{_FN}/triggers", create_trigger, methods=["POST"]),
    Route(f"{_FN}/triggers", list_triggers, methods=["GET"]),
    Route(f"{_FN}/triggers/{{trigger}}", get_trigger, methods=["GET"]),
    Route(f"{_FN}/triggers/{{trigger}}", update_trigger, methods=["PUT"]),
    Route(f"{_FN}/triggers/{{trigger}}", delete_trigger, methods=["DELETE"]),
]
