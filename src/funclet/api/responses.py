"""JSON responses, FC-style API errors, request ids and FC's time format."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from funclet.errors import ApiError, InvalidArgument
from funclet.ids import new_request_id

__all__ = ["error_response", "fc_time", "int_param", "json_body", "json_response",
           "new_request_id"]


def fc_time(ms: int | float | None) -> str | None:
    """FC's timestamps: ISO 8601, UTC, whole seconds (``2023-04-01T08:15:27Z``)."""
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def json_response(data: Any, status: int = 200, request_id: str | None = None) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"x-fc-request-id": request_id or new_request_id()},
    )


# Which API a request came in on: FC 2.0's answers errors as {"ErrorCode",
# "ErrorMessage"} (api/fc2.py sets it for the request's task).
FC2_ERRORS: ContextVar[bool] = ContextVar("fc2_errors", default=False)


def error_response(exc: ApiError, request_id: str | None = None) -> Response:
    request_id = request_id or new_request_id()
    if FC2_ERRORS.get():
        body = {"ErrorCode": exc.code, "ErrorMessage": exc.message, "RequestId": request_id}
    else:
        body = {"Code": exc.code, "Message": exc.message, "RequestId": request_id}
    return json_response(body, exc.status, request_id)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidArgument("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, got '{raw}'") from None
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}")
    return value
