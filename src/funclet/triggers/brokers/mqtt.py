"""An MQTT QoS 1 subscription in a persistent session, acknowledged by hand.

The client id is stable (``Names.mqtt_client_id``) and the session persistent
(clean session off), so while funclet is stopped the broker queues the topic's QoS 1
messages for it. PUBACK is sent only once the batch's invocation is accepted: aiomqtt
2 has no manual acknowledgement of its own, so the paho client under it is switched
to manual acks before connecting. An unacknowledged message is sent again by the
broker when the session resumes (MQTT redelivers only on reconnect). MQTT packet ids
are reused, so there is no stable id: a redelivered batch may run twice. The broker
caps unacknowledged messages per client (mosquitto: ``max_inflight_messages``, 20),
which caps a batch too. On a cluster each node has its own session and subscribes to
the trigger's shared subscription (``$share/<group>/<topic>``): each message goes to one
node, and is queued for a node that is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as paho

from funclet.triggers.brokers import Message, Names
from funclet.triggers.brokers.events import DEFAULT_PORTS, body_data, now_ms, public_url, record
from funclet.triggers.config import BrokerConfig

_TIMEOUT_S = 10.0
_KEEPALIVE_S = 15


class MqttSubscription:
    """One persistent session subscribed at QoS 1 (see the module docstring)."""

    pipeline = 1  # MQTT 3.1.1 asks for PUBACKs in the order the messages came

    def __init__(self, config: BrokerConfig, names: Names) -> None:
        self.url = public_url(config.url)
        self._config = config
        self._client_id = names.mqtt_client_id(config.source)
        self._filter = names.mqtt_filter(config.source)
        self._source = f"{self.url}#{config.source}"
        self._client: aiomqtt.Client | None = None
        self._stack = contextlib.AsyncExitStack()
        self._next: asyncio.Future[aiomqtt.Message] | None = None

    async def connect(self) -> None:
        parts = urlsplit(self._config.url)
        client = aiomqtt.Client(
            parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=self._client_id, clean_session=False, keepalive=_KEEPALIVE_S,
            timeout=_TIMEOUT_S,
            tls_context=ssl.create_default_context() if parts.scheme == "mqtts" else None)
        client._client.manual_ack_set(True)  # before CONNECT: queued messages come at once
        await self._stack.enter_async_context(client)
        self._client = client
        await client.subscribe(self._filter, qos=1)

    async def receive(self, limit: int, wait_s: float) -> list[Message]:
        client = self._require()
        messages = client.messages
        # One pending read, kept across calls: cancelling a read could drop a message
        # that would then never be acknowledged in this session.
        if self._next is None:
            self._next = asyncio.ensure_future(anext(messages))
        done, _ = await asyncio.wait({self._next}, timeout=max(wait_s, 0))
        if not done:
            return []
        first, self._next = self._next.result(), None
        taken = [first]
        while len(taken) < limit and len(messages) > 0:
            taken.append(await anext(messages))
        return [self._message(m) for m in taken]

    async def keep(self, batch: list[Message]) -> None:
        pass  # unacknowledged messages stay ours while the session is connected

    async def ack(self, batch: list[Message]) -> None:
        client = self._require()
        for message in batch:
            code = client._client.ack(message.handle.mid, message.handle.qos)
            if code != paho.MQTT_ERR_SUCCESS:
                raise aiomqtt.MqttError(f"could not acknowledge: {paho.error_string(code)}")

    async def close(self, unacked: list[Message]) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._client = None
        await self._stack.aclose()

    def _require(self) -> aiomqtt.Client:
        if self._client is None:
            raise ConnectionError("not connected")
        return self._client

    def _message(self, message: aiomqtt.Message) -> Message:
        payload = message.payload
        body = payload if isinstance(payload, bytes) else str(payload or "").encode()
        return Message(
            record(kind="mqtt", event_id=str(uuid.uuid4()), source=self._source,
                   subject=message.topic.value, time_ms=now_ms(), data=body_data(body)),
            key=None, handle=message)
