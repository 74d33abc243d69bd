"""HTTP triggers: a function with an HTTP trigger answers at ``/http/{function}/…`` on
the API's port (and at ``{function}.{domain}`` when a base domain is configured).

A web app (a WSGI callable or an ASGI application, see ``runtimes/python/webapp.py``)
gets the request itself, bodies streamed both ways (see ``instances/exchange.py``). Any
other handler gets FC 3.0's HTTP event (``version``, ``rawPath``, ``headers``,
``queryParameters``, ``body`` — base64 when binary — and ``requestContext``); its
return value ``{statusCode, headers, body, isBase64Encoded}`` becomes the response, and
any other return value a 200 with that body. A function error is a 502 with FC's error
body and ``x-fc-error-type``. ``x-fc-invocation-type: Async`` queues the event (202).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.invoke import accept_async, read_event
from funclet.api.responses import StreamedResponse, error_response, fc_time, new_request_id
from funclet.errors import (
    AccessDenied,
    ApiError,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ShuttingDown,
    Unauthenticated,
)
from funclet.instances.exchange import EVENT, HttpExchange
from funclet.invoker import Invocation
from funclet.platform import Platform

log = logging.getLogger(__name__)
# Framing is the platform's business: these never pass from a web app to the client.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "upgrade", "proxy-connection", "te", "trailer"})

# RFC 9110: a header name is a token; a value is visible Latin-1 text, spaces and tabs
# (never CR, LF or NUL: they would split or end the response head).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "+json", "+xml")


async def http_trigger(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    request_id = new_request_id()
    name = request.path_params["name"]
    try:
        route = request.scope.get("funclet_domain")  # a custom domain's (api/domains.py)
        if route is not None:
            name = route.function_name  # the route's, whatever the path looks like
            methods, auth, qualifier = route.methods, route.auth_type, route.qualifier
            what = "the custom domain's route"
        else:
            found = platform.triggers.http(name)
            if found is None:
                raise RouteNotFound(f"function '{name}' has no HTTP trigger")
            row, config = found
            methods, auth = config.methods, config.auth_type
            # (FC 2.0's /proxy/{service}.{qualifier}/…: api/fc2.py)
            qualifier = request.scope.get("funclet_qualifier") or row.qualifier
            what = f"the HTTP trigger of '{name}'"
        platform.metrics.trigger_fired("http")
        if methods is not None and request.method not in methods:
            raise MethodNotAllowed(
                f"{what} takes {', '.join(sorted(methods))}, not {request.method}")
        if auth == "function":
            _check_caller(request, platform)
        limit = platform.settings.max_sync_payload

        async def event() -> bytes:
            return _event(request, platform, name, request_id,
                          await read_event(request, limit))

        if request.headers.get("x-fc-invocation-type", "").lower() == "async":
            return await accept_async(platform, name, await event(), request_id,
                                      request.headers, qualifier)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the request body is {declared} bytes, over the limit of "
                                  f"{limit} bytes")
        exchange = HttpExchange(head=_head(request, name), request_body=request.stream(),
                                event=event, max_body=limit)
        invocation = asyncio.ensure_future(platform.invoker.invoke(
            name, b"", request_id, http=exchange, qualifier=qualifier,
            headers=request.headers))
        waits: set[asyncio.Future[Any]] = {invocation, exchange.started}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    except ApiError as exc:
        return error_response(exc, request_id)
    except asyncio.CancelledError:  # shutdown's grace period is over
        return error_response(ShuttingDown(), request_id)
    headers = {"x-fc-request-id": request_id, **dict(exchange.session_headers)}
    if exchange.started.done():  # a web app answers: stream its response
        return _stream(name, exchange, invocation, headers)
    exchange.started.cancel()
    try:
        out = invocation.result()
    except ApiError as exc:
        return error_response(exc, request_id)
    if out.error is not None:
        headers["x-fc-error-type"] = out.error.fc_error_type
        return Response(orjson.dumps(out.error.body()), 502, headers, "application/json")
    if exchange.mode != EVENT:
        return _bad_shape("the web app ended without a response", headers)
    return response_of(out.body, headers)


def _stream(name: str, exchange: HttpExchange, invocation: asyncio.Future[Invocation],
            headers: dict[str, str]) -> Response:
    status, app_headers = exchange.started.result()
    problem = _status_problem(status) or next(
        (p for k, v in app_headers if (p := _header_problem(k, v))), None)
    if problem is not None:  # nothing is sent yet: the client gets FC's error instead
        log.warning("The web app of %s answered request %s with an invalid response: %s",
                    name, headers["x-fc-request-id"], problem)
        return _bad_shape(problem, headers)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in exchange.response_body():
            yield chunk
        out = await invocation
        if out.error is not None:  # too late to change the status: the log says it
            log.warning("The web app of %s failed while it answered request %s: %s",
                        out.function_name, out.request_id, out.error.message)

    response = StreamedResponse(body(), status)
    response.on_end = exchange.abandon
    response.raw_headers = [
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in app_headers
          if k.lower() not in _HOP_BY_HOP),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    return response


def _head(request: Request, name: str) -> dict[str, Any]:
    """What a web app is told of the request (its body follows separately)."""
    raw_path = _raw_path(request, name)
    server = request.scope.get("server") or ("127.0.0.1", 80)
    client = request.client
    return {
        "method": request.method,
        "path": raw_path,
        "rawPath": raw_path,
        "query": request.scope.get("query_string", b"").decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                    for k, v in request.scope["headers"]],
        "client": [client.host, client.port] if client else ["", 0],
        "server": [server[0], server[1]],
        "scheme": request.url.scheme,
        "httpVersion": request.scope.get("http_version", "1.1"),
    }


def _raw_path(request: Request, name: str) -> str:
    """The request's path as the function sees it (still URL-encoded)."""
    route = request.scope.get("funclet_domain")
    if route is not None:  # a custom domain's route: its (rewritten) path
        return str(route.path)
    raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    raw_path = raw_path.split("?", 1)[0]
    if not request.scope.get("funclet_by_host") and raw_path.startswith("/http/"):
        segment, slash, rest = raw_path[len("/http/"):].partition("/")
        if unquote(segment) == name:  # (the name as sent: '$' or '%24')
            raw_path = slash + rest
    return raw_path or "/"


def _check_caller(request: Request, platform: Platform) -> None:
    """``authType: function``: the API's credentials (see api/auth.py, which marks the
    request instead of refusing it on trigger paths)."""
    authenticated = getattr(request.state, "authenticated", not platform.settings.auth_required)
    if authenticated:
        return
    if "authorization" in request.headers:
        raise AccessDenied()
    raise Unauthenticated()


def _event(request: Request, platform: Platform, name: str, request_id: str,
           body: bytes) -> bytes:
    raw_path = _raw_path(request, name)
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        canonical = "-".join(part.capitalize() for part in key.split("-"))
        headers[canonical] = f"{headers[canonical]},{value}" if canonical in headers else value
    query: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        query[key] = f"{query[key]},{value}" if key in query else value
    text = as_text(body, request.headers.get("content-type", ""))
    now = time.time()
    client = request.client
    return orjson.dumps({
        "version": "v1",
        "rawPath": raw_path,
        "body": text if text is not None else base64.b64encode(body).decode(),
        "isBase64Encoded": text is None,
        "headers": headers,
        "queryParameters": query,
        "requestContext": {
            "accountId": platform.settings.account_id,
            "domainName": request.headers.get("host", ""),
            "domainPrefix": name,
            "http": {
                "method": request.method,
                "path": unquote(raw_path),
                "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                "sourceIp": client.host if client else "",
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "time": fc_time(now * 1000),
            "timeEpoch": str(int(now * 1000)),
        },
    })


def as_text(body: bytes, content_type: str) -> str | None:
    """The body as text when it is text (by its content type, or empty); else None."""
    if not body:
        return ""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind and not any(kind.startswith(t) or kind.endswith(t) for t in _TEXT_TYPES):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def response_of(result: bytes, headers: dict[str, str]) -> Response:
    """The handler's return value as the HTTP response (see the module docstring; a
    Function URL's too, api/function_urls.py)."""
    try:
        value: Any = orjson.loads(result) if result[:1] == b"{" else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or "statusCode" not in value:
        kind = _content_type(result)
        return Response(result, 200, headers, kind)
    status = value.get("statusCode")
    if problem := _status_problem(status):
        return _bad_shape(problem, headers)
    assert isinstance(status, int)
    encoded = value.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        return _bad_shape("isBase64Encoded must be true or false", headers)
    body = value.get("body", "")
    if body is None:
        body = ""
    elif not isinstance(body, str):
        if encoded:
            return _bad_shape("body must be a base64 string when isBase64Encoded is true",
                              headers)
        body = orjson.dumps(body).decode()
    try:
        data = base64.b64decode(body, validate=True) if encoded else body.encode()
    except (binascii.Error, ValueError):  # (a non-ASCII str is a ValueError)
        return _bad_shape("body is not valid base64 though isBase64Encoded is true", headers)
    raw = value.get("headers")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return _bad_shape("headers must be an object of header names to strings", headers)
    pairs: list[tuple[str, str]] = []
    for key, item in raw.items():
        for one in item if isinstance(item, list) else [item]:
            if isinstance(one, int | float) and not isinstance(one, bool):
                one = str(one)
            if problem := _header_problem(key, one):
                return _bad_shape(problem, headers)
            pairs.append((key, one))
    response = Response(data, status, headers)
    for key, one in pairs:
        name = key.lower()
        if name == "content-length":
            continue  # the platform frames the body
        if name == "content-type":
            response.headers[key] = one
        else:
            response.headers.append(key, one)
    return response


def _status_problem(status: object) -> str | None:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return f"statusCode must be an HTTP status code from 100 to 599, got " \
               f"{orjson.dumps(status, default=str).decode()[:100]}"
    return None


def _header_problem(name: object, value: object) -> str | None:
    """Why a response header cannot be sent in HTTP, or None."""
    shown = orjson.dumps(name, default=str).decode()[:100]
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        return f"header name {shown} is not a valid HTTP header name"
    if not isinstance(value, str):
        return f"header {shown} must be a string (or a list of strings)"
    if not _HEADER_VALUE.fullmatch(value):
        return (f"the value of header {shown} holds a character HTTP does not allow "
                "(CR, LF, another control character, or one outside Latin-1)")
    return None


def _bad_shape(message: str, headers: dict[str, str]) -> Response:
    body = {"errorMessage": f"the function's HTTP response is not valid: {message}",
            "errorType": "InvalidHTTPResponse"}
    return Response(orjson.dumps(body), 502, {**headers, "x-fc-error-type": "InvalidHTTPResponse"},
                    "application/json")


def _content_type(result: bytes) -> str:
    try:
        text = result.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return "text/plain; charset=utf-8"
    return "application/json"


METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
routes = [
    Route("/http/{name}", http_trigger, methods=METHODS),
    Route("/http/{name}/{path:path}", http_trigger, methods=METHODS),
]


async def _by_host(request: Request) -> Response:
    request.scope["funclet_by_host"] = True  # the whole path is the function's
    return await http_trigger(request)


# Under Host("{name}.{domain}"): every path of that host.
host_routes = [Route("/{path:path}", _by_host, methods=METHODS)]
