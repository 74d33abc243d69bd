"""The Lambda Runtime API (custom.lambda / provided): its wire format, and AWS's own
Python runtime client (awslambdaric) running an unmodified Lambda handler."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import API, deploy, invoke, unique

# A runtime client in a few lines of the standard library: it echoes what it was given.
BOOTSTRAP = r"""#!/usr/bin/env python3
import json, os, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
if os.environ.get("FAIL_INIT"):
    urllib.request.urlopen(urllib.request.Request(
        api + "/init/error", method="POST",
        data=json.dumps({"errorMessage": "no database", "errorType": "InitFailed"}).encode()))
    raise SystemExit(1)
print("bootstrap up, handler", os.environ["_HANDLER"], flush=True)
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        event, headers = r.read(), dict(r.headers.items())
    request_id = headers["Lambda-Runtime-Aws-Request-Id"]
    if event == b'"exit"':
        print("leaving mid-invocation", flush=True)
        os._exit(3)
    if event in (b'"stream"', b'"stream-fail"'):  # as AWS's runtime clients stream
        import base64, http.client
        conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
        conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{request_id}/response")
        for k, v in (("Lambda-Runtime-Function-Response-Mode", "streaming"),
                     ("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")):
            conn.putheader(k, v)
        conn.endheaders()
        for chunk in (b"one;", b"two"):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        trailer = b""
        if event == b'"stream-fail"':
            error = json.dumps({"errorMessage": "broke mid-stream", "errorType": "IOError"})
            trailer = (b"Lambda-Runtime-Function-Error-Type: IOError\r\n"
                       b"Lambda-Runtime-Function-Error-Body: " +
                       base64.b64encode(error.encode()) + b"\r\n")
        conn.send(b"0\r\n" + trailer + b"\r\n")
        assert conn.getresponse().status == 202
        conn.close()
        continue
    if event == b'"fail"':
        body = json.dumps({"errorMessage": "bad event", "errorType": "ValueError",
                           "stackTrace": ["  File app.py, line 1"]}).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"{api}/invocation/{request_id}/error", data=body, method="POST",
            headers={"Lambda-Runtime-Function-Error-Type": "Unhandled"}))
        continue
    print("handling", request_id, flush=True)
    out = json.dumps({"event": json.loads(event), "headers": headers,
                      "env": {k: v for k, v in os.environ.items()
                              if k.startswith(("AWS_", "LAMBDA_", "_HANDLER"))}}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"{api}/invocation/{request_id}/response", data=out, method="POST"))
"""


def _lambda(client: httpx.Client, files: dict[str, str | bytes], **config: object) -> str:
    return deploy(client, files, runtime="custom.lambda", handler="app.handler", **config)


def test_the_runtime_api_speaks_lambdas_wire_format(client: httpx.Client) -> None:
    name = _lambda(client, {"bootstrap": BOOTSTRAP})
    r = invoke(client, name, b'{"k": 1}', **{"x-fc-log-type": "Tail"})
    assert r.status_code == 200 and "x-fc-error-type" not in r.headers, r.text
    out = r.json()
    assert out["event"] == {"k": 1}
    headers = out["headers"]
    assert headers["Lambda-Runtime-Aws-Request-Id"] == r.headers["x-fc-request-id"]
    assert int(headers["Lambda-Runtime-Deadline-Ms"]) > 0
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(f":functions/{name}")
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    env = out["env"]
    assert env["_HANDLER"] == "app.handler" and env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    record = client.get(f"{API}/functions/{name}/invocations/"
                        f"{r.headers['x-fc-request-id']}").json()
    assert f"handling {r.headers['x-fc-request-id']}" in record["log"]
    assert invoke(client, name, b'{"k": 2}').headers["x-funclet-start-kind"] == "warm"


def test_errors_and_init_errors(client: httpx.Client) -> None:
    name = _lambda(client, {"bootstrap": BOOTSTRAP})
    failed = invoke(client, name, b'"fail"')
    assert failed.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert failed.json()["errorType"] == "ValueError"
    assert failed.json()["errorMessage"] == "bad event"
    # A response streamed in chunks (buffered for a caller that takes no stream), and an
    # error in its trailers.
    assert invoke(client, name, b'"stream"').content == b"one;two"
    broke = invoke(client, name, b'"stream-fail"').json()
    assert broke["errorType"] == "IOError" and broke["errorMessage"] == "broke mid-stream"
    assert invoke(client, name).json()["event"] == {}  # no payload: Lambda's {}
    # The bootstrap exits mid-invocation: that invocation fails at once, with its output.
    gone = invoke(client, name, b'"exit"')
    assert gone.json()["errorType"] == "Runtime.ExitError"
    assert "exit code 3" in gone.json()["errorMessage"]
    assert invoke(client, name, b'{"k": 3}').json()["event"] == {"k": 3}  # a new instance
    broken = _lambda(client, {"bootstrap": BOOTSTRAP},
                     environmentVariables={"FAIL_INIT": "1"})
    body = invoke(client, broken).json()
    assert body["errorType"] == "InitFailed" and body["errorMessage"] == "no database"


def test_a_package_without_bootstrap_is_refused(client: httpx.Client) -> None:
    from tests.helpers import create_body

    r = client.post(f"{API}/functions", json=create_body(
        "lambda-no-bootstrap", {"app.py": "x = 1\n"}, runtime="custom.lambda",
        handler="app.handler"))
    assert r.status_code == 400 and "bootstrap" in r.json()["Message"]
    r = client.post(f"{API}/functions", json=create_body(
        "lambda-concurrent", {"bootstrap": BOOTSTRAP}, runtime="provided",
        handler="app.handler", instanceConcurrency=4))
    assert r.status_code == 400 and "instanceConcurrency" in r.json()["Message"]


LAMBDA_HANDLER = """
import json

def handler(event, context):
    if event.get("boom"):
        raise KeyError("boom")
    return {"got": event, "requestId": context.aws_request_id,
            "arn": context.invoked_function_arn, "name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis() > 0}
"""

RIC_BOOTSTRAP = '#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec python3 -m awslambdaric "$_HANDLER"\n'


@pytest.fixture(scope="session")
def awslambdaric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, bytes]]:
    """awslambdaric from PyPI, installed for the sandbox's python3, as package files."""
    target = tmp_path_factory.mktemp("awslambdaric")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", str(target), "--only-binary=:all:", "awslambdaric"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    files = {}
    for path in target.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.parts[
                len(target.parts)] != "bin":
            files[path.relative_to(target).as_posix()] = path.read_bytes()
    yield files


def test_awslambdaric_runs_an_unmodified_lambda_handler(
    client: httpx.Client, awslambdaric: dict[str, bytes],
) -> None:
    files: dict[str, str | bytes] = {**awslambdaric, "bootstrap": RIC_BOOTSTRAP,
                                     "app.py": LAMBDA_HANDLER}
    name = _lambda(client, files, memorySize=256)
    r = invoke(client, name, json.dumps({"hello": "lambda"}).encode())
    assert r.status_code == 200 and "x-fc-error-type" not in r.headers, r.text
    out = r.json()
    assert out["got"] == {"hello": "lambda"} and out["requestId"] == r.headers["x-fc-request-id"]
    assert out["arn"].endswith(f":functions/{name}") and out["name"] == name
    assert out["memory"] == "256" and out["remaining"] is True
    failed = invoke(client, name, b'{"boom": true}')
    assert failed.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert failed.json()["errorType"] == "KeyError"


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("example", ["lambda-python", "lambda-node"])
def test_the_examples_run_aws_runtime_clients_unchanged(
    client: httpx.Client, server: Server, example: str,
) -> None:
    """lambda-python: awslambdaric from requirements.txt; lambda-node: aws-lambda-ric from
    package.json (npm builds its native client on the first deploy, about a minute)."""
    name = unique(example)
    deployed = subprocess.run(
        [sys.executable, "-m", "funclet", "deploy", str(EXAMPLES / example), "--name", name,
         "--endpoint", server.url], capture_output=True, text=True, timeout=600)
    assert deployed.returncode == 0, deployed.stderr
    r = invoke(client, name, b'{"name": "ric"}')
    assert r.status_code == 200 and "x-fc-error-type" not in r.headers, r.text
    assert r.json()["message"] == "hello, ric!" and r.json()["function"] == name
