"""What a batch of messages becomes: CloudEvents 1.0 records (JSON format), one async
task id per batch, and broker URLs and errors put the way a user reads them."""

from __future__ import annotations

import base64
import errno as errnos
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671,
                 "nats": 4222, "tls": 4222, "mqtt": 1883, "mqtts": 8883}


def public_url(url: str) -> str:
    """The broker's URL without credentials, query or fragment, its port spelled out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def rfc3339(ms: float) -> str:
    """Epoch milliseconds as an RFC 3339 UTC time: ``2024-05-01T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> float:
    return time.time() * 1000


def record(*, kind: str, event_id: str, source: str, subject: str, time_ms: float,
           data: Mapping[str, Any]) -> dict[str, Any]:
    """One CloudEvents record; ``data`` is ``datacontenttype`` with ``data`` or
    ``data_base64`` (see ``body_data`` and ``fields_data``)."""
    return {"specversion": "1.0", "id": event_id, "source": source,
            "type": f"funclet.{kind}.message", "subject": subject,
            "time": rfc3339(time_ms), **data}


def body_data(body: bytes) -> dict[str, Any]:
    """A message body by the CloudEvents JSON format's rule: JSON as JSON, UTF-8 text as
    a string, anything else base64 in ``data_base64``."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return {"datacontenttype": "application/octet-stream",
                "data_base64": base64.b64encode(body).decode()}
    try:
        return {"datacontenttype": "application/json", "data": orjson.loads(body)}
    except orjson.JSONDecodeError:
        return {"datacontenttype": "text/plain", "data": text}


def fields_data(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """A Redis stream entry's fields as a JSON object of strings. A value that is not
    UTF-8 goes in base64 and its field is named in the ``base64fields`` extension."""
    data: dict[str, str] = {}
    binary: list[str] = []
    for raw_key, raw_value in fields.items():
        key = raw_key.decode(errors="replace")
        try:
            data[key] = raw_value.decode()
        except UnicodeDecodeError:
            data[key] = base64.b64encode(raw_value).decode()
            binary.append(key)
    out: dict[str, Any] = {"datacontenttype": "application/json", "data": data}
    if binary:
        out["base64fields"] = ",".join(binary)
    return out


def task_id(kind: str, trigger_id: str, keys: Iterable[str | None]) -> str:
    """The async task id of a batch. When every message has a stable key, the id is a
    digest of them, so the same batch delivered again is an idempotent repeat; else it
    is new each time (a redelivered batch may run twice)."""
    given = list(keys)
    stable = [k for k in given if k is not None]
    if given and len(stable) == len(given):
        digest = hashlib.sha256("\n".join(stable).encode()).hexdigest()[:32]
    else:
        digest = uuid.uuid4().hex
    return f"{kind}-{trigger_id}-{digest}"


def reason(exc: BaseException) -> str:
    """Why an operation failed, in the words of the OS or the broker: ``Connection
    refused``, ``timed out``, ``NOAUTH Authentication required.``"""
    seen: BaseException | None = exc
    for _ in range(10):  # the cause chain, not forever: a chain can loop
        if seen is None:
            break
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            if seen.errno and seen.errno > 0 and seen.errno in errnos.errorcode:
                return os.strerror(seen.errno)
            if seen.strerror:
                return seen.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, TimeoutError):
        return "timed out"
    args = exc.args
    text = "; ".join(args) if args and all(isinstance(a, str) for a in args) else str(exc)
    text = re.sub(r"^\[Errno \d+\] ", "", text.strip())
    return text or type(exc).__name__
