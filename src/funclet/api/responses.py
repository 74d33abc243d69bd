"""JSON responses, FC-style API errors, request ids and FC's time format."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from funclet.errors import ApiError, InvalidArgument, PayloadTooLarge
from funclet.ids import new_request_id

__all__ = ["StreamedResponse", "error_response", "fc_time", "int_param", "json_body",
           "json_response", "new_request_id"]


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


# Which API a request came in on, for the shape of its errors: FC 3.0's {"Code",
# "Message"}, FC 2.0's {"ErrorCode", "ErrorMessage"} (api/fc2.py sets it for the
# request's task), or Lambda's (api/lambda_api.py: x-amzn-ErrorType and {"Type",
# "message"}).
FC3, FC2, LAMBDA = "fc3", "fc2", "lambda"
ERROR_SHAPE: ContextVar[str] = ContextVar("error_shape", default=FC3)


def error_response(exc: ApiError, request_id: str | None = None) -> Response:
    request_id = request_id or new_request_id()
    shape = ERROR_SHAPE.get()
    if shape == LAMBDA:
        return lambda_error(exc, request_id)
    if shape == FC2:
        body = {"ErrorCode": exc.code, "ErrorMessage": exc.message, "RequestId": request_id}
    else:
        body = {"Code": exc.code, "Message": exc.message, "RequestId": request_id}
    return json_response(body, exc.status, request_id)


# Lambda's error types for funclet's, by status where one type covers them all.
_LAMBDA_TYPES = {400: "InvalidParameterValueException", 401: "UnrecognizedClientException",
                 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                 405: "InvalidParameterValueException", 409: "ResourceConflictException",
                 412: "PreconditionFailedException", 413: "RequestTooLargeException",
                 429: "TooManyRequestsException", 503: "ServiceException"}


def lambda_error(exc: ApiError, request_id: str, error_type: str | None = None) -> Response:
    """An error as Lambda answers it (botocore reads ``x-amzn-ErrorType`` for the code,
    ``message`` for the text)."""
    kind = error_type or (exc.code if exc.code.endswith("Exception") else  # Lambda's own
                          _LAMBDA_TYPES.get(exc.status, "ServiceException"))
    status = 500 if kind == "ServiceException" and exc.status < 500 else exc.status
    return Response(orjson.dumps({"Type": "User" if status < 500 else "Service",
                                  "message": exc.message}), status,
                    {"x-amzn-ErrorType": kind, "x-amzn-RequestId": request_id},
                    "application/json")


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to the largest a call may send (a code
    package's base64 and its fields): a body past that is refused, never held."""
    limit: int = request.app.state.platform.settings.max_request_body
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes, over {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
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


class StreamedResponse(StreamingResponse):
    """A response streamed from an instance (a web app's, a Lambda stream's); ``on_end``
    is told when it is over for the client, however it ended (complete, the client gone,
    cancelled), so that the stream lets go of the instance."""

    on_end: Callable[[], None] = staticmethod(lambda: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_end()
