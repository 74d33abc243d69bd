"""Async task policy as pure functions: statuses, the config, backoff, what comes next."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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

    def to_fc(self, function_arn: str, created_ms: int | None = None,
              modified_ms: int | None = None) -> dict[str, Any]:
        return {
            "functionArn": function_arn,
            "maxAsyncRetryAttempts": self.max_retries,
            "maxAsyncEventAgeInSeconds": self.max_age_seconds,
            "destinationConfig": {},
            "asyncTask": True,
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
    if destinations.get("onSuccess") or destinations.get("onFailure"):
        raise InvalidArgument(
            "destinationConfig is not available yet: async results are kept on the task "
            "(GetAsyncTask) until destinations land"
        )
    return AsyncConfig(retries, age)


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential from 1 s, capped at
    5 minutes, with full jitter over its upper half."""
    base = min(300.0, 2.0 ** (attempt - 1))
    return base / 2 + (rng or random).random() * base / 2


def after_failure(attempts: int, max_retries: int) -> TaskStatus:
    """What a failed attempt leads to: another try, or the end."""
    return TaskStatus.RETRYING if attempts <= max_retries else TaskStatus.FAILED
