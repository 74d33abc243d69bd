"""One HTTP request through an HTTP trigger, between the API and an instance.

Which way it goes is decided once the instance is placed and ready — its runtime says
what the handler is:
- an event handler gets FC's HTTP event (``event()`` reads the whole body and builds it);
  the API maps the return value to the response;
- a web app (WSGI, ASGI, a custom runtime's server) gets the request itself: its head in
  the ``invoke`` frame, its body streamed as ``body`` frames; the response comes back as
  ``http_start`` and ``body`` frames, streamed to the client as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from funclet.runtimes import protocol

EVENT = "event"


@dataclass(eq=False)
class HttpExchange:
    head: dict[str, Any]  # method, path, rawPath, query, headers, client, server, scheme
    request_body: AsyncIterator[bytes]
    event: Callable[[], Awaitable[bytes]]  # FC's HTTP event, for event handlers
    max_body: int
    mode: str = EVENT  # the handler kind the request met: "event", "wsgi", "asgi", ...
    started: asyncio.Future[tuple[int, list[tuple[str, str]]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    _chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    def on_frame(self, header: dict[str, Any], body: bytes) -> None:
        """A response frame from the instance (``http_start`` or ``body``)."""
        if header["type"] == protocol.HTTP_START:
            if not self.started.done():
                headers = [(str(k), str(v)) for k, v in header.get("headers", [])]
                self.started.set_result((int(header["status"]), headers))
        elif body:
            self._chunks.put_nowait(body)

    def end(self) -> None:
        """The invocation is over: the response body (if any) is complete."""
        self._chunks.put_nowait(None)

    async def response_body(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk
