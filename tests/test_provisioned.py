"""Provisioned instances: started ahead of time, used first, never reclaimed, replaced on
update, limited by admission."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import start_server, stop_server
from tests.helpers import API, deploy, invoke, kill_instance, wait_for

CODE = {"index.py": """
    import os

    def handler(event, context):
        return os.environ["FC_INSTANCE_ID"]
"""}


def _config(client: httpx.Client, name: str) -> dict[str, object]:
    r = client.get(f"{API}/functions/{name}/provision-config")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _live(client: httpx.Client, name: str) -> list[dict[str, object]]:
    return client.get(f"{API}/functions/{name}/instances",  # type: ignore[no-any-return]
                      params={"withAllActive": "true"}).json()["instances"]


def test_provisioned_instances_start_ahead_serve_first_and_are_never_reclaimed(
    client: httpx.Client,
) -> None:
    name = deploy(client, CODE, keepAliveSeconds=1)
    assert _config(client, name)["target"] == 0
    r = client.put(f"{API}/functions/{name}/provision-config", json={"target": 2})
    assert r.status_code == 200 and r.json()["target"] == 2
    wait_for(lambda: _config(client, name)["current"] == 2)
    provisioned = {i["instanceId"] for i in _live(client, name)}
    assert len(provisioned) == 2

    r = invoke(client, name)
    assert r.headers["x-funclet-start-kind"] == "provisioned"
    assert r.text in provisioned
    records = client.get(f"{API}/functions/{name}/invocations").json()["invocations"]
    assert records[0]["startKind"] == "provisioned"

    time.sleep(2.5)  # well past the 1 s keep-alive
    assert {i["instanceId"] for i in _live(client, name)} == provisioned
    assert _config(client, name)["current"] == 2


def test_an_update_replaces_provisioned_instances(client: httpx.Client) -> None:
    name = deploy(client, CODE)
    client.put(f"{API}/functions/{name}/provision-config", json={"target": 1})
    wait_for(lambda: _config(client, name)["current"] == 1)
    (old,) = [i["instanceId"] for i in _live(client, name)]
    assert client.put(f"{API}/functions/{name}", json={"description": "v2"}).status_code == 200

    def replaced() -> bool:
        live = [i for i in _live(client, name) if i["state"] != "stopped"]
        return len(live) == 1 and live[0]["instanceId"] != old and _config(
            client, name)["current"] == 1

    wait_for(replaced)
    r = invoke(client, name)
    assert r.headers["x-funclet-start-kind"] == "provisioned" and r.text != old


def test_deleting_the_config_returns_instances_to_on_demand(client: httpx.Client) -> None:
    name = deploy(client, CODE, keepAliveSeconds=1)
    client.put(f"{API}/functions/{name}/provision-config", json={"target": 1})
    wait_for(lambda: _config(client, name)["current"] == 1)
    assert client.delete(f"{API}/functions/{name}/provision-config").status_code == 204
    assert _config(client, name)["target"] == 0
    wait_for(lambda: not _live(client, name))  # reclaimed after keep-alive


def test_provision_config_is_validated(client: httpx.Client) -> None:
    name = deploy(client, CODE)
    for body in ({"target": -1}, {"target": "1"}, {}, {"target": 101}):
        r = client.put(f"{API}/functions/{name}/provision-config", json=body)
        assert r.status_code == 400 and "target" in r.json()["Message"], body
    assert client.get(f"{API}/functions/nope-{name}/provision-config").status_code == 404


def test_provisioning_respects_the_account_limit(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_MAX_INSTANCES="2")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, CODE)
            other = deploy(client, CODE)
            client.put(f"{API}/functions/{other}/concurrency", json={"reservedConcurrency": 1})
            client.put(f"{API}/functions/{name}/provision-config", json={"target": 2})
            wait_for(lambda: _config(client, name)["current"] == 1)
            config = _config(client, name)
            assert config["target"] == 2 and "limit" in str(config["currentError"])
            time.sleep(1.5)
            assert _config(client, name)["current"] == 1
            client.delete(f"{API}/functions/{other}/concurrency")
            wait_for(lambda: _config(client, name)["current"] == 2)
            assert _config(client, name)["currentError"] == ""
    finally:
        stop_server(server)


def test_a_provisioned_instance_that_crashes_is_replaced(client: httpx.Client) -> None:
    name = deploy(client, CODE)
    client.put(f"{API}/functions/{name}/provision-config", json={"target": 1})
    wait_for(lambda: _config(client, name)["current"] == 1)
    first = invoke(client, name).text
    kill_instance(first)
    wait_for(lambda: _config(client, name)["current"] == 1 and invoke(client, name).text != first)


def test_provisioned_instances_take_the_place_of_idle_on_demand_ones(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_MAX_INSTANCES="2")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            busy = [deploy(client, CODE) for _ in range(2)]
            for name in busy:  # the account's two slots, held by idle instances
                assert invoke(client, name).status_code == 200
            name = deploy(client, CODE)
            client.put(f"{API}/functions/{name}/provision-config", json={"target": 1})
            wait_for(lambda: _config(client, name)["current"] == 1, timeout=15)
            assert invoke(client, name).headers["x-funclet-start-kind"] == "provisioned"
    finally:
        stop_server(server)
