"""The platform↔instance protocol: framed messages over a stream socket.

This module is loaded *inside* instances too, so it imports only the standard
library. A frame is ``!II`` (header length, body length), a UTF-8 JSON header
object with a ``type`` key, then the body bytes (the event or the result, never
re-encoded). ``docs/runtimes.md`` describes the messages.

Platform → instance: ``invoke`` {id, deadline} + event, ``pre_stop`` {}; for a web app
behind an HTTP trigger, ``invoke`` {id, deadline, http} and then the request body as
``body`` {id, more} + bytes.
Instance → platform: ``initializing`` {} (the initializer starts now),
``ready`` {initMs, log, handlerKind}, ``init_error`` {error, log},
``result`` {id, log} + body, ``error`` {id, error, log[, exiting]} (``exiting``: the
instance ends with it), ``pre_stop_done`` {log};
for a web app, ``http_start`` {id, status, headers} and ``body`` {id} + bytes before
the ``result`` that ends the response. A pre-started instance (started before it
has a function) says ``prestarted`` {} and waits for ``specialize`` {spec}. A template
(a snapshot's instance: spec ``template``) says ``ready`` once its imports, initializer
and before-snapshot hooks ran, then forks a new instance for each ``fork`` {spec, box}
(its socket and control socket as SCM_RIGHTS); see ``sandbox/snapshots.py``.

The zygote's control socket is a SEQPACKET socket: one JSON object a packet,
``spawn`` packets carrying the instance's socket as SCM_RIGHTS.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

PREFIX = struct.Struct("!II")
# A streamed ``body`` frame carries at most this much (the runtimes split larger writes),
# so that a web app's response is never held back by the platform's frame limit.
MAX_BODY_CHUNK = 1024 * 1024

INVOKE = "invoke"
PRE_STOP = "pre_stop"
INITIALIZING = "initializing"
READY = "ready"
INIT_ERROR = "init_error"
RESULT = "result"
ERROR = "error"
PRE_STOP_DONE = "pre_stop_done"
HTTP_START = "http_start"
BODY = "body"
PRESTARTED = "prestarted"  # instance → platform: started without a function, waiting
SPECIALIZE = "specialize"  # platform → instance: {spec}: become this function's instance
FORK = "fork"  # platform → template: {spec, box} + 2 fds: fork an instance of its snapshot


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    """One frame: prefix, JSON header, body."""
    # Lone surrogates (undecodable bytes a handler printed) become "?": always valid UTF-8.
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
    return PREFIX.pack(len(raw), len(body)) + raw + body


def read_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """Read one frame from a blocking socket; ``None`` at end of stream."""
    prefix = _read_exactly(sock, PREFIX.size)
    if prefix is None:
        return None
    header_len, body_len = PREFIX.unpack(prefix)
    payload = _read_exactly(sock, header_len + body_len)
    if payload is None:
        return None
    return json.loads(payload[:header_len]), bytes(payload[header_len:])


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return buf
