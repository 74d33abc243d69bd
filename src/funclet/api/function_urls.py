"""Lambda's Function URLs: Create/Get/Update/Delete/ListFunctionUrlConfigs, and the URLs
themselves, ``/lambda-url/{id}/…`` on the API's port.

A request to a URL reaches its function (and qualifier: LATEST or an alias) as Lambda's
payload format 2.0 event; the result maps back as Lambda maps it: a JSON object with
``statusCode`` gives the status, ``headers``, ``cookies`` (``Set-Cookie`` each),
``body`` and ``isBase64Encoded``; any other JSON is a 200 ``application/json`` body.
``AuthType: AWS_IAM`` takes only requests signed with SigV4 by one of funclet's access
keys; ``NONE``, everyone. ``Cors`` is applied as Lambda applies it: preflights are
answered from it (the function does not run), answers to an allowed origin carry its
headers. Which URL is whose is read from the store and kept a couple
of seconds per node (so that every node of a cluster serves every URL).

``InvokeMode: RESPONSE_STREAM``: a handler that streams (``awslambda.streamifyResponse``)
is answered as it writes. A stream begun with ``awslambda.HttpResponseStream.from``
opens with a prelude (``statusCode``, ``headers``, ``cookies`` as JSON, then eight NUL
bytes) that becomes the status and headers; any other stream is a 200 of the content
type it set. A handler that does not stream is answered as in ``BUFFERED`` mode.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api import http_triggers
from funclet.api.auth import SIGV4, sigv4_valid
from funclet.api.functions import platform_of
from funclet.api.invoke import read_event
from funclet.api.lambda_api import function_target, lambda_arn, lambda_response, lambda_time
from funclet.api.responses import StreamedResponse, json_body, lambda_error, new_request_id
from funclet.errors import ApiError, InvalidArgument, ShuttingDown
from funclet.instances.exchange import STREAM_LIMIT, ResponseStream
from funclet.invoker import Invocation
from funclet.platform import Platform
from funclet.versions import LATEST, VERSION_RE

V = "/2021-10-31"
PATH = "/lambda-url/"
_AUTH = ("NONE", "AWS_IAM")
_MODES = ("BUFFERED", "RESPONSE_STREAM")
_CACHE_S = 2.0
_CACHE_MAX = 4096  # (made-up ids cannot grow it past this)
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
_DELIMITER = b"\0" * 8
_PRELUDE_MAX = 64 * 1024

log = logging.getLogger(__name__)


class UrlNotFound(ApiError):
    code = "ResourceNotFoundException"
    status = 404


class UrlExists(ApiError):
    code = "ResourceConflictException"
    status = 409


def _config(body: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(base or {"AuthType": "NONE", "InvokeMode": "BUFFERED"})
    if body.get("AuthType") is not None or base is None:
        if body.get("AuthType") not in _AUTH:
            raise InvalidArgument("AuthType must be NONE or AWS_IAM")
        out["AuthType"] = body["AuthType"]
    if body.get("InvokeMode") is not None:
        if body["InvokeMode"] not in _MODES:
            raise InvalidArgument("InvokeMode must be BUFFERED or RESPONSE_STREAM")
        out["InvokeMode"] = body["InvokeMode"]
    if body.get("Cors") is not None:
        if not isinstance(body["Cors"], dict):
            raise InvalidArgument("Cors must be an object")
        out["Cors"] = body["Cors"]
    return out


def _json(platform: Platform, request: Request, row: dict[str, Any]) -> dict[str, Any]:
    config = row["config"]
    out = {"FunctionUrl": f"{str(request.base_url).rstrip('/')}{PATH}{row['url_id']}/",
           "FunctionArn": lambda_arn(platform, row["function_name"], row["qualifier"]),
           "AuthType": config["AuthType"], "InvokeMode": config.get("InvokeMode", "BUFFERED"),
           "CreationTime": lambda_time(row["created_ms"]),
           "LastModifiedTime": lambda_time(row["modified_ms"])}
    if config.get("Cors"):
        out["Cors"] = config["Cors"]
    return out


async def _url_target(request: Request) -> tuple[Platform, str, str]:
    platform = platform_of(request)
    name, qualifier = function_target(request)
    await platform.functions.get(name)
    if VERSION_RE.fullmatch(qualifier):
        raise InvalidArgument("A Function URL's qualifier is $LATEST or an alias, not a "
                              "version")
    if qualifier != LATEST:
        await platform.versions.get_alias(name, qualifier)
    return platform, name, qualifier


async def _one(platform: Platform, name: str, qualifier: str) -> dict[str, Any]:
    for row in await platform.store.function_urls(name):
        if row["qualifier"] == qualifier:
            return row
    raise UrlNotFound(f"The resource you requested does not exist: no Function URL for "
                      f"{lambda_arn(platform, name, qualifier)}")


async def create_url(request: Request) -> Response:
    platform, name, qualifier = await _url_target(request)
    config = _config(await json_body(request), None)
    url_id = secrets.token_hex(16)
    now = int(time.time() * 1000)
    if not await platform.store.put_function_url(url_id, name, qualifier, config, now, True):
        raise UrlExists(f"A Function URL exists for {lambda_arn(platform, name, qualifier)}")
    row = await _one(platform, name, qualifier)
    return lambda_response(_json(platform, request, row), 201)


async def get_url(request: Request) -> Response:
    platform, name, qualifier = await _url_target(request)
    return lambda_response(_json(platform, request, await _one(platform, name, qualifier)))


async def update_url(request: Request) -> Response:
    platform, name, qualifier = await _url_target(request)
    row = await _one(platform, name, qualifier)
    config = _config(await json_body(request), row["config"])
    await platform.store.put_function_url(row["url_id"], name, qualifier, config,
                                          int(time.time() * 1000), False)
    _cache.pop(row["url_id"], None)
    return lambda_response(_json(platform, request, await _one(platform, name, qualifier)))


async def delete_url(request: Request) -> Response:
    platform, name, qualifier = await _url_target(request)
    row = await _one(platform, name, qualifier)
    await platform.store.delete_function_url(name, qualifier)
    _cache.pop(row["url_id"], None)
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def list_urls(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    await platform.functions.get(name)
    rows = await platform.store.function_urls(name)
    return lambda_response({"FunctionUrlConfigs": [_json(platform, request, r) for r in rows]})


# -- the URLs -----------------------------------------------------------------------------

_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}


async def _lookup(platform: Platform, url_id: str) -> dict[str, Any] | None:
    now = time.monotonic()
    hit = _cache.get(url_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    rows = await platform.store.function_urls(url_id=url_id) if len(url_id) == 32 else []
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[url_id] = (now + _CACHE_S, rows[0] if rows else None)
    return rows[0] if rows else None


async def serve(request: Request) -> Response:
    """A request to a Function URL: its function runs with the request as Lambda's
    payload 2.0 event (see the module docstring)."""
    platform = platform_of(request)
    request_id = new_request_id()
    url_id = request.path_params["url_id"]
    stream: ResponseStream | None = None
    try:
        row = await _lookup(platform, url_id)
        if row is None:
            return _plain(404, "Not Found", request_id)
        cors = row["config"].get("Cors") or {}
        origin = request.headers.get("origin")
        if (cors and origin is not None and request.method == "OPTIONS"
                and "access-control-request-method" in request.headers):
            return _preflight(cors, origin, request, request_id)  # (the function not run)
        body = await read_event(request, platform.settings.max_sync_payload)
        if row["config"]["AuthType"] == "AWS_IAM" and not _signed(request, platform, body):
            return _plain(403, "Forbidden", request_id)
        platform.metrics.trigger_fired("function-url")
        event = _event(request, platform, url_id, request_id, body)
        if row["config"].get("InvokeMode") != "RESPONSE_STREAM":
            out = await platform.invoker.invoke(row["function_name"], event, request_id,
                                                qualifier=row["qualifier"])
        else:
            stream = ResponseStream(limit=STREAM_LIMIT)
            invocation = asyncio.ensure_future(platform.invoker.invoke(
                row["function_name"], event, request_id, qualifier=row["qualifier"],
                stream=stream))
            waits: set[asyncio.Future[Any]] = {invocation, stream.started}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if stream.started.done():
                out = None  # it streams
            else:
                stream.started.cancel()
                out = invocation.result()
    except ApiError as exc:
        return lambda_error(exc, request_id)
    except asyncio.CancelledError:
        if stream is not None:
            stream.abandon()  # (nobody will read what it streams)
        return lambda_error(ShuttingDown(), request_id)
    headers = {"x-amzn-RequestId": request_id}
    if out is None:
        assert stream is not None
        try:
            response = await _streamed(stream, invocation, headers)
        except BaseException:  # (shut down while it read the prelude)
            stream.abandon()
            raise
    elif out.error is not None:  # as Lambda answers a function error on a URL
        return _plain(502, "Internal Server Error", request_id)
    else:
        response = _result(out.body, headers)
    if cors and origin is not None:
        _cors_headers(response, cors, origin, preflight=False)
    return response


async def _streamed(stream: ResponseStream, invocation: asyncio.Future[Invocation],
                    headers: dict[str, str]) -> Response:
    """A streaming handler's answer, passed on as it writes (the module docstring)."""
    _, started = stream.started.result()
    kind = dict(started).get("content-type", "application/octet-stream")
    chunks = stream.response_body()
    first = b""
    shaped = Response(b"", 200, headers, kind)
    if kind == HTTP_INTEGRATION:
        prelude, first = await _prelude(chunks)
        if prelude is None:
            stream.abandon()
            log.warning("The function of request %s streamed no valid prelude (JSON "
                        "object, then eight NUL bytes, within %d bytes) ahead of its "
                        "answer.", headers["x-amzn-RequestId"], _PRELUDE_MAX)
            return _plain(502, "Internal Server Error", headers["x-amzn-RequestId"])
        shaped = _result(orjson.dumps({
            "statusCode": prelude.get("statusCode", 200),
            "headers": prelude.get("headers") or {},
            "cookies": prelude.get("cookies") or []}), headers)
        if shaped.status_code == 502:
            stream.abandon()
            return shaped

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk
        out = await invocation
        if stream.overflowed or out.error is not None:  # too late for a status: logged
            log.warning("The streamed answer of %s to request %s was cut: %s",
                        out.function_name, out.request_id,
                        f"over {STREAM_LIMIT} bytes" if stream.overflowed else
                        f"{out.error.error_type}: {out.error.message}" if out.error else "")

    response = StreamedResponse(body(), shaped.status_code)
    response.raw_headers = [(k, v) for k, v in shaped.raw_headers if k != b"content-length"]
    response.on_end = stream.abandon
    return response


async def _prelude(chunks: AsyncIterator[bytes]) -> tuple[dict[str, Any] | None, bytes]:
    """An http-integration-response's prelude (a JSON object, then eight NUL bytes) and
    what follows it in the chunk that ended it; (None, b"") when there is none."""
    buf = b""
    async for chunk in chunks:
        buf += chunk
        at = buf.find(_DELIMITER)
        if at >= 0:
            try:
                value = orjson.loads(buf[:at])
            except orjson.JSONDecodeError:
                return None, b""
            return (value, buf[at + len(_DELIMITER):]) if isinstance(value, dict) else (
                None, b"")
        if len(buf) > _PRELUDE_MAX:
            break
    return None, b""


def _allowed(values: Any, value: str) -> str | None:
    """``value`` if the config's list allows it (``*`` allows all), else None."""
    if not isinstance(values, list):
        return None
    if "*" in values:
        return "*" if value != "*" else value
    return value if value.lower() in {str(v).lower() for v in values} else None


def _cors_headers(response: Response, cors: dict[str, Any], origin: str,
                  preflight: bool) -> None:
    """The config's CORS headers, for an allowed origin (none for another: the browser
    then refuses the answer, as with Lambda)."""
    allowed = _allowed(cors.get("AllowOrigins"), origin)
    if allowed is None:
        return
    credentials = cors.get("AllowCredentials") is True
    response.headers["access-control-allow-origin"] = origin if (
        allowed == "*" and credentials) else allowed
    response.headers.append("vary", "Origin")
    if credentials:
        response.headers["access-control-allow-credentials"] = "true"
    if not preflight and isinstance(cors.get("ExposeHeaders"), list):
        response.headers["access-control-expose-headers"] = ", ".join(
            str(h) for h in cors["ExposeHeaders"])


def _preflight(cors: dict[str, Any], origin: str, request: Request,
               request_id: str) -> Response:
    """A browser's CORS preflight, answered from the URL's config, as Lambda does."""
    response = Response(status_code=200, headers={"x-amzn-RequestId": request_id})
    _cors_headers(response, cors, origin, preflight=True)
    if "access-control-allow-origin" not in response.headers:
        return response
    method = request.headers.get("access-control-request-method", "")
    if _allowed(cors.get("AllowMethods"), method) is not None:
        response.headers["access-control-allow-methods"] = ", ".join(
            str(m) for m in cors["AllowMethods"])
    if isinstance(cors.get("AllowHeaders"), list):
        response.headers["access-control-allow-headers"] = ", ".join(
            str(h) for h in cors["AllowHeaders"])
    if isinstance(cors.get("MaxAge"), int) and not isinstance(cors["MaxAge"], bool):
        response.headers["access-control-max-age"] = str(cors["MaxAge"])
    return response


def _signed(request: Request, platform: Platform, body: bytes) -> bool:
    scheme, _, params = request.headers.get("authorization", "").partition(" ")
    return scheme == SIGV4 and sigv4_valid(request.scope, request.headers, params, body,
                                           platform.settings.access_keys)


def _plain(status: int, text: str, request_id: str) -> Response:
    return Response(orjson.dumps({"Message": text}), status,
                    {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": text.replace(" ", "")},
                    "application/json")


def _event(request: Request, platform: Platform, url_id: str, request_id: str,
           body: bytes) -> bytes:
    raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    raw_path = "/" + raw_path.split("?", 1)[0][len(PATH) + len(url_id):].lstrip("/")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for key, value in request.headers.items():
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        query[key] = f"{query[key]},{value}" if key in query else value
    text = http_triggers.as_text(body, request.headers.get("content-type", ""))
    now = time.time()
    client = request.client
    host = request.headers.get("host", "")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": request.scope.get("query_string", b"").decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": host,
            "domainPrefix": url_id,
            "http": {
                "method": request.method,
                "path": request.url.path[len(PATH) + len(url_id):] or "/",
                "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                "sourceIp": client.host if client else "",
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": text is None,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = text if text is not None else base64.b64encode(body).decode()
    return orjson.dumps(event)


def _result(result: bytes, headers: dict[str, str]) -> Response:
    """The function's result as the response: Lambda's rules (the module docstring)."""
    try:
        value: Any = orjson.loads(result) if result.strip() else None
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and "statusCode" in value:
        cookies = value.get("cookies") or []
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            cookies = []
        if cookies:
            extra = dict(value.get("headers") or {})
            extra["Set-Cookie"] = [*((extra.get("Set-Cookie") or []) if isinstance(
                extra.get("Set-Cookie"), list) else []), *cookies]
            value = {**value, "headers": extra}
        return http_triggers.response_of(orjson.dumps(value), headers)
    if value is None and not result.strip():
        return Response(b"", 200, headers)
    return Response(result, 200, headers, "application/json")


routes = [
    Route(f"{V}/functions/{{name}}/url", create_url, methods=["POST"]),
    Route(f"{V}/functions/{{name}}/url", get_url, methods=["GET"]),
    Route(f"{V}/functions/{{name}}/url", update_url, methods=["PUT"]),
    Route(f"{V}/functions/{{name}}/url", delete_url, methods=["DELETE"]),
    Route(f"{V}/functions/{{name}}/urls", list_urls, methods=["GET"]),
    Route(PATH + "{url_id}", serve, methods=list(http_triggers.METHODS)),
    Route(PATH + "{url_id}/{path:path}", serve, methods=list(http_triggers.METHODS)),
]
