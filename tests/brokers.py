"""The real brokers this machine runs, for destination and trigger tests."""

from __future__ import annotations

import os
import socket

import pytest

BROKERS = {"redis": 6379, "rabbitmq": 5672, "nats": 4222, "mqtt": 1883}


def need_broker(name: str) -> None:
    """Skip when the broker is not running here; under CI=true, fail instead."""
    try:
        socket.create_connection(("127.0.0.1", BROKERS[name]), timeout=2).close()
    except OSError:
        message = f"{name} is not running on 127.0.0.1:{BROKERS[name]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
