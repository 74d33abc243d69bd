"""Snapshots: a version's imports and initializer run once, in a template; its new
instances are forked from it, each isolated as a normal instance is (proved from
inside them), with the hooks of Lambda's ``snapshot_restore_py``."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Server, cgroups_of, start_server, stop_server
from tests.helpers import (
    API,
    create_body,
    deploy,
    instance_pids,
    invoke,
    make_zip,
    unique,
    wait_for,
)

SNAP = {"snapStart": {"applyOn": "All"}}

STATE = {"index.py": """
    import json, os, random, socket, time
    from snapshot_restore_py import register_after_restore, register_before_snapshot

    time.sleep(0.3)  # a heavy import
    LOADED = {"at": time.time(), "pid": os.getpid(), "random": random.random(),
              "instance": os.environ.get("FC_INSTANCE_ID")}
    with open("/tmp/from-template", "w") as f:
        f.write("x")
    HOOKS = []

    @register_before_snapshot
    def first():
        HOOKS.append("before 1")

    register_before_snapshot(lambda tag: HOOKS.append(tag), "before 2")

    @register_after_restore
    def restored():
        HOOKS.append("after " + os.environ["FC_INSTANCE_ID"])

    def initializer(context):
        HOOKS.append("initializer")

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split()[1]

    def handler(event, context):
        args = json.loads(event or b"{}")
        time.sleep(args.get("sleep", 0))
        if args.get("write"):
            with open("/tmp/" + os.environ["FC_INSTANCE_ID"], "w") as f:
                f.write("x")
        if args.get("bomb"):
            hog = [bytearray(1024 * 1024) for _ in range(1024)]
        return json.dumps({
            "loaded": LOADED, "hooks": HOOKS, "random": random.random(),
            "instance": os.environ["FC_INSTANCE_ID"], "context": context.instance_id
                if hasattr(context, "instance_id") else None,
            "pid": os.getpid(), "uid": os.getuid(),
            "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "tmp": sorted(os.listdir("/tmp")), "hostname": socket.gethostname(),
            "interfaces": sorted(n for _, n in socket.if_nameindex()),
            "capEff": status("CapEff"), "capBnd": status("CapBnd"),
            "capPrm": status("CapPrm"), "address": address(),
            "initialization": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        })

    def address():
        import fcntl, struct
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                raw = fcntl.ioctl(s, 0x8915, struct.pack("256s", b"eth0"))  # SIOCGIFADDR
            except OSError:
                return None
            return socket.inet_ntoa(raw[20:24])
"""}


def _at_once(client: httpx.Client, name: str, count: int, **args: object) -> list[dict]:
    with ThreadPoolExecutor(count) as pool:
        replies = list(pool.map(lambda _: invoke(client, name, json.dumps(args).encode()),
                                range(count)))
    for r in replies:
        assert r.status_code == 200 and "x-fc-error-type" not in r.headers, r.text
    return [r.json() for r in replies]


def test_instances_are_forked_from_one_initialised_template(client: httpx.Client) -> None:
    name = deploy(client, STATE, instanceLifecycleConfig={
        "initializer": {"handler": "index.initializer", "timeout": 10}}, **SNAP)
    first, second = _at_once(client, name, 2, sleep=0.5)
    # The imports, module code and initializer ran once, in the template.
    assert first["loaded"] == second["loaded"]
    assert first["loaded"]["instance"].startswith("t-")
    # Each instance is its own: its id, its random state (reseeded), its hooks' run.
    assert first["instance"] != second["instance"]
    assert first["random"] != second["random"]
    for reply in (first, second):
        assert reply["hooks"] == ["initializer", "before 2", "before 1",
                                  "after " + reply["instance"]]
    # Isolated as a normal instance: PID 1 alone in its PID namespace, its own /tmp
    # (not the template's, not the other's), its hostname, its own address, no
    # capability left, the function's unprivileged uid.
    both = _at_once(client, name, 2, sleep=0.5, write=True)
    assert {r["instance"] for r in both} == {first["instance"], second["instance"]}
    for reply in both:
        assert reply["pid"] == 1 and reply["processes"] == [1]
        assert reply["tmp"] == [reply["instance"]]
        assert reply["hostname"] == reply["instance"]
        assert reply["interfaces"] == ["eth0", "lo"]
        assert reply["uid"] != 0
        assert reply["capEff"] == reply["capPrm"] == reply["capBnd"] == "0" * 16
    assert both[0]["address"] != both[1]["address"]


def test_each_forked_instance_has_its_own_cgroup_and_memory_limit(
        client: httpx.Client, server: Server) -> None:
    name = deploy(client, STATE, memorySize=128, timeout=30, **SNAP)
    r = invoke(client, name, b"{}")
    assert r.status_code == 200, r.text
    instance, loaded = r.json()["instance"], r.json()["loaded"]
    folders = [f for f in cgroups_of(server) if f.rstrip("/").endswith(instance)]
    assert folders, "no cgroup named after the instance"
    limits = [f for f in folders if os.path.exists(f + "memory.limit_in_bytes")]
    for folder in limits:
        assert int(open(folder + "memory.limit_in_bytes").read()) == 128 * 1024 * 1024
        assert open(folder + "cgroup.procs").read().split()
    # Past its memory it is killed, alone: the template forks the next one.
    r = invoke(client, name, json.dumps({"bomb": True}).encode())
    assert r.json()["errorType"] == "Runtime.OutOfMemory", r.text
    after = invoke(client, name, b"{}")
    assert after.status_code == 200 and after.headers["x-funclet-start-kind"] == "cold"
    assert after.json()["loaded"] == loaded and after.json()["instance"] != instance


def test_a_snapshot_that_cannot_be_made_fails_the_cold_start_as_its_init_would(
        client: httpx.Client) -> None:
    broken = {"index.py": "import not_a_module\ndef handler(event, context):\n    pass\n"}
    plain = invoke(client, deploy(client, broken), b"").json()
    name = deploy(client, broken, **SNAP)
    snap = invoke(client, name, b"").json()
    assert snap["errorType"] == plain["errorType"] and "not_a_module" in snap["errorMessage"]
    hook = {"index.py": """
from snapshot_restore_py import register_before_snapshot

@register_before_snapshot
def fail():
    raise RuntimeError("cannot close it")

def handler(event, context):
    return "never"
"""}
    r = invoke(client, deploy(client, hook, **SNAP), b"")
    assert r.json()["errorType"] == "RuntimeError", r.text
    assert "Before-snapshot hook failed: cannot close it" in r.json()["errorMessage"]
    # Without snapshots the hooks never run.
    assert invoke(client, deploy(client, hook), b"").text == "never"


def test_snap_start_is_checked(client: httpx.Client) -> None:
    for bad in ({"applyOn": "Always"}, "PublishedVersions", {}):
        r = client.post(f"{API}/functions", json=create_body(unique(), STATE, snapStart=bad))
        assert r.status_code == 400 and "snapStart" in r.json()["Message"], r.text
    r = client.post(f"{API}/functions", json=create_body(
        unique(), {"index.js": "exports.handler = async () => 1;"}, runtime="nodejs20",
        snapStart={"applyOn": "All"}))
    assert r.status_code == 400 and "Python runtimes only" in r.json()["Message"], r.text


def test_published_versions_start_from_a_snapshot_through_lambdas_api(server: Server) -> None:
    aws = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                       aws_access_key_id="funclet", aws_secret_access_key="funclet",
                       config=Config(retries={"max_attempts": 0}))
    name = unique("snap")
    created = aws.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::123456789012:role/x",
        Handler="index.handler", Code={"ZipFile": make_zip(STATE)},
        SnapStart={"ApplyOn": "PublishedVersions"})
    assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    version = aws.publish_version(FunctionName=name)
    assert version["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}

    def call(qualifier: str) -> dict:
        out = aws.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}")
        assert "FunctionError" not in out, out
        return json.loads(json.loads(out["Payload"].read()))

    assert call("$LATEST")["initialization"] == "on-demand"
    snapped = call(version["Version"])
    assert snapped["initialization"] == "snap-start"
    assert snapped["loaded"]["instance"].startswith("t-")
    with pytest.raises(ClientError) as bad:
        aws.update_function_configuration(FunctionName=name, SnapStart={"ApplyOn": "All"})
    assert bad.value.response["Error"]["Code"] == "InvalidParameterValueException"



def test_a_template_ends_with_its_version(client: httpx.Client) -> None:
    name = deploy(client, STATE, **SNAP)
    template = invoke(client, name, b"{}").json()["loaded"]["instance"]
    assert instance_pids(template)
    r = client.put(f"{API}/functions/{name}", json={"environmentVariables": {"A": "1"}})
    assert r.status_code == 200, r.text
    wait_for(lambda: not instance_pids(template))  # its instance drained, then it went
    newer = invoke(client, name, b"{}").json()["loaded"]["instance"]
    assert newer != template and instance_pids(newer)
    assert client.delete(f"{API}/functions/{name}").status_code == 204
    wait_for(lambda: not instance_pids(newer))


LOUD = {"index.py": """
    import os
    print("imported in", os.environ["FC_INSTANCE_ID"])

    def handler(event, context):
        return os.environ["FC_INSTANCE_ID"]
"""}


def _template_of(client: httpx.Client, name: str) -> tuple[str, str]:
    """The first invocation's instance and its log (where the template's init log is)."""
    r = invoke(client, name, b"", **{"x-fc-log-type": "Tail"})
    assert r.status_code == 200 and "x-fc-error-type" not in r.headers, r.text
    return r.text, base64.b64decode(r.headers["x-fc-log-result"]).decode()


def test_the_template_is_reclaimed_when_its_version_has_no_instance_for_its_keep_alive(
        client: httpx.Client) -> None:
    name = deploy(client, LOUD, keepAliveSeconds=1, **SNAP)
    instance, logged = _template_of(client, name)
    # The template's initialisation logged in it; the cold start that made it shows it.
    (line,) = [x for x in logged.splitlines() if "imported in" in x]
    template = line.split()[-1]
    assert template.startswith("t-") and instance != template
    assert instance_pids(template)
    # The instance is reclaimed after 1 s idle, the template a second later.
    wait_for(lambda: not instance_pids(instance) and not instance_pids(template), timeout=15)
    again, logged = _template_of(client, name)
    assert again != instance and "imported in t-" in logged and template not in logged


def test_a_node_holds_at_most_its_instance_limit_of_templates(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_MAX_INSTANCES="1")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            first, second = (deploy(client, LOUD, **SNAP) for _ in range(2))
            _, logged = _template_of(client, first)
            template = logged.split("imported in ")[1].split()[0]
            assert instance_pids(template)
            # The second function's cold start evicts the first's instance (the account
            # runs one) and retires its template (the node holds one).
            _template_of(client, second)
            wait_for(lambda: not instance_pids(template), timeout=15)
            _, logged = _template_of(client, first)
            assert "imported in t-" in logged and template not in logged
    finally:
        stop_server(server)


TOUCHY = {"index.py": """
    import json, os, resource, time
    DATA = bytearray(b"\\x01") * (16 << 20)  # written in the template: its pages

    def handler(event, context):
        args = json.loads(event or b"{}")
        if args.get("crash"):
            os._exit(3)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(0, len(DATA), 4096):  # as reference counts are: written to
            DATA[i] = 2
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        time.sleep(args.get("sleep", 0))
        return json.dumps({"faults": faults, "instance": os.environ["FC_INSTANCE_ID"]})
"""}


@pytest.mark.parametrize("first_crashes", [False, True])
def test_later_instances_copy_ahead_the_pages_the_first_one_wrote(
        client: httpx.Client, first_crashes: bool) -> None:
    name = deploy(client, TOUCHY, **SNAP)
    if first_crashes:  # it never ends a first invocation: the next instance is read
        crashed = invoke(client, name, b'{"crash": true}')
        assert crashed.headers.get("x-fc-error-type") == "UnhandledInvocationError"
    first = invoke(client, name, b"{}").json()
    assert first["faults"] >= 4000  # 16 MB of the template's pages, copied one by one
    time.sleep(0.5)  # (its pages are read once its first invocation is over)
    # Three at once: the first instance, the one forked ahead meanwhile, and one forked
    # after the platform learnt which pages instances write: that one copied them ahead.
    replies = [r for r in _at_once(client, name, 3, sleep=1.0)
               if r["instance"] != first["instance"]]
    assert len(replies) == 2
    assert min(r["faults"] for r in replies) < first["faults"] // 10, (first, replies)


def test_without_the_sandbox_a_forked_instance_still_says_how_it_ended(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_SANDBOX="false")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            name = deploy(client, {"index.py": """
                import os

                def handler(event, context):
                    if event == b"exit":
                        os._exit(3)
                    return "fine"
            """}, **SNAP)
            assert invoke(client, name, b"").text == "fine"
            crashed = invoke(client, name, b"exit")
            assert crashed.headers.get("x-fc-error-type") == "UnhandledInvocationError"
            assert "exit code 3" in crashed.text, crashed.text
            assert invoke(client, name, b"").text == "fine"
    finally:
        stop_server(server)
