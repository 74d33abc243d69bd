"""The brokers a message-queue trigger consumes from, each behind one small seam.

A ``Broker`` connects, hands out messages already shaped as CloudEvents records, and
acknowledges them when told; it knows nothing of batches, invocations or retries (that
is ``triggers.consumers``). One module per broker: ``redis_streams``, ``rabbitmq``,
``jetstream``, ``mqtt``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from funclet.triggers.config import BrokerConfig


@dataclass(frozen=True)
class Names:
    """Who consumes: the trigger, as the broker-side names derived from it."""

    function_name: str
    trigger_name: str
    trigger_id: str
    node_id: str = ""  # set when the nodes of a cluster consume side by side

    @property
    def group(self) -> str:
        """The Redis consumer group, the JetStream durable consumer, the MQTT share:
        the trigger's, on every node (competing consumers)."""
        return f"funclet-{self.function_name}-{self.trigger_name}"

    @property
    def consumer(self) -> str:
        """This node's consumer in the Redis group."""
        return self.node_id or "funclet"

    def mqtt_client_id(self, topic: str) -> str:
        """A stable MQTT client id (its persistent session), this node's own. The topic
        is part of it, so a changed topic starts a new session rather than inheriting
        the old subscription; 23 characters, the MQTT 3.1.1 limit every broker accepts."""
        key = f"{self.function_name}/{self.trigger_name}/{topic}"
        if self.node_id:
            key += f"/{self.node_id}"
        return "funclet-" + hashlib.sha256(key.encode()).hexdigest()[:15]

    def mqtt_filter(self, topic: str) -> str:
        """What to subscribe to: on a cluster, a shared subscription of the trigger's
        (each message to one node's session; queued for it while it is away)."""
        return f"$share/{self.group}/{topic}" if self.node_id else topic


@dataclass(frozen=True)
class Message:
    """One received message, ready to go into a batch event."""

    record: dict[str, Any]  # its CloudEvents record
    key: str | None  # the same on every redelivery (entry id, stream sequence), else None
    handle: Any = None  # what the broker acknowledges it by


class Broker(Protocol):
    """One connection to one broker, consuming one stream, queue, subject or topic."""

    url: str  # the broker's URL without credentials: for logs and ``lastError``
    pipeline: int  # how many batches may await their accept at once

    async def connect(self) -> None:
        """Connect and set up what to consume (group, queue, durable, subscription)."""

    async def receive(self, limit: int, wait_s: float) -> list[Message]:
        """Up to ``limit`` messages: waits up to ``wait_s`` for the first, then takes
        what is there already; ``[]`` if nothing came."""

    async def keep(self, batch: list[Message]) -> None:
        """Still working on these (their accept is being retried): keep them ours."""

    async def ack(self, batch: list[Message]) -> None:
        """Acknowledge these: their invocation is accepted."""

    async def close(self, unacked: list[Message]) -> None:
        """Disconnect; what is unacknowledged goes back to (or stays with) the broker,
        ``unacked`` (received, no longer worked on) at once where the broker allows."""


def open_broker(config: BrokerConfig, names: Names) -> Broker:
    """The broker a trigger's config names (not connected yet)."""
    if config.kind == "redis":
        from funclet.triggers.brokers.redis_streams import RedisStream

        return RedisStream(config, names)
    if config.kind == "rabbitmq":
        from funclet.triggers.brokers.rabbitmq import RabbitQueue

        return RabbitQueue(config, names)
    if config.kind == "nats":
        from funclet.triggers.brokers.jetstream import JetStreamConsumer

        return JetStreamConsumer(config, names)
    if config.kind == "mqtt":
        from funclet.triggers.brokers.mqtt import MqttSubscription

        return MqttSubscription(config, names)
    raise ValueError(f"no broker of kind {config.kind!r}")
