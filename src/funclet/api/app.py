"""The Starlette application: routes, error handlers, the platform's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Host, Route, Router

from funclet.api import configs, functions, http_triggers, invoke, openapi, tasks, triggers
from funclet.api.auth import Authenticate, RefuseInstances
from funclet.api.responses import error_response, json_response
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


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("Request %s %s failed.", request.method, request.url.path)
    error = ApiError(f"internal error: {type(exc).__name__}: {exc}")
    return error_response(error)


async def _health(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    return json_response({"status": "ok", "sandbox": platform.sandbox.config.protections()})


def build_app(platform: Platform) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        try:
            yield
        finally:
            await platform.stop()

    middleware = []
    uid = platform.sandbox.config.uid
    domain = platform.settings.http_domain
    if not platform.settings.auth_required and uid is not None:
        middleware.append(Middleware(RefuseInstances, instance_uid=uid, http_domain=domain))
    if platform.settings.auth_required:
        s = platform.settings
        middleware.append(Middleware(
            Authenticate,
            token=platform.api_token,
            access_keys=s.access_keys,
            max_body=max(s.max_sync_payload, s.max_code_size * 4 // 3 + 65536),
            http_domain=domain,
        ))
    by_host: list[BaseRoute] = [Host(f"{{name}}.{domain}", Router(http_triggers.host_routes))] \
        if domain else []
    app = Starlette(
        middleware=middleware,
        routes=[
            *by_host,
            *invoke.routes,
            *functions.routes,
            *configs.routes,
            *tasks.routes,
            *triggers.routes,
            *http_triggers.routes,
            Route("/healthz", _health, methods=["GET"]),
            *openapi.routes,
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
