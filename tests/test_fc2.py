"""FC 2.0's API through its own SDKs, unchanged: ``aliyun-fc2`` (Python) and
``@alicloud/fc2`` (Node.js), signing with ``Authorization: FC ak:signature`` against a
funclet that requires it. Function ``fn`` of service ``svc`` is the 3.0 function
``svc$fn``: both APIs see the same function."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import fc2
import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi

from tests.conftest import Server, start_server, stop_server
from tests.helpers import make_zip, unique, wait_for

KEYS = '{"test-ak": "test-sk"}'
CODE = {"index.py": """
import json, os

def handler(event, context):
    return json.dumps({"event": event.decode(), "fn": context.function.name,
                       "service": [context.service.name, os.environ["FC_SERVICE_NAME"]],
                       "colour": os.environ.get("COLOUR", "")})
"""}
WEB = {"index.py": """
import json

def handler(event, context):
    req = json.loads(event)
    return {"statusCode": 201, "headers": {"x-path": req["rawPath"]},
            "body": "hello " + req.get("queryParameters", {}).get("who", "")}
"""}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("fc2"), FUNCLET_REQUIRE_AUTH="true",
                          FUNCLET_API_TOKEN="tok", FUNCLET_ACCESS_KEYS=KEYS)
    yield server
    stop_server(server)


def _client(server: Server, secret: str = "test-sk") -> fc2.Client:
    return fc2.Client(endpoint=f"http://127.0.0.1:{server.port}", accessKeyID="test-ak",
                      accessKeySecret=secret)


def _zip(tmp: Path, files: dict[str, str]) -> str:
    path = tmp / f"{unique('code')}.zip"
    path.write_bytes(make_zip(files))
    return str(path)


def _succeeded_tasks(server: Server, name: str) -> int:
    r = httpx.get(f"{server.url}/2023-03-30/functions/{name}/async-tasks",
                  headers={"authorization": "Bearer tok"})
    return sum(t["status"] == "Succeeded" for t in r.json()["tasks"])


def _error(call: object) -> fc2.fc_exceptions.FcError:
    with pytest.raises(fc2.fc_exceptions.FcError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_services_functions_and_invocations_through_the_python_sdk(
        secured: Server, tmp_path: Path) -> None:
    client = _client(secured)
    service = unique("svc")
    created = client.create_service(service, description="tutorial",
                                    internetAccess=False).data
    assert (created["serviceName"], created["description"], created["internetAccess"]) == (
        service, "tutorial", False)
    assert client.get_service(service).data["serviceId"] == created["serviceId"]
    assert service in [s["serviceName"] for s in client.list_services(prefix=service)
                       .data["services"]]

    fn = client.create_function(service, "hello", "python3.11", "index.handler",
                                codeZipFile=_zip(tmp_path, CODE),
                                environmentVariables={"COLOUR": "blue"}).data
    assert (fn["functionName"], fn["runtime"], fn["environmentVariables"]) == (
        "hello", "python3.11", {"COLOUR": "blue"})
    out = json.loads(client.invoke_function(service, "hello", payload="hi").data)
    assert out == {"event": "hi", "fn": f"{service}$hello", "service": [service, service],
                   "colour": "blue"}

    # Async, as tutorials do it: 202 and a request id; the task runs.
    accepted = client.invoke_function(service, "hello", payload="later",
                                      headers={"x-fc-invocation-type": "Async"})
    assert accepted.headers["x-fc-request-id"]
    wait_for(lambda: _succeeded_tasks(secured, f"{service}$hello") == 1)
    listed = client.list_functions(service).data["functions"]
    assert [f["functionName"] for f in listed] == ["hello"]

    client.update_function(service, "hello", handler="index.handler", runtime="python3.11",
                           environmentVariables={"COLOUR": "green"})
    assert client.get_function(service, "hello").data["environmentVariables"] == {
        "COLOUR": "green"}
    assert json.loads(client.invoke_function(service, "hello").data)["colour"] == "green"
    code = client.get_function_code(service, "hello").data
    assert httpx.get(code["url"]).content[:2] == b"PK"

    # 3.0 sees the same function, with the service's internetAccess.
    sdk3 = Client(openapi.Config(access_key_id="test-ak", access_key_secret="test-sk",
                                 endpoint=f"127.0.0.1:{secured.port}", protocol="http"))
    same = sdk3.get_function(f"{service}$hello", fc.GetFunctionRequest()).body
    assert (same.internet_access, same.environment_variables) == (False, {"COLOUR": "green"})
    client.update_service(service, internetAccess=True)
    assert sdk3.get_function(f"{service}$hello", fc.GetFunctionRequest()).body.internet_access

    # Errors in 2.0's shape.
    err = _error(lambda: client.get_function(service, "nope"))
    assert (err.status_code, err.err_code) == (404, "FunctionNotFound")
    assert json.loads(err.message)["ErrorMessage"]
    err = _error(lambda: client.get_service("no-such-service"))
    assert (err.status_code, err.err_code) == (404, "ServiceNotFound")
    err = _error(lambda: client.delete_service(service))
    assert (err.status_code, err.err_code) == (400, "ServiceNotEmpty")
    err = _error(lambda: client.create_service(service))
    assert (err.status_code, err.err_code) == (409, "ServiceAlreadyExists")

    client.delete_function(service, "hello")
    client.delete_service(service)
    assert _error(lambda: client.get_service(service)).status_code == 404


def test_versions_and_an_alias_in_the_service_path(secured: Server, tmp_path: Path) -> None:
    """``{service}.{qualifier}``: 3.0's versions and aliases of the function."""
    client = _client(secured)
    service = unique("svc")
    client.create_service(service)
    client.create_function(service, "f", "python3.11", "index.handler",
                           codeZipFile=_zip(tmp_path, CODE),
                           environmentVariables={"COLOUR": "one"})
    sdk3 = Client(openapi.Config(access_key_id="test-ak", access_key_secret="test-sk",
                                 endpoint=f"127.0.0.1:{secured.port}", protocol="http"))
    name = f"{service}$f"
    sdk3.publish_function_version(name, fc.PublishFunctionVersionRequest(
        body=fc.PublishVersionInput()))
    sdk3.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    client.update_function(service, "f", handler="index.handler", runtime="python3.11",
                           environmentVariables={"COLOUR": "two"})
    assert json.loads(client.invoke_function(service, "f", qualifier="prod").data)[
        "colour"] == "one"
    assert json.loads(client.invoke_function(service, "f").data)["colour"] == "two"
    err = _error(lambda: client.invoke_function(service, "f", qualifier="nope"))
    assert (err.status_code, err.err_code) == (404, "AliasNotFound")


def test_triggers_and_the_proxy_path(secured: Server, tmp_path: Path) -> None:
    client = _client(secured)
    service = unique("svc")
    client.create_service(service)
    client.create_function(service, "web", "python3.11", "index.handler",
                           codeZipFile=_zip(tmp_path, WEB))
    trigger = client.create_trigger(service, "web", "http", "http",
                                    {"authType": "function", "methods": ["GET", "POST"]},
                                    "", "").data
    assert trigger["triggerConfig"]["authType"] == "function"
    assert trigger["urlInternet"].endswith(f"/2016-08-15/proxy/{service}/web/")
    assert [t["triggerName"] for t in client.list_triggers(service, "web").data["triggers"]] \
        == ["http"]
    # authType function: the SDK signs the call (its query too).
    r = client.do_http_request("GET", service, "web", "/a/b", params={"who": "sdk"})
    assert (r.status_code, r.text, r.headers["x-path"]) == (201, "hello sdk", "/a/b")
    unsigned = httpx.get(f"{secured.url}/2016-08-15/proxy/{service}/web/a")
    assert unsigned.status_code == 401 and unsigned.json()["ErrorCode"]
    client.update_trigger(service, "web", "http", triggerConfig={"authType": "anonymous",
                                                                  "methods": ["GET"]})
    assert httpx.get(f"{secured.url}/2016-08-15/proxy/{service}/web/x?who=anyone").text \
        == "hello anyone"
    assert httpx.get(f"{secured.url}/2016-08-15/proxy/{service}.no%20such/web/x"
                     ).json()["ErrorCode"] == "Unauthorized"  # not a route: auth first
    client.delete_trigger(service, "web", "http")
    assert _error(lambda: client.get_trigger(service, "web", "http")).status_code == 404


def test_a_wrong_secret_or_a_stale_date_is_refused(secured: Server) -> None:
    err = _error(lambda: _client(secured, secret="wrong").list_services())
    assert (err.status_code, err.err_code) == (403, "AccessDenied")
    client = _client(secured)
    path = "/2016-08-15/services"
    headers = {"date": "Mon, 01 Jan 2024 00:00:00 GMT", "content-type": "application/json"}
    headers["authorization"] = client.auth.sign_request("GET", path, headers)
    r = httpx.get(f"{secured.url}{path}", headers=headers)
    assert r.status_code == 403 and r.json()["ErrorCode"] == "AccessDenied"
    assert httpx.get(f"{secured.url}{path}").json()["ErrorCode"] == "Unauthorized"


def test_bad_2_0_input_is_refused_and_names_the_field(secured: Server, tmp_path: Path) -> None:
    client = _client(secured)
    service = unique("svc")
    err = _error(lambda: client.create_service(service, vpcConfig={"vpcId": "vpc-1"}))
    assert err.status_code == 400 and "vpcConfig" in err.message
    client.create_service(service)
    err = _error(lambda: client.create_function(
        service, "f", "python3.11", "index.handler", codeOSSBucket="b", codeOSSObject="o"))
    assert err.status_code == 400 and "OSS" in err.message
    err = _error(lambda: client.create_function(
        "no-service", "f", "python3.11", "index.handler", codeZipFile=_zip(tmp_path, CODE)))
    assert (err.status_code, err.err_code) == (404, "ServiceNotFound")
    long = "x" * 100
    client.create_service(long)
    err = _error(lambda: client.create_function(
        long, "y" * 40, "python3.11", "index.handler", codeZipFile=_zip(tmp_path, CODE)))
    assert err.status_code == 400 and "at most 128" in err.message


NODE_SCRIPT = textwrap.dedent("""
    const FC = require('@alicloud/fc2');
    const client = new FC('1000000000000000', {
      accessKeyID: 'test-ak', accessKeySecret: 'test-sk', region: 'local',
      endpoint: process.env.ENDPOINT, timeout: 60000 });
    (async () => {
      const service = process.env.SERVICE;
      await client.createService(service, { description: 'from node' });
      await client.createFunction(service, { functionName: 'hi', runtime: 'python3.11',
        handler: 'index.handler', code: { zipFile: process.env.ZIP } });
      const sync = await client.invokeFunction(service, 'hi', 'from node');
      const task = await client.invokeFunction(service, 'hi', 'later',
        { 'x-fc-invocation-type': 'Async' });
      let missing;
      try { await client.getFunction(service, 'nope'); } catch (e) { missing = e.code; }
      const fns = await client.listFunctions(service);
      console.log(JSON.stringify({ sync: sync.data, status: task.headers['x-fc-request-id']
        ? 'accepted' : 'no id', missing, names: fns.data.functions.map(f => f.functionName) }));
    })().catch(e => { console.error(e); process.exit(1); });
""")


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """@alicloud/fc2 from npm, in a folder of its own."""
    folder = tmp_path_factory.mktemp("fc2-node")
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund",
                    "@alicloud/fc2@2"], cwd=folder, check=True, timeout=300,
                   capture_output=True)
    return folder


def test_the_node_sdk_works_unchanged(secured: Server, node_sdk: Path) -> None:
    service = unique("svc")
    script = node_sdk / "tutorial.js"
    script.write_text(NODE_SCRIPT)
    env = {**os.environ, "ENDPOINT": f"http://127.0.0.1:{secured.port}", "SERVICE": service,
           "ZIP": base64.b64encode(make_zip(CODE)).decode()}
    done = subprocess.run(["node", str(script)], cwd=node_sdk, env=env, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert json.loads(out["sync"])["event"] == "from node"
    assert (out["status"], out["missing"], out["names"]) == ("accepted", "FunctionNotFound",
                                                             ["hi"])
    wait_for(lambda: _succeeded_tasks(secured, f"{service}$hi") == 1)  # the async one ran
