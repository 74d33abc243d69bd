"""funclet's own API for the platform's nodes: ``GET /2023-03-30/nodes``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX
from funclet.api.responses import json_response, new_request_id
from funclet.nodes import DEAD_AFTER_S
from funclet.platform import Platform


async def list_nodes(request: Request) -> Response:
    """Every node that ever registered, with its state (alive, stopped, dead)."""
    platform: Platform = request.app.state.platform
    request_id = new_request_id()
    nodes = [{
        "nodeId": n["node_id"], "address": n["address"], "version": n["version"],
        "state": n["state"], "startedTimeMs": n["started_ms"],
        "lastHeartbeatTimeMs": n["heartbeat_ms"], "stoppedTimeMs": n["stopped_ms"],
        "instances": n["instances"] if n["state"] == "alive" else 0,
        "self": n["node_id"] == platform.node_id,
    } for n in await platform.nodes.list()]
    return json_response({"nodes": nodes, "deadAfterSeconds": DEAD_AFTER_S,
                          "requestId": request_id}, 200, request_id)


routes = [Route(f"{PREFIX}/nodes", list_nodes, methods=["GET"])]
