"""The Starlette application: routes, error handlers, the platform's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Host, Route, Router

from funclet.api import (
    account,
    code,
    configs,
    console,
    domains,
    fc2,
    function_urls,
    functions,
    http_triggers,
    invoke,
    lambda_api,
    layers,
    nodes,
    openapi,
    sessions,
    tasks,
    triggers,
    unsupported,
    versions,
)
from funclet.api.auth import Authenticate, RefuseInstances
from funclet.api.responses import error_response, json_response, new_request_id
from funclet.api.routing import by_segment
from funclet.errors import ApiError, MethodNotAllowed, RouteNotFound
from funclet.platform import Platform

log = logging.getLogger(__name__)



async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(MethodNotAllowed(message))
    return error_response(RouteNotFound(f"no such API: {request.method} {request.url.path}"))


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before its request was read: nobody to answer, nothing to
    log (a load tester stopping mid-request does this)."""
    return Response(status_code=499)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug or a host fault: the log gets the traceback; the client, only the request
    id to find it by (never SQL or exception text)."""
    request_id = new_request_id()
    log.error("Request %s (%s %s) failed inside funclet.", request_id, request.method,
              request.url.path, exc_info=exc)
    error = ApiError(f"funclet failed to handle this request (an internal error); its log "
                     f"names request {request_id}")
    return error_response(error, request_id)


async def _health(request: Request) -> Response:
    """Up, and able to serve: the database and the code store answer (503 if either
    does not, so that a load balancer sends nothing here)."""
    platform: Platform = request.app.state.platform
    network = platform.sandbox.network
    database, code = await asyncio.gather(platform.store.health(), platform.code.health())
    healthy = database is None and code is None
    return json_response({
        "status": "ok" if healthy else "unavailable", "nodeId": platform.node_id,
        "database": {"backend": platform.store.engine.dialect.name, "ok": database is None,
                     **({"error": database} if database else {})},
        "codeStore": {"location": platform.code.blobs.where, "ok": code is None,
                      **({"error": code} if code else {})},
        "sandbox": platform.sandbox.config.protections(),
        "network": network.summary() if network is not None else None,
    }, 200 if healthy else 503)


async def _metrics(request: Request) -> Response:
    """Prometheus's text format (docs/metrics.md); the API's credentials when auth is on."""
    platform: Platform = request.app.state.platform
    platform.metrics.now = await platform.gauges()
    return Response(generate_latest(platform.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


def build_app(platform: Platform) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        try:
            yield
        finally:
            await platform.stop()

    middleware = [Middleware(domains.CustomDomainRequests, domains=platform.domains),
                  Middleware(fc2.Fc2Requests), Middleware(lambda_api.LambdaRequests)]
    s = platform.settings
    credentials: dict[str, Any] = {
        "token": platform.api_token, "access_keys": s.access_keys,
        "max_body": s.max_request_body,
        "http_domain": s.http_domain,
    }
    if not s.auth_required and platform.sandbox.config.namespaces:
        # Every instance uid of any funclet on this host (each takes a share of the range)
        # and the instances' network: with the API exposed to them, they need credentials.
        middleware.append(Middleware(
            RefuseInstances,
            instance_uids=range(s.uid_range_start, s.uid_range_start + s.uid_range_size),
            instance_network=ipaddress.ip_network(s.network_cidr, strict=False),
            **credentials))
    if s.auth_required:
        middleware.append(Middleware(Authenticate, **credentials))
    middleware.append(Middleware(invoke.InvokeRoute, platform=platform))  # (innermost)
    domain = s.http_domain
    by_host: list[BaseRoute] = [Host(f"{{name}}.{domain}", Router(http_triggers.host_routes))] \
        if domain else []
    app = Starlette(
        middleware=middleware,
        routes=[*by_host, *by_segment([
            *invoke.routes,
            *functions.routes,
            *versions.routes,
            *sessions.routes,
            *fc2.routes,
            *lambda_api.routes,
            *function_urls.routes,
            *account.routes,
            *domains.routes,
            *code.routes,
            *layers.routes,
            *unsupported.routes,
            *configs.routes,
            *tasks.routes,
            *triggers.routes,
            *http_triggers.routes,
            Route("/healthz", _health, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"]),
            *nodes.routes,
            *openapi.routes,
            *console.routes,
        ])],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
