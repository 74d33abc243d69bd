"""FC 3.0's custom domains: the API (``/custom-domains``) and the requests they serve
(any path of a request whose Host is a custom domain goes to the function its route
names, as an HTTP trigger request would)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from funclet.api.functions import PREFIX, decode_token, encode_token
from funclet.api.responses import error_response, fc_time, int_param, json_body, json_response
from funclet.domains import Domain, Domains
from funclet.errors import RouteNotFound
from funclet.platform import Platform


def domain_json(platform: Platform, domain: Domain) -> dict[str, Any]:
    return {"domainName": domain.name, "accountId": platform.settings.account_id,
            "apiVersion": "2023-03-30", "protocol": "HTTP", "subdomainCount": "1",
            **domain.config, "createdTime": fc_time(domain.created_ms),
            "lastModifiedTime": fc_time(domain.modified_ms)}


def _domains(request: Request) -> tuple[Platform, Domains]:
    platform: Platform = request.app.state.platform
    return platform, platform.domains


async def create_domain(request: Request) -> Response:
    platform, domains = _domains(request)
    return json_response(domain_json(platform, await domains.create(await json_body(request))))


async def get_domain(request: Request) -> Response:
    platform, domains = _domains(request)
    return json_response(domain_json(platform, domains.get(request.path_params["domain"])))


async def update_domain(request: Request) -> Response:
    platform, domains = _domains(request)
    domain = await domains.update(request.path_params["domain"], await json_body(request))
    return json_response(domain_json(platform, domain))


async def delete_domain(request: Request) -> Response:
    _, domains = _domains(request)
    await domains.delete(request.path_params["domain"])
    return Response(status_code=204)


async def list_domains(request: Request) -> Response:
    platform, domains = _domains(request)
    limit = int_param(request, "limit", 20, 1, 100)
    token = request.query_params.get("nextToken")
    page = domains.page(request.query_params.get("prefix", ""),
                        decode_token(token) if token else "", limit + 1)
    out: dict[str, Any] = {"customDomains": [domain_json(platform, d) for d in page[:limit]]}
    if len(page) > limit:
        out["nextToken"] = encode_token(page[limit - 1].name)
    return json_response(out)


_MAX_PATH = 4096  # longer paths match no route (rewrite rules never see them)


class CustomDomainRequests:
    """Outermost: a request whose Host is a custom domain is sent to its route's
    function, under ``/http/{function}`` (so the credentials middlewares treat it as the
    trigger request it is), with the route in the scope; no route: FC's 404."""

    def __init__(self, app: ASGIApp, domains: Domains) -> None:
        self.app = app
        self._domains = domains

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (domain := self._host(scope)) is not None:
            # Routes match the path as the client sent it (still URL-encoded), and the
            # function sees it so, rewritten; the request's own raw_path stays (a
            # signature covers it). Only the route's function is ever invoked.
            raw = scope.get("raw_path") or scope["path"].encode()
            path = raw.decode("latin-1").split("?", 1)[0]
            match = domain.match(path) if len(path) <= _MAX_PATH else None
            if match is None:
                refused = error_response(RouteNotFound(
                    f"custom domain {domain.name} has no route for {path[:200]}"))
                await refused(scope, receive, send)
                return
            scope = {**scope, "path": f"/http/{match.function_name}{unquote(match.path)}",
                     "funclet_domain": match}
        await self.app(scope, receive, send)

    def _host(self, scope: Scope) -> Domain | None:
        for name, value in scope["headers"]:
            if name == b"host":
                return self._domains.lookup(value.decode("latin-1"))
        return None


routes = [
    Route(f"{PREFIX}/custom-domains", create_domain, methods=["POST"]),
    Route(f"{PREFIX}/custom-domains", list_domains, methods=["GET"]),
    Route(f"{PREFIX}/custom-domains/{{domain}}", get_domain, methods=["GET"]),
    Route(f"{PREFIX}/custom-domains/{{domain}}", update_domain, methods=["PUT"]),
    Route(f"{PREFIX}/custom-domains/{{domain}}", delete_domain, methods=["DELETE"]),
]
