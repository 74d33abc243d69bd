"""A RabbitMQ queue, consumed with manual acknowledgements.

The queue is used as it is when it exists (a passive declare, so a quorum or classic
queue with its own arguments is fine) and declared durable when it does not. Prefetch
covers the batches in flight. A message not acknowledged when the channel closes goes
back to the queue; AMQP has no stable id to dedupe by (``message_id`` is the
publisher's), so a redelivered batch may run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from datetime import UTC
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelNotFoundEntity

from funclet.triggers.brokers import Message, Names
from funclet.triggers.brokers.events import body_data, now_ms, public_url, record
from funclet.triggers.config import BrokerConfig

_CONNECT_TIMEOUT_S = 10.0
_PIPELINE = 32  # batches awaiting their accept: the task store commits them together


class RabbitQueue:
    """basic.consume into a local buffer; batches are cut from it (see the module
    docstring)."""

    pipeline = _PIPELINE

    def __init__(self, config: BrokerConfig, names: Names) -> None:
        self.url = public_url(config.url)
        self._config = config
        self._source = f"{self.url}#{config.source}"
        self._name = f"funclet trigger {names.function_name}/{names.trigger_name}"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._buffer: deque[AbstractIncomingMessage] = deque()
        self._arrived = asyncio.Event()
        self._closed: BaseException | None = None
        self._tag = ""
        self._consumers: dict[str, Any] = {}

    async def connect(self) -> None:
        self._connection = await aio_pika.connect(
            self._config.url, timeout=_CONNECT_TIMEOUT_S,
            client_properties={"connection_name": self._name})  # (seen in the broker's UI)
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(self._config.source, passive=True)
        except ChannelNotFoundEntity:  # (it closed that channel)
            channel = await self._connection.channel()
            queue = await channel.declare_queue(self._config.source, durable=True)
        self._channel = channel
        channel.close_callbacks.add(self._on_close)
        await channel.set_qos(prefetch_count=self._config.batch_size * (_PIPELINE + 1))
        self._tag = await queue.consume(self._on_message, no_ack=False)
        # The broker cancels a consumer whose queue is deleted, and says so only here.
        underlay = await channel.get_underlay_channel()
        self._consumers = getattr(underlay, "consumers", {self._tag: None})

    async def receive(self, limit: int, wait_s: float) -> list[Message]:
        if not self._buffer and wait_s > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._arrived.wait()
        if self._closed is not None and not self._buffer:
            raise ConnectionError(f"the channel closed: {self._closed}")
        if not self._buffer and self._tag not in self._consumers:
            raise ConnectionError("the broker cancelled the consumer (was the queue deleted?)")
        taken = [self._buffer.popleft() for _ in range(min(limit, len(self._buffer)))]
        return [self._message(m) for m in taken]

    async def keep(self, batch: list[Message]) -> None:
        pass  # unacknowledged deliveries stay ours while the channel is open

    async def ack(self, batch: list[Message]) -> None:
        for message in batch:
            await message.handle.ack()

    async def close(self, unacked: list[Message]) -> None:
        self._buffer.clear()
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._buffer.append(message)
        self._arrived.set()

    def _on_close(self, _channel: Any, exc: BaseException | None = None) -> None:
        self._closed = exc or ConnectionError("closed")
        self._arrived.set()

    def _message(self, message: AbstractIncomingMessage) -> Message:
        sent = message.timestamp
        if sent is not None and sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)  # AMQP timestamps are seconds since the epoch
        return Message(
            record(kind="rabbitmq", event_id=message.message_id or str(uuid.uuid4()),
                   source=self._source, subject=self._config.source,
                   time_ms=sent.timestamp() * 1000 if sent else now_ms(),
                   data=body_data(bytes(message.body))),
            key=None, handle=message)
