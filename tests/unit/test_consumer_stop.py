"""A trigger's consumer stops even when its broker's client swallows the cancel (nats-py's
flush catches CancelledError): a delivery in its retry backoff must not outlive a stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from funclet.triggers import consumers as consumers_module
from funclet.triggers.brokers import Message
from funclet.triggers.config import BrokerConfig
from funclet.triggers.consumers import Consumers


class _SwallowingBroker:
    """Gives one message, then nothing; its ``keep`` eats a cancel, as nats-py does."""

    url = "fake://broker"
    pipeline = 1

    def __init__(self) -> None:
        self._given = False

    async def connect(self) -> None:
        return None

    async def receive(self, limit: int, wait_s: float) -> list[Message]:
        if not self._given:
            self._given = True
            return [Message({"data": "x"}, "1")]
        await asyncio.sleep(wait_s)
        return []

    async def keep(self, batch: list[Message]) -> None:
        # Slow enough that the stop's cancel (after its 3 s of grace) lands in here.
        with contextlib.suppress(asyncio.CancelledError):  # the library's own except
            await asyncio.sleep(4)

    async def ack(self, batch: list[Message]) -> None:
        return None

    async def close(self, unacked: list[Message]) -> None:
        return None


def test_a_stop_ends_a_delivery_whose_broker_swallowed_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumers_module, "open_broker", lambda config, names: _SwallowingBroker())
    monkeypatch.setattr(consumers_module, "backoff_s", lambda attempt, jitter: 30.0)
    calls: list[float] = []

    async def enqueue(*_: Any) -> None:
        calls.append(time.monotonic())
        raise RuntimeError("database is locked")

    async def run() -> float:
        consumers = Consumers(enqueue)
        key = ("fn", "t")
        consumers.put(key, "id", BrokerConfig("redis", "redis://x", "s", 1, 0.0))
        while not calls:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the delivery is in its keep (which eats the cancel)
        began = time.monotonic()
        await asyncio.wait_for(consumers.stop(), 15)
        return time.monotonic() - began

    # Without honouring the swallowed cancel, the delivery slept its 30 s backoff.
    assert asyncio.run(run()) < 8
