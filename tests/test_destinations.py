"""Destinations: every async outcome delivered to a function, a webhook and real brokers,
through the outbox, retried while a target is down."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

import httpx

from tests.brokers import need_broker
from tests.conftest import Server, free_port
from tests.helpers import API, deploy, unique, wait_for

CODE = {"index.py": """
    def handler(event, context):
        if event == b"fail":
            raise KeyError("no such thing")
        return {"echo": event.decode()}
"""}


def setup(client: httpx.Client, on_success: str | None = None,
          on_failure: str | None = None) -> str:
    name = deploy(client, CODE)
    destinations = {k: {"destination": v} for k, v in
                    (("onSuccess", on_success), ("onFailure", on_failure)) if v}
    r = client.put(f"{API}/functions/{name}/async-invoke-config", json={
        "maxAsyncRetryAttempts": 0, "destinationConfig": destinations})
    assert r.status_code == 200, r.text
    assert r.json()["destinationConfig"] == destinations
    return name


def run(client: httpx.Client, name: str, event: bytes) -> dict[str, Any]:
    r = client.post(f"{API}/functions/{name}/invocations", content=event,
                    headers={"x-fc-invocation-type": "Async"})
    task_id = r.headers["x-fc-async-task-id"]
    return wait_for(lambda: (t := client.get(
        f"{API}/functions/{name}/async-tasks/{task_id}").json())["destinationStatus"]
        == "Succeeded" and t, timeout=30)


def check_record(record: dict[str, Any], name: str, task: dict[str, Any], condition: str,
                 payload: Any, response: Any) -> None:
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    ctx = record["requestContext"]
    assert ctx["requestId"] == task["requestId"]
    assert ctx["functionArn"].endswith(f"functions/{name}")
    assert ctx["condition"] == condition and ctx["approximateInvokeCount"] == 1
    assert record["requestPayload"] == payload
    assert record["responseContext"]["statusCode"] == 200
    assert record["responsePayload"] == response


def test_success_and_failure_go_to_a_webhook(client: httpx.Client) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hook.server_port}/results"
        name = setup(client, on_success=url, on_failure=url)
        ok = run(client, name, b'{"n": 1}')
        bad = run(client, name, b"fail")
        assert len(received) == 2
        check_record(received[0], name, ok, "Success", {"n": 1}, {"echo": '{"n": 1}'})
        check_record(received[1], name, bad, "RetriesExhausted", "fail",
                     received[1]["responsePayload"])
        assert received[1]["responseContext"]["functionError"] == "Unhandled"
        assert received[1]["responsePayload"]["errorType"] == "KeyError"
    finally:
        hook.shutdown()


def test_a_webhook_that_does_not_answer_2xx_is_tried_again_and_redirects_are_not_followed(
    client: httpx.Client,
) -> None:
    answers, paths, statuses = [500, 302, 204], [], []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            paths.append(self.path)
            self.send_response(answers.pop(0))
            self.send_header("location", "/elsewhere")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hook.server_port}/results"
        name = setup(client, on_success=url)
        r = client.post(f"{API}/functions/{name}/invocations", content=b"x",
                        headers={"x-fc-invocation-type": "Async"})
        task = f"{API}/functions/{name}/async-tasks/{r.headers['x-fc-async-task-id']}"

        def status() -> str | None:
            current = client.get(task).json()["destinationStatus"]
            if not statuses or statuses[-1] != current:
                statuses.append(current)
            return current == "Succeeded" and current

        wait_for(status, timeout=20, interval=0.05)
        assert paths == ["/results"] * 3
        assert f"Retrying (attempt 1): WebhookError: {url} answered 500 Internal Server Error" \
            in statuses
        assert f"Retrying (attempt 2): WebhookError: {url} answered 302 Found" in statuses
    finally:
        hook.shutdown()


def test_a_slow_webhook_holds_back_only_its_own_records(client: httpx.Client) -> None:
    release = threading.Event()
    fast: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path == "/slow":
                release.wait(20)
            else:
                fast.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{hook.server_port}"
        slow_fn = setup(client, on_success=f"{base}/slow")
        fast_fn = setup(client, on_success=f"{base}/fast")
        r = client.post(f"{API}/functions/{slow_fn}/invocations", content=b"slow",
                        headers={"x-fc-invocation-type": "Async"})
        slow_task = r.headers["x-fc-async-task-id"]
        wait_for(lambda: client.get(f"{API}/functions/{slow_fn}/async-tasks/{slow_task}")
                 .json()["status"] == "Succeeded")
        r = client.post(f"{API}/functions/{fast_fn}/invocations", content=b"fast",
                        headers={"x-fc-invocation-type": "Async"})
        wait_for(lambda: fast, timeout=8)  # (the slow one's 10 s timeout has not passed)
        assert fast[0]["requestContext"]["requestId"] == r.headers["x-fc-request-id"]
        held = client.get(f"{API}/functions/{slow_fn}/async-tasks/{slow_task}").json()
        assert held["destinationStatus"] not in ("Succeeded", None), held
        assert not held["destinationStatus"].startswith("Retrying"), held
        release.set()
        wait_for(lambda: client.get(f"{API}/functions/{slow_fn}/async-tasks/{slow_task}")
                 .json()["destinationStatus"] == "Succeeded")
    finally:
        release.set()
        hook.shutdown()


def test_a_function_destination_is_invoked_async_with_the_record(
    client: httpx.Client, server: Server,
) -> None:
    sink = deploy(client, {"index.py": "def handler(e, c):\n    return e\n"})
    name = setup(client, on_success=f"acs:fc:local:1000000000000000:functions/{sink}")
    task = run(client, name, b"to a function")

    def delivered() -> list[dict[str, Any]]:
        tasks = client.get(f"{API}/functions/{sink}/async-tasks",
                           params={"includePayload": "true"}).json()["tasks"]
        return [t for t in tasks if t["status"] == "Succeeded"]

    (received,) = wait_for(delivered)
    check_record(json.loads(received["taskPayload"]), name, task, "Success",
                 "to a function", {"echo": "to a function"})


def test_a_redis_stream(client: httpx.Client) -> None:
    need_broker("redis")
    import redis

    stream = unique("results")
    name = setup(client, on_failure=f"redis://127.0.0.1:6379/0?stream={stream}")
    task = run(client, name, b"fail")
    r = redis.Redis(port=6379)
    try:
        entries = r.xrange(stream)
        assert len(entries) == 1
        record = json.loads(entries[0][1][b"record"])
        check_record(record, name, task, "RetriesExhausted", "fail", record["responsePayload"])
    finally:
        r.delete(stream)


def test_rabbitmq_with_publisher_confirms(client: httpx.Client) -> None:
    need_broker("rabbitmq")
    import aio_pika

    key = unique("results")

    async def listen() -> tuple[Any, Any, Any]:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("amq.topic", routing_key=key)
        return connection, channel, queue

    async def receive(queue: Any) -> bytes:
        async with queue.iterator(timeout=20) as messages:
            async for message in messages:
                async with message.process():
                    return bytes(message.body)
        raise AssertionError("nothing received")

    loop = asyncio.new_event_loop()
    try:
        connection, _, queue = loop.run_until_complete(listen())
        name = setup(client, on_success="amqp://guest:guest@127.0.0.1:5672/"
                                        f"?exchange=amq.topic&routingKey={key}")
        task = run(client, name, b"rabbit")
        record = json.loads(loop.run_until_complete(receive(queue)))
        check_record(record, name, task, "Success", "rabbit", {"echo": "rabbit"})
        loop.run_until_complete(connection.close())
    finally:
        loop.close()


def test_nats_jetstream_with_acknowledged_publish(client: httpx.Client) -> None:
    need_broker("nats")
    import nats

    subject = f"funclet.{unique('results')}"
    stream = unique("RESULTS").replace("-", "_")

    async def make_stream() -> None:
        nc = await nats.connect("nats://127.0.0.1:4222")
        await nc.jetstream().add_stream(name=stream, subjects=[subject])
        await nc.close()

    async def fetch() -> bytes:
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            msg = await nc.jetstream().get_last_msg(stream, subject)
            return bytes(msg.data)
        finally:
            await nc.jetstream().delete_stream(stream)
            await nc.close()

    asyncio.run(make_stream())
    name = setup(client, on_success=f"nats://127.0.0.1:4222?subject={subject}")
    task = run(client, name, b"nats")
    check_record(json.loads(asyncio.run(fetch())), name, task, "Success", "nats",
                 {"echo": "nats"})


def test_mqtt_at_qos_1(client: httpx.Client) -> None:
    need_broker("mqtt")
    import aiomqtt

    topic = f"funclet/{unique('results')}"
    received: list[bytes] = []

    async def subscribe_then_run() -> dict[str, Any]:
        async with aiomqtt.Client("127.0.0.1", 1883) as sub:
            await sub.subscribe(topic, qos=1)
            name = setup(client, on_success=f"mqtt://127.0.0.1:1883?topic={topic}&qos=1")
            task = await asyncio.to_thread(run, client, name, b"mqtt")
            async with asyncio.timeout(20):
                async for message in sub.messages:
                    received.append(bytes(message.payload))  # type: ignore[arg-type]
                    break
            return {"task": task, "name": name}

    out = asyncio.run(subscribe_then_run())
    check_record(json.loads(received[0]), out["name"], out["task"], "Success", "mqtt",
                 {"echo": "mqtt"})


def test_a_broker_down_for_a_while_loses_nothing(client: httpx.Client) -> None:
    need_broker("redis")
    import redis

    port = free_port()
    stream = unique("later")
    name = setup(client, on_success=f"redis://127.0.0.1:{port}/0?stream={stream}")
    r = client.post(f"{API}/functions/{name}/invocations", content=b"patience",
                    headers={"x-fc-invocation-type": "Async"})
    task_id = r.headers["x-fc-async-task-id"]
    wait_for(lambda: str(client.get(f"{API}/functions/{name}/async-tasks/{task_id}").json()
                         ["destinationStatus"]).startswith("Retrying (attempt 2)"), timeout=20)
    broker = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port))
        wait_for(lambda: client.get(f"{API}/functions/{name}/async-tasks/{task_id}").json()
                 ["destinationStatus"] == "Succeeded", timeout=30)
        entries = redis.Redis(port=port).xrange(stream)
        assert len(entries) == 1
        assert json.loads(entries[0][1][b"record"])["requestPayload"] == "patience"
    finally:
        broker.terminate()
        broker.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
