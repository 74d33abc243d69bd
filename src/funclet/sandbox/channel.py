"""The platform's end of an instance's socket: frames out, frames in, matched by key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from funclet.runtimes import protocol

_PREFIX = protocol.PREFIX
_PREFIX_SIZE = protocol.PREFIX.size

# Replies that are not matched by request id.
INIT = "init"
_KEY_OF_TYPE = {
    protocol.INITIALIZING: INIT,
    protocol.READY: INIT,
    protocol.INIT_ERROR: INIT,
    protocol.PRESTARTED: INIT,
    protocol.PRE_STOP_DONE: protocol.PRE_STOP,
}

_STREAMED = frozenset({protocol.HTTP_START, protocol.BODY})

Frame = tuple[dict[str, Any], bytes]
log = logging.getLogger(__name__)


class ChannelClosed(ConnectionError):
    """The instance's end of the socket went away (it exited or was killed)."""


class Channel(asyncio.Protocol):
    """Sends frames to one instance and resolves a future per expected reply.

    A reply is matched by its request ``id`` (``result``, ``error``) or by its kind
    (``init`` for ``ready``/``init_error``, ``pre_stop``), so several invocations can
    be in flight on one instance.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._waiters: dict[str, asyncio.Future[Frame]] = {}
        self._early: dict[str, list[Frame]] = {}  # init/pre_stop frames that beat expect()
        self._transport: asyncio.Transport | None = None
        self.is_closed = False
        self.on_close: Callable[[], None] | None = None  # told when the instance goes away
        # request id -> who takes a web app's response frames (http_start, body)
        self.streams: dict[str, Callable[[dict[str, Any], bytes], None]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def expect(self, key: str) -> asyncio.Future[Frame]:
        """A future for the reply with ``key``; register it before sending the request."""
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        early = self._early.get(key)
        if early:
            fut.set_result(early.pop(0))
        elif self.is_closed:
            fut.set_exception(ChannelClosed("instance is gone"))
        else:
            self._waiters[key] = fut
        return fut

    def forget(self, key: str) -> None:
        self._waiters.pop(key, None)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        if self._transport is None or self.is_closed:
            raise ChannelClosed("instance is gone")
        raw = orjson.dumps(header)
        self._transport.write(_PREFIX.pack(len(raw), len(body)) + raw + body)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= _PREFIX_SIZE:
            header_len, body_len = _PREFIX.unpack_from(buf)
            end = _PREFIX_SIZE + header_len + body_len
            if len(buf) < end:
                return
            try:
                header = orjson.loads(memoryview(buf)[_PREFIX_SIZE : _PREFIX_SIZE + header_len])
            except orjson.JSONDecodeError:
                log.error("An instance sent a frame that is not valid JSON; closing it.")
                self.close()
                return
            body = bytes(buf[_PREFIX_SIZE + header_len : end])
            del buf[:end]
            if header["type"] in _STREAMED:
                stream = self.streams.get(header.get("id", ""))
                if stream is not None:
                    stream(header, body)
                continue
            kind = _KEY_OF_TYPE.get(header["type"])
            key = kind or header.get("id", "")
            fut = self._waiters.pop(key, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result((header, body))
            elif kind is not None:
                self._early.setdefault(key, []).append((header, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(ChannelClosed("instance is gone"))
        if self.on_close is not None:
            self.on_close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
