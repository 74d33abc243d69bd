"""Layers through the official FC 3.0 SDK: published once, merged in order at /opt in
the function's instances (Python's path, Node.js's modules, PATH), a missing one a 400
at deploy, and a deleted one still run by the functions that use it."""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import quote

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Server
from tests.helpers import API, b64, make_zip, unique

PROBE = {"index.py": """
import json, os, shutil, subprocess, sys

import common
import helper

def handler(event, context):
    return json.dumps({
        "helper": helper.NAME, "common": common.WHO,
        "opt": sorted(os.listdir("/opt")),
        "tool": subprocess.run(["tool"], capture_output=True, text=True).stdout.strip(),
        "path": os.environ["PATH"].split(":")[0],
        "writable": os.access("/opt/python", os.W_OK),
    })
"""}

HELPER = {"index.py": """
import helper

def handler(event, context):
    return helper.NAME
"""}


@pytest.fixture(scope="module")
def sdk(server: Server) -> Client:
    return Client(openapi.Config(
        access_key_id="test-ak", access_key_secret="test-sk",
        endpoint=f"127.0.0.1:{server.port}", protocol="http", region_id="local",
    ))


def _zip(files: dict[str, str | bytes]) -> bytes:
    """A zip whose bin/ files are executable (as a layer's tools are)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name.startswith("bin/") else 0o644) << 16
            zf.writestr(info, content)
    return buf.getvalue()


def _publish(sdk: Client, name: str, files: dict[str, str | bytes],
             runtimes: list[str] | None = None) -> fc.Layer:
    return sdk.create_layer_version(name, fc.CreateLayerVersionRequest(
        body=fc.CreateLayerVersionInput(code=fc.InputCodeLocation(zip_file=b64(_zip(files))),
                                        compatible_runtime=runtimes, description="shared"))).body


def _deploy(sdk: Client, files: dict[str, str | bytes], layers: list[str],
            runtime: str = "python3.11") -> str:
    name = unique("lyr")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime=runtime, handler="index.handler", layers=layers,
        code=fc.InputCodeLocation(zip_file=b64(make_zip(files))))))
    return name


def _invoke(sdk: Client, name: str) -> str:
    return sdk.invoke_function(name, fc.InvokeFunctionRequest(body=b"")).body.read().decode()


def test_layers_are_merged_in_fcs_order_at_opt(sdk: Client) -> None:
    first = _publish(sdk, unique("libs"), {
        "python/helper.py": "NAME = 'helper from the first layer'\n",
        "python/common.py": "WHO = 'first'\n",
        "bin/tool": "#!/bin/sh\necho tool ran\n"}, ["python3.11", "python3.12"])
    second = _publish(sdk, unique("more"), {"python/common.py": "WHO = 'second'\n"})
    assert first.version == 1 and first.layer_version_arn.endswith(
        f":layers/{first.layer_name}/versions/1")
    name = _deploy(sdk, PROBE, [first.layer_version_arn, second.layer_version_arn])
    out = json.loads(_invoke(sdk, name))
    assert out["helper"] == "helper from the first layer"
    assert out["common"] == "first"  # as FC merges: the earlier layer's file wins
    assert out["opt"] == ["bin", "python"] and out["tool"] == "tool ran"
    assert out["path"] == "/opt/bin" and out["writable"] is False
    got = sdk.get_function(name, fc.GetFunctionRequest()).body
    assert [layer.arn for layer in got.layers] == [first.layer_version_arn,
                                                   second.layer_version_arn]
    assert got.layers[0].size == first.code_size > 0


def test_node_functions_require_modules_from_layers(sdk: Client) -> None:
    layer = _publish(sdk, unique("nodelib"), {
        "nodejs/node_modules/greeter/index.js":
            "module.exports = (who) => `hello ${who} from a layer`;\n"})
    name = _deploy(sdk, {"index.js": """
        const greeter = require('greeter');
        exports.handler = (event, context, callback) => callback(null, greeter('node'));
    """}, [layer.layer_version_arn], runtime="nodejs20")
    assert _invoke(sdk, name) == "hello node from a layer"


def test_a_function_without_layers_sees_an_empty_opt(sdk: Client) -> None:
    name = _deploy(sdk, {"index.py": """
import os

def handler(event, context):
    return str(os.listdir("/opt"))
"""}, [])
    assert _invoke(sdk, name) == "[]"  # the host's /opt stays out of sight


def test_missing_or_incompatible_layers_are_refused_at_deploy(sdk: Client) -> None:
    layer = _publish(sdk, unique("py12"), {"python/x.py": ""}, ["python3.12"])
    cases = {
        "acs:fc:local:nowhere:layers/ghost/versions/1": "does not exist",
        layer.layer_version_arn.replace("/versions/1", "/versions/9"): "does not exist",
        layer.layer_version_arn: "is for python3.12, not python3.11",
        "not an arn": "does not exist",
    }
    for arn, why in cases.items():
        with pytest.raises(ClientException) as info:
            _deploy(sdk, PROBE, [arn])
        assert info.value.status_code == 400 and why in info.value.message, arn
    with pytest.raises(ClientException) as info:
        _deploy(sdk, PROBE, [layer.layer_version_arn] * 2)
    assert "twice" in info.value.message
    with pytest.raises(ClientException) as info:
        _deploy(sdk, PROBE, [f"{layer.layer_version_arn}{i}" for i in range(6)])
    assert "at most 5" in info.value.message


def test_layer_versions_are_listed_found_by_arn_shared_and_deleted(
        sdk: Client, client: httpx.Client) -> None:
    layer_name = unique("multi")
    v1 = _publish(sdk, layer_name, {"python/helper.py": "NAME = 'one'\n",
                                    "python/common.py": "WHO = 'x'\n"})
    v2 = _publish(sdk, layer_name, {"python/helper.py": "NAME = 'two'\n",
                                    "python/common.py": "WHO = 'x'\n"})
    assert (v1.version, v2.version) == (1, 2)
    versions = sdk.list_layer_versions(layer_name, fc.ListLayerVersionsRequest(limit=1)).body
    assert [v.version for v in versions.layers] == [1] and versions.next_version == 2
    layers = sdk.list_layers(fc.ListLayersRequest(prefix=layer_name)).body.layers
    assert [(la.layer_name, la.version) for la in layers] == [(layer_name, 2)]
    by_arn = sdk.get_layer_version_by_arn(quote(v1.layer_version_arn, safe="")).body
    assert (by_arn.layer_name, by_arn.version, by_arn.acl) == (layer_name, 1, "0")

    assert not sdk.list_layers(fc.ListLayersRequest(prefix=layer_name, public=True)).body.layers
    sdk.put_layer_acl(layer_name, fc.PutLayerACLRequest(public="true"))
    assert sdk.get_layer_version(layer_name, "1").body.acl == "1"
    assert [la.layer_name for la in sdk.list_layers(fc.ListLayersRequest(
        prefix=layer_name, public=True)).body.layers] == [layer_name]

    name = _deploy(sdk, HELPER, [v1.layer_version_arn])
    sdk.delete_layer_version(layer_name, "1")
    with pytest.raises(ClientException) as info:
        sdk.get_layer_version(layer_name, "1")
    assert (info.value.status_code, info.value.code) == (404, "LayerNotFound")
    # The function keeps it: a new instance of it still gets version 1's files.
    client.post(f"{API}/functions/{name}/invoke/disable", json={"abortOngoingRequest": True})
    client.post(f"{API}/functions/{name}/invoke/enable")
    assert _invoke(sdk, name) == "one"
    with pytest.raises(ClientException) as info:  # but no new deploy may name it
        _deploy(sdk, PROBE, [v1.layer_version_arn])
    assert info.value.status_code == 400


def test_merged_layers_go_once_no_function_uses_them(sdk: Client, server: Server) -> None:
    """The merged folder of a function's layers is removed once no function here uses
    that list any more (its instances gone with it): it does not pile up."""
    import time

    layer = _publish(sdk, unique("temp"), {"python/helper.py": "NAME = 'temp'\n"})
    name = _deploy(sdk, HELPER, [layer.layer_version_arn])
    assert _invoke(sdk, name) == "temp"
    merged = server.data_dir / "code" / "layers-merged"
    before = {p.name for p in merged.iterdir() if not p.name.startswith(".")}
    assert before
    sdk.delete_function(name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = {p.name for p in merged.iterdir() if not p.name.startswith(".")}
        if len(now) < len(before):
            break
        time.sleep(0.5)
    assert len(now) < len(before), (before, now)
