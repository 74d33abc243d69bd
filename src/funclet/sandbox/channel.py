"""The platform's end of an instance's socket: frames out, frames in, matched by key.

Frames in are bounded (``FrameLimits``): the lengths in a frame's prefix are checked
before anything of the frame is buffered, and a frame over the limit ends the channel
at once (the pool then stops the instance: ``frame_too_large``). Every complete frame
is parsed as soon as it is in, so the buffer never holds more than one frame and one
read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
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
# Frames matched by kind that may come before they are expected (``initializing`` then
# ``ready``): more than this, unasked, and the instance is ended (each may hold a body).
_EARLY_MOST = 4

Frame = tuple[dict[str, Any], bytes]
log = logging.getLogger(__name__)


MiB = 1024 * 1024
# A header carries at most a log of 1 MiB characters (the runtimes cut it there), JSON-
# escaped at up to 6 bytes a character, plus an error's message and stack trace.
MAX_HEADER = 16 * MiB


@dataclass(frozen=True)
class FrameLimits:
    """The largest frame an instance may send: its JSON header, and its body (a result:
    the sync response limit; a streamed web-app body frame is at most ``protocol``'s
    ``MAX_BODY_CHUNK``)."""

    header: int = MAX_HEADER
    body: int = 32 * MiB


class ChannelClosed(ConnectionError):
    """The instance's end of the socket went away (it exited or was killed)."""


class OversizedFrame(ChannelClosed):
    """The instance announced a frame over the limit; the channel was closed."""

    def __init__(self, part: str, size: int, limit: int) -> None:
        super().__init__(f"the instance sent a frame whose {part} is {size} bytes, over "
                         f"the limit of {limit} bytes")
        self.part = part
        self.size = size
        self.limit = limit


class Channel(asyncio.Protocol):
    """Sends frames to one instance and resolves a future per expected reply.

    A reply is matched by its request ``id`` (``result``, ``error``) or by its kind
    (``init`` for ``ready``/``init_error``, ``pre_stop``), so several invocations can
    be in flight on one instance.
    """

    def __init__(self, limits: FrameLimits | None = None,
                 sock: socket.socket | None = None) -> None:
        self._limits = limits or FrameLimits()
        self._sock = sock  # the transport's socket, for frames that carry descriptors
        self._buf = bytearray()
        self._waiters: dict[str, asyncio.Future[Frame]] = {}
        self._early: dict[str, list[Frame]] = {}  # init/pre_stop frames that beat expect()
        self._transport: asyncio.Transport | None = None
        self.is_closed = False
        self.oversized: OversizedFrame | None = None  # why the channel was ended, if so
        self.on_close: Callable[[], None] | None = None  # told when the instance goes away
        # request id -> who takes a web app's response frames (http_start, body)
        self.streams: dict[str, Callable[[dict[str, Any], bytes], None]] = {}
        self._held_by: set[str] = set()  # streams whose consumer is behind: reading paused
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def expect(self, key: str) -> asyncio.Future[Frame]:
        """A future for the reply with ``key``; register it before sending the request."""
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        early = self._early.get(key)
        if early:
            fut.set_result(early.pop(0))
        elif self.is_closed:
            fut.set_exception(self._closed())
        else:
            self._waiters[key] = fut
        return fut

    def forget(self, key: str) -> None:
        self._waiters.pop(key, None)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        if self._transport is None or self.is_closed:
            raise self._closed()
        raw = orjson.dumps(header)
        self._transport.write(_PREFIX.pack(len(raw), len(body)) + raw + body)

    def send_fds(self, header: dict[str, Any], fds: list[int]) -> None:
        """One frame (no body) with file descriptors attached (SCM_RIGHTS), sent now:
        only while nothing else is queued, so that it cannot overtake a frame."""
        if self._transport is None or self.is_closed:
            raise self._closed()
        if self._sock is None or self._transport.get_write_buffer_size():
            raise OSError("the instance's socket cannot carry descriptors now")
        raw = orjson.dumps(header)
        frame = _PREFIX.pack(len(raw), 0) + raw
        sent = socket.send_fds(self._sock, [frame], fds)
        if sent < len(frame):  # the rest, in order, without descriptors
            self._transport.write(frame[sent:])

    def hold(self, key: str) -> None:
        """Stop reading from the instance until every holder lets go (back-pressure: the
        instance's writes block; it has more invocations in flight, they wait too)."""
        if not self._held_by and self._transport is not None and not self.is_closed:
            self._transport.pause_reading()
        self._held_by.add(key)

    def let_go(self, key: str) -> None:
        if key not in self._held_by:
            return
        self._held_by.discard(key)
        if not self._held_by and self._transport is not None and not self.is_closed:
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def drain(self) -> None:
        """Wait while the instance is not reading what was sent (the write buffer is full)."""
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def data_received(self, data: bytes) -> None:
        if self.oversized is not None:
            return
        buf = self._buf
        buf += data
        while len(buf) >= _PREFIX_SIZE:
            header_len, body_len = _PREFIX.unpack_from(buf)
            if header_len > self._limits.header or body_len > self._limits.body:
                self._refuse(*(("header", header_len, self._limits.header)
                               if header_len > self._limits.header
                               else ("body", body_len, self._limits.body)))
                return
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
                early = self._early.setdefault(key, [])
                if len(early) >= _EARLY_MOST:  # never in the protocol: it floods us
                    log.error("An instance sent %d %s frames nobody asked for; closing it.",
                              len(early) + 1, header["type"])
                    self.close()
                    return
                early.append((header, body))

    def _refuse(self, part: str, size: int, limit: int) -> None:
        """End the channel over a frame that is too large, before buffering it."""
        self.oversized = OversizedFrame(part, size, limit)
        self._buf = bytearray()
        if self._transport is not None:
            self._transport.abort()  # now: what is queued either way is not wanted

    def _closed(self) -> ChannelClosed:
        if (o := self.oversized) is not None:
            return OversizedFrame(o.part, o.size, o.limit)
        return ChannelClosed("instance is gone")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._sock is not None:
            self._read_what_is_left()
        self.is_closed = True
        self.resume_writing()
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(self._closed())
        if self.on_close is not None:
            self.on_close()

    def _read_what_is_left(self) -> None:
        """A write failed (the instance went away as it was written to): the transport
        stops reading and drops what it had not read, but the instance may have said
        something first (its init error, its result): read that, frame by frame, within
        the same limits, before the channel closes — at most one largest frame's worth,
        so that an instance that keeps writing cannot hold the platform here."""
        assert self._sock is not None
        left = _PREFIX_SIZE + self._limits.header + self._limits.body
        try:
            while self.oversized is None and left > 0:
                data = self._sock.recv(min(256 * 1024, left))
                if not data:
                    return
                left -= len(data)
                self.data_received(data)
        except OSError:  # nothing more (EAGAIN), or the reset after it
            return

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
