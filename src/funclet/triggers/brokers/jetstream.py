"""A NATS JetStream durable pull consumer with explicit acknowledgements.

The stream is the one whose subjects cover the trigger's subject; when there is none,
funclet creates one (``funclet-…``, file storage, interest retention: a message stays
until every consumer acknowledged it). The durable consumer
(``funclet-{function}-{trigger}``) starts at the beginning of the stream the first time.
Pulls are made here rather than with ``fetch``, which waits out its whole timeout for a
full batch: one pull of up to a batch is outstanding, and what it brought is taken as
soon as it is there. At a clean stop, what was received and not acknowledged is given
back (NAK) once that pull is over. Stream sequences are stable (with the stream's
creation time, in case it is recreated): a batch delivered again is an idempotent
repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections import deque

import nats
import orjson
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import MsgAlreadyAckdError, NoServersError
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy
from nats.js.errors import NotFoundError

from funclet.triggers.brokers import Message, Names
from funclet.triggers.brokers.events import body_data, public_url, record
from funclet.triggers.config import BrokerConfig

_CONNECT_TIMEOUT_S = 5.0
_PULL_S = 2.0  # how long one pull request waits at the server (and close, for it)
_ACK_WAIT_S = 30.0
_PIPELINE = 32  # batches awaiting their accept: the task store commits them together
_OVER = ("404", "408")  # no messages, request timed out: the pull is over


class JetStreamConsumer:
    """Pulls into a local buffer; batches are cut from it (see the module docstring)."""

    pipeline = _PIPELINE

    def __init__(self, config: BrokerConfig, names: Names) -> None:
        self.url = public_url(config.url)
        self._config = config
        self._durable = names.group
        self._subject = config.source
        self._stream = ""
        self._source = f"{self.url}#{config.source}"
        self._nc: Nats | None = None
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._open = 0  # messages the outstanding pull may still bring
        self._pull_ends = 0.0
        self._failure: BaseException | None = None
        self._epoch = ""

    async def connect(self) -> None:
        last: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            last.append(exc)

        async def on_closed() -> None:
            self._fail(ConnectionError("the connection closed"))

        try:  # one attempt (nats-py's own reconnects would hide the state from ours)
            self._nc = await nats.connect(
                servers=[self._config.url], connect_timeout=_CONNECT_TIMEOUT_S,
                allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
                ping_interval=10, max_outstanding_pings=2, error_cb=on_error,
                closed_cb=on_closed, disconnected_cb=on_closed)
        except NoServersError:
            raise last[-1] if last else ConnectionError("no server answered") from None
        js = self._nc.jetstream()
        try:
            self._stream = await js.find_stream_name_by_subject(self._subject)
        except NotFoundError:
            self._stream = _stream_name(self._subject)
            await js.add_stream(name=self._stream, subjects=[self._subject],
                                retention=RetentionPolicy.INTEREST)
        info = await js.stream_info(self._stream)
        self._epoch = info.created.isoformat() if info.created else ""
        try:
            consumer = await js.consumer_info(self._stream, self._durable)
            if consumer.config.filter_subject != self._subject:  # the trigger changed
                consumer.config.filter_subject = self._subject
                await js.add_consumer(self._stream, consumer.config)
        except NotFoundError:
            await js.add_consumer(self._stream, ConsumerConfig(
                durable_name=self._durable, ack_policy=AckPolicy.EXPLICIT,
                filter_subject=self._subject, ack_wait=_ACK_WAIT_S))
        self._sub = await self._nc.subscribe(self._nc.new_inbox(), cb=self._on_msg)

    async def receive(self, limit: int, wait_s: float) -> list[Message]:
        deadline = time.monotonic() + wait_s
        while not self._buffer:
            if self._failure is not None:
                raise self._failure
            now = time.monotonic()
            if now >= deadline:
                return []
            if self._open <= 0 or now >= self._pull_ends:
                await self._pull(limit)
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(deadline, self._pull_ends) - now):
                    await self._arrived.wait()
        taken = [self._buffer.popleft() for _ in range(min(limit, len(self._buffer)))]
        return [self._message(m) for m in taken]

    async def keep(self, batch: list[Message]) -> None:
        for message in batch:  # restarts its ack wait: no redelivery while we retry
            await message.handle.in_progress()
        await self._require().flush()

    async def ack(self, batch: list[Message]) -> None:
        for message in batch:
            await message.handle.ack()
        await self._require().flush()  # on the wire, not in a buffer

    async def close(self, unacked: list[Message]) -> None:
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        # What we hold goes back to the stream now, not after the ack wait; but only
        # once our pull is over, or the server may hand it to that pull again.
        while self._open > 0 and self._failure is None and (
                left := self._pull_ends - time.monotonic()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()
        for msg in [m.handle for m in unacked] + list(self._buffer):
            with contextlib.suppress(MsgAlreadyAckdError):
                await msg.nak()
        self._buffer.clear()
        await nc.close()

    async def _pull(self, limit: int) -> None:
        if self._sub is None:
            raise ConnectionError("not subscribed")
        request = {"batch": limit, "expires": int(_PULL_S * 1e9)}
        await self._require().publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._durable}",
            orjson.dumps(request), reply=self._sub.subject)
        self._open, self._pull_ends = limit, time.monotonic() + _PULL_S

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._buffer.append(msg)
            self._open -= 1
        elif status in _OVER:
            self._open = 0
        elif status != "100":  # (100: a heartbeat) 409: the consumer is gone, or changed
            description = msg.headers.get("Description", "") if msg.headers else ""
            self._fail(ConnectionError(f"the pull failed: {status} {description}".strip()))
        self._arrived.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._arrived.set()

    def _require(self) -> Nats:
        if self._nc is None:
            raise ConnectionError("not connected")
        return self._nc

    def _message(self, msg: Msg) -> Message:
        meta = msg.metadata
        sequence = meta.sequence.stream
        return Message(
            record(kind="nats", event_id=str(sequence), source=self._source,
                   subject=msg.subject, time_ms=meta.timestamp.timestamp() * 1000,
                   data=body_data(msg.data)),
            key=f"{self._source}/{self._stream}@{self._epoch}/{sequence}", handle=msg)


def _stream_name(subject: str) -> str:
    """The name of the stream funclet creates for a subject that has none."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", subject)[:40]
    return f"funclet-{readable}-{hashlib.sha256(subject.encode()).hexdigest()[:8]}"
