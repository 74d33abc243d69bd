"""BySegment: the same answers as Starlette's router trying every route in turn."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route

from funclet.api.routing import BySegment, by_segment


def _answer(text: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{text} {dict(request.path_params)}")
    return endpoint


ROUTES: list[BaseRoute] = [
    Route("/v1/things/{name}", _answer("get"), methods=["GET"]),
    Route("/v1/things/{name}", _answer("put"), methods=["PUT"]),
    Route("/v1/things/{name:path}", _answer("any-path"), methods=["GET"]),  # (later)
    Route("/http/{name}/{path:path}", _answer("trigger"), methods=["GET", "POST"]),
    Route("/{anything}/x", _answer("param-first"), methods=["GET"]),  # (not groupable)
    Route("/", _answer("root"), methods=["GET"]),
]


def test_routes_are_found_by_segment_with_the_routers_answers() -> None:
    routes = by_segment(ROUTES)
    assert isinstance(routes[0], BySegment) and len(routes) == 2  # (the param-first one)
    asyncio.run(_compare(Starlette(routes=routes), Starlette(routes=ROUTES)))


async def _compare(grouped_app: Starlette, plain_app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(grouped_app),
                                 base_url="http://t") as grouped, \
            httpx.AsyncClient(transport=httpx.ASGITransport(plain_app),
                              base_url="http://t") as plain:
        for method, path in (("GET", "/v1/things/a"), ("PUT", "/v1/things/a"),
                             ("DELETE", "/v1/things/a"), ("GET", "/v1/things/a/b"),
                             ("POST", "/http/f/deep/path"), ("GET", "/other/x"),
                             ("GET", "/"), ("GET", "/nowhere"), ("GET", "/v1/things")):
            a, b = await grouped.request(method, path), await plain.request(method, path)
            assert (a.status_code, a.text, a.headers.get("allow")) == (
                b.status_code, b.text, b.headers.get("allow")), (method, path)
        assert (await grouped.get("/v1/things/a")).text == "get {'name': 'a'}"
        assert (await grouped.delete("/v1/things/a")).status_code == 405  # a partial match
