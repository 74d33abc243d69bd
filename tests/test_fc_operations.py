"""More of FC 3.0's operations through the official SDK: disabling invocations, the
account-wide lists, DescribeRegions and resource tags."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Server
from tests.helpers import API, b64, make_zip, unique, wait_for

SLOW = {"index.py": """
import time

def handler(event, context):
    if event == b"slow":
        time.sleep(30)
    return "ran"
"""}


@pytest.fixture(scope="module")
def sdk(server: Server) -> Client:
    return Client(openapi.Config(
        access_key_id="test-ak", access_key_secret="test-sk",
        endpoint=f"127.0.0.1:{server.port}", protocol="http", region_id="local",
    ))


def _deploy(sdk: Client, files: dict[str, str | bytes] = SLOW, **more: object) -> str:
    name = unique("ops")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip(files))), **more)))
    return name


def _error(call: object) -> ClientException:
    with pytest.raises(ClientException) as info:
        call()  # type: ignore[operator]
    return info.value


def test_a_disabled_function_refuses_invocations_and_keeps_its_async_tasks(
        sdk: Client, client: httpx.Client) -> None:
    name = _deploy(sdk)
    url = f"{API}/functions/{name}/invocations"
    queued = client.post(url, content=b"", headers={"x-fc-invocation-type": "Async",
                                                    "x-fc-async-delay": "2"})
    assert queued.status_code == 202
    sdk.put_provision_config(name, fc.PutProvisionConfigRequest(
        body=fc.PutProvisionConfigInput(target=1)))
    wait_for(lambda: client.get(f"{API}/functions/{name}/provision-config")
             .json()["current"] == 1, timeout=20)

    out = sdk.disable_function_invocation(name, fc.DisableFunctionInvocationRequest(
        reason="maintenance"))
    assert out.body.success is True
    refused = _error(lambda: sdk.invoke_function(name, fc.InvokeFunctionRequest(body=b"")))
    assert (refused.status_code, refused.code) == (403, "FunctionDisabled")
    assert "maintenance" in refused.message
    r = client.post(url, headers={"x-fc-invocation-type": "Async"})
    assert r.status_code == 403 and r.json()["Code"] == "FunctionDisabled"
    got = sdk.get_function(name, fc.GetFunctionRequest()).body
    assert got.invocation_restriction.disable is True
    assert got.invocation_restriction.reason == "maintenance"
    wait_for(lambda: not client.get(f"{API}/functions/{name}/instances", params={
        "withAllActive": "true"}).json()["instances"], timeout=10)  # provisioned: gone

    task_url = f"{API}/functions/{name}/async-tasks/{queued.headers['x-fc-async-task-id']}"
    time.sleep(3)  # the queued task falls due while disabled: it waits, not fails
    task = client.get(task_url).json()
    assert task["status"] == "Enqueued", task
    sdk.enable_function_invocation(name)
    assert client.post(url).text == "ran"
    assert wait_for(lambda: client.get(task_url).json()["status"] == "Succeeded", timeout=20)
    assert getattr(sdk.get_function(name, fc.GetFunctionRequest()).body,
                   "invocation_restriction", None) is None
    wait_for(lambda: client.get(f"{API}/functions/{name}/provision-config")
             .json()["current"] == 1, timeout=20)  # provisioned again


def test_disabling_with_abort_ends_the_running_invocations(
        sdk: Client, client: httpx.Client) -> None:
    name = _deploy(sdk)
    with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
        answers: list[httpx.Response] = []
        runner = threading.Thread(target=lambda: answers.append(other.post(
            f"{API}/functions/{name}/invocations", content=b"slow")))
        runner.start()
        wait_for(lambda: client.get(f"{API}/functions/{name}/instances").json()["instances"],
                 timeout=20)
        time.sleep(0.5)
        started = time.monotonic()
        sdk.disable_function_invocation(name, fc.DisableFunctionInvocationRequest(
            abort_ongoing_request=True))
        runner.join(20)
    assert time.monotonic() - started < 20  # not the 30 s the handler sleeps
    assert answers and answers[0].headers.get("x-fc-error-type") == "UnhandledInvocationError"


def test_the_account_wide_lists_and_regions(sdk: Client) -> None:
    one, two = _deploy(sdk), _deploy(sdk)
    arn = sdk.get_function(one, fc.GetFunctionRequest()).body.function_arn
    for name, reserved in ((one, 2), (two, 3)):
        sdk.put_concurrency_config(name, fc.PutConcurrencyConfigRequest(
            body=fc.PutConcurrencyInput(reserved_concurrency=reserved)))
    configs = sdk.list_concurrency_configs(fc.ListConcurrencyConfigsRequest(
        function_name="ops-", limit=100)).body.configs
    mine = {c.function_arn.rpartition("/")[2]: c.reserved_concurrency for c in configs}
    assert {one: 2, two: 3}.items() <= mine.items()
    page = sdk.list_concurrency_configs(fc.ListConcurrencyConfigsRequest(
        function_name=one, limit=1)).body
    assert [c.reserved_concurrency for c in page.configs] == [2] and not page.next_token

    sdk.put_provision_config(two, fc.PutProvisionConfigRequest(
        body=fc.PutProvisionConfigInput(target=1)))
    provisioned = sdk.list_provision_configs(fc.ListProvisionConfigsRequest(
        function_name=two)).body.provision_configs
    assert [(p.function_arn.rpartition("/")[2], p.target) for p in provisioned] == [(two, 1)]
    for name in (one, two):
        sdk.delete_function(name)

    regions = sdk.describe_regions(fc.DescribeRegionsRequest()).body.regions.region
    assert [r.region_id for r in regions] == [arn.split(":")[2]]  # the functions' region


def test_tags_on_functions(sdk: Client) -> None:
    team = unique("team")  # (other tests' functions have tags too)
    name = _deploy(sdk, tags=[fc.Tag(key=team, value="a")])
    other = _deploy(sdk)
    arn = sdk.get_function(other, fc.GetFunctionRequest()).body.function_arn
    sdk.tag_resources(fc.TagResourcesRequest(body=fc.TagResourcesInput(
        resource_type="function", resource_id=[name, arn],
        tag=[fc.Tag(key="env", value="prod")])))
    got = sdk.get_function(name, fc.GetFunctionRequest()).body
    assert sorted((t.key, t.value) for t in got.tags) == [("env", "prod"), (team, "a")]

    listed = sdk.list_tag_resources(fc.ListTagResourcesRequest(
        resource_type="function", resource_id=[name, other])).body.tag_resources
    assert sorted((t.resource_id.rpartition("/")[2], t.tag_key, t.tag_value)
                  for t in listed) == sorted([(name, "env", "prod"), (name, team, "a"),
                                              (other, "env", "prod")])
    by_tag = sdk.list_tag_resources(fc.ListTagResourcesRequest(
        resource_type="function", tag=[fc.ListTagResourcesRequestTag(key=team)])
    ).body.tag_resources
    assert {t.resource_id.rpartition("/")[2] for t in by_tag} == {name}

    sdk.untag_resources(fc.UntagResourcesRequest(resource_type="function",
                                                 resource_id=[name], tag_key=["env"]))
    assert [(t.key, t.value) for t in sdk.get_function(
        name, fc.GetFunctionRequest()).body.tags] == [(team, "a")]
    sdk.untag_resources(fc.UntagResourcesRequest(resource_type="function",
                                                 resource_id=[other], all=True))
    assert not sdk.get_function(other, fc.GetFunctionRequest()).body.tags
    missing = _error(lambda: sdk.tag_resources(fc.TagResourcesRequest(
        body=fc.TagResourcesInput(resource_type="function", resource_id=[unique("none")],
                                  tag=[fc.Tag(key="k", value="v")]))))
    assert missing.code == "FunctionNotFound"
    bad = _error(lambda: sdk.tag_resources(fc.TagResourcesRequest(
        body=fc.TagResourcesInput(resource_type="bucket", resource_id=[name],
                                  tag=[fc.Tag(key="k", value="v")]))))
    assert bad.code == "InvalidArgument"


def test_get_function_code_gives_a_signed_url_the_package_downloads_from(
        sdk: Client, server: Server) -> None:
    package = make_zip({"index.py": "def handler(event, context):\n    return 'one'\n"})
    name = unique("ops")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(package)))))
    sdk.publish_function_version(name, fc.PublishFunctionVersionRequest(
        body=fc.PublishVersionInput()))
    sdk.update_function(name, fc.UpdateFunctionRequest(body=fc.UpdateFunctionInput(
        code=fc.InputCodeLocation(zip_file=b64(make_zip({"index.py": "x = 1\n"
                                                          "def handler(e, c):\n"
                                                          "    return 'two'\n"}))))))
    latest = sdk.get_function_code(name, fc.GetFunctionCodeRequest()).body
    first = sdk.get_function_code(name, fc.GetFunctionCodeRequest(qualifier="1")).body
    assert first.checksum != latest.checksum
    with httpx.Client(timeout=30) as anyone:  # no token: the signature is the credential
        r = anyone.get(first.url)
        assert r.status_code == 200 and r.content == package
        assert r.headers["content-type"] == "application/zip"
        assert anyone.get(latest.url).status_code == 200
        def sha(url: str) -> str:
            return url.split("/code-packages/")[1].split(".zip")[0]

        forged = first.url.replace(sha(first.url), sha(latest.url))  # another's signature
        assert anyone.get(forged).status_code == 403
        tampered = first.url[:-4] + ("0000" if not first.url.endswith("0000") else "1111")
        assert anyone.get(tampered).status_code == 403
        stale = re.sub(r"expires=\d+", "expires=1000", first.url)
        assert anyone.get(stale).status_code == 403

    layer = sdk.create_layer_version(unique("code"), fc.CreateLayerVersionRequest(
        body=fc.CreateLayerVersionInput(code=fc.InputCodeLocation(zip_file=b64(package))))).body
    assert httpx.get(layer.code.location, timeout=30).content == package


def test_a_scaling_config_keeps_min_instances_started(sdk: Client, client: httpx.Client) -> None:
    name = _deploy(sdk)
    missing = _error(lambda: sdk.get_scaling_config(name, fc.GetScalingConfigRequest()))
    assert (missing.status_code, missing.code) == (404, "ScalingConfigNotFound")
    policy = fc.ScheduledPolicy(name="day", start_time="2026-01-01T00:00:00Z",
                                end_time="2027-01-01T00:00:00Z", time_zone="UTC",
                                target=3, schedule_expression="cron(0 0 8 * * *)")
    put = sdk.put_scaling_config(name, fc.PutScalingConfigRequest(body=fc.PutScalingConfigInput(
        min_instances=2, scheduled_policies=[policy]))).body
    assert (put.min_instances, put.target_instances) == (2, 2)
    assert put.scheduled_policies[0].name == "day"  # kept as given
    wait_for(lambda: sdk.get_scaling_config(name, fc.GetScalingConfigRequest())
             .body.current_instances == 2, timeout=20)
    listed = sdk.list_scaling_configs(fc.ListScalingConfigsRequest(function_name=name)).body
    assert [c.function_arn.rpartition("/")[2] for c in listed.scaling_configs] == [name]
    # Warm at once: the instances kept started serve the first invocation.
    r = client.post(f"{API}/functions/{name}/invocations")
    assert r.text == "ran" and r.headers["x-funclet-start-kind"] == "provisioned"

    bad = _error(lambda: sdk.put_scaling_config(name, fc.PutScalingConfigRequest(
        body=fc.PutScalingConfigInput(min_instances=-1))))
    assert bad.code == "InvalidArgument"
    versioned = _error(lambda: sdk.put_scaling_config(name, fc.PutScalingConfigRequest(
        qualifier="prod", body=fc.PutScalingConfigInput(min_instances=1))))
    assert versioned.status_code == 400 and "qualifier 'prod'" in versioned.message
    sdk.delete_scaling_config(name, fc.DeleteScalingConfigRequest())
    assert _error(lambda: sdk.get_scaling_config(name, fc.GetScalingConfigRequest())
                  ).code == "ScalingConfigNotFound"


def test_snapshots_and_vpc_bindings_are_refused_and_none_exist(sdk: Client) -> None:
    name = _deploy(sdk)
    refused = _error(lambda: sdk.create_snapshot(name, fc.CreateSnapshotRequest(
        body=fc.CreateSnapshotInput(description="x"))))
    assert (refused.status_code, refused.code) == (400, "NotSupported")
    assert "snapshots" in refused.message
    assert _error(lambda: sdk.get_snapshot(name, "snap", fc.GetSnapshotRequest())
                  ).code == "SnapshotNotFound"
    assert _error(lambda: sdk.delete_snapshot(name, "snap", fc.DeleteSnapshotRequest())
                  ).code == "SnapshotNotFound"
    assert sdk.list_snapshots(fc.ListSnapshotsRequest()).body.snapshots == []
    vpc = _error(lambda: sdk.create_vpc_binding(name, fc.CreateVpcBindingRequest(
        body=fc.CreateVpcBindingInput(vpc_id="vpc-1"))))
    assert (vpc.status_code, vpc.code) == (400, "NotSupported") and "VPC" in vpc.message
    assert sdk.list_vpc_bindings(name).body.vpc_ids == []
    assert _error(lambda: sdk.delete_vpc_binding(name, "vpc-1")).code == "VpcBindingNotFound"
    assert _error(lambda: sdk.list_vpc_bindings(unique("none"))).code == "FunctionNotFound"


def test_change_resource_group(sdk: Client) -> None:
    name = _deploy(sdk, resource_group_id="rg-one")
    out = sdk.change_resource_group(fc.ChangeResourceGroupRequest(
        body=fc.ChangeResourceGroupInput(new_resource_group_id="rg-two", resource_id=name,
                                         resource_type="function"))).body
    assert (out.old_resource_group_id, out.new_resource_group_id) == ("rg-one", "rg-two")
    assert sdk.get_function(name, fc.GetFunctionRequest()).body.resource_group_id == "rg-two"
    missing = _error(lambda: sdk.change_resource_group(fc.ChangeResourceGroupRequest(
        body=fc.ChangeResourceGroupInput(new_resource_group_id="rg", resource_id=unique("x"),
                                         resource_type="function"))))
    assert missing.code == "FunctionNotFound"
