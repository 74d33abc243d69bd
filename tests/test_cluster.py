"""Three nodes on loopback sharing one PostgreSQL database and one S3 bucket are one
platform: a function deployed, updated or deleted on one node is what the others run
next, within a second; so are its configs and triggers; async tasks run once."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests import databases, s3
from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, b64, deploy, invoke, make_zip, unique, wait_for


def _code(text: str) -> dict[str, str | bytes]:
    return {"index.py": f"def handler(event, context):\n    return {text!r}\n"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[httpx.Client]]:
    moto = s3.start()
    bucket = f"funclet-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)
    database = databases.create(f"funclet_test_cluster_{os.getpid()}")
    servers: list[Server] = []
    clients: list[httpx.Client] = []
    try:
        for i in range(1, 4):
            folder = tmp_path_factory.mktemp(f"node{i}")
            servers.append(start_server(folder, FUNCLET_DATABASE_URL=database,
                                        FUNCLET_NODE_ID=f"node{i}", **moto.env(bucket)))
            clients.append(httpx.Client(base_url=servers[-1].url, timeout=60))
        yield clients
    finally:
        for client in clients:
            client.close()
        for server in servers:
            stop_server(server)
        moto.stop()


def _within_a_second(check: object) -> float:
    """Seconds until ``check()`` is true; fails past 1 s."""
    started = time.monotonic()
    wait_for(check, timeout=1.0, interval=0.02)
    return time.monotonic() - started


def test_the_nodes_see_each_other(cluster: list[httpx.Client]) -> None:
    listed = cluster[0].get(f"{API}/nodes").json()["nodes"]
    assert [(n["nodeId"], n["state"]) for n in listed] == [
        ("node1", "alive"), ("node2", "alive"), ("node3", "alive")]


def test_deploy_on_one_invoke_on_another_update_on_a_third(
        cluster: list[httpx.Client]) -> None:
    one, two, three = cluster
    name = deploy(one, _code("v1"))
    answer = invoke(two, name)  # node 2 never saw the package: from the bucket
    assert answer.text == "v1" and answer.headers["x-funclet-node-id"] == "node2"
    assert invoke(one, name).text == "v1"  # warm on node 1 now
    r = three.put(f"{API}/functions/{name}", json={"code": {"zipFile": b64(make_zip(
        _code("v2")))}})
    assert r.status_code == 200, r.text
    _within_a_second(lambda: invoke(one, name).text == "v2")
    _within_a_second(lambda: invoke(two, name).text == "v2")


def test_a_function_deleted_on_one_node_is_gone_on_the_others(
        cluster: list[httpx.Client]) -> None:
    one, two, _ = cluster
    name = deploy(one, _code("here"))
    assert invoke(two, name).text == "here"
    assert two.delete(f"{API}/functions/{name}").status_code == 204
    _within_a_second(lambda: invoke(one, name).status_code == 404)


def test_configs_and_triggers_made_on_one_node_hold_on_the_others(
        cluster: list[httpx.Client]) -> None:
    one, two, three = cluster
    name = deploy(one, _code("triggered"))
    r = one.put(f"{API}/functions/{name}/concurrency", json={"reservedConcurrency": 3})
    assert r.status_code == 200, r.text
    r = one.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["GET"]}})
    assert r.status_code == 200, r.text
    _within_a_second(lambda: two.get(f"{API}/functions/{name}/triggers/web").status_code
                     == 200)
    _within_a_second(lambda: three.get(f"/http/{name}/").text == "triggered")
    assert two.get(f"{API}/functions/{name}/concurrency").json()[
        "reservedConcurrency"] == 3
    assert three.delete(f"{API}/functions/{name}/triggers/web").status_code == 204
    _within_a_second(lambda: one.get(f"/http/{name}/").status_code == 404)


def test_an_async_task_accepted_on_one_node_runs_once(cluster: list[httpx.Client]) -> None:
    one, two, _ = cluster
    name = deploy(one, {"index.py": """
        def handler(event, context):
            return event.decode()
    """})
    task_id = unique("task")
    for client in (one, two, one):  # the same task id through two nodes: one task
        r = client.post(f"{API}/functions/{name}/invocations", content=b"once",
                        headers={"x-fc-invocation-type": "Async",
                                 "x-fc-async-task-id": task_id})
        assert r.status_code == 202, r.text
    task = wait_for(lambda: (t := two.get(f"{API}/functions/{name}/async-tasks/{task_id}")
                             .json())["status"] == "Succeeded" and t, timeout=20)
    assert task["returnPayload"] == "once"
    records = one.get(f"{API}/functions/{name}/invocations").json()["invocations"]
    assert len(records) == 1
