"""The official Alibaba FC 3.0 SDK, unchanged, against funclet."""

from __future__ import annotations

import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Server
from tests.helpers import b64, make_zip, unique

CODE = {"index.py": """
    def handler(event, context):
        return b"echo:" + event

    def v2(event, context):
        return "v2"

    def init(context):
        pass
"""}


@pytest.fixture(scope="module")
def sdk(server: Server) -> Client:
    return Client(openapi.Config(
        access_key_id="test-ak", access_key_secret="test-sk",
        endpoint=f"127.0.0.1:{server.port}", protocol="http", region_id="local",
    ))


def test_sdk_creates_gets_lists_updates_invokes_and_deletes(sdk: Client) -> None:
    name = unique("sdk")
    created = sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip(CODE))),
        timeout=30, memory_size=256, description="from the SDK",
        environment_variables={"K": "V"},
        instance_lifecycle_config=fc.InstanceLifecycleConfig(
            initializer=fc.LifecycleHook(handler="index.init", timeout=3)),
    )))
    assert created.status_code == 200
    assert created.body.function_name == name
    assert created.body.function_arn.endswith(f"functions/{name}")

    got = sdk.get_function(name, fc.GetFunctionRequest())
    assert got.body.runtime == "python3.11"
    assert got.body.memory_size == 256
    assert got.body.environment_variables == {"K": "V"}
    assert got.body.instance_lifecycle_config.initializer.handler == "index.init"
    assert got.body.code_checksum and got.body.created_time

    listed = sdk.list_functions(fc.ListFunctionsRequest(prefix=name, limit=10))
    assert [f.function_name for f in listed.body.functions] == [name]

    invoked = sdk.invoke_function(name, fc.InvokeFunctionRequest(body=b"ping"))
    assert invoked.body.read() == b"echo:ping"
    assert invoked.headers["x-fc-request-id"]

    tail = sdk.invoke_function_with_options(
        name, fc.InvokeFunctionRequest(body=b"x"),
        fc.InvokeFunctionHeaders(x_fc_log_type="Tail", x_fc_invocation_type="Sync"),
        __import__("darabonba.runtime", fromlist=["RuntimeOptions"]).RuntimeOptions(),
    )
    assert tail.headers["x-fc-log-result"]

    updated = sdk.update_function(name, fc.UpdateFunctionRequest(
        body=fc.UpdateFunctionInput(handler="index.v2", timeout=10)))
    assert updated.body.handler == "index.v2" and updated.body.timeout == 10
    assert sdk.invoke_function(name, fc.InvokeFunctionRequest(body=b"")).body.read() == b"v2"

    instances = sdk.list_instances(name, fc.ListInstancesRequest())
    assert instances.body.instances and instances.body.instances[0].instance_id.startswith("c-")

    sdk.delete_function(name)
    with pytest.raises(ClientException) as info:
        sdk.get_function(name, fc.GetFunctionRequest())
    assert info.value.code == "FunctionNotFound"
    assert info.value.status_code == 404


def test_sdk_sees_fc_errors_for_bad_input(sdk: Client) -> None:
    with pytest.raises(ClientException) as info:
        sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
            function_name=unique("sdk"), runtime="python2.7", handler="index.handler",
            code=fc.InputCodeLocation(zip_file=b64(make_zip(CODE))),
        )))
    assert info.value.code == "InvalidArgument"
    assert "python3.11" in info.value.message


def test_sdk_manages_triggers(sdk: Client) -> None:
    name = unique("sdk")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip(CODE))))))
    created = sdk.create_trigger(name, fc.CreateTriggerRequest(body=fc.CreateTriggerInput(
        trigger_name="timer", trigger_type="timer",
        trigger_config='{"cronExpression": "@every 5m", "payload": "p", "enable": true}')))
    assert created.body.trigger_name == "timer" and created.body.trigger_id
    sdk.create_trigger(name, fc.CreateTriggerRequest(body=fc.CreateTriggerInput(
        trigger_name="web", trigger_type="http",
        trigger_config='{"authType": "anonymous", "methods": ["GET"]}')))
    got = sdk.get_trigger(name, "web")
    assert got.body.http_trigger.url_internet.endswith(f"/http/{name}/")
    updated = sdk.update_trigger(name, "timer", fc.UpdateTriggerRequest(
        body=fc.UpdateTriggerInput(description="every five minutes")))
    assert updated.body.description == "every five minutes"
    listed = sdk.list_triggers(name, fc.ListTriggersRequest(limit=10))
    assert sorted(t.trigger_name for t in listed.body.triggers) == ["timer", "web"]
    sdk.delete_trigger(name, "timer")
    with pytest.raises(ClientException) as info:
        sdk.get_trigger(name, "timer")
    assert info.value.code == "TriggerNotFound"
    sdk.delete_function(name)


def test_cloud_fields_are_kept_or_refused_never_dropped(sdk: Client) -> None:
    """role, logConfig, tags, cpu, diskSize: stored and returned as given; a VPC, NAS,
    OSS mount, GPU or container image: a 400 naming the field (empty ones are none)."""
    name = unique("sdk")
    body = fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip(CODE))),
        role="acs:ram::123:role/fc", cpu=0.35, disk_size=512,
        log_config=fc.LogConfig(project="p", logstore="s", enable_request_metrics=True),
        tags=[fc.Tag(key="team", value="a")], vpc_config=fc.VPCConfig(),
        nas_config=fc.NASConfig(mount_points=[]))
    sdk.create_function(fc.CreateFunctionRequest(body=body))
    got = sdk.get_function(name, fc.GetFunctionRequest()).body
    assert (got.role, got.cpu, got.disk_size) == ("acs:ram::123:role/fc", 0.35, 512)
    assert (got.log_config.project, got.log_config.logstore) == ("p", "s")
    assert [(t.key, t.value) for t in got.tags] == [("team", "a")]
    sdk.update_function(name, fc.UpdateFunctionRequest(body=fc.UpdateFunctionInput(
        disk_size=10240)))
    got = sdk.get_function(name, fc.GetFunctionRequest()).body
    assert (got.role, got.disk_size) == ("acs:ram::123:role/fc", 10240)  # the rest kept

    refused = {
        "vpcConfig": fc.UpdateFunctionInput(vpc_config=fc.VPCConfig(vpc_id="vpc-1")),
        "nasConfig": fc.UpdateFunctionInput(nas_config=fc.NASConfig(
            mount_points=[fc.NASMountConfig(server_addr="nas:/", mount_dir="/mnt/nas")])),
        "gpuConfig": fc.UpdateFunctionInput(gpu_config=fc.GPUConfig(gpu_type="fc.gpu.t4")),
        "layers": fc.UpdateFunctionInput(layers=["acs:fc:local:123:layers/x/versions/1"]),
        "sessionAffinity": fc.UpdateFunctionInput(session_affinity="MCP_SSE"),
        "cpu": fc.UpdateFunctionInput(cpu="lots"),  # type: ignore[arg-type]
    }
    for field, update in refused.items():
        with pytest.raises(ClientException) as info:
            sdk.update_function(name, fc.UpdateFunctionRequest(body=update))
        assert info.value.status_code == 400 and field in info.value.message, field
    assert sdk.get_function(name, fc.GetFunctionRequest()).body.disk_size == 10240


def _crc64_xz(data: bytes) -> int:
    """CRC-64/XZ (ECMA-182, reflected, as OSS's x-oss-hash-crc64ecma), bit by bit: the
    reference the platform's (table-driven, crcmod) value must equal."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xC96C5795D7870F42 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def test_code_checksum_is_fcs_crc64_of_the_package(sdk: Client) -> None:
    assert _crc64_xz(b"123456789") == 0x995DC9BBDF1939FA  # the catalogue's check value
    package = make_zip(CODE)
    name = unique("sdk")
    created = sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(package))))).body
    assert created.code_checksum == str(_crc64_xz(package))
    invoked = sdk.invoke_function(name, fc.InvokeFunctionRequest(body=b"x"))
    assert invoked.headers["x-fc-code-checksum"] == created.code_checksum
    assert sdk.get_function_code(name, fc.GetFunctionCodeRequest()).body.checksum == (
        created.code_checksum)
