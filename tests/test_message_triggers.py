"""Message-queue triggers against the real brokers: Redis streams, RabbitMQ, NATS
JetStream and MQTT. Batches become async invocations of CloudEvents lists; messages are
acknowledged only once accepted, survive restarts, and brokers that come late."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from funclet.triggers.brokers import Names
from funclet.triggers.brokers.events import body_data, public_url, reason, task_id
from funclet.triggers.config import BrokerConfig
from funclet.triggers.consumers import Consumers, backoff_s
from tests import databases
from tests.brokers import need_broker
from tests.conftest import free_port, start_server, stop_server
from tests.helpers import API, deploy, unique, wait_for

CODE = {"index.py": """
    import json

    def handler(event, context):
        return str(len(json.loads(event)))
"""}
URLS = {"redis": "redis://127.0.0.1:6379/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
        "nats": "nats://127.0.0.1:4222", "mqtt": "mqtt://127.0.0.1:1883"}
FIELDS = {"redis": "stream", "rabbitmq": "queue", "nats": "subject", "mqtt": "topic"}
KINDS = list(URLS)


# --- the logic, as tables -------------------------------------------------------------

@pytest.mark.parametrize(("attempt", "seconds"), [
    (0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (50, 30.0)])
def test_reconnects_back_off_from_half_a_second_to_thirty(attempt: int, seconds: float) -> None:
    assert backoff_s(attempt, 1.0) == seconds
    assert backoff_s(attempt, 0.8) == pytest.approx(seconds * 0.8)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"order": 7}', {"datacontenttype": "application/json", "data": {"order": 7}}),
    (b"[1, 2]", {"datacontenttype": "application/json", "data": [1, 2]}),
    ("héllo".encode(), {"datacontenttype": "text/plain", "data": "héllo"}),
    (b"", {"datacontenttype": "text/plain", "data": ""}),
    (b"\xff\x00\x01", {"datacontenttype": "application/octet-stream", "data_base64": "/wAB"}),
])
def test_bodies_follow_the_cloudevents_json_format(body: bytes, expected: dict[str, Any]) -> None:
    assert body_data(body) == expected


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:secret@db.example:6380/2", "redis://db.example:6380/2"),
    ("rediss://user:pw@db.example", "rediss://db.example:6379"),
    ("amqp://guest:guest@127.0.0.1/%2F?heartbeat=5", "amqp://127.0.0.1:5672/%2F"),
    ("tls://u:p@nats.example", "tls://nats.example:4222"),
    ("mqtts://[::1]", "mqtts://[::1]:8883"),
])
def test_broker_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_a_batch_task_id_is_stable_only_when_every_message_has_a_stable_key() -> None:
    trigger = str(uuid.uuid4())
    stable = task_id("redis", trigger, ["s/1-0", "s/2-0"])
    assert stable == task_id("redis", trigger, ["s/1-0", "s/2-0"]) != task_id(
        "redis", trigger, ["s/1-0"])
    assert stable != task_id("redis", str(uuid.uuid4()), ["s/1-0", "s/2-0"])
    assert task_id("mqtt", trigger, [None]) != task_id("mqtt", trigger, [None])
    for tid in (stable, task_id("rabbitmq", trigger, ["x", None])):
        assert len(tid) <= 128 and all(c.isalnum() or c in "-_" for c in tid)


@pytest.mark.parametrize(("error", "said"), [
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 6399)"),
     "Connection refused"),
    (Exception("[Errno 111] Connection refused"), "Connection refused"),
    (TimeoutError(), "timed out"),
    (Exception("NOAUTH Authentication required."), "NOAUTH Authentication required."),
    (KeyError(), "KeyError"),
])
def test_errors_are_said_the_way_the_os_or_broker_says_them(
    error: BaseException, said: str,
) -> None:
    assert reason(error) == said


# --- helpers for the brokers ----------------------------------------------------------

def _publish(kind: str, source: str, bodies: list[bytes]) -> None:
    asyncio.run(asyncio.wait_for(_publish_async(kind, source, bodies), 30))


async def _publish_async(kind: str, source: str, bodies: list[bytes]) -> None:
    if kind == "redis":
        import redis.asyncio as redis

        r = redis.Redis(port=6379)
        for body in bodies:
            await r.xadd(source, {"body": body})
        await r.aclose()
    elif kind == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(URLS["rabbitmq"])
        channel = await connection.channel(publisher_confirms=True)
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=source)
        await connection.close()
    elif kind == "nats":
        import nats

        nc = await nats.connect(URLS["nats"])
        for body in bodies:
            await nc.jetstream().publish(source, body)
        await nc.close()
    else:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            for body in bodies:
                await client.publish(source, body, qos=1)


async def _clean_up_async(kind: str, source: str, names: Names) -> None:
    """Remove what a test left at the broker: stream, queue, JetStream stream, session."""
    if kind == "redis":
        import redis.asyncio as redis

        r = redis.Redis(port=6379)
        await r.delete(source)
        await r.aclose()
    elif kind == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(URLS["rabbitmq"])
        await (await connection.channel()).queue_delete(source)
        await connection.close()
    elif kind == "nats":
        import nats

        nc = await nats.connect(URLS["nats"])
        js = nc.jetstream()
        await js.delete_stream(await js.find_stream_name_by_subject(source))
        await nc.close()
    else:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", 1883, clean_session=True,
                                  identifier=names.mqtt_client_id(source)):
            pass  # a clean session ends the persistent one


def _source(kind: str) -> str:
    name = unique("mq")
    return {"nats": f"funclet.tests.{name}", "mqtt": f"funclet/tests/{name}"}.get(kind, name)


def _bodies(start: int, count: int) -> list[bytes]:
    """JSON, text and binary, in turn."""
    out = []
    for i in range(start, start + count):
        out.append([json.dumps({"n": i}).encode(), f"text {i}".encode(),
                    b"\xff\xfe" + i.to_bytes(2, "big")][i % 3])
    return out


def _body_of(kind: str, rec: dict[str, Any]) -> bytes:
    """The bytes a record was made from, checking its content type on the way."""
    if kind == "redis":
        assert rec["datacontenttype"] == "application/json"
        value = rec["data"]["body"]
        return base64.b64decode(value) if rec.get("base64fields") == "body" else value.encode()
    if "data_base64" in rec:
        assert rec["datacontenttype"] == "application/octet-stream"
        return base64.b64decode(rec["data_base64"])
    if rec["datacontenttype"] == "application/json":
        return json.dumps(rec["data"]).encode()
    assert rec["datacontenttype"] == "text/plain"
    return str(rec["data"]).encode()


def _trigger(client: httpx.Client, name: str, kind: str, source: str,
             url: str | None = None, **config: Any) -> str:
    trigger = unique("t")
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": trigger, "triggerType": kind,
        "triggerConfig": {"url": url or URLS[kind], FIELDS[kind]: source, **config}})
    assert r.status_code == 200, r.text
    return trigger


def _get(client: httpx.Client, name: str, trigger: str) -> dict[str, Any]:
    r = client.get(f"{API}/functions/{name}/triggers/{trigger}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _connected(client: httpx.Client, name: str, trigger: str) -> None:
    wait_for(lambda: _get(client, name, trigger)["status"] == "Connected", timeout=20)


def _batches(client: httpx.Client, name: str) -> list[list[dict[str, Any]]]:
    """The events of the function's succeeded async tasks."""
    tasks = client.get(f"{API}/functions/{name}/async-tasks", params={
        "limit": 100, "includePayload": "true", "status": "Succeeded"}).json()["tasks"]
    return [json.loads(t["taskPayload"]) for t in tasks]


def _received(client: httpx.Client, name: str, count: int) -> list[list[dict[str, Any]]]:
    wait_for(lambda: sum(map(len, _batches(client, name))) >= count, timeout=30)
    time.sleep(0.3)  # anything more would be a duplicate: give it a moment to show
    return _batches(client, name)


def _names(client: httpx.Client, name: str, trigger: str) -> Names:
    """The trigger's broker-side names as the server uses them: on a shared database
    (the PostgreSQL pass) its node's own MQTT session."""
    node = client.get("/healthz").json()["nodeId"] if databases.BACKEND == "postgresql" \
        else ""
    return Names(name, trigger, "", node)


@pytest.fixture
def cleanup() -> Iterator[list[tuple[str, str, Names]]]:
    left: list[tuple[str, str, Names]] = []
    yield left
    for kind, source, names in left:
        try:
            asyncio.run(asyncio.wait_for(_clean_up_async(kind, source, names), 30))
        except Exception as exc:  # a cleanup failure must not hide the test's own
            print(f"could not clean up {kind} {source}: {exc}")


# --- end to end -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_each_batch_becomes_one_invocation_of_a_cloudevents_list(
    client: httpx.Client, kind: str, cleanup: list[tuple[str, str, Names]],
) -> None:
    need_broker(kind)
    name, source = deploy(client, CODE), _source(kind)
    trigger = _trigger(client, name, kind, source, batchSize=10, batchWindowInSeconds=1)
    cleanup.append((kind, source, _names(client, name, trigger)))
    _connected(client, name, trigger)
    got = _get(client, name, trigger)
    assert "lastError" not in got and json.loads(got["triggerConfig"])["batchSize"] == 10
    sent = _bodies(0, 25)
    _publish(kind, source, sent)

    batches = _received(client, name, 25)
    assert sorted(map(len, batches)) == [5, 10, 10]
    records = [rec for batch in batches for rec in batch]
    assert sorted(_body_of(kind, rec) for rec in records) == sorted(sent)  # each once
    ids = {rec["id"] for rec in records}
    assert len(ids) == 25
    for rec in records:
        assert rec["specversion"] == "1.0" and rec["type"] == f"funclet.{kind}.message"
        assert rec["source"] == f"{public_url(URLS[kind])}#{source}"
        assert "guest" not in rec["source"] and rec["subject"] == source
        assert rec["time"].endswith("Z") and abs(
            time.time() - _epoch(rec["time"])) < 120
    if kind == "redis":
        assert all("-" in i for i in ids)  # the stream entry ids
    if kind == "nats":
        assert sorted(map(int, ids)) == list(range(1, 26))  # the stream sequences
    assert client.delete(f"{API}/functions/{name}/triggers/{trigger}").status_code == 204


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_message_is_acknowledged_only_after_its_invocation_is_accepted(
    kind: str,
) -> None:
    """The accept fails (the task store is down, say): the messages stay with the
    broker, through a stop; the next consumer gets them again, and where the broker
    has stable ids (Redis, JetStream) their batch keeps its task id."""
    need_broker(kind)
    source, key = _source(kind), ("fn", unique("acks"))
    names = Names(*key, str(uuid.uuid4()))
    config = BrokerConfig(kind, URLS[kind], source, 10, 1.0)
    calls: list[tuple[str, list[dict[str, Any]], str]] = []
    failing = True

    async def enqueue(function_name: str, event: bytes, tid: str, qualifier: str) -> None:
        calls.append((function_name, json.loads(event), tid))
        if failing:
            raise RuntimeError("database is locked")

    async def until(predicate: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not met"
            await asyncio.sleep(0.05)

    async def pending() -> int:
        import redis.asyncio as redis

        async with redis.Redis(port=6379) as r:
            return int((await r.xpending(source, names.group))["pending"])

    def start() -> Consumers:
        consumers = Consumers(enqueue)
        consumers.put(key, names.trigger_id, config)
        return consumers

    consumers = start()
    try:
        await until(lambda: consumers.status(key)[0] == "Connected")
        await asyncio.wait_for(_publish_async(kind, source, _bodies(0, 3)), 30)
        await until(lambda: len(calls) >= 2)  # tried, and tried again
        assert consumers.status(key) == (
            "Error", "could not enqueue an invocation of function fn: database is locked")
        assert kind != "redis" or await pending() == 3
        await asyncio.wait_for(consumers.stop(), 30)  # stopped while the accept fails
        assert kind != "redis" or await pending() == 3
        first_tid = calls[0][2]

        failing = False
        calls.clear()
        consumers = start()
        await until(lambda: sum(len(event) for _, event, _ in calls) >= 3)
        assert sorted(_body_of(kind, r) for _, e, _ in calls for r in e) == sorted(_bodies(0, 3))
        await until(lambda: consumers.status(key) == ("Connected", None))
        if kind in ("redis", "nats"):
            assert [tid for *_, tid in calls] == [first_tid]  # the same batch: runs once
        await asyncio.wait_for(consumers.stop(), 30)  # acknowledged: the next gets none
        calls.clear()
        consumers = start()
        await until(lambda: consumers.status(key)[0] == "Connected")
        await asyncio.sleep(1.5)
        assert calls == []
    finally:
        await asyncio.wait_for(consumers.stop(), 30)
        await asyncio.wait_for(_clean_up_async(kind, source, names), 30)


@pytest.mark.parametrize("kind", KINDS)
def test_messages_sent_while_funclet_is_stopped_arrive_after_it_starts(
    tmp_path: Path, kind: str, cleanup: list[tuple[str, str, Names]],
) -> None:
    need_broker(kind)
    source = _source(kind)
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, CODE)
            trigger = _trigger(client, name, kind, source, batchSize=5)
            cleanup.append((kind, source, _names(client, name, trigger)))
            _connected(client, name, trigger)
            _publish(kind, source, _bodies(0, 3))
            _received(client, name, 3)
        stop_server(server)
        _publish(kind, source, _bodies(3, 7))  # nobody consumes: the broker keeps them
        server = start_server(tmp_path, server.port)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            records = [r for b in _received(client, name, 10) for r in b]
            client.delete(f"{API}/functions/{name}/triggers/{trigger}")
    finally:
        stop_server(server)
    assert sorted(_body_of(kind, r) for r in records) == sorted(_bodies(0, 10))


def test_a_broker_that_is_down_is_reported_then_reconnected(
    client: httpx.Client,
) -> None:
    need_broker("redis")
    import redis

    port = free_port()
    name, stream = deploy(client, CODE), unique("late")
    url = f"redis://:pw@127.0.0.1:{port}/0"
    trigger = _trigger(client, name, "redis", stream, url=url)
    down = wait_for(lambda: (t := _get(client, name, trigger)).get("lastError") and t)
    assert down["status"] in ("Error", "Connecting")
    assert down["lastError"] == f"cannot connect to redis://127.0.0.1:{port}/0: " \
                               "Connection refused"
    broker = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        _connected(client, name, trigger)
        assert "lastError" not in _get(client, name, trigger)
        redis.Redis(port=port).xadd(stream, {"body": "made it"})
        (batch,) = _received(client, name, 1)
        assert batch[0]["data"] == {"body": "made it"}
        assert batch[0]["source"] == f"redis://127.0.0.1:{port}/0#{stream}"
    finally:
        broker.terminate()
        broker.wait(10)
    lost = wait_for(lambda: (t := _get(client, name, trigger))["status"] == "Error" and t)
    assert f"redis://127.0.0.1:{port}/0" in lost["lastError"]
    client.delete(f"{API}/functions/{name}/triggers/{trigger}")


def test_updating_a_trigger_moves_it_and_deleting_it_stops_it(
    client: httpx.Client, cleanup: list[tuple[str, str, Names]],
) -> None:
    need_broker("redis")
    name, first, second = deploy(client, CODE), unique("first"), unique("second")
    trigger = _trigger(client, name, "redis", first)
    for stream in (first, second):
        cleanup.append(("redis", stream, _names(client, name, trigger)))
    _connected(client, name, trigger)
    r = client.put(f"{API}/functions/{name}/triggers/{trigger}", json={"triggerConfig": {
        "url": URLS["redis"], "stream": second, "batchSize": 3, "batchWindowInSeconds": 2}})
    assert r.status_code == 200, r.text
    _connected(client, name, trigger)
    _publish("redis", first, [b"old stream"])
    _publish("redis", second, [b"a", b"b", b"c"])
    (batch,) = _received(client, name, 3)
    assert [rec["data"]["body"] for rec in batch] == ["a", "b", "c"]
    assert client.delete(f"{API}/functions/{name}/triggers/{trigger}").status_code == 204
    _publish("redis", second, [b"after"])
    time.sleep(1)
    assert sum(map(len, _batches(client, name))) == 3


@pytest.mark.parametrize(("kind", "config", "says"), [
    ("redis", {"url": "amqp://127.0.0.1", "stream": "s"}, "triggerConfig.url"),
    ("rabbitmq", {"url": "redis://127.0.0.1", "queue": "q"}, "triggerConfig.url"),
    ("nats", {"url": "nats://", "subject": "s"}, "triggerConfig.url"),
    ("mqtt", {"url": "mqtt://127.0.0.1", "topic": " "}, "triggerConfig.topic"),
    ("redis", {"url": "redis://127.0.0.1", "stream": "s", "batchSize": 0},
     "triggerConfig.batchSize"),
])
def test_invalid_broker_configs_are_refused(
    client: httpx.Client, kind: str, config: dict[str, Any], says: str,
) -> None:
    name = deploy(client, CODE)
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "t", "triggerType": kind, "triggerConfig": config})
    assert r.status_code == 400 and says in r.json()["Message"], r.text
