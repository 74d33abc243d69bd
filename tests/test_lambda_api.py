"""AWS Lambda's API through boto3, unchanged: functions created, read, updated, listed
and deleted; Invoke (RequestResponse with Lambda's semantics and its log tail, Event,
DryRun); Lambda's errors; every function visible through both APIs, each keeping the
semantics it was created with."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, unique, wait_for

APP = """
import json, os

STATE = {"calls": 0}

def handler(event, context):
    STATE["calls"] += 1
    if event.get("fail"):
        raise ValueError("asked to fail")
    print("got", json.dumps(event))
    return {
        "event": event,
        "calls": STATE["calls"],
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "remaining": 0 < context.get_remaining_time_in_millis() <= 3000,
        "cwd": os.getcwd(),
        "file": __file__,
        "client": context.client_context and {
            "custom": context.client_context.custom,
            "app": context.client_context.client and context.client_context.client.app_title},
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_LAMBDA_LOG_GROUP_NAME",
            "LAMBDA_TASK_ROOT", "_HANDLER", "GREETING")},
    }
"""


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()


@pytest.fixture(scope="module")
def aws(server: Server) -> Iterator[Any]:
    yield boto3.client(
        "lambda", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id="funclet", aws_secret_access_key="funclet",
        config=Config(retries={"max_attempts": 0}))


def _create(aws: Any, name: str, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = aws.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::123456789012:role/x",
        Handler="app.handler", Code={"ZipFile": _zip({"app.py": APP})}, **more)
    return out


def test_create_invoke_and_the_log_tail_as_lambda_gives_them(aws: Any) -> None:
    name = unique("lam")
    created = _create(aws, name, Environment={"Variables": {"GREETING": "hi"}},
                      MemorySize=200)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == name and created["Runtime"] == "python3.11"
    assert created["Timeout"] == 3 and created["MemorySize"] == 200  # Lambda's: any MB
    assert created["FunctionArn"].endswith(f":function:{name}")
    assert created["Version"] == "$LATEST" and created["State"] == "Active"
    assert base64.b64decode(created["CodeSha256"])  # base64 of the sha256
    aws.get_waiter("function_active_v2").wait(FunctionName=name)

    r = aws.invoke(FunctionName=name, Payload=b'{"who": "boto3"}', LogType="Tail")
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    assert r["ExecutedVersion"] == "$LATEST"
    out = json.loads(r["Payload"].read())
    assert out["event"] == {"who": "boto3"} and out["calls"] == 1
    assert out["request_id"] == r["ResponseMetadata"]["RequestId"]
    assert out["function_name"] == name and out["function_version"] == "$LATEST"
    assert out["arn"] == created["FunctionArn"] and out["memory"] == "200"
    assert out["log_group"] == f"/aws/lambda/{name}" and out["remaining"] is True
    assert out["cwd"] == "/var/task" and out["file"] == "/var/task/app.py"
    assert out["env"] == {
        "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "200", "AWS_REGION": out["env"]["AWS_REGION"],
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}", "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": "app.handler", "GREETING": "hi"}
    log = base64.b64decode(r["LogResult"]).decode()
    request_id = out["request_id"]
    assert log.startswith(f"START RequestId: {request_id} Version: $LATEST\n")
    assert 'got {"who": "boto3"}\n' in log and f"END RequestId: {request_id}\n" in log
    assert f"REPORT RequestId: {request_id}\tDuration: " in log
    assert "Memory Size: 200 MB" in log and "Init Duration: " in log  # a cold start
    used = int(log.split("Max Memory Used: ", 1)[1].split(" MB", 1)[0])  # its cgroup's peak
    assert 1 <= used <= 200

    again = aws.invoke(FunctionName=name, Payload=b"{\"n\": 2}", LogType="Tail")
    assert json.loads(again["Payload"].read())["calls"] == 2  # warm: module state kept
    assert "Init Duration" not in base64.b64decode(again["LogResult"]).decode()
    empty = json.loads(aws.invoke(FunctionName=name)["Payload"].read())
    assert empty["event"] == {} and empty["client"] is None
    given = base64.b64encode(json.dumps({"custom": {"k": "v"}, "client": {
        "app_title": "my app"}}).encode()).decode()
    with_client = json.loads(aws.invoke(FunctionName=name, ClientContext=given)[
        "Payload"].read())
    assert with_client["client"] == {"custom": {"k": "v"}, "app": "my app"}
    with pytest.raises(ClientError) as bad_context:
        aws.invoke(FunctionName=name, ClientContext="not base64 json")
    assert _code(bad_context) == "InvalidParameterValueException"

    failed = aws.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"
    assert any("app.py" in line for line in error["stackTrace"])


def test_event_and_dry_run(aws: Any, client: httpx.Client) -> None:
    name = unique("lam")
    _create(aws, name)
    queued = aws.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 1}')
    assert queued["StatusCode"] == 202
    request_id = queued["ResponseMetadata"]["RequestId"]
    record = wait_for(lambda: (r := client.get(
        f"{API}/functions/{name}/invocations/{request_id}")).status_code == 200 and r.json())
    assert record["mode"] == "async" and record["status"] == "succeeded"
    assert aws.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_lambdas_errors(aws: Any) -> None:
    name = unique("lam")
    with pytest.raises(ClientError) as missing:
        aws.invoke(FunctionName=name, Payload=b"{}")
    assert _code(missing) == "ResourceNotFoundException"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    _create(aws, name)
    with pytest.raises(ClientError) as twice:
        _create(aws, name)
    assert _code(twice) == "ResourceConflictException"
    with pytest.raises(ClientError) as not_json:
        aws.invoke(FunctionName=name, Payload=b"not json")
    assert _code(not_json) == "InvalidRequestContentException"
    with pytest.raises(ClientError) as bad:
        aws.update_function_configuration(FunctionName=name, Timeout=100_000)
    assert _code(bad) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as past_lambdas:  # FC allows 86,400 s; Lambda 900
        aws.update_function_configuration(FunctionName=name, Timeout=901)
    assert _code(past_lambdas) == "InvalidParameterValueException"
    assert "less than or equal to 900" in str(past_lambdas.value)
    with pytest.raises(ClientError) as large:
        _create(aws, unique("lam"), MemorySize=10241)
    assert "less than or equal to 10240" in str(large.value)
    assert aws.update_function_configuration(FunctionName=name, Timeout=900)["Timeout"] == 900
    with pytest.raises(ClientError) as image:
        aws.create_function(FunctionName=unique("lam"), PackageType="Image",
                            Role="arn:aws:iam::1:role/x", Code={"ImageUri": "x"})
    assert _code(image) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as qualifier:
        aws.get_function(FunctionName=name, Qualifier="nope")
    assert _code(qualifier) in ("ResourceNotFoundException", "InvalidParameterValueException")


def test_read_update_list_and_delete(aws: Any, client: httpx.Client) -> None:
    name = unique("lam")
    _create(aws, name, Tags={"team": "a"})
    by_arn = aws.get_function(FunctionName=f"arn:aws:lambda:us-east-1:123456789012:"
                              f"function:{name}")
    assert by_arn["Configuration"]["FunctionName"] == name
    assert by_arn["Tags"] == {"team": "a"}
    package = httpx.get(by_arn["Code"]["Location"])
    assert package.status_code == 200 and zipfile.ZipFile(io.BytesIO(package.content)).read(
        "app.py").decode() == APP

    updated = aws.update_function_configuration(
        FunctionName=name, Timeout=10, Environment={"Variables": {"GREETING": "hello"}},
        Description="updated")
    assert updated["Timeout"] == 10 and updated["LastUpdateStatus"] == "Successful"
    aws.get_waiter("function_updated_v2").wait(FunctionName=name)
    config = aws.get_function_configuration(FunctionName=name)
    assert config["Description"] == "updated" and config["Handler"] == "app.handler"
    out = json.loads(aws.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert out["env"]["GREETING"] == "hello"

    new_code = "def handler(event, context):\n    return 'v2'\n"
    aws.update_function_code(FunctionName=name, ZipFile=_zip({"app.py": new_code}))
    assert aws.invoke(FunctionName=name)["Payload"].read() == b'"v2"'  # JSON-encoded

    fc_made = deploy(client, {"index.py": "def handler(event, context):\n"
                                          "    return b'fc:' + event\n"})
    names = set()
    for page in aws.get_paginator("list_functions").paginate(PaginationConfig={
            "PageSize": 5}):
        names |= {f["FunctionName"] for f in page["Functions"]}
    assert {name, fc_made} <= names  # both APIs' functions
    # Each keeps its semantics: the FC function gets the payload's bytes as they are.
    assert aws.invoke(FunctionName=fc_made, Payload=b'{"a": 1}')["Payload"].read() == \
        b'fc:{"a": 1}'
    assert client.get(f"{API}/functions/{name}").json()["semantics"] == "lambda"
    assert "semantics" not in client.get(f"{API}/functions/{fc_made}").json()

    aws.delete_function(FunctionName=name)
    with pytest.raises(ClientError) as gone:
        aws.get_function(FunctionName=name)
    assert _code(gone) == "ResourceNotFoundException"


def test_account_settings_and_unknown_routes(aws: Any, server: Server) -> None:
    settings = aws.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] >= 1
    assert settings["AccountUsage"]["FunctionCount"] >= 0
    r = httpx.get(f"{server.url}/2015-03-31/nothing-here")
    assert r.status_code == 404 and "x-amzn-errortype" in r.headers
    assert "message" in r.json()


def test_versions_and_aliases_with_a_canary(aws: Any) -> None:
    name = unique("lam")
    _create(aws, name)
    one = aws.publish_version(FunctionName=name, Description="first")
    assert one["Version"] == "1" and one["FunctionArn"].endswith(f":{name}:1")
    aws.update_function_code(FunctionName=name, ZipFile=_zip({
        "app.py": "def handler(event, context):\n    return context.function_version\n"}))
    two = aws.publish_version(FunctionName=name)
    assert two["Version"] == "2"
    versions = aws.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    paged = [v["Version"] for page in aws.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}) for v in page["Versions"]]
    assert paged == ["$LATEST", "1", "2"]

    r = aws.invoke(FunctionName=name, Qualifier="2")
    assert r["ExecutedVersion"] == "2" and r["Payload"].read() == b'"2"'
    assert aws.invoke(FunctionName=f"{name}:1", Payload=b"{}")["ExecutedVersion"] == "1"

    alias = aws.create_alias(FunctionName=name, Name="prod", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert alias["AliasArn"].endswith(f":function:{name}:prod")
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}
    ran = {aws.invoke(FunctionName=name, Qualifier="prod", Payload=b"{}")["ExecutedVersion"]
           for _ in range(40)}
    assert ran == {"1", "2"}  # the canary's share reaches version 2
    aws.update_alias(FunctionName=name, Name="prod", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {}})
    got = aws.get_alias(FunctionName=name, Name="prod")
    assert got["FunctionVersion"] == "2" and "RoutingConfig" not in got
    assert aws.invoke(FunctionName=name, Qualifier="prod")["ExecutedVersion"] == "2"
    config = aws.get_function_configuration(FunctionName=name, Qualifier="prod")
    assert config["Version"] == "2"
    listed = aws.list_aliases(FunctionName=name)["Aliases"]
    assert [a["Name"] for a in listed] == ["prod"]
    assert aws.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"] == []
    with pytest.raises(ClientError) as latest:
        aws.create_alias(FunctionName=name, Name="x", FunctionVersion="$LATEST")
    assert _code(latest) == "InvalidParameterValueException"
    aws.delete_alias(FunctionName=name, Name="prod")
    with pytest.raises(ClientError) as gone:
        aws.get_alias(FunctionName=name, Name="prod")
    assert _code(gone) == "ResourceNotFoundException"
    aws.delete_function(FunctionName=name, Qualifier="1")
    assert [v["Version"] for v in aws.list_versions_by_function(FunctionName=name)[
        "Versions"]] == ["$LATEST", "2"]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("lambda-auth"), FUNCLET_REQUIRE_AUTH="true",
                          FUNCLET_API_TOKEN="lambda-token",
                          FUNCLET_ACCESS_KEYS='{"AKIDFUNCLET": "sigv4-secret"}')
    yield server
    stop_server(server)


def _client(server: Server, key: str, secret: str) -> Any:
    return boto3.client("lambda", endpoint_url=server.url, region_name="eu-west-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}))


def test_with_auth_on_sigv4_is_checked_with_funclets_access_keys(secured: Server) -> None:
    aws = _client(secured, "AKIDFUNCLET", "sigv4-secret")
    name = unique("signed")
    _create(aws, name)  # a signed POST with a body
    arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{name}"
    assert aws.get_function(FunctionName=arn)["Configuration"]["FunctionName"] == name
    out = aws.invoke(FunctionName=arn, Qualifier="$LATEST", Payload=b'{"signed": 1}')
    assert json.loads(out["Payload"].read())["event"] == {"signed": 1}
    assert aws.list_functions(MaxItems=5)["Functions"]
    for key, secret in (("AKIDFUNCLET", "wrong"), ("AKIDUNKNOWN", "sigv4-secret")):
        with pytest.raises(ClientError) as refused:
            _client(secured, key, secret).list_functions()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert _code(refused) == "AccessDeniedException"
    anonymous = httpx.get(f"{secured.url}/2015-03-31/functions")
    assert anonymous.status_code == 401 and anonymous.headers["x-amzn-errortype"]
    # A signature is bound to its request: another body under the same one is refused.
    request = httpx.Request("POST", f"{secured.url}/2015-03-31/functions/{name}/invocations",
                            content=b'{"a": 1}')
    signed = AWSRequest(method="POST", url=str(request.url), data=b'{"a": 1}')
    SigV4Auth(Credentials("AKIDFUNCLET", "sigv4-secret"), "lambda", "eu-west-1").add_auth(signed)
    headers = dict(signed.headers.items())
    assert httpx.post(str(request.url), content=b'{"a": 1}', headers=headers).status_code == 200
    assert httpx.post(str(request.url), content=b'{"a": 2}', headers=headers).status_code == 403


def test_concurrency_provisioned_event_configs_and_tags(aws: Any, client: httpx.Client) -> None:
    name, target = unique("lam"), unique("lam")
    _create(aws, name)
    _create(aws, target)
    assert aws.put_function_concurrency(
        FunctionName=name, ReservedConcurrentExecutions=2)["ReservedConcurrentExecutions"] == 2
    assert aws.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 2
    assert aws.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 2}
    aws.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in aws.get_function_concurrency(
        FunctionName=name)

    aws.publish_version(FunctionName=name)
    provisioned = aws.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    assert provisioned["RequestedProvisionedConcurrentExecutions"] == 1
    wait_for(lambda: aws.get_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1")["Status"] == "READY", timeout=30)
    r = aws.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-funclet-start-kind"] == "provisioned"
    with pytest.raises(ClientError) as latest:
        aws.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    assert _code(latest) == "InvalidParameterValueException"
    aws.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    with pytest.raises(ClientError) as none:
        aws.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert _code(none) == "ProvisionedConcurrencyConfigNotFoundException"

    target_arn = aws.get_function(FunctionName=target)["Configuration"]["FunctionArn"]
    config = aws.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnSuccess": {"Destination": target_arn}})
    assert config["MaximumRetryAttempts"] == 0 and config["MaximumEventAgeInSeconds"] == 120
    assert config["DestinationConfig"]["OnSuccess"]["Destination"] == target_arn
    updated = aws.update_function_event_invoke_config(FunctionName=name,
                                                      MaximumEventAgeInSeconds=600)
    assert updated["MaximumRetryAttempts"] == 0 and updated["MaximumEventAgeInSeconds"] == 600
    assert [c["FunctionArn"] for c in aws.list_function_event_invoke_configs(
        FunctionName=name)["FunctionEventInvokeConfigs"]] == [config["FunctionArn"]]
    for bad in ({"MaximumRetryAttempts": 3}, {"MaximumEventAgeInSeconds": 21_601}):
        with pytest.raises(ClientError) as refused:
            aws.put_function_event_invoke_config(FunctionName=name, **bad)
        assert _code(refused) == "InvalidParameterValueException"
    # The destination gets Lambda's record of the result.
    queued = aws.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"to": "dest"}')
    request_id = queued["ResponseMetadata"]["RequestId"]

    def delivered() -> Any:
        for rec in client.get(f"{API}/functions/{target}/invocations").json()["invocations"]:
            log = client.get(f"{API}/functions/{target}/invocations/{rec['requestId']}"
                             ).json()["log"]
            if request_id in log:
                return log
        return None
    record = json.loads(wait_for(delivered, timeout=30).split("got ", 1)[1].splitlines()[0])
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"to": "dest"}
    aws.delete_function_event_invoke_config(FunctionName=name)
    with pytest.raises(ClientError) as deleted:
        aws.get_function_event_invoke_config(FunctionName=name)
    assert _code(deleted) == "ResourceNotFoundException"

    arn = aws.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    aws.tag_resource(Resource=arn, Tags={"team": "a", "env": "dev"})
    assert aws.list_tags(Resource=arn)["Tags"] == {"team": "a", "env": "dev"}
    aws.untag_resource(Resource=arn, TagKeys=["env"])
    assert aws.list_tags(Resource=arn)["Tags"] == {"team": "a"}


NODE_APP = """
exports.handler = async (event, context) => ({
  event,
  requestId: context.awsRequestId,
  functionName: context.functionName,
  version: context.functionVersion,
  arn: context.invokedFunctionArn,
  memory: context.memoryLimitInMB,
  remaining: context.getRemainingTimeInMillis() > 0,
  cwd: process.cwd(),
  root: process.env.LAMBDA_TASK_ROOT,
  env: process.env.AWS_EXECUTION_ENV,
  client: context.clientContext,
});
exports.callback = (event, context, callback) => callback(null, `hi ${event.who}`);
exports.nothing = async () => undefined;
exports.fails = async () => { throw new TypeError('bad input'); };
"""


def test_a_nodejs_function_runs_as_lambda_runs_it(aws: Any) -> None:
    name = unique("lamnode")
    created = aws.create_function(
        FunctionName=name, Runtime="nodejs20.x", Role="arn:aws:iam::1:role/x",
        Handler="index.handler", Code={"ZipFile": _zip({"index.js": NODE_APP})})
    assert created["Runtime"] == "nodejs20.x"
    r = aws.invoke(FunctionName=name, Payload=b'{"who": "node"}', LogType="Tail")
    out = json.loads(r["Payload"].read())
    assert out["event"] == {"who": "node"} and out["requestId"] == r["ResponseMetadata"][
        "RequestId"]
    assert out["functionName"] == name and out["version"] == "$LATEST"
    assert out["arn"] == created["FunctionArn"] and out["memory"] == "128"
    assert out["remaining"] is True and out["cwd"] == out["root"] == "/var/task"
    assert out["env"] == "AWS_Lambda_nodejs20.x" and "client" not in out
    given = base64.b64encode(b'{"custom": {"k": 1}}').decode()
    assert json.loads(aws.invoke(FunctionName=name, ClientContext=given)["Payload"].read())[
        "client"] == {"custom": {"k": 1}}
    assert base64.b64decode(r["LogResult"]).decode().startswith("START RequestId: ")
    for handler, expected in (("callback", b'"hi node"'), ("nothing", b"null")):
        aws.update_function_configuration(FunctionName=name, Handler=f"index.{handler}")
        assert aws.invoke(FunctionName=name, Payload=b'{"who": "node"}')[
            "Payload"].read() == expected
    aws.update_function_configuration(FunctionName=name, Handler="index.fails")
    failed = aws.invoke(FunctionName=name, Payload=b"{}")
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "TypeError" and error["errorMessage"] == "bad input"


def test_the_aws_cli_unchanged(server: Server, tmp_path: Path) -> None:
    """`aws lambda create-function / invoke / get-function-configuration / list-functions
    / delete-function --endpoint-url …`, as a Lambda user types them."""
    name = unique("cli")
    (tmp_path / "code.zip").write_bytes(_zip({"app.py": APP}))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "funclet", "AWS_SECRET_ACCESS_KEY": "funclet",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1"}
    aws_cli = str(Path(sys.executable).parent / "aws")

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([aws_cli, "lambda", *args, "--endpoint-url", server.url],
                              capture_output=True, text=True, env=env, timeout=60)

    made = aws("create-function", "--function-name", name, "--runtime", "python3.11",
               "--handler", "app.handler", "--role", "arn:aws:iam::123456789012:role/x",
               "--zip-file", f"fileb://{tmp_path / 'code.zip'}")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["FunctionName"] == name
    invoked = aws("invoke", "--function-name", name, "--payload", '{"from": "cli"}',
                  "--log-type", "Tail", str(tmp_path / "out.json"))
    assert invoked.returncode == 0, invoked.stderr
    meta = json.loads(invoked.stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST"
    assert "REPORT RequestId:" in base64.b64decode(meta["LogResult"]).decode()
    assert json.loads((tmp_path / "out.json").read_text())["event"] == {"from": "cli"}
    config = aws("get-function-configuration", "--function-name", name)
    assert json.loads(config.stdout)["Runtime"] == "python3.11"
    listed = aws("list-functions")
    assert name in {f["FunctionName"] for f in json.loads(listed.stdout)["Functions"]}
    assert aws("delete-function", "--function-name", name).returncode == 0
    missing = aws("get-function", "--function-name", name)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


URL_APP = """
import base64, json

def handler(event, context):
    if event["rawPath"] == "/plain":
        return {"plain": True, "method": event["requestContext"]["http"]["method"]}
    if event["rawPath"] == "/fail":
        raise RuntimeError("no")
    body = event.get("body", "")
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).hex()
    return {"statusCode": 201, "headers": {"x-seen": event["rawPath"]},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": json.dumps({"body": body, "query": event.get("queryStringParameters"),
                                "raw": event["rawQueryString"],
                                "cookies": event.get("cookies"),
                                "version": event["version"],
                                "agent": event["headers"].get("user-agent")})}
"""


def test_function_urls_serve_lambdas_payload_2_0(aws: Any, secured: Server) -> None:
    name = unique("url")
    aws.create_function(FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::1:role/x",
                        Handler="app.handler", Code={"ZipFile": _zip({"app.py": URL_APP})})
    made = aws.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    url = made["FunctionUrl"]
    assert url.endswith("/") and "/lambda-url/" in url and made["InvokeMode"] == "BUFFERED"
    with pytest.raises(ClientError) as twice:
        aws.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert _code(twice) == "ResourceConflictException"

    r = httpx.post(f"{url}some/path?x=1&x=2&y=3", content=b"hello",
                   headers={"cookie": "c=3; d=4", "user-agent": "tester"})
    assert r.status_code == 201 and r.headers["x-seen"] == "/some/path"
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    seen = r.json()
    assert seen == {"body": "hello", "query": {"x": "1,2", "y": "3"}, "raw": "x=1&x=2&y=3",
                    "cookies": ["c=3", "d=4"], "version": "2.0", "agent": "tester"}
    binary = httpx.put(f"{url}bin", content=b"\x00\xff",
                       headers={"content-type": "application/octet-stream"})
    assert binary.json()["body"] == "00ff"  # base64 in the event
    plain = httpx.get(f"{url}plain")
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    assert plain.json() == {"plain": True, "method": "GET"}
    assert httpx.get(f"{url}fail").status_code == 502
    gone = httpx.get(url.replace("/lambda-url/", "/lambda-url/0") + "x")
    assert gone.status_code == 404

    assert aws.get_function_url_config(FunctionName=name)["FunctionUrl"] == url
    assert [u["FunctionUrl"] for u in aws.list_function_url_configs(
        FunctionName=name)["FunctionUrlConfigs"]] == [url]
    aws.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    wait_for(lambda: httpx.get(f"{url}plain").status_code == 403)  # (cached 2 s per node)
    aws.delete_function_url_config(FunctionName=name)
    with pytest.raises(ClientError) as deleted:
        aws.get_function_url_config(FunctionName=name)
    assert _code(deleted) == "ResourceNotFoundException"

    # AWS_IAM: only requests signed with SigV4 by one of funclet's access keys.
    signed_aws = _client(secured, "AKIDFUNCLET", "sigv4-secret")
    iam = unique("url")
    signed_aws.create_function(
        FunctionName=iam, Runtime="python3.11", Role="arn:aws:iam::1:role/x",
        Handler="app.handler", Code={"ZipFile": _zip({"app.py": URL_APP})})
    iam_url = signed_aws.create_function_url_config(FunctionName=iam,
                                                    AuthType="AWS_IAM")["FunctionUrl"]
    assert httpx.get(f"{iam_url}plain").status_code == 403

    def signed(secret: str) -> int:
        request = AWSRequest(method="GET", url=f"{iam_url}plain")
        SigV4Auth(Credentials("AKIDFUNCLET", secret), "lambda", "eu-west-1").add_auth(
            request)
        return httpx.get(f"{iam_url}plain", headers=dict(request.headers.items())).status_code
    assert signed("sigv4-secret") == 200 and signed("wrong") == 403


def test_layers_through_lambdas_paths(aws: Any) -> None:
    layer = unique("lay")
    published = aws.publish_layer_version(
        LayerName=layer, Description="helpers", CompatibleRuntimes=["python3.11"],
        Content={"ZipFile": _zip({"python/helper.py": "GREETING = 'from a layer'\n"})})
    assert published["Version"] == 1 and published["LayerVersionArn"].endswith(
        f":layer:{layer}:1")
    assert httpx.get(published["Content"]["Location"]).status_code == 200
    second = aws.publish_layer_version(LayerName=layer, Content={"ZipFile": _zip(
        {"python/helper.py": "GREETING = 'v2'\n"})})
    assert second["Version"] == 2
    assert [v["Version"] for v in aws.list_layer_versions(LayerName=layer)[
        "LayerVersions"]] == [2, 1]
    assert layer in {entry["LayerName"] for entry in aws.list_layers()["Layers"]}
    assert aws.get_layer_version(LayerName=layer, VersionNumber=1)["Description"] == "helpers"

    name = unique("lam")
    code = "import helper\ndef handler(event, context):\n    return helper.GREETING\n"
    made = aws.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                               Role="arn:aws:iam::1:role/x", Layers=[published["LayerVersionArn"]],
                               Code={"ZipFile": _zip({"app.py": code})})
    assert [entry["Arn"] for entry in made["Layers"]] == [published["LayerVersionArn"]]
    assert aws.invoke(FunctionName=name)["Payload"].read() == b'"from a layer"'  # at /opt
    aws.update_function_configuration(FunctionName=name, Layers=[second["LayerVersionArn"]])
    assert aws.invoke(FunctionName=name)["Payload"].read() == b'"v2"'
    aws.delete_layer_version(LayerName=layer, VersionNumber=1)
    with pytest.raises(ClientError) as gone:
        aws.get_layer_version(LayerName=layer, VersionNumber=1)
    assert _code(gone) == "ResourceNotFoundException"


def test_invoke_with_response_stream_as_botocore_parses_it(aws: Any) -> None:
    name = unique("lam")
    _create(aws, name)
    r = aws.invoke_with_response_stream(FunctionName=name, Payload=b'{"s": 1}',
                                        LogType="Tail")
    assert r["StatusCode"] == 200 and r["ExecutedVersion"] == "$LATEST"
    events = list(r["EventStream"])
    chunks = b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e)
    assert json.loads(chunks)["event"] == {"s": 1}
    complete = events[-1]["InvokeComplete"]
    assert "ErrorCode" not in complete
    assert "REPORT RequestId:" in base64.b64decode(complete["LogResult"]).decode()
    failed = list(aws.invoke_with_response_stream(FunctionName=name,
                                                  Payload=b'{"fail": true}')["EventStream"])
    done = failed[-1]["InvokeComplete"]
    assert done["ErrorCode"] == "Unhandled"
    assert json.loads(done["ErrorDetails"])["errorMessage"] == "asked to fail"
    dry = aws.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204


POWERTOOLS_APP = """
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser

logger = Logger(service="orders")


class Order(BaseModel):
    id: int
    item: str


@logger.inject_lambda_context
@event_parser(model=Order)
def handler(event: Order, context):
    logger.info("got an order", extra={"order_id": event.id})
    return {"id": event.id, "item": event.item.upper()}
"""


def test_aws_lambda_powertools_runs_unchanged(aws: Any, tmp_path: Path) -> None:
    """Powertools' Logger (which reads Lambda's context) and event parser (pydantic), from
    PyPI, in a function created through the Lambda API."""
    from funclet.packaging import dependency_cache, vendor_requirements, zip_dir

    (tmp_path / "app.py").write_text(POWERTOOLS_APP)
    (tmp_path / "requirements.txt").write_text("aws-lambda-powertools>=3.0\npydantic>=2.0\n")
    vendored = vendor_requirements(tmp_path, "python3.11", dependency_cache())
    name = unique("powertools")
    aws.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::1:role/x", Timeout=30, MemorySize=256,
                        Code={"ZipFile": zip_dir(tmp_path, vendored)})
    r = aws.invoke(FunctionName=name, Payload=b'{"id": 7, "item": "tea"}', LogType="Tail")
    assert "FunctionError" not in r, r["Payload"].read()
    assert json.loads(r["Payload"].read()) == {"id": 7, "item": "TEA"}
    log = base64.b64decode(r["LogResult"]).decode()
    record = json.loads(next(line for line in log.splitlines() if '"got an order"' in line))
    assert record["service"] == "orders" and record["order_id"] == 7
    assert record["function_name"] == name
    assert record["function_request_id"] == r["ResponseMetadata"]["RequestId"]
    assert record["function_memory_size"] == "256"
    assert record["cold_start"] is True
    bad = aws.invoke(FunctionName=name, Payload=b'{"id": "not a number"}')
    assert bad["FunctionError"] == "Unhandled"
    assert "ValidationError" in json.loads(bad["Payload"].read())["errorType"]


JS_SCRIPT = """
const { LambdaClient, CreateFunctionCommand, InvokeCommand, GetFunctionCommand } =
  require('@aws-sdk/client-lambda');
const client = new LambdaClient({ endpoint: process.env.ENDPOINT, region: 'eu-west-1',
  credentials: { accessKeyId: 'AKIDFUNCLET', secretAccessKey: 'sigv4-secret' },
  maxAttempts: 1 });
(async () => {
  const name = process.env.NAME;
  await client.send(new CreateFunctionCommand({ FunctionName: name, Runtime: 'nodejs20.x',
    Role: 'arn:aws:iam::1:role/x', Handler: 'index.handler',
    Code: { ZipFile: Buffer.from(process.env.ZIP, 'base64') } }));
  const out = await client.send(new InvokeCommand({ FunctionName: name,
    Payload: Buffer.from(JSON.stringify({ who: 'js sdk' })), LogType: 'Tail' }));
  let missing;
  try { await client.send(new GetFunctionCommand({ FunctionName: name + '-nope' })); }
  catch (e) { missing = e.name; }
  console.log(JSON.stringify({ status: out.StatusCode, version: out.ExecutedVersion,
    payload: JSON.parse(Buffer.from(out.Payload).toString()),
    log: Buffer.from(out.LogResult, 'base64').toString(), missing }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_the_js_sdk_creates_and_invokes(secured: Server, tmp_path_factory: Any) -> None:
    """@aws-sdk/client-lambda from npm, signing with SigV4, against funclet."""
    folder = tmp_path_factory.mktemp("aws-sdk-js")
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund",
                    "@aws-sdk/client-lambda@3"], cwd=folder, check=True, timeout=300,
                   capture_output=True)
    (folder / "try.js").write_text(JS_SCRIPT)
    name = unique("jssdk")
    env = {**os.environ, "ENDPOINT": secured.url, "NAME": name,
           "ZIP": base64.b64encode(_zip({"index.js": NODE_APP})).decode()}
    done = subprocess.run(["node", "try.js"], cwd=folder, env=env, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["status"], out["version"]) == (200, "$LATEST")
    assert out["payload"]["event"] == {"who": "js sdk"} and out["payload"]["functionName"] == name
    assert "REPORT RequestId:" in out["log"] and out["missing"] == "ResourceNotFoundException"


def test_past_the_account_limit_and_its_queue_boto3_gets_too_many_requests(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_MAX_INSTANCES="1", FUNCLET_MAX_QUEUE_LENGTH="0")
    try:
        aws = _client(server, "funclet", "funclet")
        name = unique("busy")
        aws.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                            Role="arn:aws:iam::1:role/x", Code={"ZipFile": _zip({
                                "app.py": "import time\ndef handler(event, context):\n"
                                          "    time.sleep(1)\n    return 'done'\n"})})
        first: list[Any] = []
        runner = threading.Thread(target=lambda: first.append(aws.invoke(FunctionName=name)))
        runner.start()
        wait_for(lambda: httpx.get(f"{server.url}{API}/functions/{name}/instances").json()[
            "instances"])  # the one instance is up and busy
        with pytest.raises(ClientError) as throttled:
            aws.invoke(FunctionName=name)
        runner.join()
        assert _code(throttled) == "TooManyRequestsException"
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert first[0]["Payload"].read() == b'"done"'
    finally:
        stop_server(server)


def test_a_function_urls_cors_is_applied_as_lambda_applies_it(aws: Any) -> None:
    name = unique("cors")
    aws.create_function(FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::1:role/x",
                        Handler="app.handler", Code={"ZipFile": _zip({"app.py": URL_APP})})
    url = aws.create_function_url_config(FunctionName=name, AuthType="NONE", Cors={
        "AllowOrigins": ["https://app.example"], "AllowMethods": ["POST", "GET"],
        "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-seen"], "MaxAge": 60,
        "AllowCredentials": True})["FunctionUrl"]
    preflight = httpx.options(f"{url}x", headers={
        "origin": "https://app.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 200 and "x-seen" not in preflight.headers  # not run
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "POST, GET"
    assert preflight.headers["access-control-allow-headers"] == "content-type"
    assert preflight.headers["access-control-max-age"] == "60"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    answered = httpx.post(f"{url}x", content=b"hi", headers={"origin": "https://app.example"})
    assert answered.status_code == 201 and answered.headers["x-seen"] == "/x"
    assert answered.headers["access-control-allow-origin"] == "https://app.example"
    assert answered.headers["access-control-expose-headers"] == "x-seen"
    other = httpx.post(f"{url}x", content=b"hi", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


STREAM_APP = """
exports.stream = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType('text/plain');
  responseStream.write('first;');
  await new Promise((resolve) => setTimeout(resolve, event.pause || 0));
  responseStream.write(`second:${context.awsRequestId};`);
  if (event.fail) throw new Error('failed mid-stream');
  responseStream.end('last');
});
exports.http = awslambda.streamifyResponse(async (event, responseStream) => {
  const out = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201, headers: { 'x-kind': 'streamed', 'content-type': 'text/plain' },
    cookies: ['a=1', 'b=2'] });
  out.write('hello ');
  out.end(event.rawPath);
});
exports.big = awslambda.streamifyResponse(async (event, responseStream) => {
  const chunk = Buffer.alloc(1024 * 1024, 120);
  for (let i = 0; i < 21; i++) {
    if (!responseStream.write(chunk)) await new Promise((r) => responseStream.once('drain', r));
  }
  responseStream.end();
});
"""


def _streaming_function(aws: Any, handler: str) -> str:
    name = unique("lamstream")
    aws.create_function(FunctionName=name, Runtime="nodejs20.x", Role="arn:aws:iam::1:role/x",
                        Handler=f"index.{handler}", Timeout=30,
                        Code={"ZipFile": _zip({"index.js": STREAM_APP})})
    return name


def test_a_streaming_handler_streams_through_invoke_with_response_stream(
        aws: Any, client: httpx.Client) -> None:
    name = _streaming_function(aws, "stream")
    r = aws.invoke_with_response_stream(FunctionName=name, Payload=b'{"pause": 4000}',
                                        LogType="Tail")
    request_id = r["ResponseMetadata"]["RequestId"]
    events = iter(r["EventStream"])
    # The first write arrives while the handler still runs (it waits 4 s before the next).
    assert next(events)["PayloadChunk"]["Payload"] == b"first;"
    states = [i["state"] for i in client.get(f"{API}/functions/{name}/instances").json()[
        "instances"]]
    assert states == ["busy"]
    rest = list(events)
    assert b"".join(e["PayloadChunk"]["Payload"] for e in rest if "PayloadChunk" in e) == \
        f"second:{request_id};last".encode()
    complete = rest[-1]["InvokeComplete"]
    assert "ErrorCode" not in complete
    assert "REPORT RequestId:" in base64.b64decode(complete["LogResult"]).decode()

    # An error after the first write: what was written, then InvokeComplete says it.
    failed = list(aws.invoke_with_response_stream(FunctionName=name,
                                                  Payload=b'{"fail": true}')["EventStream"])
    assert failed[0]["PayloadChunk"]["Payload"] == b"first;"
    done = failed[-1]["InvokeComplete"]
    assert done["ErrorCode"] == "Unhandled"
    assert json.loads(done["ErrorDetails"])["errorMessage"] == "failed mid-stream"

    # Invoke (not streamed): the whole stream, buffered, as Lambda answers it.
    whole = aws.invoke(FunctionName=name, Payload=b"{}")
    rid = whole["ResponseMetadata"]["RequestId"]
    assert whole["Payload"].read() == f"first;second:{rid};last".encode()

    # Past 20 MiB the stream is cut and InvokeComplete says why.
    big = _streaming_function(aws, "big")
    cut = list(aws.invoke_with_response_stream(FunctionName=big)["EventStream"])
    got = sum(len(e["PayloadChunk"]["Payload"]) for e in cut if "PayloadChunk" in e)
    assert got <= 20 * 1024 * 1024
    assert cut[-1]["InvokeComplete"]["ErrorCode"] == "Function.ResponseSizeTooLarge"


def test_a_function_url_in_response_stream_mode_streams(aws: Any) -> None:
    name = _streaming_function(aws, "http")
    url = aws.create_function_url_config(FunctionName=name, AuthType="NONE",
                                         InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    with httpx.stream("GET", f"{url}a/path") as r:
        assert r.status_code == 201 and r.headers["x-kind"] == "streamed"
        assert r.headers["content-type"] == "text/plain"
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert r.read() == b"hello /a/path"
    # Without the prelude: a 200 of the content type the handler set.
    aws.update_function_configuration(FunctionName=name, Handler="index.stream")
    aws.get_waiter("function_updated_v2").wait(FunctionName=name)
    plain = httpx.get(url)
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain")
    assert plain.text.startswith("first;second:") and plain.text.endswith(";last")
