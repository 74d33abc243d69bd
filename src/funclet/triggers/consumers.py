"""Message-queue triggers: each batch of messages becomes one async invocation.

One consumer per trigger, in a loop of its own:

1. connect to the broker (``triggers.brokers``) and set up what to read;
2. wait for a first message, then fill the batch up to ``batchSize`` with what arrives
   within ``batchWindowInSeconds`` (0: what is there already);
3. enqueue the batch as one async task whose event is a JSON list of CloudEvents
   records, retrying with backoff while that fails (the messages stay unacknowledged);
4. once the enqueue returned (the task is committed), acknowledge the batch.

Up to ``Broker.pipeline`` batches wait for their accept at once, so reading goes on
while the task store commits. A broker that cannot be reached, or goes away, is
reconnected after 0.5 s, doubling to 30 s, with jitter; ``status()`` says how it goes.
Delivery is at least once: see docs/message-triggers.md for each broker.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable

import orjson

from funclet.triggers.brokers import Broker, Message, Names, open_broker
from funclet.triggers.brokers.events import reason, task_id
from funclet.triggers.config import BrokerConfig

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (function name, trigger name)
# (function name, event, task id): accept an async invocation durably
Enqueue = Callable[[str, bytes, str, str], Awaitable[object]]  # function, event, task id, qualifier
_FIRST_WAIT_S = 5.0  # one wait for a first message; the loop then waits again
_STABLE_S = 30.0  # connected this long: the next outage's backoff starts from 0.5 s again
_GRACE_S = 3.0  # at stop: how long batches being enqueued may finish and be acknowledged
_LOG_EVERY_S = 10.0  # at most one warning this often about failing enqueues
_READ_AHEAD = 200  # most messages one read may bring (several batches, fewer round trips)


class ConsumerState(enum.StrEnum):
    """A trigger's ``status``: connecting, consuming, or not (``lastError`` says why)."""

    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    ERROR = "Error"


_MOVES = {
    ConsumerState.CONNECTING: {ConsumerState.CONNECTING, ConsumerState.CONNECTED,
                               ConsumerState.ERROR},
    ConsumerState.CONNECTED: {ConsumerState.ERROR},
    ConsumerState.ERROR: {ConsumerState.ERROR, ConsumerState.CONNECTING,
                          ConsumerState.CONNECTED},
}


def backoff_s(attempt: int, jitter: float) -> float:
    """The wait before reconnect ``attempt`` (0, 1, …): 0.5 s doubling to 30 s, times
    ``jitter`` (0.8–1.2), so many triggers on one broker do not come back in step."""
    return min(30.0, 0.5 * 2.0 ** min(attempt, 6)) * jitter


def _jitter() -> float:
    return random.uniform(0.8, 1.2)


class Consumers:
    """The consumers of all message-queue triggers, by (function, trigger)."""

    def __init__(self, enqueue: Enqueue, node_id: str = "",
                 on_fire: Callable[[str], None] = lambda kind: None) -> None:
        """``node_id``: set when nodes share a database; each then consumes as one of
        the competing consumers of every trigger (``brokers.Names``). ``on_fire``: told
        the trigger type of each batch enqueued (metrics)."""
        self._enqueue = enqueue
        self._node_id = node_id
        self._on_fire = on_fire
        self._consumers: dict[Key, _Consumer] = {}
        self._stopping: dict[Key, asyncio.Task[None]] = {}

    def put(self, key: Key, trigger_id: str, config: BrokerConfig,
            qualifier: str = "LATEST") -> None:
        """Start a trigger's consumer (or restart it with a new config)."""
        self.remove(key)
        names = Names(key[0], key[1], trigger_id, self._node_id)
        self._consumers[key] = _Consumer(names, config, self._enqueue,
                                         after=self._stopping.get(key), qualifier=qualifier,
                                         on_fire=self._on_fire)

    def remove(self, key: Key) -> None:
        """Stop a trigger's consumer and forget it; it finishes in the background."""
        consumer = self._consumers.pop(key, None)
        if consumer is None:
            return
        task = consumer.cancel()
        self._stopping[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._stopping.get(key) is done:
                del self._stopping[key]

        task.add_done_callback(forget)

    def status(self, key: Key) -> tuple[str, str | None]:
        """("Connecting" | "Connected" | "Error", the last error or None)."""
        consumer = self._consumers.get(key)
        if consumer is None:
            return ConsumerState.CONNECTING.value, None
        return consumer.state.value, consumer.error

    async def stop(self) -> None:
        """Stop every consumer; what is not acknowledged stays with its broker."""
        for key in list(self._consumers):
            self.remove(key)
        if self._stopping:
            await asyncio.gather(*self._stopping.values(), return_exceptions=True)


def _honour_cancel() -> None:
    """Raise CancelledError if this task was asked to stop: a broker's client may have
    swallowed the cancel (nats-py's flush does), which would leave a stopping consumer
    retrying, or a delivery asleep in its backoff, past any stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Consumer:
    """One trigger's loop: connect, batch, enqueue, acknowledge (see the module
    docstring). Only this object changes its ``state``."""

    def __init__(self, names: Names, config: BrokerConfig, enqueue: Enqueue,
                 after: asyncio.Task[None] | None, qualifier: str = "LATEST",
                 on_fire: Callable[[str], None] = lambda kind: None) -> None:
        self.names = names
        self.config = config
        self.qualifier = qualifier
        self.state = ConsumerState.CONNECTING
        self.error: str | None = None
        self._enqueue = enqueue
        self.on_fire = on_fire  # told the trigger type of each batch enqueued
        self._failing = 0  # batches whose enqueue is failing now
        self._stuck = False  # the error is the enqueue's, not the connection's
        self._deliveries: dict[asyncio.Task[None], list[Message]] = {}  # task: its batch
        self._carry: list[Message] = []  # read, not yet in a batch
        self._quiet_until = 0.0
        self._label = f"{names.function_name}/{names.trigger_name}"
        self._task = asyncio.get_running_loop().create_task(self._run(after))

    def cancel(self) -> asyncio.Task[None]:
        self._task.cancel()
        return self._task

    async def _run(self, after: asyncio.Task[None] | None) -> None:
        if after is not None:  # the same trigger's previous consumer: its acks first
            await asyncio.wait({after})
        attempt = 0
        while True:
            broker = open_broker(self.config, self.names)
            connected, delay, since = False, 0.0, 0.0
            try:
                self._set(ConsumerState.CONNECTING, self.error)
                await broker.connect()
                connected, since = True, asyncio.get_running_loop().time()
                self._set(ConsumerState.CONNECTED)
                log.info("Trigger %s is consuming %s from %s.", self._label,
                         self.config.source, broker.url)
                await self._consume(broker)
            except Exception as exc:
                why = reason(exc)
                verb = "lost the connection to" if connected else "cannot connect to"
                self._set(ConsumerState.ERROR, f"{verb} {broker.url}: {why}")
                if connected and asyncio.get_running_loop().time() - since > _STABLE_S:
                    attempt = 0  # it worked for a while: a fresh outage (not a flapping one)
                delay = backoff_s(attempt, _jitter())
                attempt += 1
                log.warning("Trigger %s %s %s (%s); trying again in %.1f s.",
                            self._label, verb, broker.url, why, delay)
            finally:
                await self._finish(broker)
            _honour_cancel()
            await asyncio.sleep(delay)

    async def _consume(self, broker: Broker) -> None:
        slots = asyncio.Semaphore(max(1, broker.pipeline))
        failed: list[BaseException] = []

        def done(task: asyncio.Task[None]) -> None:
            slots.release()
            if task.cancelled():
                return  # (stopped by _finish, which gives its batch back)
            if (exc := task.exception()) is not None:
                failed.append(exc)
            else:
                self._deliveries.pop(task, None)

        while True:
            await slots.acquire()
            _honour_cancel()
            if failed:  # an acknowledgement failed: the connection is not to be trusted
                raise failed[0]
            try:
                batch = await self._next_batch(broker)
            except BaseException:
                slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._deliver(broker, batch))
            self._deliveries[task] = batch
            task.add_done_callback(done)

    async def _next_batch(self, broker: Broker) -> list[Message]:
        size, window = self.config.batch_size, self.config.batch_window_s
        # One read may bring several batches (fewer round trips); the rest waits here.
        ahead = min(_READ_AHEAD, size * max(1, broker.pipeline))
        while not self._carry:
            self._carry = await broker.receive(ahead, _FIRST_WAIT_S)
        batch, self._carry = self._carry[:size], self._carry[size:]
        deadline = asyncio.get_running_loop().time() + window
        while len(batch) < size and (left := deadline - asyncio.get_running_loop().time()) > 0:
            batch += await broker.receive(size - len(batch), left)
        return batch

    async def _deliver(self, broker: Broker, batch: list[Message]) -> None:
        """Enqueue the batch until that works, then acknowledge it."""
        kind, function_name = self.config.kind, self.names.function_name
        tid = task_id(kind, self.names.trigger_id, (m.key for m in batch))
        event = orjson.dumps([m.record for m in batch])
        attempt = 0
        while True:
            try:
                await self._enqueue(function_name, event, tid, self.qualifier)
                self.on_fire(kind)
                break
            except Exception as exc:
                if attempt == 0:
                    self._failing += 1
                delay = backoff_s(attempt, _jitter())
                attempt += 1
                if self.state is ConsumerState.CONNECTED or self._stuck:  # (not a lost link)
                    self._set(ConsumerState.ERROR, f"could not enqueue an invocation of "
                              f"function {function_name}: {reason(exc)}", stuck=True)
                now = asyncio.get_running_loop().time()
                if now >= self._quiet_until:  # one line for many batches failing alike
                    self._quiet_until = now + _LOG_EVERY_S
                    log.warning("Trigger %s could not enqueue async task %s (%s); its %d "
                                "messages stay unacknowledged, trying again in %.1f s "
                                "(%d batches wait).", self._label, tid, reason(exc),
                                len(batch), delay, self._failing)
                await broker.keep(batch)
                _honour_cancel()
                await asyncio.sleep(delay)
        if attempt:
            self._failing -= 1
            if not self._failing and self._stuck:
                self._set(ConsumerState.CONNECTED)
                log.info("Trigger %s enqueues again.", self._label)
        await broker.ack(batch)

    async def _finish(self, broker: Broker) -> None:
        """Let batches being enqueued finish (briefly), then close the connection,
        giving back what was read and not acknowledged."""
        try:
            if self._deliveries:
                await asyncio.wait(set(self._deliveries), timeout=_GRACE_S)
        finally:
            for task in self._deliveries:
                task.cancel()
            if self._deliveries:
                await asyncio.gather(*self._deliveries, return_exceptions=True)
            unacked = [m for t, batch in self._deliveries.items() if t.cancelled()
                       or t.exception() is not None for m in batch] + self._carry
            self._deliveries, self._carry, self._failing = {}, [], 0
            try:
                async with asyncio.timeout(_GRACE_S):
                    await broker.close(unacked)
            except Exception as exc:
                log.debug("Trigger %s could not close its connection to %s cleanly: %s.",
                          self._label, broker.url, reason(exc))

    def _set(self, state: ConsumerState, error: str | None = None, stuck: bool = False) -> None:
        """The one place ``state`` changes. ``stuck``: the error is the enqueue's, so it
        clears once enqueues work again (a connection error clears on reconnecting)."""
        if state not in _MOVES[self.state]:
            raise RuntimeError(f"trigger {self._label}: no move from {self.state} to {state}")
        self.state, self.error, self._stuck = state, error, stuck
