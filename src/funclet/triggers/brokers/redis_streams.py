"""A Redis stream, read through a consumer group (XREADGROUP), acknowledged with XACK.

The group (``funclet-{function}-{trigger}``) is created at the start of the stream,
with MKSTREAM, the first time the trigger connects; a group that exists is used as it
is. The consumer in it is ``funclet`` (on a cluster, the node's id), so after a crash
or a restart this consumer's pending entries (read, never acknowledged) are read again
first, before any new entry. Every ``_CLAIM_EVERY_S`` the consumer also takes over
entries that another consumer read and left unacknowledged for ``_CLAIM_IDLE_MS``
(XAUTOCLAIM): a node that died with entries in hand. Entry ids are stable: a batch
read again, grouped as before, is an idempotent repeat.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from funclet.triggers.brokers import Message, Names
from funclet.triggers.brokers.events import fields_data, public_url, record
from funclet.triggers.config import BrokerConfig

_CLAIM_EVERY_S = 30.0
_CLAIM_IDLE_MS = 60_000
_CONNECT_TIMEOUT_S = 5.0
_MAX_BLOCK_S = 5.0
_CONNECTIONS = 8
_PIPELINE = 32  # batches awaiting their accept: the task store commits them together


class RedisStream:
    """XREADGROUP with COUNT, one XACK per batch (see the module docstring)."""

    pipeline = _PIPELINE

    def __init__(self, config: BrokerConfig, names: Names) -> None:
        self.url = public_url(config.url)
        self._config = config
        self._group = names.group
        self._consumer = names.consumer
        self._claimed = time.monotonic()  # the last XAUTOCLAIM (the first: after a while)
        self._stream = config.source
        self._source = f"{self.url}#{config.source}"
        self._client: redis.Redis | None = None
        self._cursor = "0"  # our pending entries first, then ">": entries never delivered

    async def connect(self) -> None:
        # Our own loop reconnects with backoff; redis-py's retries would only hide it.
        # A few connections: one blocks in XREADGROUP, the others carry the XACKs.
        pool = redis.BlockingConnectionPool.from_url(
            self._config.url, max_connections=_CONNECTIONS, timeout=_CONNECT_TIMEOUT_S * 2,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_timeout=_MAX_BLOCK_S + _CONNECT_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        self._client = redis.Redis.from_pool(pool)
        try:
            await self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._cursor = "0"

    async def receive(self, limit: int, wait_s: float) -> list[Message]:
        client = self._require()
        while self._cursor != ">":
            entries = _entries(await client.xreadgroup(
                self._group, self._consumer, {self._stream: self._cursor}, count=limit))
            if not entries:
                self._cursor = ">"
                break
            self._cursor = _text(entries[-1][0])
            # An entry trimmed or deleted after it was read comes back without fields.
            gone = [entry_id for entry_id, fields in entries if not fields]
            if gone:
                await client.xack(self._stream, self._group, *gone)
            if messages := [self._message(e, f) for e, f in entries if f]:
                return messages
        if time.monotonic() - self._claimed > _CLAIM_EVERY_S:
            self._claimed = time.monotonic()
            reply = await client.xautoclaim(self._stream, self._group, self._consumer,
                                            _CLAIM_IDLE_MS, count=limit)
            if messages := [self._message(e, f) for e, f in (reply[1] or []) if f]:
                return messages  # now this consumer's own pending entries
        block_ms = int(min(wait_s, _MAX_BLOCK_S) * 1000)
        entries = _entries(await client.xreadgroup(
            self._group, self._consumer, {self._stream: ">"}, count=limit,
            block=block_ms if block_ms > 0 else None))  # (BLOCK 0 would wait forever)
        return [self._message(e, f) for e, f in entries if f]

    async def keep(self, batch: list[Message]) -> None:
        pass  # pending entries stay ours until acknowledged

    async def ack(self, batch: list[Message]) -> None:
        await self._require().xack(self._stream, self._group, *(m.handle for m in batch))

    async def close(self, unacked: list[Message]) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _require(self) -> redis.Redis:
        if self._client is None:
            raise ConnectionError("not connected")
        return self._client

    def _message(self, entry_id: Any, fields: dict[bytes, bytes]) -> Message:
        text = _text(entry_id)
        return Message(
            record(kind="redis", event_id=text, source=self._source, subject=self._stream,
                   time_ms=int(text.partition("-")[0]), data=fields_data(fields)),
            key=f"{self._source}/{text}", handle=entry_id)


def _entries(reply: Any) -> list[tuple[Any, dict[bytes, bytes] | None]]:
    """XREADGROUP's entries for our one stream, from a RESP2 list or a RESP3 map."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (entries,) = reply.values()
        return list(entries[0] if entries and isinstance(entries[0], list) else entries)
    return list(reply[0][1])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
