"""Three nodes on loopback sharing one PostgreSQL database and one S3 bucket are one
platform: a function deployed, updated or deleted on one node is what the others run
next, within a second; so are its configs and triggers; async tasks run once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from funclet.nodes import DEAD_AFTER_S, HEARTBEAT_S
from funclet.triggers.brokers import Names
from tests import databases, s3
from tests import test_message_triggers as mq
from tests.brokers import need_broker
from tests.conftest import ROOT, Server, free_port, start_server, stop_server
from tests.helpers import API, b64, deploy, invoke, make_zip, unique, wait_for


def _code(text: str) -> dict[str, str | bytes]:
    return {"index.py": f"def handler(event, context):\n    return {text!r}\n"}


LIMIT = 6  # the account's instances, across the three nodes


@dataclass
class Cluster:
    servers: list[Server]
    clients: list[httpx.Client]
    env: dict[str, str]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    moto = s3.start()
    bucket = f"funclet-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)
    database = databases.create(f"funclet_test_cluster_{os.getpid()}")
    env = {"FUNCLET_DATABASE_URL": database, "FUNCLET_MAX_INSTANCES": str(LIMIT),
           **moto.env(bucket)}
    servers: list[Server] = []
    clients: list[httpx.Client] = []
    try:
        for i in range(1, 4):
            folder = tmp_path_factory.mktemp(f"node{i}")
            servers.append(start_server(folder, FUNCLET_NODE_ID=f"node{i}", **env))
            clients.append(httpx.Client(base_url=servers[-1].url, timeout=60))
        yield Cluster(servers, clients, env)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            stop_server(server)
        moto.stop()


@pytest.fixture
def cluster(nodes: Cluster) -> list[httpx.Client]:
    return nodes.clients


def _within_a_second(check: object) -> float:
    """Seconds until ``check()`` is true. A change reaches the other nodes in tens of
    milliseconds (``bench --only cluster`` measures it); this fails only past 5 s, so
    that a loaded machine does not fail it."""
    started = time.monotonic()
    wait_for(check, timeout=5.0, interval=0.02)
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


def test_versions_and_aliases_made_on_one_node_hold_on_the_others(
        cluster: list[httpx.Client]) -> None:
    one, two, three = cluster
    name = deploy(one, _code("v1"))
    versions = f"{API}/functions/{name}/versions"
    assert one.post(versions, json={}).json()["versionId"] == "1"
    two.put(f"{API}/functions/{name}", json={"code": {"zipFile": b64(make_zip(_code("v2")))}})
    assert two.post(versions, json={}).json()["versionId"] == "2"  # one counter
    aliases = f"{API}/functions/{name}/aliases"
    r = three.post(aliases, json={"aliasName": "prod", "versionId": "1"})
    assert r.status_code == 200, r.text

    def runs(client: httpx.Client, qualifier: str) -> str:
        return client.post(f"{API}/functions/{name}/invocations",
                           params={"qualifier": qualifier}).text

    _within_a_second(lambda: runs(one, "prod") == "v1")
    assert three.put(f"{aliases}/prod", json={"versionId": "2"}).status_code == 200
    _within_a_second(lambda: runs(one, "prod") == "v2" and runs(two, "prod") == "v2")
    assert runs(one, "1") == "v1"  # warm on node 1
    assert two.delete(f"{versions}/1").status_code == 204
    _within_a_second(lambda: one.post(f"{API}/functions/{name}/invocations",
                                      params={"qualifier": "1"}).status_code == 404)
    assert wait_for(lambda: not [  # node 1's instance of version 1 stops
        i for i in one.get(f"{API}/functions/{name}/instances", params={
            "withAllActive": "true"}).json()["instances"] if i["versionId"] == "1"], timeout=5)


def test_layers_and_custom_domains_made_on_one_node_hold_on_the_others(
        cluster: list[httpx.Client]) -> None:
    """A layer published on node 1 is mounted by node 3's instances (its package from
    the bucket); a custom domain made on node 2 is served by node 1 after its next
    refresh of the domains (every second)."""
    one, two, three = cluster
    zipped = make_zip({"python/shared.py": "WORD = 'from a layer'\n"})
    r = one.post(f"{API}/layers/{unique('shared')}/versions",
                 json={"code": {"zipFile": b64(zipped)}})
    assert r.status_code == 200, r.text
    name = deploy(two, {"index.py": "import shared\n\ndef handler(e, c):\n"
                                    "    return shared.WORD\n"},
                  layers=[r.json()["layerVersionArn"]])
    assert invoke(three, name).text == "from a layer"
    host = f"{unique('app')}.example.test"
    assert two.post(f"{API}/custom-domains", json={
        "domainName": host, "routeConfig": {"routes": [{"path": "/*", "functionName": name}]},
    }).status_code == 200
    wait_for(lambda: one.get("/anything", headers={"host": host}).text == "from a layer",
             timeout=3)


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
    assert two.delete(f"{API}/functions/{name}").status_code == 204  # and its 3 slots


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


def test_provisioned_instances_are_the_clusters_each_node_its_share(
        cluster: list[httpx.Client]) -> None:
    name = deploy(cluster[0], _code("ready"))
    r = cluster[1].put(f"{API}/functions/{name}/provision-config", json={"target": 3})
    assert r.status_code == 200, r.text

    def currents() -> list[int]:
        return [c.get(f"{API}/functions/{name}/provision-config").json()["current"]
                for c in cluster]

    assert wait_for(lambda: currents() == [1, 1, 1], timeout=20)  # (10 s: too short once)
    assert {c.get(f"{API}/functions/{name}/provision-config").json()["target"]
            for c in cluster} == {3}
    assert cluster[2].delete(f"{API}/functions/{name}").status_code == 204


SECOND = {"index.py": """
    import json, os, time, uuid

    INSTANCE = uuid.uuid4().hex  # this instance, as it sees itself

    def handler(event, context):
        start = time.time()
        wait = event.decode()  # seconds: 1 unless the event is a number
        time.sleep(float(wait) if wait.replace(".", "", 1).isdigit() else 1)
        return json.dumps({"instance": INSTANCE, "start": start, "end": time.time()})
"""}


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_the_account_limit_holds_across_the_nodes(cluster: list[httpx.Client]) -> None:
    """60 concurrent invocations of a 1 s function, 20 through each node, an account
    limit of 6: all succeed, never more than 6 instances at once."""
    name = deploy(cluster[0], SECOND, timeout=60)
    for client in cluster:  # known on every node before the burst
        _within_a_second(lambda c=client: c.get(f"{API}/functions/{name}").status_code == 200)
    with ThreadPoolExecutor(60) as pool:
        answers = list(pool.map(lambda i: invoke(cluster[i % 3], name), range(60)))
    assert [a.status_code for a in answers] == [200] * 60, [a.text for a in answers][:3]
    runs = [a.json() for a in answers]
    assert not any("errorMessage" in r for r in runs), runs[:3]
    # Each instance's life: from its first run's start to its last run's end (at least).
    lives: dict[str, list[float]] = {}
    for run in runs:
        life = lives.setdefault(run["instance"], [run["start"], run["end"]])
        life[0], life[1] = min(life[0], run["start"]), max(life[1], run["end"])
    assert _most_at_once([(a, b) for a, b in lives.values()]) <= LIMIT
    assert _most_at_once([(r["start"], r["end"]) for r in runs]) <= LIMIT
    served = {a.headers["x-funclet-node-id"] for a in answers}
    assert served == {"node1", "node2", "node3"}


def test_async_work_holds_at_most_half_the_accounts_instances_across_the_nodes(
        cluster: list[httpx.Client]) -> None:
    """As on one node, async attempts may use half the account's instances (3 of 6):
    each node runs its share (1), so 12 tasks of a 1 s function accepted through the
    three nodes run at most 3 at once, and all succeed."""
    name = deploy(cluster[0], SECOND, timeout=60)
    for client in cluster:
        _within_a_second(lambda c=client: c.get(f"{API}/functions/{name}").status_code == 200)
    ids = []
    for i in range(12):
        r = cluster[i % 3].post(f"{API}/functions/{name}/invocations", content=b"{}",
                                headers={"x-fc-invocation-type": "Async"})
        assert r.status_code == 202, r.text
        ids.append(r.headers["x-fc-async-task-id"])

    def finished() -> list[dict[str, object]] | None:
        tasks = [t for t in _tasks(cluster[1], name) if t["taskId"] in ids]
        return tasks if len(tasks) == 12 and all(
            t["status"] == "Succeeded" for t in tasks) else None

    tasks = wait_for(finished, timeout=60)
    runs = [json.loads(str(t["returnPayload"])) for t in tasks]
    assert _most_at_once([(r["start"], r["end"]) for r in runs]) <= LIMIT // 2


def test_a_killed_node_gives_its_slots_back(nodes: Cluster) -> None:
    """node3 holds every slot (idle instances) when it is killed; once it is declared
    dead, the account's six slots are the other nodes' again: six at once on node 1."""
    one, _, three = nodes.clients
    name = deploy(one, SECOND, timeout=60)
    with ThreadPoolExecutor(LIMIT) as pool:  # node 3 takes every slot, then idles
        assert {a.headers["x-funclet-node-id"] for a in pool.map(
            lambda _: invoke(three, name), range(LIMIT))} == {"node3"}
    killed = nodes.servers[2]
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait()
    died = time.monotonic()
    try:
        wait_for(lambda: _state(one, "node3") == "dead", timeout=DEAD_AFTER_S + 2 * HEARTBEAT_S)
        declared = time.monotonic() - died
        assert declared <= DEAD_AFTER_S + HEARTBEAT_S + 1
        # 5 s each: the slots that node 1 must first ask node 2 to free (its idle
        # instances of earlier tests) come while the first runs still run (3 s was
        # too short once, on a loaded CI machine).
        with ThreadPoolExecutor(LIMIT) as pool:
            answers = list(pool.map(lambda _: invoke(one, name, b"5"), range(LIMIT)))
        assert [a.status_code for a in answers] == [200] * LIMIT, answers[0].text
        runs = [a.json() for a in answers]
        assert len({r["instance"] for r in runs}) == LIMIT
        assert _most_at_once([(r["start"], r["end"]) for r in runs]) == LIMIT  # at once
    finally:  # node 3 again, on its folder (the restart sweeps what the killed run left)
        nodes.servers[2] = start_server(killed.data_dir.parent, FUNCLET_NODE_ID="node3",
                                        **nodes.env)
        nodes.clients[2].close()
        nodes.clients[2] = httpx.Client(base_url=nodes.servers[2].url, timeout=60)


def _state(client: httpx.Client, node: str) -> str:
    return {n["nodeId"]: n["state"] for n in client.get(f"{API}/nodes").json()["nodes"]}[node]


@pytest.mark.parametrize("kind", ["redis", "rabbitmq", "nats", "mqtt"])
def test_message_triggers_consume_on_every_node_each_message_once(
        cluster: list[httpx.Client], kind: str) -> None:
    """Competing consumers: a Redis group (a consumer per node), a shared RabbitMQ queue,
    a JetStream durable consumer, an MQTT shared subscription (a session per node)."""
    need_broker(kind)
    one, two, three = cluster
    name, source = deploy(one, mq.CODE), mq._source(kind)
    trigger = mq._trigger(one, name, kind, source, batchSize=1)
    try:
        for client in cluster:  # every node consumes
            _within_a_second(lambda c=client: c.get(
                f"{API}/functions/{name}/triggers/{trigger}").status_code == 200)
            mq._connected(client, name, trigger)
        sent = mq._bodies(0, 30)
        mq._publish(kind, source, sent)
        batches = mq._received(two, name, 30)
        records = [rec for batch in batches for rec in batch]
        assert sorted(mq._body_of(kind, rec) for rec in records) == sorted(sent)  # once each
    finally:
        nodes = [c.get("/healthz").json()["nodeId"] for c in cluster]
        three.delete(f"{API}/functions/{name}")
        for node in nodes if kind == "mqtt" else nodes[:1]:  # MQTT: a session per node
            mq.asyncio.run(mq._clean_up_async(kind, source, Names(name, trigger, "", node)))


@pytest.fixture
def haproxy(nodes: Cluster, tmp_path: Path) -> Iterator[str]:
    """deploy/haproxy.cfg, its nodes and front port this test's."""
    binary = shutil.which("haproxy")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed (Debian's haproxy)")
        pytest.skip("haproxy is not installed")
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    port = free_port()
    config = config.replace("bind 127.0.0.1:8080", f"bind 127.0.0.1:{port}")
    for i, server in enumerate(nodes.servers, start=1):
        config = config.replace(f"127.0.0.1:900{i}", f"127.0.0.1:{server.port}")
    (tmp_path / "haproxy.cfg").write_text(config)
    process = subprocess.Popen([binary, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/healthz"), timeout=10)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_haproxy_keeps_a_function_on_one_node_and_moves_it_when_the_node_dies(
        nodes: Cluster, haproxy: str) -> None:
    with httpx.Client(base_url=haproxy, timeout=60) as client:
        name = deploy(client, _code("balanced"))
        answers = [invoke(client, name) for _ in range(1000)]
        assert {a.status_code for a in answers} == {200}
        (home,) = {a.headers["x-funclet-node-id"] for a in answers}  # one node, warm
        kinds = [a.headers["x-funclet-start-kind"] for a in answers]
        assert kinds.count("cold") == 1 and kinds[0] == "cold"
        index = int(home.removeprefix("node")) - 1
        killed = nodes.servers[index]
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait()
        try:
            # Until its health check fails twice (1 s apart) HAProxy still hashes to the
            # dead node and sends each request on to another (redispatch); then the ring
            # holds two nodes and the function settles on one of them.
            after, down = [], time.monotonic() + 3.5
            while time.monotonic() < down or len(after) < 200:
                after.append(invoke(client, name))
            after += [invoke(client, name) for _ in range(100)]
            assert {a.status_code for a in after} == {200}, after[0].text
            served = [a.headers["x-funclet-node-id"] for a in after]
            assert home not in served
            kinds = [a.headers["x-funclet-start-kind"] for a in after]
            assert kinds.count("cold") == len(set(served)), (served, kinds)
            assert served[-100:] == [served[-1]] * 100  # settled on one other node
        finally:
            nodes.servers[index] = start_server(killed.data_dir.parent, FUNCLET_NODE_ID=home,
                                                **nodes.env)
            nodes.clients[index].close()
            nodes.clients[index] = httpx.Client(base_url=nodes.servers[index].url, timeout=60)


def _tasks(client: httpx.Client, name: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    token = None
    while True:
        page = client.get(f"{API}/functions/{name}/async-tasks", params={
            "limit": 100, **({"nextToken": token} if token else {})}).json()
        rows += page["tasks"]
        if not (token := page.get("nextToken")):
            return rows


def _restart(nodes: Cluster, index: int, killed: Server) -> None:
    nodes.servers[index] = start_server(killed.data_dir.parent,
                                        FUNCLET_NODE_ID=f"node{index + 1}", **nodes.env)
    nodes.clients[index].close()
    nodes.clients[index] = httpx.Client(base_url=nodes.servers[index].url, timeout=60)


def test_async_tasks_survive_a_node_killed_and_restarted(nodes: Cluster) -> None:
    """3,000 tasks accepted through the three nodes while node 2 is killed with
    ``kill -9`` and restarted: every accepted one succeeds; the ones node 2 was running
    when it died run again elsewhere (counted, and said in their events)."""
    one = nodes.clients[0]
    name = deploy(one, {"index.py": """
        import time

        def handler(event, context):
            time.sleep(0.005)
            return "done"
    """}, timeout=60)
    for client in nodes.clients:
        _within_a_second(lambda c=client: c.get(f"{API}/functions/{name}").status_code == 200)
    accepted: list[str] = []

    def send(i: int) -> None:
        client = nodes.clients[i % 3]
        try:
            r = client.post(f"{API}/functions/{name}/invocations", content=b"",
                            headers={"x-fc-invocation-type": "Async",
                                     "x-fc-async-task-id": f"t{i}"})
        except httpx.HTTPError:
            return  # node 2 is down: not accepted, the client knows
        if r.status_code == 202:
            accepted.append(f"t{i}")

    killed = nodes.servers[1]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(1500)))
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait()
        list(pool.map(send, range(1500, 2500)))
        _restart(nodes, 1, killed)
        list(pool.map(send, range(2500, 3000)))
    assert len(accepted) >= 2500
    rows = wait_for(lambda: (t := _tasks(one, name)) and len(
        [r for r in t if r["status"] == "Succeeded"]) >= len(accepted) and t, timeout=120)
    by_id = {str(r["taskId"]): r for r in rows}
    assert set(accepted) <= set(by_id)  # 0 lost
    assert all(by_id[t]["status"] == "Succeeded" for t in accepted)
    again = [r for r in rows if any("did not finish" in e["eventDetail"]
                                    for e in r["events"])]  # type: ignore[attr-defined]
    print(f"{len(accepted)} accepted, {len(again)} run again after node 2 died")


def test_timers_fire_once_per_time_while_a_node_is_killed(nodes: Cluster) -> None:
    """100 timers every second for 25 s, node 1 killed 5 s in: no scheduled time fires
    twice, and none is missed (two nodes go on firing every timer)."""
    two = nodes.clients[1]
    name = deploy(two, {"index.py": """
        import json

        def handler(event, context):
            return json.loads(event)["triggerTime"]
    """}, timeout=60)
    for i in range(100):
        r = two.post(f"{API}/functions/{name}/triggers", json={
            "triggerName": f"every-{i}", "triggerType": "timer",
            "triggerConfig": {"cronExpression": "@every 1s", "enable": True}})
        assert r.status_code == 200, r.text
    time.sleep(5)
    killed = nodes.servers[0]
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait()
    try:
        time.sleep(20)
        for i in range(100):  # stop firing, then count
            two.put(f"{API}/functions/{name}/triggers/every-{i}", json={
                "triggerConfig": {"cronExpression": "@every 1s", "enable": False}})
        time.sleep(1)
        rows = _tasks(two, name)
    finally:
        _restart(nodes, 0, killed)
    fires: dict[str, list[int]] = {}
    for row in rows:  # task id: timer-<trigger id>-<scheduled second>
        trigger_id, _, second = str(row["taskId"]).removeprefix("timer-").rpartition("-")
        fires.setdefault(trigger_id, []).append(int(second))
    assert len(fires) == 100
    for seconds in fires.values():
        assert len(seconds) == len(set(seconds))  # never twice
        assert sorted(seconds) == list(range(min(seconds), max(seconds) + 1))  # none missed
        assert len(seconds) >= 23
    assert two.delete(f"{API}/functions/{name}").status_code == 204
