"""Web apps inside a Python instance: a WSGI callable (FC's ``handler(environ,
start_response)``, Flask) or an ASGI application (FastAPI, Starlette) served directly
by an HTTP trigger, request and response bodies streamed.

Runs inside instances: the standard library only, loaded by file path.

For a request the platform sends ``invoke`` with an ``http`` head (method, path, raw
path, query, headers, client, server, scheme) and then the request body as ``body``
frames ``{id, more}``; the instance answers ``http_start`` ``{id, status, headers}``,
then ``body`` frames with the response, then ``result`` (or ``error``) to end it.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

EVENT, WSGI, ASGI = "event", "wsgi", "asgi"
Send = Callable[[dict[str, Any], bytes], None]
_CHUNK = 1024 * 1024  # protocol.MAX_BODY_CHUNK: the most one body frame carries


def _send_body(send: Send, request_id: str, data: bytes) -> None:
    """A response body write as ``body`` frames of at most ``_CHUNK`` bytes."""
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        send({"type": "body", "id": request_id}, bytes(view[start:start + _CHUNK]))


def kind_of(handler: Callable[..., Any]) -> str:
    """``event`` (handler(event, context)), ``wsgi`` or ``asgi``."""
    plain = inspect.isfunction(handler) or inspect.ismethod(handler)
    call = handler if plain else type(handler).__call__  # an app object: its __call__
    if inspect.iscoroutinefunction(call):
        try:
            params = [p for p in inspect.signature(handler).parameters.values()
                      if p.default is inspect.Parameter.empty]
        except (TypeError, ValueError):
            return ASGI
        return ASGI if len(params) == 3 else EVENT
    if hasattr(handler, "wsgi_app"):  # Flask and friends
        return WSGI
    try:
        names = list(inspect.signature(handler).parameters)[:2]
    except (TypeError, ValueError):
        return EVENT
    return WSGI if names == ["environ", "start_response"] else EVENT


class Body:
    """A request body arriving in ``body`` frames, read by the app's thread."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._ready = threading.Condition()

    def put(self, chunk: bytes, more: bool) -> None:
        with self._ready:
            if chunk:
                self._chunks.append(chunk)
            self._ended = self._ended or not more
            self._ready.notify_all()

    def next_chunk(self) -> bytes | None:
        """The next piece of the body; ``None`` once it has all been read."""
        with self._ready:
            while not self._chunks and not self._ended:
                self._ready.wait()
            return self._chunks.popleft() if self._chunks else None


class _Input:
    """``wsgi.input`` over a ``Body``."""

    def __init__(self, body: Body) -> None:
        self._body = body
        self._buf = b""
        self._done = False

    def _fill(self, size: int) -> None:
        while not self._done and (size < 0 or len(self._buf) < size):
            chunk = self._body.next_chunk()
            if chunk is None:
                self._done = True
            else:
                self._buf += chunk

    def read(self, size: int = -1) -> bytes:
        self._fill(size if size is not None else -1)
        if size is None or size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self._buf and not self._done:
            self._fill(len(self._buf) + 1)
        end = self._buf.find(b"\n") + 1 or len(self._buf)
        if size is not None and 0 <= size < end:
            end = size
        out, self._buf = self._buf[:end], self._buf[end:]
        return out

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _headers(head: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in head["headers"]]


def serve_wsgi(app: Callable[..., Any], head: dict[str, Any], body: Body, request_id: str,
               context: Any, send: Send) -> None:
    """Run one request through a WSGI app, streaming its response as it is produced."""
    server_host, server_port = head["server"]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(head["path"], "latin-1"),
        "QUERY_STRING": head["query"],
        "SERVER_NAME": server_host,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{head['httpVersion']}",
        "REMOTE_ADDR": head["client"][0],
        "REMOTE_PORT": str(head["client"][1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": head["scheme"],
        "wsgi.input": _Input(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "fc.context": context,
        "fc.request_uri": head["rawPath"] + ("?" + head["query"] if head["query"] else ""),
    }
    for name, value in _headers(head):
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    started: list[Any] = []

    def begin() -> None:
        if started and started[0] is not True:
            status, headers = started[0]
            send({"type": "http_start", "id": request_id, "status": int(status.split()[0]),
                  "headers": [[k, v] for k, v in headers]}, b"")
            started[0] = True

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info and started and started[0] is True:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, headers)]
        return write

    def write(data: bytes) -> None:
        begin()
        if data:
            _send_body(send, request_id, data)

    result: Iterable[bytes] = app(environ, start_response)
    try:
        for chunk in result:
            write(chunk)
        begin()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI application returned without calling start_response")


class _Loop:
    """One event loop thread per instance for ASGI apps: the app's state (clients,
    pools) lives across requests, as under any ASGI server."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="asgi", daemon=True).start()
                cls._loop = loop
            return cls._loop


def serve_asgi(app: Callable[..., Any], head: dict[str, Any], body: Body, request_id: str,
               send: Send) -> None:
    """Run one request through an ASGI app (HTTP scope; no lifespan events)."""
    loop = _Loop.get()
    asyncio.run_coroutine_threadsafe(_asgi(app, head, body, request_id, send), loop).result()


async def _asgi(app: Callable[..., Any], head: dict[str, Any], body: Body, request_id: str,
                send: Send) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": head["httpVersion"],
        "method": head["method"],
        "scheme": head["scheme"],
        "path": unquote(head["path"]),
        "raw_path": head["rawPath"].encode("latin-1"),
        "query_string": head["query"].encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in _headers(head)],
        "client": tuple(head["client"]),
        "server": tuple(head["server"]),
        "state": {},
    }
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    state = {"started": False, "body_done": False}

    async def receive() -> dict[str, Any]:
        if state["body_done"]:
            await finished.wait()
            return {"type": "http.disconnect"}
        chunk = await loop.run_in_executor(None, body.next_chunk)
        if chunk is None:
            state["body_done"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send_message(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            state["started"] = True
            headers = [[k.decode("latin-1"), v.decode("latin-1")]
                       for k, v in message.get("headers", [])]
            send({"type": "http_start", "id": request_id, "status": message["status"],
                  "headers": headers}, b"")
        elif message["type"] == "http.response.body":
            data = message.get("body", b"")
            if data:
                _send_body(send, request_id, data)
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send_message)
    finally:
        finished.set()
    if not state["started"]:
        raise RuntimeError("the ASGI application returned without starting a response")
