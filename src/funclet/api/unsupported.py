"""FC 3.0's snapshots and VPC bindings, which need Alibaba Cloud: creating one is a
``400 NotSupported`` that says so; reading answers what is true here (none exist)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX, known_function
from funclet.api.responses import json_response
from funclet.errors import ApiError, NotSupported


class _NotFound(ApiError):
    status = 404

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_SNAPSHOTS = ("funclet does not offer snapshots: its instances start from a code package "
              "(and instances started ahead)")
_VPC = ("funclet does not offer VPC bindings: a VPC is Alibaba Cloud's network; a "
        "function reaches the host's network (internetAccess)")


async def create_snapshot(request: Request) -> Response:
    await known_function(request)
    raise NotSupported(_SNAPSHOTS)


async def one_snapshot(request: Request) -> Response:
    await known_function(request)
    raise _NotFound("SnapshotNotFound", f"no snapshot '{request.path_params['id'][:64]}' "
                    f"(funclet has none: {_SNAPSHOTS})")


async def list_snapshots(request: Request) -> Response:
    return json_response({"snapshots": []})


async def create_vpc_binding(request: Request) -> Response:
    await known_function(request)
    raise NotSupported(_VPC)


async def delete_vpc_binding(request: Request) -> Response:
    await known_function(request)
    raise _NotFound("VpcBindingNotFound", f"no VPC binding '{request.path_params['id'][:64]}'"
                    f" ({_VPC})")


async def list_vpc_bindings(request: Request) -> Response:
    await known_function(request)
    return json_response({"vpcIds": []})


_F = f"{PREFIX}/functions/{{name}}"
routes = [
    Route(f"{_F}/snapshots", create_snapshot, methods=["POST"]),
    Route(f"{_F}/snapshots/{{id}}", one_snapshot, methods=["GET"]),
    Route(f"{_F}/snapshots/{{id}}", one_snapshot, methods=["DELETE"]),
    Route(f"{PREFIX}/snapshots", list_snapshots, methods=["GET"]),
    Route(f"{_F}/vpc-bindings", create_vpc_binding, methods=["POST"]),
    Route(f"{_F}/vpc-bindings", list_vpc_bindings, methods=["GET"]),
    Route(f"{_F}/vpc-bindings/{{id}}", delete_vpc_binding, methods=["DELETE"]),
]
