"""The OpenAPI document: valid OpenAPI 3.1, every route in it and nothing else, served."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from starlette.routing import BaseRoute, Host, Route, Router

from funclet.api import build_app, function_urls, http_triggers
from funclet.api.openapi import document
from funclet.api.routing import BySegment
from funclet.config import Settings
from funclet.platform import Platform
from tests.helpers import API

_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _shape(path: str) -> str:
    """A path with every parameter as ``{}``: Starlette's ``{name}``, ``{path:path}`` and
    the document's ``{functionName}`` compare equal."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _routes(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    out = set()
    for route in routes:
        if isinstance(route, Host):
            # {name}.{domain}: every path goes to the HTTP trigger, which the document
            # describes under /http/{functionName}/ (a host is not an OpenAPI path).
            assert isinstance(route.app, Router)
            assert route.app.routes == http_triggers.host_routes
            continue
        if isinstance(route, BySegment):  # (routes found by their first segment)
            out |= _routes(list(route.routes))
            continue
        assert isinstance(route, Route), f"not a plain route: {route!r}"
        methods = {m.lower() for m in route.methods or ()}
        if route.endpoint not in (http_triggers.http_trigger, function_urls.serve):
            methods.discard("head")  # Starlette adds HEAD wherever there is GET
        out |= {(_shape(route.path), m) for m in methods}
    return out


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document(), cls=OpenAPIV31SpecValidator)


def test_every_route_is_documented_and_every_operation_is_a_route(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, http_domain="fn.example.test")
    app = build_app(Platform(settings))
    served = _routes(app.routes)
    documented = {(_shape(path), method) for path, item in document()["paths"].items()
                  for method in item if method in _METHODS}
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "operations in the OpenAPI document with no route"


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for item in document()["paths"].values()
           for method, op in item.items() if method in _METHODS]
    assert len(ids) == len(set(ids))


def test_the_document_is_served_as_json(client: httpx.Client) -> None:
    r = client.get(f"{API}/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == document()
    assert r.json()["openapi"] == "3.1.0"
    assert client.post(f"{API}/openapi.json").status_code == 405  # read-only
