"""FC 3.0's per-function configs: concurrency (reservedConcurrency) and provisioned instances."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX, decode_token, encode_token, function_arn
from funclet.api.responses import int_param, json_body, json_response
from funclet.errors import InvalidArgument, ScalingConfigNotFound
from funclet.instances.pool import Pool
from funclet.platform import Platform
from funclet.versions import LATEST, parse_qualifier


def _concurrency_json(platform: Platform, name: str, reserved: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"functionArn": function_arn(platform, name)}
    if reserved is not None:
        out["reservedConcurrency"] = reserved
    return out


async def put_concurrency(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    reserved = await platform.functions.set_reserved_concurrency(name, await json_body(request))
    return json_response(_concurrency_json(platform, name, reserved))


async def get_concurrency(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    reserved = await platform.functions.reserved_concurrency(name)
    return json_response(_concurrency_json(platform, name, reserved))


async def delete_concurrency(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    await platform.functions.clear_reserved_concurrency(request.path_params["name"])
    return Response(status_code=204)


def latest_only(request: Request, what: str) -> None:
    """A qualifier other than LATEST on a config funclet keeps per function: refused,
    not applied to LATEST without a word."""
    qualifier = request.query_params.get("qualifier")
    if qualifier not in (None, "", "LATEST"):
        raise InvalidArgument(f"{what} apply to the function as a whole (LATEST) in "
                              f"funclet; qualifier '{qualifier[:64]}' is not supported yet")


def _provision_json(platform: Platform, name: str, qualifier: str = LATEST) -> dict[str, Any]:
    if qualifier == LATEST:
        pool: Pool | None = platform.registry.pool(name)
        target = platform.functions.provision_targets.get(name, 0)  # the cluster's
    else:
        version_id = platform.versions.provision_version(name, qualifier)
        pool = platform.registry.published(name, version_id) if version_id else None
        target = platform.versions.provisioned.get((name, qualifier), 0)
    return {
        "functionArn": function_arn(platform, name),
        "qualifier": qualifier,
        "target": target,
        "defaultTarget": target,
        "current": pool.provisioned_current if pool is not None else 0,  # this node's
        "currentError": pool.provision_error if pool is not None else "",
        "alwaysAllocateCPU": True,
        "scheduledActions": [],
        "targetTrackingPolicies": [],
    }


async def _provision_target(request: Request) -> tuple[Platform, str, str]:
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    await platform.functions.get(name)
    qualifier = parse_qualifier(request.query_params.get("qualifier"))
    if qualifier != LATEST:
        await platform.versions.version_ids(name, qualifier)  # 404 for an unknown one
    return platform, name, qualifier


async def put_provision(request: Request) -> Response:
    """PutProvisionConfig: LATEST's, or (``qualifier``) a version's or an alias's (the
    instances of the version the alias points at)."""
    platform, name, qualifier = await _provision_target(request)
    body = await json_body(request)
    if qualifier == LATEST:
        await platform.functions.set_provision(name, body)
    else:
        await platform.versions.set_provision(name, qualifier, platform.functions.target_of(
            body))
    return json_response(_provision_json(platform, name, qualifier))


async def get_provision(request: Request) -> Response:
    platform, name, qualifier = await _provision_target(request)
    return json_response(_provision_json(platform, name, qualifier))


async def delete_provision(request: Request) -> Response:
    platform, name, qualifier = await _provision_target(request)
    if qualifier == LATEST:
        await platform.functions.set_provision(name, {"target": 0})
    else:
        await platform.versions.set_provision(name, qualifier, 0)
    return Response(status_code=204)


def _scaling_json(platform: Platform, name: str) -> dict[str, Any]:
    config = platform.functions.scaling[name]
    pool = platform.registry.pool(name)
    return {"functionArn": function_arn(platform, name), "minInstances": 0,
            "horizontalScalingPolicies": [], "scheduledPolicies": [], **config,
            "targetInstances": platform.functions.started_target(name),  # the cluster's
            "currentInstances": pool.provisioned_current,  # this node's
            "currentError": pool.provision_error}


async def put_scaling(request: Request) -> Response:
    latest_only(request, "scaling configs")
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    await platform.functions.set_scaling(name, await json_body(request))
    return json_response(_scaling_json(platform, name))


async def get_scaling(request: Request) -> Response:
    latest_only(request, "scaling configs")
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    await platform.functions.get(name)
    if name not in platform.functions.scaling:
        raise ScalingConfigNotFound(name)
    return json_response(_scaling_json(platform, name))


async def delete_scaling(request: Request) -> Response:
    latest_only(request, "scaling configs")
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    await platform.functions.get(name)
    if name not in platform.functions.scaling:
        raise ScalingConfigNotFound(name)
    await platform.functions.set_scaling(name, None)
    return Response(status_code=204)


async def list_scaling(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    page, token = name_page(request, [n for n in platform.functions.scaling
                                  if platform.registry.deployed(n)])
    out: dict[str, Any] = {"scalingConfigs": [_scaling_json(platform, n) for n in page]}
    if token:
        out["nextToken"] = token
    return json_response(out)


def name_page(request: Request, names: list[str]) -> tuple[list[str], str]:
    """A page of function names (``functionName``: those starting with it) after the
    ``nextToken``'s; the next token when there is more."""
    limit = int_param(request, "limit", 20, 1, 100)
    token = request.query_params.get("nextToken")
    after = decode_token(token) if token else ""
    prefix = request.query_params.get("functionName") or ""
    names = sorted(n for n in names if n > after and n.startswith(prefix))
    page = names[:limit]
    return page, encode_token(page[-1]) if len(names) > limit else ""


async def list_concurrency(request: Request) -> Response:
    """ListConcurrencyConfigs: the functions with a reservation."""
    platform: Platform = request.app.state.platform
    reserved = await platform.store.reserved_concurrency()
    page, token = name_page(request, list(reserved))
    out: dict[str, Any] = {"configs": [_concurrency_json(platform, n, reserved[n])
                                       for n in page]}
    if token:
        out["nextToken"] = token
    return json_response(out)


async def list_provision(request: Request) -> Response:
    """ListProvisionConfigs: every target, by function name and qualifier."""
    platform: Platform = request.app.state.platform
    keys = {f"{n}/{LATEST}": (n, LATEST) for n in platform.functions.provision_targets
            if platform.registry.deployed(n)}
    keys.update({f"{n}/{q}": (n, q) for n, q in platform.versions.provisioned})
    page, token = name_page(request, list(keys))
    out: dict[str, Any] = {"provisionConfigs": [_provision_json(platform, *keys[k])
                                                for k in page]}
    if token:
        out["nextToken"] = token
    return json_response(out)


routes = [
    Route(f"{PREFIX}/scaling-configs", list_scaling, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/scaling-config", put_scaling, methods=["PUT"]),
    Route(f"{PREFIX}/functions/{{name}}/scaling-config", get_scaling, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/scaling-config", delete_scaling, methods=["DELETE"]),
    Route(f"{PREFIX}/concurrency-configs", list_concurrency, methods=["GET"]),
    Route(f"{PREFIX}/provision-configs", list_provision, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/concurrency", put_concurrency, methods=["PUT"]),
    Route(f"{PREFIX}/functions/{{name}}/concurrency", get_concurrency, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/concurrency", delete_concurrency, methods=["DELETE"]),
    Route(f"{PREFIX}/functions/{{name}}/provision-config", put_provision, methods=["PUT"]),
    Route(f"{PREFIX}/functions/{{name}}/provision-config", get_provision, methods=["GET"]),
    Route(f"{PREFIX}/functions/{{name}}/provision-config", delete_provision, methods=["DELETE"]),
]
