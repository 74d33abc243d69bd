"""Versions and aliases through the official FC 3.0 SDK: a version is what the function
was when published, runs on instances of its own, and is what a qualifier names; an
alias points at a version and can send a share of the calls to a second one (a canary);
an unknown qualifier is an error, never LATEST."""

from __future__ import annotations

import json

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Server
from tests.helpers import API, b64, make_zip, unique, wait_for


def _code(answer: str) -> str:
    return b64(make_zip({"index.py": f"""
import os

def handler(event, context):
    return "{answer}:" + os.environ.get("COLOUR", "")
"""}))


@pytest.fixture(scope="module")
def sdk(server: Server) -> Client:
    return Client(openapi.Config(
        access_key_id="test-ak", access_key_secret="test-sk",
        endpoint=f"127.0.0.1:{server.port}", protocol="http", region_id="local",
    ))


def _deploy(sdk: Client, answer: str = "v1", **env: str) -> str:
    name = unique("ver")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=_code(answer)), environment_variables=env)))
    return name


def _update(sdk: Client, name: str, answer: str | None = None, **env: str) -> None:
    sdk.update_function(name, fc.UpdateFunctionRequest(body=fc.UpdateFunctionInput(
        code=fc.InputCodeLocation(zip_file=_code(answer)) if answer else None,
        environment_variables=env or None)))


def _publish(sdk: Client, name: str, description: str = "") -> str:
    out = sdk.publish_function_version(name, fc.PublishFunctionVersionRequest(
        body=fc.PublishVersionInput(description=description)))
    return str(out.body.version_id)


def _invoke(sdk: Client, name: str, qualifier: str | None = None) -> tuple[str, dict[str, str]]:
    out = sdk.invoke_function(name, fc.InvokeFunctionRequest(qualifier=qualifier, body=b""))
    return out.body.read().decode(), out.headers


def _error(call: object) -> ClientException:
    with pytest.raises(ClientException) as info:
        call()  # type: ignore[operator]
    return info.value


def test_a_version_is_the_function_as_published_on_instances_of_its_own(sdk: Client) -> None:
    name = _deploy(sdk, "v1", COLOUR="red")
    assert _publish(sdk, name, "first") == "1"
    assert _publish(sdk, name) == "1"  # nothing changed: the same version
    _update(sdk, name, "v2", COLOUR="blue")
    assert _publish(sdk, name, "second") == "2"
    _update(sdk, name, COLOUR="green")  # LATEST moves on; the versions stay

    one, one_headers = _invoke(sdk, name, "1")
    two, two_headers = _invoke(sdk, name, "2")
    latest, latest_headers = _invoke(sdk, name)
    assert (one, two, latest) == ("v1:red", "v2:blue", "v2:green")
    assert [h["x-fc-invocation-service-version"] for h in (
        one_headers, two_headers, latest_headers)] == ["1", "2", "LATEST"]
    assert len({h["x-funclet-instance-id"] for h in (
        one_headers, two_headers, latest_headers)}) == 3
    assert _invoke(sdk, name, "LATEST")[0] == "v2:green"

    got = sdk.get_function(name, fc.GetFunctionRequest(qualifier="1")).body
    assert got.environment_variables == {"COLOUR": "red"}
    assert sdk.get_function(name, fc.GetFunctionRequest()).body.environment_variables == {
        "COLOUR": "green"}

    backward = sdk.list_function_versions(name, fc.ListFunctionVersionsRequest()).body
    assert [v.version_id for v in backward.versions] == ["2", "1"]
    assert [v.description for v in backward.versions] == ["second", "first"]
    page = sdk.list_function_versions(name, fc.ListFunctionVersionsRequest(
        direction="FORWARD", limit=1)).body
    assert [v.version_id for v in page.versions] == ["1"] and page.next_token
    rest = sdk.list_function_versions(name, fc.ListFunctionVersionsRequest(
        direction="FORWARD", limit=1, next_token=page.next_token)).body
    assert [v.version_id for v in rest.versions] == ["2"] and not rest.next_token


def test_an_unknown_qualifier_is_an_error_never_latest(sdk: Client, client: httpx.Client) -> None:
    name = _deploy(sdk)
    _publish(sdk, name)
    missing = _error(lambda: _invoke(sdk, name, "9"))
    assert (missing.status_code, missing.code) == (404, "VersionNotFound")
    alias = _error(lambda: _invoke(sdk, name, "prod"))
    assert (alias.status_code, alias.code) == (404, "AliasNotFound")
    assert _error(lambda: sdk.get_function(name, fc.GetFunctionRequest(
        qualifier="prod"))).code == "AliasNotFound"
    bad = client.post(f"{API}/functions/{name}/invocations", params={"qualifier": "a b"})
    assert bad.status_code == 400 and bad.json()["Code"] == "InvalidArgument"
    gone = _error(lambda: _invoke(sdk, unique("none"), "1"))
    assert gone.code == "FunctionNotFound"
    r = client.post(f"{API}/functions/{name}/invocations", params={"qualifier": "prod"},
                    headers={"x-fc-invocation-type": "Async"})
    assert r.status_code == 404 and r.json()["Code"] == "AliasNotFound"


def test_an_alias_moves_at_once_and_splits_by_weight(sdk: Client) -> None:
    name = _deploy(sdk, "v1")
    _publish(sdk, name)
    _update(sdk, name, "v2")
    _publish(sdk, name)
    created = sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1", description="live"))).body
    assert (created.alias_name, created.version_id, created.description) == ("prod", "1", "live")
    assert _invoke(sdk, name, "prod")[0] == "v1:"
    again = _error(lambda: sdk.create_alias(name, fc.CreateAliasRequest(
        body=fc.CreateAliasInput(alias_name="prod", version_id="1"))))
    assert (again.status_code, again.code) == (409, "AliasAlreadyExists")
    nowhere = _error(lambda: sdk.create_alias(name, fc.CreateAliasRequest(
        body=fc.CreateAliasInput(alias_name="next", version_id="7"))))
    assert nowhere.code == "VersionNotFound"

    sdk.update_alias(name, "prod", fc.UpdateAliasRequest(body=fc.UpdateAliasInput(
        version_id="2")))
    assert _invoke(sdk, name, "prod") [0] == "v2:"  # the next call, at once
    got = sdk.get_alias(name, "prod").body
    assert (got.version_id, got.description) == ("2", "live")

    sdk.update_alias(name, "prod", fc.UpdateAliasRequest(body=fc.UpdateAliasInput(
        version_id="1", additional_version_weight={"2": 0.5})))
    ran = [_invoke(sdk, name, "prod")[1]["x-fc-invocation-service-version"]
           for _ in range(200)]
    assert set(ran) == {"1", "2"}
    assert 0.3 < ran.count("2") / len(ran) < 0.7
    bad = _error(lambda: sdk.update_alias(name, "prod", fc.UpdateAliasRequest(
        body=fc.UpdateAliasInput(additional_version_weight={"2": 1.5}))))
    assert bad.code == "InvalidArgument"

    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="staging", version_id="2")))
    listed = sdk.list_aliases(name, fc.ListAliasesRequest()).body
    assert [a.alias_name for a in listed.aliases] == ["prod", "staging"]
    page = sdk.list_aliases(name, fc.ListAliasesRequest(limit=1)).body
    assert [a.alias_name for a in page.aliases] == ["prod"] and page.next_token
    assert [a.alias_name for a in sdk.list_aliases(name, fc.ListAliasesRequest(
        limit=1, next_token=page.next_token)).body.aliases] == ["staging"]


def test_a_version_an_alias_uses_cannot_be_deleted(sdk: Client) -> None:
    name = _deploy(sdk, "v1")
    _publish(sdk, name)
    _update(sdk, name, "v2")
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="canary", version_id="2", additional_version_weight={"1": 0.1})))
    for version in ("1", "2"):
        refused = _error(lambda v=version: sdk.delete_function_version(name, v))
        assert (refused.status_code, refused.code) == (409, "VersionInUse")
        assert "canary" in refused.message
    sdk.delete_alias(name, "canary")
    assert _error(lambda: sdk.get_alias(name, "canary")).code == "AliasNotFound"
    sdk.delete_function_version(name, "1")
    assert _error(lambda: _invoke(sdk, name, "1")).code == "VersionNotFound"
    assert _error(lambda: sdk.delete_function_version(name, "1")).code == "VersionNotFound"
    _update(sdk, name, "v3")
    assert _publish(sdk, name) == "3"  # ids are not reused


def test_an_async_task_runs_the_version_its_qualifier_named(
        sdk: Client, client: httpx.Client) -> None:
    name = _deploy(sdk, "v1")
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    _update(sdk, name, "v2")
    r = client.post(f"{API}/functions/{name}/invocations", params={"qualifier": "prod"},
                    headers={"x-fc-invocation-type": "Async"})
    assert r.status_code == 202, r.text
    task_id = r.headers["x-fc-async-task-id"]
    task = wait_for(lambda: (t := client.get(f"{API}/functions/{name}/async-tasks/{task_id}")
                             .json())["status"] == "Succeeded" and t, timeout=20)
    assert task["returnPayload"] == "v1:"


def test_deleting_the_function_deletes_its_versions_and_aliases(sdk: Client) -> None:
    name = _deploy(sdk, "v1")
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    sdk.delete_function(name)
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=_code("new")))))
    assert _error(lambda: _invoke(sdk, name, "prod")).code == "AliasNotFound"
    assert _error(lambda: _invoke(sdk, name, "1")).code == "VersionNotFound"
    assert _publish(sdk, name) == "1"


def _prod_on_version_one(sdk: Client) -> str:
    """A function whose version 1 answers v1 and alias prod points at it; LATEST is v2."""
    name = _deploy(sdk, "v1")
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    _update(sdk, name, "v2")
    return name


def test_triggers_invoke_their_qualifier(sdk: Client, client: httpx.Client) -> None:
    name = _prod_on_version_one(sdk)
    url = f"{API}/functions/{name}/triggers"
    r = client.post(url, json={"triggerName": "tick", "triggerType": "timer",
                               "qualifier": "prod", "triggerConfig": {
                                   "cronExpression": "@every 1s", "payload": "x"}})
    assert r.status_code == 200, r.text
    assert r.json()["qualifier"] == "prod"
    task = wait_for(lambda: next((t for t in client.get(
        f"{API}/functions/{name}/async-tasks").json()["tasks"]
        if t["status"] == "Succeeded"), None), timeout=20)
    assert task["returnPayload"] == "v1:" and task["qualifier"] == "prod"
    assert client.delete(f"{url}/tick").status_code == 204

    r = client.post(url, json={"triggerName": "web", "triggerType": "http",
                               "qualifier": "1", "triggerConfig": {
                                   "authType": "anonymous", "methods": ["GET"]}})
    assert r.status_code == 200, r.text
    assert client.get(f"/http/{name}/").text == "v1:"
    for qualifier, code in (("nope", "AliasNotFound"), ("5", "VersionNotFound")):
        r = client.post(url, json={"triggerName": f"t{code}", "triggerType": "timer",
                                   "qualifier": qualifier, "triggerConfig": {
                                       "cronExpression": "@every 1m"}})
        assert r.status_code == 404 and r.json()["Code"] == code, r.text
    r = client.put(f"{url}/web", json={"qualifier": "nope"})
    assert r.status_code == 404 and client.get(f"/http/{name}/").text == "v1:"


def test_records_instances_and_tasks_say_which_version_ran(
        sdk: Client, client: httpx.Client) -> None:
    name = _prod_on_version_one(sdk)
    _, headers = _invoke(sdk, name, "prod")
    _invoke(sdk, name)
    record = client.get(f"{API}/functions/{name}/invocations/{headers['x-fc-request-id']}")
    assert record.json()["versionId"] == "1"
    versions = {r["requestId"]: r["versionId"] for r in client.get(
        f"{API}/functions/{name}/invocations").json()["invocations"]}
    assert sorted(versions.values()) == ["1", "LATEST"]

    def instances(**params: str) -> list[tuple[str, str]]:
        return sorted((i["versionId"], i["qualifier"]) for i in client.get(
            f"{API}/functions/{name}/instances", params=params).json()["instances"])

    assert instances() == [("0", "LATEST"), ("1", "1")]
    assert instances(qualifier="prod") == [("1", "1")]
    assert instances(qualifier="LATEST") == [("0", "LATEST")]
    r = client.get(f"{API}/functions/{name}/instances", params={"qualifier": "nope"})
    assert r.status_code == 404

    for qualifier in ("prod", "LATEST"):
        r = client.post(f"{API}/functions/{name}/invocations", params={"qualifier": qualifier},
                        headers={"x-fc-invocation-type": "Async"})
        assert r.status_code == 202, r.text
    tasks = f"{API}/functions/{name}/async-tasks"
    wait_for(lambda: len([t for t in client.get(tasks).json()["tasks"]
                          if t["status"] == "Succeeded"]) == 2, timeout=20)
    assert [t["qualifier"] for t in client.get(tasks, params={"qualifier": "prod"})
            .json()["tasks"]] == ["prod"]
    assert [t["returnPayload"] for t in client.get(tasks, params={"qualifier": "LATEST"})
            .json()["tasks"]] == ["v2:"]


CONTEXT = {"index.py": """
import json, os

def handler(event, context):
    return json.dumps({
        "service": [context.service.name, context.service.qualifier,
                    context.service.version_id, context.service.log_project,
                    context.service.log_store],
        "function": [context.function.qualifier, context.function.version_id],
        "log": [context.log_project, context.log_store],
        "tracing": context.tracing.open_tracing_span_baggages,
        "env": os.environ["FC_QUALIFIER"],
    })
"""}
NODE_CONTEXT = {"index.js": """
exports.handler = (event, context, callback) => callback(null, JSON.stringify({
  service: [context.service.name, context.service.qualifier, context.service.versionId,
            context.service.logProject, context.service.logStore],
  function: [context.function.qualifier, context.function.versionId],
  log: [context.logProject, context.logStore],
  env: process.env.FC_QUALIFIER,
}));
"""}


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs20"])
def test_the_context_says_the_qualifier_and_version(sdk: Client, runtime: str) -> None:
    """context.service (older runtimes), context.function.qualifier/version_id and
    log_project/log_store (python3.12), FC_QUALIFIER: through an alias, a version and
    LATEST."""
    name = unique("ctx")
    files = CONTEXT if runtime.startswith("python") else NODE_CONTEXT
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime=runtime, handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip(files))),
        log_config=fc.LogConfig(project="proj", logstore="store"))))
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    seen = {q: json.loads(_invoke(sdk, name, q)[0]) for q in ("prod", "1", "LATEST")}
    assert seen["prod"]["service"] == [name, "prod", "1", "proj", "store"]
    assert seen["prod"]["function"] == ["prod", "1"] and seen["prod"]["env"] == "1"
    assert seen["1"]["function"] == ["1", "1"]
    assert seen["LATEST"]["function"] == ["LATEST", "LATEST"]
    assert seen["LATEST"]["env"] == "LATEST" and seen["LATEST"]["log"] == ["proj", "store"]


SLOW = """
import time

def handler(event, context):
    time.sleep(0.3)
    return "%s"
"""


def test_a_waiting_invocation_runs_the_version_it_asked_for(
        sdk: Client, client: httpx.Client) -> None:
    """One slot for the function: invocations of version 1 and of LATEST queue for it,
    and an instance freed by one version is handed only to a waiter of that version."""
    from concurrent.futures import ThreadPoolExecutor

    name = unique("ver")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip({"index.py": SLOW % "one"}))))))
    _publish(sdk, name)
    sdk.update_function(name, fc.UpdateFunctionRequest(body=fc.UpdateFunctionInput(
        code=fc.InputCodeLocation(zip_file=b64(make_zip({"index.py": SLOW % "latest"}))))))
    client.put(f"{API}/functions/{name}/concurrency", json={"reservedConcurrency": 1})
    qualifiers = ["1", "LATEST"] * 4
    with ThreadPoolExecutor(len(qualifiers)) as pool:
        answers = list(pool.map(lambda q: client.post(
            f"{API}/functions/{name}/invocations", params={"qualifier": q}), qualifiers))
    assert [a.status_code for a in answers] == [200] * len(qualifiers)
    assert [a.text for a in answers] == ["one" if q == "1" else "latest" for q in qualifiers]
    assert [a.headers["x-fc-invocation-service-version"] for a in answers] == qualifiers


def test_async_invoke_configs_are_per_qualifier(sdk: Client, client: httpx.Client) -> None:
    """A task runs under its qualifier's config (here: its destination), else under
    LATEST's; a config for an unknown qualifier is a 404."""
    name = _deploy(sdk)
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    sinks = {q: _deploy(sdk, "sink") for q in ("LATEST", "prod")}
    for qualifier, sink in sinks.items():
        r = client.put(f"{API}/functions/{name}/async-invoke-config",
                       params={"qualifier": qualifier}, json={"destinationConfig": {
                           "onSuccess": {"destination":
                                         f"acs:fc:local:1000000000000000:functions/{sink}"}}})
        assert r.status_code == 200 and r.json()["qualifier"] == qualifier, r.text
    got = sdk.get_async_invoke_config(name, fc.GetAsyncInvokeConfigRequest(qualifier="prod"))
    assert got.body.destination_config.on_success.destination.endswith(sinks["prod"])
    listed = sdk.list_async_invoke_configs(fc.ListAsyncInvokeConfigsRequest(
        function_name=name)).body.configs
    assert len(listed) == 2

    def delivered(sink: str) -> int:
        return len(client.get(f"{API}/functions/{sink}/async-tasks").json()["tasks"])

    for qualifier in ("prod", "1", None):  # "1" has no config: LATEST's applies
        r = client.post(f"{API}/functions/{name}/invocations",
                        params={"qualifier": qualifier} if qualifier else None,
                        headers={"x-fc-invocation-type": "Async"})
        assert r.status_code == 202
    wait_for(lambda: (delivered(sinks["prod"]), delivered(sinks["LATEST"])) == (1, 2),
             timeout=20)

    sdk.delete_async_invoke_config(name, fc.DeleteAsyncInvokeConfigRequest(qualifier="prod"))
    assert _error(lambda: sdk.get_async_invoke_config(
        name, fc.GetAsyncInvokeConfigRequest(qualifier="prod"))).status_code == 404
    assert sdk.get_async_invoke_config(name, fc.GetAsyncInvokeConfigRequest()).body
    assert _error(lambda: sdk.put_async_invoke_config(name, fc.PutAsyncInvokeConfigRequest(
        qualifier="nope", body=fc.PutAsyncInvokeConfigInput(max_async_retry_attempts=1)))
    ).status_code == 404


def test_provision_configs_of_an_alias_follow_it(sdk: Client, client: httpx.Client) -> None:
    """PutProvisionConfig with an alias keeps instances of the version it points at
    started; when the alias moves, they move with it; deleting the alias ends it."""
    name = _deploy(sdk, "v1")
    _publish(sdk, name)
    _update(sdk, name, "v2")
    _publish(sdk, name)
    sdk.create_alias(name, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    put = sdk.put_provision_config(name, fc.PutProvisionConfigRequest(
        qualifier="prod", body=fc.PutProvisionConfigInput(target=1))).body
    assert put.target == 1

    def current(qualifier: str) -> int:
        return int(sdk.get_provision_config(name, fc.GetProvisionConfigRequest(
            qualifier=qualifier)).body.current or 0)

    wait_for(lambda: current("prod") == 1, timeout=20)
    r = client.post(f"{API}/functions/{name}/invocations", params={"qualifier": "prod"})
    assert (r.text, r.headers["x-funclet-start-kind"]) == ("v1:", "provisioned")
    listed = sdk.list_provision_configs(fc.ListProvisionConfigsRequest(
        function_name=name)).body.provision_configs
    assert [c.target for c in listed] == [1]

    sdk.update_alias(name, "prod", fc.UpdateAliasRequest(body=fc.UpdateAliasInput(
        version_id="2")))
    wait_for(lambda: current("prod") == 1, timeout=20)
    wait_for(lambda: client.post(f"{API}/functions/{name}/invocations", params={
        "qualifier": "prod"}).headers["x-funclet-start-kind"] == "provisioned", timeout=20)
    assert client.post(f"{API}/functions/{name}/invocations",
                       params={"qualifier": "prod"}).text == "v2:"
    assert _error(lambda: sdk.put_provision_config(name, fc.PutProvisionConfigRequest(
        qualifier="nope", body=fc.PutProvisionConfigInput(target=1)))).status_code == 404
    sdk.delete_alias(name, "prod")
    assert sdk.list_provision_configs(fc.ListProvisionConfigsRequest(
        function_name=name)).body.provision_configs == []
