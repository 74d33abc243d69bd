"""Custom runtimes over HTTP (FC's contract): the examples, start-up failures with the
program's output, errors, hooks, and instances that never clash on a port."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import API, deploy, invoke, unique, wait_for
from tests.test_cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SERVER = """
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body in one write: no Nagle stall on a kept-alive connection
    def log_message(self, *a): pass
    def reply(self, status, data, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        event = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/initialize":
            print("initialize", self.headers["x-fc-request-id"], flush=True)
            return self.reply(200, b"")
        if event == b"fail":
            return self.reply(500, b'{"errorMessage": "it broke", "errorType": "Oops"}')
        if event == b"handled":
            return self.reply(200, b"not today", [("x-fc-status", "404")])
        if event == b"slow":
            time.sleep(1)
        self.reply(200, json.dumps({
            "port": os.environ["FC_SERVER_PORT"], "event": event.decode(),
            "headers": {k: v for k, v in self.headers.items() if k.startswith("x-fc-")},
        }).encode())
    def do_GET(self):
        if self.path == "/pre-stop":
            print("custom pre-stop in", os.environ["FC_INSTANCE_ID"], flush=True)
        self.reply(200, b"")

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), H).serve_forever()
"""


def _custom(client: httpx.Client, code: str = SERVER, **config: object) -> str:
    config.setdefault("customRuntimeConfig", {"command": ["python3", "server.py"]})
    return deploy(client, {"server.py": code}, runtime="custom.debian12", **config)


@pytest.mark.parametrize("example", ["custom-python", "custom-node"])
def test_the_examples_answer_events_and_http_triggers(
    client: httpx.Client, server: Server, example: str,
) -> None:
    name = unique(example)
    deployed = cli(server.url, "deploy", str(EXAMPLES / example), "--name", name)
    assert deployed.returncode == 0, deployed.stderr
    r = invoke(client, name, b'{"name": "test"}', **{"x-fc-log-type": "Tail"})
    assert r.status_code == 200 and "x-fc-error-type" not in r.headers, r.text
    record = client.get(f"{API}/functions/{name}/invocations/"
                        f"{r.headers['x-fc-request-id']}").json()
    assert f"invoked by {r.headers['x-fc-request-id']}" in record["log"]
    web = client.get(f"/http/{name}/hello", params={"name": "web"})
    assert web.status_code == 200 and "hello" in web.text
    upload = client.post(f"/http/{name}/up", content=b"z" * 100_000)
    assert upload.json()["received"] == 100_000


def test_the_fc_request_headers_reach_the_server(client: httpx.Client) -> None:
    name = _custom(client, memorySize=256, timeout=7)
    out = invoke(client, name, b"ping").json()
    headers = out["headers"]
    assert out["event"] == "ping"
    assert headers["x-fc-function-name"] == name and headers["x-fc-function-memory"] == "256"
    assert headers["x-fc-function-timeout"] == "7" and headers["x-fc-request-id"]
    assert headers["x-fc-function-handler"] == "index.handler"


def test_errors_from_the_server(client: httpx.Client) -> None:
    name = _custom(client)
    failed = invoke(client, name, b"fail")
    assert failed.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert failed.json()["errorMessage"] == "it broke" and failed.json()["errorType"] == "Oops"
    handled = invoke(client, name, b"handled")
    assert handled.headers["x-fc-error-type"] == "HandledInvocationError"
    assert handled.json()["errorMessage"] == "not today"


def test_hooks_initialize_and_pre_stop(client: httpx.Client, server: Server) -> None:
    name = _custom(client, instanceLifecycleConfig={
        "initializer": {"handler": "index.init", "timeout": 5},
        "preStop": {"handler": "index.stop", "timeout": 5}})
    r = invoke(client, name, b"x", **{"x-fc-log-type": "Tail"})
    assert r.status_code == 200, r.text
    instance_id = r.headers["x-funclet-instance-id"]
    client.put(f"{API}/functions/{name}", json={"description": "v2"})
    wait_for(lambda: f"custom pre-stop in {instance_id}" in server.log())


def test_a_server_that_never_listens_fails_the_start_with_its_output(
    client: httpx.Client,
) -> None:
    name = _custom(client, "print('booting, slowly', flush=True)\nimport time\ntime.sleep(60)\n",
                   timeout=2)
    r = invoke(client, name)
    body = r.json()
    assert body["errorType"] == "Runtime.InitError", body
    assert "did not listen on port" in body["errorMessage"]
    assert "booting, slowly" in body["errorMessage"]


def test_a_server_that_exits_fails_the_start_with_its_exit_code(client: httpx.Client) -> None:
    name = _custom(client, "import sys\nprint('no config found', flush=True)\nsys.exit(3)\n")
    body = invoke(client, name).json()
    assert "code 3" in body["errorMessage"] and "no config found" in body["errorMessage"]
    missing = _custom(client, customRuntimeConfig={"command": ["/code/nope"]})
    assert invoke(client, missing).json()["errorType"] == "Runtime.StartFailed"


@pytest.mark.parametrize("internet", [True, False])
def test_instances_never_clash_on_a_port(client: httpx.Client, internet: bool) -> None:
    name = _custom(client, internetAccess=internet)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: invoke(client, name, b"slow"), range(3)))
    assert all(r.status_code == 200 and "x-fc-error-type" not in r.headers for r in replies)
    instances = {r.headers["x-funclet-instance-id"] for r in replies}
    ports = {r.json()["port"] for r in replies}
    assert len(instances) == 3
    # Each instance has a network namespace of its own: each keeps the port it asked for
    # (without one, beside the host's other sockets, each would get a port of its own).
    own_network = client.get("/healthz").json()["sandbox"]["networkNamespace"]
    assert ports == {"9000"} if own_network or not internet else len(ports) == 3
