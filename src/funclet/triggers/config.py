"""Trigger requests checked and normalised: FC's ``CreateTrigger`` / ``UpdateTrigger``
bodies, each ``triggerConfig`` by type. Errors name the field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from funclet.errors import InvalidArgument
from funclet.triggers.schedule import Schedule, parse_schedule
from funclet.urls import split_url

TIMER, HTTP = "timer", "http"
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS")
# triggerType -> (the field naming what to consume, the URL schemes it takes)
BROKERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "redis": ("stream", ("redis", "rediss")),
    "rabbitmq": ("queue", ("amqp", "amqps")),
    "nats": ("subject", ("nats", "tls")),
    "mqtt": ("topic", ("mqtt", "mqtts")),
}
TYPES = (TIMER, HTTP, *BROKERS)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")


@dataclass(frozen=True)
class TimerConfig:
    schedule: Schedule
    payload: str
    enable: bool


@dataclass(frozen=True)
class HttpConfig:
    auth_type: str  # "anonymous" | "function"
    methods: frozenset[str]
    disable_url_internet: bool


@dataclass(frozen=True)
class BrokerConfig:
    kind: str  # a key of BROKERS
    url: str
    source: str  # the stream, queue, subject or topic
    batch_size: int
    batch_window_s: float


Parsed = TimerConfig | HttpConfig | BrokerConfig


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(
            "triggerName must be 1-128 letters, digits, '_' or '-', not starting with a "
            f"digit or '-', got {orjson.dumps(name).decode()}")
    return name


def check_type(kind: Any) -> str:
    if kind not in TYPES:
        raise InvalidArgument(
            f"triggerType must be one of {', '.join(TYPES)}, got {orjson.dumps(kind).decode()}")
    assert isinstance(kind, str)
    return kind


def parse_config(kind: str, raw: Any) -> tuple[dict[str, Any], Parsed]:
    """``triggerConfig`` (FC's JSON string, or an object) → (the stored form, typed)."""
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise InvalidArgument("triggerConfig is not valid JSON") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidArgument("triggerConfig must be a JSON object (or a string holding one)")
    if kind == TIMER:
        return _timer(raw)
    if kind == HTTP:
        return _http(raw)
    return _broker(kind, raw)


def _timer(raw: dict[str, Any]) -> tuple[dict[str, Any], TimerConfig]:
    expression = raw.get("cronExpression")
    if not isinstance(expression, str) or len(expression) > 256:
        raise InvalidArgument("triggerConfig.cronExpression is required: a cron expression "
                              "('0 0 4 * * *', seconds first) or '@every 5m'")
    try:
        schedule = parse_schedule(expression)
    except ValueError as exc:
        raise InvalidArgument(f"triggerConfig.cronExpression: {exc}") from None
    payload = raw.get("payload", "")
    if not isinstance(payload, str):
        raise InvalidArgument("triggerConfig.payload must be a string")
    enable = raw.get("enable", True)
    if not isinstance(enable, bool):
        raise InvalidArgument("triggerConfig.enable must be true or false")
    stored = {"cronExpression": expression, "payload": payload, "enable": enable}
    return stored, TimerConfig(schedule, payload, enable)


def _http(raw: dict[str, Any]) -> tuple[dict[str, Any], HttpConfig]:
    auth = raw.get("authType", "function")
    if auth not in ("anonymous", "function"):
        raise InvalidArgument("triggerConfig.authType must be 'anonymous' or 'function'")
    methods = raw.get("methods", list(HTTP_METHODS))
    if (not isinstance(methods, list) or not methods
            or any(not isinstance(m, str) or m.upper() not in HTTP_METHODS for m in methods)):
        raise InvalidArgument(
            f"triggerConfig.methods must be a non-empty list of {', '.join(HTTP_METHODS)}")
    disable = raw.get("disableURLInternet", False)
    if not isinstance(disable, bool):
        raise InvalidArgument("triggerConfig.disableURLInternet must be true or false")
    upper = sorted({m.upper() for m in methods}, key=HTTP_METHODS.index)
    stored = {"authType": auth, "methods": upper, "disableURLInternet": disable}
    return stored, HttpConfig(auth, frozenset(upper), disable)


def _broker(kind: str, raw: dict[str, Any]) -> tuple[dict[str, Any], BrokerConfig]:
    field, schemes = BROKERS[kind]
    url = raw.get("url")
    wanted = f"a {' or '.join(s + '://' for s in schemes)} URL with a host"
    if not isinstance(url, str):
        raise InvalidArgument(f"triggerConfig.url must be {wanted}")
    try:
        parts = split_url(url)
    except ValueError as exc:
        raise InvalidArgument(
            f"triggerConfig.url {orjson.dumps(url).decode()} is not a valid URL: {exc}"
        ) from None
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidArgument(f"triggerConfig.url must be {wanted}, got "
                              f"{orjson.dumps(url).decode()}")
    source = raw.get(field)
    if not isinstance(source, str) or not source.strip():
        raise InvalidArgument(f"triggerConfig.{field} is required for a {kind} trigger")
    size = raw.get("batchSize", 1)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
        raise InvalidArgument("triggerConfig.batchSize must be an integer from 1 to 100")
    window = raw.get("batchWindowInSeconds", 0)
    if (not isinstance(window, (int, float)) or isinstance(window, bool)
            or not 0 <= window <= 15):
        raise InvalidArgument("triggerConfig.batchWindowInSeconds must be from 0 to 15")
    stored = {"url": url, field: source, "batchSize": size, "batchWindowInSeconds": window}
    return stored, BrokerConfig(kind, url, source, size, float(window))
