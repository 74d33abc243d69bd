"""Nodes register and heartbeat in the database; responses and records say which node
served them; a node that stops cleanly is stopped, one that is killed is dead once it has
been silent past the documented bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from funclet.nodes import DEAD_AFTER_S, HEARTBEAT_S
from tests.conftest import start_server, stop_server
from tests.helpers import API, deploy, invoke, wait_for

HELLO = {"index.py": "def handler(event, context):\n    return 'hi'\n"}


def _nodes(client: httpx.Client) -> dict[str, dict[str, object]]:
    r = client.get(f"{API}/nodes")
    assert r.status_code == 200, r.text
    assert r.json()["deadAfterSeconds"] == DEAD_AFTER_S
    return {n["nodeId"]: n for n in r.json()["nodes"]}


def test_every_answer_and_record_names_the_node(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_NODE_ID="node-a")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/healthz").json()["nodeId"] == "node-a"
            me = _nodes(client)["node-a"]
            assert me["state"] == "alive" and me["self"] is True
            assert me["address"] == f"127.0.0.1:{server.port}"
            name = deploy(client, HELLO)
            answer = invoke(client, name)
            assert answer.headers["x-funclet-node-id"] == "node-a"
            accepted = client.post(f"{API}/functions/{name}/invocations",
                                   headers={"x-fc-invocation-type": "Async"})
            assert accepted.status_code == 202
            assert accepted.headers["x-funclet-node-id"] == "node-a"
            (inst, *_) = client.get(f"{API}/functions/{name}/instances").json()["instances"]
            assert inst["nodeId"] == "node-a"
            record = client.get(f"{API}/functions/{name}/invocations/"
                                f"{answer.headers['x-fc-request-id']}").json()
            assert record["nodeId"] == "node-a"
            # The heartbeat carries the count of live instances.
            wait_for(lambda: _nodes(client)["node-a"]["instances"] >= 1,
                     timeout=3 * HEARTBEAT_S)
            listed = subprocess.run(
                [sys.executable, "-m", "funclet", "nodes", "--endpoint", server.url],
                capture_output=True, text=True, timeout=30,
                env={**os.environ, "COLUMNS": "200"})
            assert listed.returncode == 0, listed.stderr
            assert "node-a (this one)" in listed.stdout and "alive" in listed.stdout
    finally:
        stop_server(server)


def test_a_stopped_node_is_stopped_and_a_killed_one_dead_past_the_bound(
        tmp_path: Path) -> None:
    first = start_server(tmp_path, FUNCLET_NODE_ID="clean")
    stop_server(first)
    killed = start_server(tmp_path, FUNCLET_NODE_ID="killed")
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait()
    died = time.time()
    third = start_server(tmp_path, FUNCLET_NODE_ID="third")
    try:
        with httpx.Client(base_url=third.url, timeout=60) as client:
            nodes = _nodes(client)
            assert nodes["clean"]["state"] == "stopped"
            assert nodes["clean"]["stoppedTimeMs"] is not None
            assert nodes["third"]["state"] == "alive"
            if time.time() - died < DEAD_AFTER_S - 1:
                assert nodes["killed"]["state"] == "alive"  # not yet past the bound
            wait_for(lambda: _nodes(client)["killed"]["state"] == "dead",
                     timeout=DEAD_AFTER_S + 2 * HEARTBEAT_S + 2)
            dead = _nodes(client)["killed"]
            assert dead["instances"] == 0
            assert time.time() - died >= DEAD_AFTER_S - HEARTBEAT_S
    finally:
        stop_server(third)
