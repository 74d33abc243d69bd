"""The sandbox, proved from inside functions: what an instance can see, write and use.

Each test needs some protection; /healthz says which are on. Where one is off the test
is skipped with the reason, except under CI=true, where every protection must be on.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, instance_pids, invoke, unique, wait_for


@pytest.fixture(scope="module")
def protections(client: httpx.Client) -> dict[str, bool]:
    return client.get("/healthz").json()["sandbox"]  # type: ignore[no-any-return]


def need(protections: dict[str, bool], *names: str) -> None:
    missing = [n for n in names if not protections.get(n)]
    if missing:
        message = f"the sandbox has these protections off on this host: {missing}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


PROBE = {"index.py": """
    import json, os, socket

    def attempt(fn):
        try:
            return {"ok": True, "value": fn()}
        except Exception as exc:
            return {"ok": False, "error": type(exc).__name__}

    def write(path):
        with open(path, "w") as f:
            f.write("x")
        return path

    def read(path):
        with open(path, "rb") as f:
            return len(f.read())

    def handler(event, context):
        args = json.loads(event)
        out = {
            "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
            "hostname": socket.gethostname(), "cwd": os.getcwd(),
            "code": sorted(os.listdir("/code")),
            "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "tmp": sorted(os.listdir("/tmp")),
        }
        for path in args.get("read", []):
            out["read " + path] = attempt(lambda: read(path))
        for path in args.get("write", []):
            out["write " + path] = attempt(lambda: write(path))
        for path in args.get("list", []):
            out["list " + path] = attempt(lambda: os.listdir(path))
        return json.dumps(out)
"""}


def probe(client: httpx.Client, name: str, **args: list[str]) -> dict[str, object]:
    r = invoke(client, name, json.dumps(args).encode())
    assert "x-fc-error-type" not in r.headers, r.text
    return r.json()  # type: ignore[no-any-return]


def test_an_instance_runs_unprivileged_alone_in_its_namespaces(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces", "unprivilegedUser", "uidPerFunction")
    name = deploy(client, PROBE)
    r = invoke(client, name, b"{}")
    out = r.json()
    assert 100_000 <= out["uid"] < 260_000 and out["gid"] == out["uid"]  # the default range
    other = probe(client, deploy(client, PROBE))
    assert other["uid"] != out["uid"]  # one uid per function
    assert out["pid"] == 1 and out["processes"] == [1]  # it sees only itself
    assert out["hostname"] == r.headers["x-funclet-instance-id"]
    assert out["cwd"] == "/code" and out["code"] == ["index.py"]


def test_code_is_read_only_and_nothing_outside_tmp_is_writable(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces", "unprivilegedUser")
    name = deploy(client, PROBE)
    out = probe(client, name, write=["/code/new.py", "/code/index.py", "/etc/evil",
                                     "/var/tmp/evil", "/evil", "/tmp/fine"])
    for path in ("/code/new.py", "/code/index.py", "/etc/evil", "/var/tmp/evil", "/evil"):
        assert out[f"write {path}"]["ok"] is False, path  # type: ignore[index]
    assert out["write /tmp/fine"]["ok"] is True  # type: ignore[index]


def test_other_functions_code_and_the_database_are_out_of_sight(
    client: httpx.Client, server: Server, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces")
    secret = deploy(client, {"index.py": "def handler(e, c):\n    return 'x'\n",
                             "secret.txt": f"the secret {unique()}"})
    checksum = client.get(f"{API}/functions/{secret}").json()["codeSha256"]
    data = str(server.data_dir)
    other_code = f"{data}/code/unpacked/{checksum}/secret.txt"
    assert os.path.exists(other_code)  # it is there, on the host
    name = deploy(client, PROBE)
    out = probe(client, name, read=[other_code, f"{data}/funclet.db"], list=[data, "/code"])
    assert out[f"read {other_code}"]["ok"] is False  # type: ignore[index]
    assert out[f"read {data}/funclet.db"]["ok"] is False  # type: ignore[index]
    assert out[f"list {data}"] == {"ok": True, "value": []}  # an empty tmpfs over it
    assert out["list /code"]["value"] == ["index.py"]  # type: ignore[index]


def test_each_instance_has_its_own_tmp(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces")
    host_marker = f"/tmp/host-{unique()}"
    with open(host_marker, "w") as f:
        f.write("host")
    try:
        a = deploy(client, PROBE)
        b = deploy(client, PROBE)
        probe(client, a, write=["/tmp/from-a"])
        seen_by_b = probe(client, b)["tmp"]
        assert "from-a" not in seen_by_b  # type: ignore[operator]
        assert os.path.basename(host_marker) not in seen_by_b  # type: ignore[operator]
        assert "from-a" in probe(client, a)["tmp"]  # type: ignore[operator]
    finally:
        os.unlink(host_marker)


def test_a_memory_bomb_is_killed_and_the_next_invocation_gets_a_new_instance(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "memoryLimit")
    name = deploy(client, {"index.py": """
        def handler(event, context):
            if event == b"bomb":
                hog = []
                for _ in range(1024):
                    hog.append(bytearray(1024 * 1024))
            return "fine"
    """}, memorySize=128, timeout=30)
    first = invoke(client, name, b"ok")
    r = invoke(client, name, b"bomb")
    body = r.json()
    assert r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert "128 MB" in body["errorMessage"]
    after = invoke(client, name, b"ok")
    assert after.text == "fine" and after.headers["x-funclet-start-kind"] == "cold"
    items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
    lost = next(i for i in items if i["instanceId"] == first.headers["x-funclet-instance-id"])
    assert lost["stopReason"] == "out_of_memory"


def test_a_fork_bomb_stays_inside_its_instance(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "processLimit", "namespaces")
    name = deploy(client, {"index.py": """
        import json, os, time

        def handler(event, context):
            children, error = 0, None
            for _ in range(5000):
                try:
                    pid = os.fork()
                except OSError as exc:
                    error = type(exc).__name__
                    break
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            return json.dumps({"children": children, "error": error})
    """}, timeout=60, memorySize=2048)  # each forked interpreter holds ~0.7 MB of its own:
    # 512 of them would hit 512 MB's memory limit about as soon as the process limit
    out = invoke(client, name).json()
    assert out.get("error") in ("BlockingIOError", "OSError") and out["children"] < 1024, out
    assert client.get("/healthz").status_code == 200  # the platform is fine
    other = deploy(client, {"index.py": "def handler(e, c):\n    return 'unaffected'\n"})
    assert invoke(client, other).text == "unaffected"
    # Updating the function stops the bombed instance; all its processes go with it.
    client.put(f"{API}/functions/{name}", json={"description": "defused"})


def test_killing_pid_1_of_an_instance_does_not_touch_the_platform(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces")
    name = deploy(client, {"index.py": """
        import os, signal, subprocess, sys

        def handler(event, context):
            subprocess.run([sys.executable, "-c",
                            "import os, signal; os.kill(1, signal.SIGKILL)"])
            os.kill(1, signal.SIGKILL)
            return "survived"
    """})
    invoke(client, name)  # the instance may or may not survive; either is fine
    assert client.get("/healthz").status_code == 200
    assert invoke(client, deploy(client, PROBE), b"{}").status_code == 200


def test_the_start_up_log_says_which_protections_are_on(server: Server) -> None:
    log = server.log()
    for line in ("Sandbox: namespaces", "Sandbox: memory limit", "Sandbox: one unprivileged user",
                 "Sandbox: a network of its own"):
        assert line in log


def test_cgroups_of_stopped_instances_are_removed(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "memoryLimit")
    name = deploy(client, {"index.py": "def handler(e, c):\n    return 'x'\n"},
                  keepAliveSeconds=1)
    instance_id = invoke(client, name).headers["x-funclet-instance-id"]
    (cgroup,) = glob.glob(f"/sys/fs/cgroup/*/funclet-*/{instance_id}")[:1]
    wait_for(lambda: not glob.glob(f"/sys/fs/cgroup/*/funclet-*/{instance_id}"), timeout=15)
    assert not os.path.exists(cgroup)


def test_open_files_are_limited_per_instance(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces")
    name = deploy(client, {"index.py": """
        import json

        def handler(event, context):
            files, error = [], None
            try:
                for i in range(5000):
                    files.append(open("/dev/null"))
            except OSError as exc:
                error = exc.errno
            count = len(files)
            for f in files:
                f.close()
            return json.dumps({"opened": count, "errno": error})
    """})
    out = invoke(client, name).json()
    assert out["errno"] == 24 and 900 < out["opened"] < 1024  # EMFILE at the 1024 limit


def test_tmp_is_bounded_and_a_sandbox_that_is_off_says_so(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_TMP_SIZE_MB="4")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            if not client.get("/healthz").json()["sandbox"]["namespaces"]:
                need({}, "namespaces")
            name = deploy(client, {"index.py": """
                def handler(event, context):
                    try:
                        with open("/tmp/big", "wb") as f:
                            f.write(b"x" * (8 * 1024 * 1024))
                        return "wrote 8 MB"
                    except OSError as exc:
                        return f"refused: errno {exc.errno}"
            """})
            assert invoke(client, name).text == "refused: errno 28"  # ENOSPC
    finally:
        stop_server(server)
    (tmp_path / "off").mkdir()
    server = start_server(tmp_path / "off", FUNCLET_SANDBOX="false")
    try:
        assert "Sandbox: namespaces" in server.log() and "turned off" in server.log()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/healthz").json()["sandbox"]["namespaces"] is False
    finally:
        stop_server(server)


def test_an_instance_that_leaves_its_process_group_still_dies_with_its_timeout(
    client: httpx.Client, protections: dict[str, bool],
) -> None:
    need(protections, "namespaces")
    name = deploy(client, {"index.py": """
        import os, time

        def handler(event, context):
            if os.fork() == 0:  # (the runtime, PID 1, leads its group: a child leaves it)
                os.setsid()
                time.sleep(60)
                os._exit(0)
            time.sleep(60)
    """}, timeout=1)
    r = invoke(client, name)
    assert "timed out" in r.json()["errorMessage"]
    instance_id = r.headers["x-funclet-instance-id"]
    wait_for(lambda: not instance_pids(instance_id), timeout=10)


def test_a_running_instance_dies_with_a_killed_platform(tmp_path: Path) -> None:
    import signal
    import threading

    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            if not client.get("/healthz").json()["sandbox"]["namespaces"]:
                need({}, "namespaces")
            name = deploy(client, {"index.py": """
                import os, time

                def handler(event, context):
                    if os.fork() == 0:  # (a process of its own group, and session)
                        os.setsid()
                        time.sleep(60)
                        os._exit(0)
                    time.sleep(60)
            """}, timeout=120)
            threading.Thread(target=lambda: _quietly(client, name), daemon=True).start()
            instance = wait_for(lambda: [i["instanceId"] for i in client.get(
                f"{API}/functions/{name}/instances").json()["instances"]
                if i["state"] == "busy"])[0]
            wait_for(lambda: len(instance_pids(instance)) == 2)  # (the runtime, its child)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        wait_for(lambda: not instance_pids(instance), timeout=10)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    stop_server(start_server(tmp_path))  # the restart sweeps the dead instance's cgroups


def _quietly(client: httpx.Client, name: str) -> None:
    try:
        invoke(client, name)
    except httpx.HTTPError:
        pass


CALL_API = {"index.py": """
    import json, os, urllib.request, urllib.error

    def call(base, method, path, headers={}):
        request = urllib.request.Request(base + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return "unreachable"

    def handler(event, context):
        args = json.loads(event)
        base, victim = args["base"], args["victim"]
        token = os.environ.get("API_TOKEN")
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return json.dumps({
            "list": call(base, "GET", "/2023-03-30/functions"),
            "delete": call(base, "DELETE", "/2023-03-30/functions/" + victim),
            "health": call(base, "GET", "/healthz"),
            # A forwarded-for header must not pass for another client.
            "spoofed": call(base, "GET", "/2023-03-30/functions",
                            {"X-Forwarded-For": "203.0.113.7"}),
            "with token": call(base, "GET", "/2023-03-30/functions", auth),
        })
"""}


def test_functions_cannot_reach_the_api(
    client: httpx.Client, server: Server, protections: dict[str, bool],
) -> None:
    need(protections, "networkNamespace")
    name = deploy(client, CALL_API)
    victim = deploy(client, PROBE)
    gateway = client.get("/healthz").json()["network"]["gateway"]
    for base in (f"http://127.0.0.1:{server.port}", f"http://{gateway}:{server.port}"):
        out = invoke(client, name, json.dumps({"base": base, "victim": victim}).encode())
        assert set(out.json().values()) == {"unreachable"}, (base, out.text)
    assert client.get(f"{API}/functions/{victim}").status_code == 200


def test_an_api_exposed_to_functions_always_requires_credentials(tmp_path: Path) -> None:
    """The operator may open the API to functions (the FC SDK inside a function); then
    it answers them only with credentials, whatever the loopback default."""
    from tests.conftest import free_port

    port = free_port()
    server = start_server(tmp_path, port=port, FUNCLET_EXPOSE_HOST_PORTS=f"[{port}]",
                          FUNCLET_API_TOKEN="operator-token")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            if not client.get("/healthz").json()["sandbox"]["networkNamespace"]:
                need({}, "networkNamespace")
            assert client.get(f"{API}/functions").status_code == 200  # loopback: open
            victim = deploy(client, PROBE)
            event = json.dumps({"base": f"http://host.funclet.internal:{port}",
                                "victim": victim}).encode()
            anonymous = invoke(client, deploy(client, CALL_API), event).json()
            assert anonymous == {"list": 401, "delete": 401, "health": 200, "spoofed": 401,
                                 "with token": 401}
            trusted = deploy(client, CALL_API,
                             environmentVariables={"API_TOKEN": "operator-token"})
            assert invoke(client, trusted, event).json()["with token"] == 200
            assert client.get(f"{API}/functions/{victim}").status_code == 200
    finally:
        stop_server(server)


def _ahead(client: httpx.Client) -> tuple[int, int]:
    """The Python instances started ahead (waiting, target), from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {"funclet_instances_started_ahead": 0.0,
             "funclet_instances_started_ahead_target": 0.0}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name in found and sample.labels["runtime"].startswith("python"):
                found[sample.name] += sample.value
    return (int(found["funclet_instances_started_ahead"]),
            int(found["funclet_instances_started_ahead_target"]))


def test_instances_started_ahead_follow_the_rate_of_cold_starts(tmp_path: Path) -> None:
    # At least 1 waits; a burst of cold starts raises the number kept to what comes in
    # one start-up; after 2 s without a cold start the surplus goes, back to 1.
    server = start_server(tmp_path, FUNCLET_PRESTARTED_INSTANCES="1",
                          FUNCLET_PRESTARTED_INSTANCES_MAX="5",
                          FUNCLET_PRESTARTED_IDLE_SECONDS="2")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            if not client.get("/healthz").json()["sandbox"]["namespaces"]:
                need({}, "namespaces")
            names = [deploy(client, {"index.py": "def handler(e, c):\n    return 'hi'\n"})
                     for _ in range(12)]
            wait_for(lambda: _ahead(client) == (1, 1), timeout=20)
            for name in names:  # back to back: faster than one instance starts
                r = invoke(client, name)
                assert (r.text, r.headers["x-funclet-start-kind"]) == ("hi", "cold")
            assert _ahead(client)[1] > 1
            wait_for(lambda: _ahead(client)[0] > 1, timeout=20)  # refilled to the target
            wait_for(lambda: _ahead(client) == (1, 1), timeout=20)  # trimmed after 2 s
    finally:
        stop_server(server)


def test_an_instance_started_ahead_keeps_nothing_of_its_rehearsal(
    client: httpx.Client, protections: dict[str, bool]
) -> None:
    # Instances started ahead rehearse a cold start and an invocation while they wait;
    # the function sees none of it: no module, no path, no file in its /tmp.
    need(protections, "namespaces")
    name = deploy(client, {"index.py": """
        import os, sys

        def handler(event, context):
            return {"modules": [m for m in sys.modules if "rehearsal" in m],
                    "path": [p for p in sys.path if "rehearsal" in p],
                    "cache": [p for p in sys.path_importer_cache if "rehearsal" in str(p)],
                    "tmp": [f for f in os.listdir("/tmp") if "rehearsal" in f],
                    "cwd": os.getcwd()}
    """})
    out = invoke(client, name).json()
    assert out == {"modules": [], "path": [], "cache": [], "tmp": [], "cwd": "/code"}
