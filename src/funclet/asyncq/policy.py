"""Async task policy as pure functions: statuses, the config, backoff, what comes next."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from funclet.asyncq.destinations import parse as parse_destination
from funclet.errors import InvalidArgument


class TaskStatus(StrEnum):
    """FC's async task statuses; they go straight into JSON."""

    ENQUEUED = "Enqueued"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    EXPIRED = "Expired"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


FINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.EXPIRED,
                   TaskStatus.STOPPED})
WAITING = (TaskStatus.ENQUEUED, TaskStatus.RETRYING)

MAX_RETRIES = 8
MAX_AGE = 604_800


@dataclass(frozen=True)
class AsyncConfig:
    """FC's async invoke config for one function."""

    max_retries: int = 3
    max_age_seconds: int = 86_400
    on_success: str | None = None  # destination URIs
    on_failure: str | None = None
    async_task: bool = True  # FC's flag; tasks are kept and queryable either way

    def to_fc(self, function_arn: str) -> dict[str, Any]:
        destinations = {
            key: {"destination": uri}
            for key, uri in (("onSuccess", self.on_success), ("onFailure", self.on_failure))
            if uri
        }
        return {
            "functionArn": function_arn,
            "maxAsyncRetryAttempts": self.max_retries,
            "maxAsyncEventAgeInSeconds": self.max_age_seconds,
            "destinationConfig": destinations,
            "asyncTask": self.async_task,
        }


def parse_async_config(body: dict[str, Any]) -> AsyncConfig:
    """PutAsyncInvokeConfig's body; out-of-range values are a 400 that names the field."""
    retries = body.get("maxAsyncRetryAttempts", 3)
    age = body.get("maxAsyncEventAgeInSeconds", 86_400)
    for key, value, high in (("maxAsyncRetryAttempts", retries, MAX_RETRIES),
                             ("maxAsyncEventAgeInSeconds", age, MAX_AGE)):
        low = 0 if key == "maxAsyncRetryAttempts" else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArgument(f"{key} must be an integer from {low} to {high}, got {value!r}")
    destinations = body.get("destinationConfig") or {}
    if not isinstance(destinations, dict):
        raise InvalidArgument("destinationConfig must be an object")
    uris: dict[str, str | None] = {}
    for key in ("onSuccess", "onFailure"):
        entry = destinations.get(key)
        if not entry:
            uris[key] = None
            continue
        if not isinstance(entry, dict):
            raise InvalidArgument(f"destinationConfig.{key} must be {{\"destination\": URI}}")
        field = f"destinationConfig.{key}.destination"
        uris[key] = parse_destination(entry.get("destination"), field).uri
    async_task = body.get("asyncTask", True)
    if not isinstance(async_task, bool):
        raise InvalidArgument("asyncTask must be true or false")
    return AsyncConfig(retries, age, uris["onSuccess"], uris["onFailure"], async_task)


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential from 1 s, capped at
    5 minutes, with full jitter over its upper half."""
    base = min(300.0, 2.0 ** (attempt - 1))
    return base / 2 + (rng or random).random() * base / 2


def after_failure(attempts: int, max_retries: int) -> TaskStatus:
    """What a failed attempt leads to: another try, or the end."""
    return TaskStatus.RETRYING if attempts <= max_retries else TaskStatus.FAILED
