"""Where async results go: a function, a webhook, a Redis stream, RabbitMQ, NATS, MQTT.

``parse`` checks a destination URI when a config is put (a 400 that names the field);
``record`` builds the Lambda-shaped destination record; ``Destinations.deliver``
sends one record and returns only once the target acknowledged it (an HTTP 2xx,
XADD's id, a publisher confirm, a JetStream ack, an MQTT PUBACK) — or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp

from funclet.errors import InvalidArgument
from funclet.urls import split_url

FUNCTION_ARN = re.compile(r"^acs:fc:[^:]*:[^:]*:functions/([A-Za-z_][A-Za-z0-9_-]{0,127})$")
_SCHEMES = ("acs:fc", "http", "https", "redis", "amqp", "nats", "mqtt")
_TIMEOUT = 10.0


class WebhookError(Exception):
    """A webhook answered with other than a 2xx."""


@dataclass(frozen=True)
class Destination:
    uri: str
    kind: str  # function | webhook | redis | amqp | nats | mqtt
    target: str  # function name, URL, stream, exchange, subject or topic
    params: dict[str, str]


def parse(uri: Any, field: str) -> Destination:
    """A destination URI, checked; ``field`` names it in the error."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"{field} must be a destination URI")
    if match := FUNCTION_ARN.fullmatch(uri):
        return Destination(uri, "function", match.group(1), {})
    try:
        parts = split_url(uri)
    except ValueError as exc:
        raise InvalidArgument(f"{field} {json.dumps(uri)} is not a valid URI: {exc}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    need = {"redis": "stream", "amqp": "exchange", "nats": "subject", "mqtt": "topic"}
    if parts.scheme in ("http", "https") and parts.netloc:
        return Destination(uri, "webhook", uri, {})
    if parts.scheme in need and parts.hostname:
        key = need[parts.scheme]
        if not query.get(key):
            raise InvalidArgument(f"{field}: a {parts.scheme} destination needs ?{key}=")
        if parts.scheme == "mqtt" and query.get("qos", "1") not in ("0", "1", "2"):
            raise InvalidArgument(f"{field}: qos must be 0, 1 or 2")
        return Destination(uri, parts.scheme, query[key], query)
    raise InvalidArgument(
        f"{field} '{uri}' is not a destination: use a function ARN "
        "(acs:fc:{region}:{account}:functions/{name}), http(s)://, "
        "redis://host:port/db?stream=S, amqp://user:pass@host:port/vhost?exchange=X"
        "&routingKey=K, nats://host:port?subject=S or mqtt://host:port?topic=T&qos=1"
    )


def _as_json(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        return text


def record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    payload: bytes,
    response: str | None,
    function_error: str | None,
) -> dict[str, Any]:
    """The destination record, shaped like Lambda's."""
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error:
        response_context["functionError"] = function_error
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1000) % 1000:03d}Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _as_json(payload),
        "responseContext": response_context,
        "responsePayload": _as_json(response),
    }


class Destinations:
    """Delivers records; connections to brokers are kept and reused per URI."""

    def __init__(self, enqueue: Callable[[str, bytes, str], Awaitable[None]]) -> None:
        self._enqueue = enqueue  # an async invocation of another funclet function
        self._http: aiohttp.ClientSession | None = None  # (made in the running loop)
        self._clients: dict[str, Any] = {}
        self._channels: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def deliver(self, destination: Destination, body: bytes, key: str = "") -> None:
        """Send one record; ``key`` makes a function destination's task id idempotent."""
        send = getattr(self, f"_to_{destination.kind}")
        client = self._clients.get(destination.uri)
        try:
            async with asyncio.timeout(_TIMEOUT):
                await send(destination, body, key)
        except BaseException:
            if self._clients.get(destination.uri) is client:  # not one made meanwhile
                await self._forget(destination.uri)  # reconnect on the next try
            raise

    def _lock(self, uri: str) -> asyncio.Lock:
        """One connection set-up at a time per destination (deliveries run in parallel)."""
        return self._locks.setdefault(uri, asyncio.Lock())

    async def _to_function(self, d: Destination, body: bytes, key: str) -> None:
        await self._enqueue(d.target, body, key)

    async def _to_webhook(self, d: Destination, body: bytes, key: str) -> None:
        if self._http is None:  # (aiohttp: a tenth of httpx's cost per request)
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT))
        async with self._http.post(d.target, data=body, allow_redirects=False,
                                   headers={"content-type": "application/json"}) as r:
            if not 200 <= r.status < 300:  # (an answer's body is not read: it may be huge)
                raise WebhookError(f"{d.target} answered {r.status} {r.reason or ''}".strip())

    async def _to_redis(self, d: Destination, body: bytes, key: str) -> None:
        import redis.asyncio as redis

        async with self._lock(d.uri):
            client = self._clients.get(d.uri)
            if client is None:
                parts = urlsplit(d.uri)
                url = f"redis://{parts.netloc}{parts.path or ''}"
                client = self._clients[d.uri] = redis.from_url(url)
        await client.xadd(d.target, {"record": body})

    async def _to_amqp(self, d: Destination, body: bytes, key: str) -> None:
        import aio_pika

        async with self._lock(d.uri):
            if d.uri not in self._clients:
                parts = urlsplit(d.uri)
                connection = await aio_pika.connect(
                    f"amqp://{parts.netloc}{parts.path or '/'}", timeout=_TIMEOUT)
                self._channels[d.uri] = await connection.channel(publisher_confirms=True)
                self._clients[d.uri] = connection  # closed by _forget
            channel = self._channels[d.uri]
        exchange = await channel.get_exchange(d.target, ensure=True)
        await exchange.publish(  # returns once the broker confirmed it
            aio_pika.Message(body, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=d.params.get("routingKey", ""),
        )

    async def _to_nats(self, d: Destination, body: bytes, key: str) -> None:
        import nats

        async with self._lock(d.uri):
            client = self._clients.get(d.uri)
            if client is None:
                parts = urlsplit(d.uri)
                failures: list[Exception] = []

                async def failed(exc: Exception) -> None:
                    failures.append(exc)

                # A destination that is down fails now, with its reason (nats-py's 0
                # reconnect attempts would mean: retry forever).
                try:
                    client = await nats.connect(
                        f"nats://{parts.netloc}", connect_timeout=_TIMEOUT,
                        allow_reconnect=False, max_reconnect_attempts=1,
                        reconnect_time_wait=0, error_cb=failed)
                except Exception as exc:
                    raise ConnectionError(str(failures[-1] if failures else exc)) from None
                self._clients[d.uri] = client
        await client.jetstream().publish(d.target, body)  # waits for the stream's ack

    async def _to_mqtt(self, d: Destination, body: bytes, key: str) -> None:
        import aiomqtt

        parts = urlsplit(d.uri)
        async with aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883,
                                  username=unquote(parts.username) if parts.username else None,
                                  password=unquote(parts.password) if parts.password else None,
                                  timeout=_TIMEOUT) as client:
            await client.publish(d.target, body, qos=int(d.params.get("qos", "1")))

    async def _forget(self, uri: str) -> None:
        self._channels.pop(uri, None)
        client = self._clients.pop(uri, None)
        if client is None:
            return
        with contextlib.suppress(Exception):
            close = getattr(client, "aclose", None) or getattr(client, "close", None)
            result = close() if close else None
            if asyncio.iscoroutine(result):
                await result

    async def close(self) -> None:
        for uri in list(self._clients):
            await self._forget(uri)
        if self._http is not None:
            await self._http.close()
