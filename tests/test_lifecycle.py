"""Instance lifecycle: initializer, preStop, keep-alive reclaim, the warm-state trap."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx

from funclet.packaging import read_manifest, zip_dir
from tests.conftest import Server
from tests.helpers import API, b64, deploy, invoke, unique, wait_for

ROOT = Path(__file__).resolve().parent.parent

HOOKS = """
    import os, time

    runs = {"init": 0}

    def init(context):
        runs["init"] += 1
        print("initializing", context.request_id)
        if os.environ.get("INIT_MODE") == "fail":
            raise RuntimeError("cannot connect to the database")
        if os.environ.get("INIT_MODE") == "slow":
            time.sleep(30)

    def handler(event, context):
        return str(runs["init"])

    def pre_stop(context):
        print("pre-stop ran in", os.environ["FC_INSTANCE_ID"])
"""


def _lifecycle(init_timeout: int = 5) -> dict[str, object]:
    return {
        "initializer": {"handler": "index.init", "timeout": init_timeout},
        "preStop": {"handler": "index.pre_stop", "timeout": 5},
    }


def test_initializer_runs_once_per_instance_and_its_log_comes_with_the_cold_start(
    client: httpx.Client, tmp_path: Path,
) -> None:
    name = deploy(client, {"index.py": HOOKS}, instanceLifecycleConfig=_lifecycle())
    cold = invoke(client, name, **{"x-fc-log-type": "Tail"})
    assert cold.text == "1"
    log = base64.b64decode(cold.headers["x-fc-log-result"]).decode()
    rid = cold.headers["x-fc-request-id"]
    assert f"FC Initialize Start RequestId: {rid}" in log
    assert f"initializing {rid}" in log
    assert log.index("FC Initialize End") < log.index("FC Invoke Start")
    assert [invoke(client, name).text for _ in range(3)] == ["1", "1", "1"]


def test_initializer_failure_fails_the_invocation_and_the_next_gets_a_new_instance(
    client: httpx.Client, tmp_path: Path,
) -> None:
    name = deploy(client, {"index.py": HOOKS}, instanceLifecycleConfig=_lifecycle(),
                  environmentVariables={"INIT_MODE": "fail"})
    first = invoke(client, name)
    body = first.json()
    assert first.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert body["errorType"] == "RuntimeError"
    assert "cannot connect to the database" in body["errorMessage"]
    assert any("in init" in line for line in body["stackTrace"])
    second = invoke(client, name)
    assert second.headers["x-funclet-start-kind"] == "cold"
    assert second.headers["x-funclet-instance-id"] != first.headers["x-funclet-instance-id"]


def test_initializer_runs_under_its_own_timeout(client: httpx.Client, tmp_path: Path) -> None:
    name = deploy(client, {"index.py": HOOKS}, timeout=60,
                  instanceLifecycleConfig=_lifecycle(init_timeout=1),
                  environmentVariables={"INIT_MODE": "slow"})
    r = invoke(client, name)
    assert r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert r.json()["errorType"] == "InitializationTimeout"
    assert r.json()["errorMessage"] == "Initializer timed out after 1 seconds"
    assert r.headers["x-funclet-start-kind"] == "cold"


def test_slow_module_code_is_bounded_by_the_function_timeout(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        import time
        time.sleep(30)

        def handler(event, context):
            return "never"
    """}, timeout=1)
    r = invoke(client, name)
    assert r.json()["errorType"] == "InitializationTimeout"
    assert "timed out after 1 seconds" in r.json()["errorMessage"]


def test_idle_instance_is_reclaimed_after_keep_alive_running_pre_stop_first(
    client: httpx.Client, server: Server,
) -> None:
    name = deploy(client, {"index.py": HOOKS}, instanceLifecycleConfig=_lifecycle(),
                  keepAliveSeconds=1)
    first = invoke(client, name)
    instance_id = first.headers["x-funclet-instance-id"]
    wait_for(lambda: f"pre-stop ran in {instance_id}" in server.log(), timeout=10)

    def reclaimed() -> bool:
        items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
        return any(i["instanceId"] == instance_id and i["stopReason"] == "reclaimed"
                   and i["status"] == "Stopped" and i["destroyedTimeMs"] for i in items)

    wait_for(reclaimed)
    after = invoke(client, name)
    assert after.headers["x-funclet-start-kind"] == "cold"


def test_pre_stop_runs_when_an_update_replaces_the_instance(
    client: httpx.Client, server: Server,
) -> None:
    name = deploy(client, {"index.py": HOOKS}, instanceLifecycleConfig=_lifecycle())
    instance_id = invoke(client, name).headers["x-funclet-instance-id"]
    r = client.put(f"{API}/functions/{name}", json={"description": "v2"})
    assert r.status_code == 200
    wait_for(lambda: f"pre-stop ran in {instance_id}" in server.log())


def test_list_instances_shows_live_ones_in_fc_shape(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": "def handler(e, c):\n    return 'x'\n"})
    instance_id = invoke(client, name).headers["x-funclet-instance-id"]
    body = client.get(f"{API}/functions/{name}/instances").json()
    (inst,) = body["instances"]
    assert inst["instanceId"] == instance_id
    assert inst["status"] == "Running" and inst["state"] == "idle"
    assert inst["createdTimeMs"] > 0 and inst["destroyedTimeMs"] is None
    assert client.get(f"{API}/functions/nope-{name}/instances").status_code == 404


def _deploy_example(client: httpx.Client, folder: str) -> str:
    body = read_manifest(ROOT / "examples" / folder)
    body["functionName"] = unique(folder)
    body["code"] = {"zipFile": b64(zip_dir(ROOT / "examples" / folder))}
    r = client.post(f"{API}/functions", json=body)
    assert r.status_code == 200, r.text
    return str(body["functionName"])


def test_time_read_at_module_level_is_frozen_across_warm_invocations(
    client: httpx.Client,
) -> None:
    trap = _deploy_example(client, "time-trap")
    fixed = _deploy_example(client, "time-fixed")
    trap_times = []
    fixed_times = []
    for _ in range(3):
        trap_times.append(invoke(client, trap).json()["now"])
        fixed_times.append(invoke(client, fixed).json()["now"])
    assert len(set(trap_times)) == 1, "module-level time is computed once per instance"
    assert len(set(fixed_times)) == 3, "time read in the handler changes on every call"


def test_lifecycle_example_runs(client: httpx.Client) -> None:
    name = _deploy_example(client, "lifecycle")
    first = invoke(client, name).json()
    second = invoke(client, name).json()
    assert first["instance"]["initialized_at"] == second["instance"]["initialized_at"]
    assert second["instance"]["invocations"] == 2


def test_hello_example_runs(client: httpx.Client) -> None:
    name = _deploy_example(client, "hello")
    assert invoke(client, name, b'{"name": "tests"}').text == "hello, tests!"


def test_a_cold_start_fetches_and_unpacks_the_package_when_its_folder_is_gone(
    client: httpx.Client, server: Server,
) -> None:
    import shutil

    name = deploy(client, {"index.py": f"# {unique()}\ndef handler(e, c):\n    return 'back'\n"})
    checksum = client.get(f"{API}/functions/{name}").json()["codeSha256"]
    unpacked = server.data_dir / "code" / "unpacked" / checksum
    shutil.rmtree(unpacked)
    r = invoke(client, name)
    assert r.text == "back" and r.headers["x-funclet-start-kind"] == "cold"
    assert (unpacked / "index.py").exists()


def test_the_adaptive_keep_alive_stops_a_timers_instance_and_prewarms_it(
        tmp_path: Path) -> None:
    """A function called every 1.5 s (half-second bins here; a minute by default):
    after ten idle times, its instance stops as soon as it is idle and a new one is
    started before the next call (pre-warm at 1.35 s), which finds it warm (or joins
    its start)."""
    from tests.conftest import start_server, stop_server

    server = start_server(tmp_path, FUNCLET_ADAPTIVE_KEEP_ALIVE="true",
                          FUNCLET_ADAPTIVE_KEEP_ALIVE_BIN_SECONDS="0.5",
                          FUNCLET_RECLAIM_INTERVAL_SECONDS="0.05")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, {"index.py": "def handler(event, context):\n"
                                               "    return 'tick'\n"})
            kinds, ids = [], []
            ended = time.monotonic() - 1.5
            for _ in range(13):
                time.sleep(max(0.0, 1.5 - (time.monotonic() - ended)))
                r = invoke(client, name)
                ended = time.monotonic()
                assert r.status_code == 200 and r.content == b"tick"
                kinds.append(r.headers["x-funclet-start-kind"])
                ids.append(r.headers["x-funclet-instance-id"])
            # Fixed keep-alive (180 s) for the first ten: one instance, warm.
            assert kinds[:10] == ["cold"] + ["warm"] * 9 and len(set(ids[:10])) == 1
            # Then each idle period: stopped at once, pre-warmed, found warm.
            assert kinds[11:] == ["warm"] * 2 and len(set(ids[10:])) == 3, (kinds, ids)
            items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
            assert {i["instanceId"]: i["stopReason"] for i in items
                    if i["instanceId"] in ids[10:12]} == dict.fromkeys(ids[10:12],
                                                                       "reclaimed")
    finally:
        stop_server(server)
