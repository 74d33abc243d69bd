"""An unexpected exception: the client gets FC's error with a request id, never the
exception's text (SQL, paths); the log gets the traceback under that id."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.app import _internal_error


async def _boom(request: Request) -> Response:
    raise RuntimeError("INSERT INTO async_tasks (payload) VALUES ('secret') failed")


def test_an_internal_error_hides_its_text_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(routes=[Route("/boom", _boom)],
                    exception_handlers={Exception: _internal_error})
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/boom")

    with caplog.at_level(logging.ERROR):
        r = asyncio.run(get())
    assert r.status_code == 500
    body = r.json()
    assert body["Code"] == "InternalError" and body["RequestId"]
    assert r.headers["x-fc-request-id"] == body["RequestId"]
    assert "INSERT" not in r.text and "secret" not in r.text and "RuntimeError" not in r.text
    assert body["RequestId"] in body["Message"]
    logged = [rec for rec in caplog.records if body["RequestId"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "secret" in str(logged[0].exc_info[1])
