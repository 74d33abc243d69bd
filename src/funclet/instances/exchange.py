"""One HTTP request through an HTTP trigger, between the API and an instance; and the
streamed response of a Lambda function that streams (``ResponseStream``, its half).

Which way it goes is decided once the instance is placed and ready — its runtime says
what the handler is:
- an event handler gets FC's HTTP event (``event()`` reads the whole body and builds it);
  the API maps the return value to the response;
- a web app (WSGI, ASGI, a custom runtime's server) gets the request itself: its head in
  the ``invoke`` frame, its body streamed as ``body`` frames; the response comes back as
  ``http_start`` and ``body`` frames, streamed to the client as they arrive.

The response body waits in a queue between the instance and the client. Past
``HIGH_WATER`` bytes queued the instance's channel stops being read (``flow``), so a
client that reads slowly slows the web app down instead of filling the platform's
memory; reading resumes once the queue is under ``LOW_WATER``. A client that went
away (``abandon``) lets go at once, and what the app still sends is dropped.

A Lambda handler that streams (``awslambda.streamifyResponse``) answers an invocation
that asks for a stream (``stream`` in its ``invoke`` frame) with the same ``http_start``
and ``body`` frames: InvokeWithResponseStream and a Function URL in ``RESPONSE_STREAM``
mode pass them on as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from funclet.runtimes import protocol

EVENT = "event"
HIGH_WATER = 4 * protocol.MAX_BODY_CHUNK
LOW_WATER = protocol.MAX_BODY_CHUNK
STREAM_LIMIT = 20 * 1024 * 1024  # Lambda's most for a streamed response
Flow = Callable[[bool], None]  # hold (True) or let go (False) of the instance's channel


@dataclass(eq=False)
class ResponseStream:
    """A response that an instance streams: ``http_start`` (its status and headers)
    once, then ``body`` frames, queued for the reader with the flow control above.
    ``limit``: the most bytes passed on (0: no limit); past it the rest is dropped and
    ``overflowed`` says so."""

    limit: int = 0
    started: asyncio.Future[tuple[int, list[tuple[str, str]]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    flow: Flow | None = None  # set once the request is placed on an instance that streams
    version_id: str = ""  # the version whose instance it was placed on
    overflowed: bool = False
    _chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _queued: int = 0
    _sent: int = 0
    _holding: bool = False
    _abandoned: bool = False

    def on_frame(self, header: dict[str, Any], body: bytes) -> None:
        """A response frame from the instance (``http_start`` or ``body``)."""
        if header["type"] == protocol.HTTP_START:
            if not self.started.done():
                headers = [(str(k), str(v)) for k, v in header.get("headers", [])]
                self.started.set_result((int(header["status"]), headers))
        elif body and not self._abandoned:
            self._sent += len(body)
            if self.limit and self._sent > self.limit:
                self.overflowed = True
                self.abandon()
                self._chunks.put_nowait(None)
                return
            self._chunks.put_nowait(body)
            self._queued += len(body)
            if self._queued > HIGH_WATER and not self._holding and self.flow is not None:
                self._holding = True
                self.flow(True)

    def end(self) -> None:
        """The invocation is over: the response body (if any) is complete."""
        self._let_go()
        self._chunks.put_nowait(None)

    def abandon(self) -> None:
        """Nobody reads the response any more (it ended, or the client went away)."""
        self._abandoned = True
        self._let_go()
        while not self._chunks.empty():
            self._chunks.get_nowait()
        self._queued = 0

    def _let_go(self) -> None:
        if self._holding and self.flow is not None:
            self._holding = False
            self.flow(False)

    async def response_body(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            self._queued -= len(chunk)
            if self._holding and self._queued <= LOW_WATER:
                self._let_go()
            yield chunk


@dataclass(eq=False, kw_only=True)
class HttpExchange(ResponseStream):
    """The request half, for a web app; the response half is the stream's."""

    head: dict[str, Any]  # method, path, rawPath, query, headers, client, server, scheme
    request_body: AsyncIterator[bytes]
    event: Callable[[], Awaitable[bytes]]  # FC's HTTP event, for event handlers
    max_body: int
    mode: str = EVENT  # the handler kind the request met: "event", "wsgi", "asgi", ...
    # What the response says of the request's session (its header or cookie), set by the
    # invoker before the request is placed.
    session_headers: list[tuple[str, str]] = field(default_factory=list)
