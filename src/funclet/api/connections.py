"""Bounded HTTP connections: uvicorn's httptools protocol with the limits it lacks.

uvicorn closes a keep-alive connection only after a response: a connection that never
sends a request, or trickles its headers a byte at a time, stays open for ever, and
httptools buffers a request line and headers of any size. ``BoundedHttpTools`` adds:

- an idle timeout from the moment a connection is accepted (uvicorn's own keep-alive
  timer then covers the wait between requests);
- a header timeout: from a request's first byte its headers must be complete within
  ``header_timeout`` (nginx's ``client_header_timeout``), or the connection is closed;
- at most ``MAX_HEADERS`` header fields and ``MAX_HEADER_BYTES`` for the request line
  and headers together: past them ``431`` (``414`` when the URL alone is too long),
  with FC's error body, and the connection is closed;
- at most ``max_connections`` open at once: past it a new connection gets ``503`` and
  is closed at once, so file descriptors remain for instances, the database and
  ``/healthz`` (see ``server.open_files``).

And one write per response: uvicorn writes a response's head and its body apart — two
``send()`` calls, two TCP segments and two wake-ups of the client for every response;
``_Coalescing`` holds the head until the body comes (within the same step of the event
loop, or alone at its end: a streamed response's head is not held back).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from funclet.api.peers import CONNECTION
from funclet.errors import ApiError, HeaderFieldsTooLarge, Overloaded, UriTooLong
from funclet.ids import new_request_id

# Apache's LimitRequestFields is 100; 64 KiB for the request line and headers is 4 times
# Node.js's and h11's 16 KiB (and 1/16 of Go's 1 MiB).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    max_connections: int = 20_000
    max_headers: int = MAX_HEADERS
    max_header_bytes: int = MAX_HEADER_BYTES


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request over a limit."""


def bounded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these limits."""
    return type("BoundedHttpTools", (BoundedHttpTools,), {"limits": limits})


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded (see the module docstring)."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_count = 0
        self._header_bytes = 0
        self._refusal: ApiError | None = None
        self._turned_away = False
        self._peer: dict[str, int] = {}  # who owns the client's socket (``peers.of``)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._turned_away = True
            self.transport = transport
            transport.write(_response(Overloaded(
                f"funclet has {len(self.connections)} connections open, its limit; "
                "try again later")))
            transport.close()
            return
        super().connection_made(_Coalescing(transport, self.loop))  # type: ignore[arg-type]
        # Until the first byte of a request, the connection is idle (uvicorn's keep-alive
        # timer, which it starts only after a response, covers the time between requests).
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.idle_timeout, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._turned_away:
            return
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._turned_away:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[CONNECTION] = self._peer  # type: ignore[literal-required]
        self._header_count = 0
        self._header_bytes = 0
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout,
                                                  self._header_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count(len(url), UriTooLong(
            f"the request's URL is over {self.limits.max_header_bytes} bytes"))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(HeaderFieldsTooLarge(
                f"the request has more than {self.limits.max_headers} header fields"))
        self._count(len(name) + len(value) + 4, HeaderFieldsTooLarge(
            f"the request's line and headers are over {self.limits.max_header_bytes} bytes"))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser gave up on: ours when a limit did."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self.transport.write(_response(self._refusal))
        self.transport.close()

    def _count(self, size: int, error: ApiError) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(error)

    def _refuse(self, error: ApiError) -> None:
        self._stop_header_timer()
        self._refusal = error
        raise _Refused(error.message)

    def _header_timed_out(self) -> None:
        """A request's headers did not arrive in time (slowloris): close the connection."""
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


class _Coalescing:
    """A connection's transport whose writes made in one step of the event loop go out
    in one ``write`` (the head of a response with its body); the rest is the transport's."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)  # (the end of this step, at the latest)
        else:
            self._held += data
            self.flush()

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _response(error: ApiError) -> bytes:
    """A complete HTTP response with FC's error body; the connection closes after it."""
    request_id = new_request_id()
    body = orjson.dumps({"Code": error.code, "Message": error.message,
                         "RequestId": request_id})
    return b"".join([
        STATUS_LINE[error.status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"x-fc-request-id: %s\r\n" % request_id.encode(),
        b"connection: close\r\n\r\n",
        body,
    ])
