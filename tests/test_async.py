"""Async invocation: durable accept, the task API, retries, event age, stop, capacity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, unique, wait_for

COUNTER = {"index.py": """
    import time

    calls = 0

    def handler(event, context):
        global calls
        calls += 1
        if event.startswith(b"sleep"):
            time.sleep(float(event.split()[1]))
        if event == b"fail":
            raise ValueError(f"failure number {calls}")
        return f"call {calls}: {event.decode()}"
"""}


def accept(client: httpx.Client, name: str, event: bytes = b"", **headers: str) -> httpx.Response:
    r = client.post(f"{API}/functions/{name}/invocations", content=event,
                    headers={"x-fc-invocation-type": "Async", **headers})
    assert r.status_code == 202, r.text
    return r


def task(client: httpx.Client, name: str, task_id: str) -> dict[str, object]:
    r = client.get(f"{API}/functions/{name}/async-tasks/{task_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def final(client: httpx.Client, name: str, task_id: str, timeout: float = 20) -> dict[str, object]:
    return wait_for(lambda: (t := task(client, name, task_id))["status"] in (
        "Succeeded", "Failed", "Expired", "Stopped") and t, timeout=timeout)


def test_an_async_invocation_is_accepted_then_runs(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    r = accept(client, name, b"hello")
    task_id = r.headers["x-fc-async-task-id"]
    assert r.content == b"" and r.headers["x-fc-request-id"]
    t = final(client, name, task_id)
    assert t["status"] == "Succeeded" and t["returnPayload"] == "call 1: hello"
    assert t["taskPayload"] == "hello" and t["alreadyRetriedTimes"] == 0
    assert t["requestId"] == r.headers["x-fc-request-id"]
    assert t["functionArn"].endswith(f"functions/{name}")  # type: ignore[union-attr]
    assert t["instanceId"] and t["startedTime"] and t["endTime"]
    assert [e["status"] for e in t["events"]] == ["Enqueued", "Succeeded"]  # type: ignore[union-attr]
    records = client.get(f"{API}/functions/{name}/invocations").json()["invocations"]
    assert records[0]["mode"] == "async"


def test_the_same_task_id_twice_runs_once_and_says_so(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    first = accept(client, name, b"once", **{"x-fc-async-task-id": "same-id"})
    again = accept(client, name, b"once", **{"x-fc-async-task-id": "same-id"})
    assert "x-funclet-async-task-duplicate" not in first.headers
    assert again.headers["x-funclet-async-task-duplicate"] == "true"
    assert final(client, name, "same-id")["returnPayload"] == "call 1: once"
    tasks = client.get(f"{API}/functions/{name}/async-tasks").json()["tasks"]
    assert [t["taskId"] for t in tasks] == ["same-id"]


def test_a_task_id_used_by_another_function_is_a_409(client: httpx.Client) -> None:
    first, second = deploy(client, COUNTER), deploy(client, COUNTER)
    task_id = unique("shared")
    accept(client, first, b"mine", **{"x-fc-async-task-id": task_id})
    r = client.post(f"{API}/functions/{second}/invocations", content=b"theirs",
                    headers={"x-fc-invocation-type": "Async", "x-fc-async-task-id": task_id})
    assert r.status_code == 409 and r.json()["Code"] == "AsyncTaskAlreadyExists"
    assert final(client, first, task_id)["returnPayload"] == "call 1: mine"


def test_deleting_a_function_forgets_its_async_config(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    client.put(f"{API}/functions/{name}/async-invoke-config", json={"maxAsyncRetryAttempts": 1})
    client.delete(f"{API}/functions/{name}")
    deploy(client, COUNTER, name=name)
    assert client.get(f"{API}/functions/{name}/async-invoke-config").status_code == 404


def test_a_delay_postpones_the_first_attempt(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    r = accept(client, name, b"later", **{"x-fc-async-delay": "1"})
    t = final(client, name, r.headers["x-fc-async-task-id"])
    created = t["events"][0]["timestamp"]  # type: ignore[index]
    assert t["startedTime"] - created >= 1000  # type: ignore[operator]


def test_failures_are_retried_with_backoff_until_attempts_run_out(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    r = client.put(f"{API}/functions/{name}/async-invoke-config",
                   json={"maxAsyncRetryAttempts": 2})
    assert r.status_code == 200 and r.json()["maxAsyncRetryAttempts"] == 2
    t = final(client, name, accept(client, name, b"fail").headers["x-fc-async-task-id"])
    assert t["status"] == "Failed" and t["alreadyRetriedTimes"] == 2
    assert t["taskErrorMessage"] == "ValueError: failure number 3"
    statuses = [e["status"] for e in t["events"]]  # type: ignore[union-attr]
    assert statuses == ["Enqueued", "Retrying", "Retrying", "Failed"]
    stamps = [e["timestamp"] for e in t["events"]]  # type: ignore[union-attr]
    assert stamps[2] - stamps[1] >= 500 and stamps[3] - stamps[2] >= 1000  # backoff grows


def test_a_timeout_is_a_failed_attempt_too(client: httpx.Client) -> None:
    name = deploy(client, COUNTER, timeout=1)
    client.put(f"{API}/functions/{name}/async-invoke-config", json={"maxAsyncRetryAttempts": 1})
    t = final(client, name, accept(client, name, b"sleep 5").headers["x-fc-async-task-id"])
    assert t["status"] == "Failed" and "timed out" in str(t["taskErrorMessage"])
    assert t["alreadyRetriedTimes"] == 1


def test_an_event_older_than_the_maximum_age_expires_unrun(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    client.put(f"{API}/functions/{name}/async-invoke-config",
               json={"maxAsyncEventAgeInSeconds": 1})
    r = accept(client, name, b"too late", **{"x-fc-async-delay": "2"})
    t = final(client, name, r.headers["x-fc-async-task-id"])
    assert t["status"] == "Expired" and t["alreadyRetriedTimes"] == 0
    assert t["instanceId"] is None


def test_waiting_for_capacity_is_not_a_failed_attempt(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    client.put(f"{API}/functions/{name}/concurrency", json={"reservedConcurrency": 0})
    task_id = accept(client, name, b"patient").headers["x-fc-async-task-id"]

    def waited() -> dict[str, object]:
        return task(client, name, task_id)["events"][-1]  # type: ignore[no-any-return]

    first = wait_for(lambda: "no capacity" in str((e := waited())["eventDetail"]) and e)
    # Tried again and again: one event for the repeats, its time moving on (a task that
    # waits for hours keeps a short list).
    wait_for(lambda: waited()["timestamp"] > first["timestamp"])  # type: ignore[operator]
    t = task(client, name, task_id)
    assert t["status"] == "Enqueued" and t["alreadyRetriedTimes"] == 0
    assert len(t["events"]) == 2 and t["events"][-1]["eventId"] == 2
    client.delete(f"{API}/functions/{name}/concurrency")
    t = final(client, name, task_id)
    assert t["status"] == "Succeeded" and t["alreadyRetriedTimes"] == 0


def test_stopping_a_waiting_task_and_a_running_one(client: httpx.Client) -> None:
    name = deploy(client, COUNTER, timeout=30)
    waiting = accept(client, name, b"x", **{"x-fc-async-delay": "60"}).headers[
        "x-fc-async-task-id"]
    assert client.put(f"{API}/functions/{name}/async-tasks/{waiting}/stop").status_code == 200
    assert task(client, name, waiting)["status"] == "Stopped"
    running = accept(client, name, b"sleep 1.5").headers["x-fc-async-task-id"]
    wait_for(lambda: task(client, name, running)["status"] == "Running")
    client.put(f"{API}/functions/{name}/async-tasks/{running}/stop")
    assert task(client, name, running)["status"] in ("Stopping", "Stopped")
    assert final(client, name, running)["status"] == "Stopped"
    missing = client.put(f"{API}/functions/{name}/async-tasks/nope/stop")
    assert missing.status_code == 404 and missing.json()["Code"] == "AsyncTaskNotFound"


def test_list_tasks_filters_pages_and_orders(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    ids = []
    for e in (b"a", b"fail", b"b", b"c"):
        # Tasks are listed by their creation time in ms (ties by task id, as random as
        # the id): accepts a millisecond apart have one order to check.
        time.sleep(0.002)
        ids.append(accept(client, name, e).headers["x-fc-async-task-id"])
    client.put(f"{API}/functions/{name}/async-invoke-config", json={"maxAsyncRetryAttempts": 0})
    for task_id in ids:
        final(client, name, task_id)
    page = client.get(f"{API}/functions/{name}/async-tasks", params={"limit": 2}).json()
    assert [t["taskId"] for t in page["tasks"]] == ids[::-1][:2] and page["nextToken"]
    rest = client.get(f"{API}/functions/{name}/async-tasks",
                      params={"limit": 2, "nextToken": page["nextToken"]}).json()
    assert [t["taskId"] for t in rest["tasks"]] == ids[::-1][2:]
    failed = client.get(f"{API}/functions/{name}/async-tasks",
                        params={"status": "Failed"}).json()["tasks"]
    assert [t["taskId"] for t in failed] == [ids[1]] and "taskPayload" not in failed[0]
    oldest = client.get(f"{API}/functions/{name}/async-tasks",
                        params={"sortOrderByTime": "asc", "limit": 1}).json()["tasks"]
    assert oldest[0]["taskId"] == ids[0]


@pytest.mark.parametrize(("headers", "body", "status", "text"), [
    ({}, b"x" * (128 * 1024 + 1), 413, "async invocation limit"),
    ({"x-fc-async-delay": "3601"}, b"", 400, "x-fc-async-delay"),
    ({"x-fc-async-delay": b"\xb2"}, b"", 400, "x-fc-async-delay"),
    ({"x-fc-async-task-id": "bad id!"}, b"", 400, "x-fc-async-task-id"),
    ({"x-fc-invocation-type": "Later"}, b"", 400, "'Sync' or 'Async'"),
])
def test_bad_async_requests_are_refused_and_nothing_is_stored(
    client: httpx.Client, headers: dict[str, str | bytes], body: bytes, status: int, text: str,
) -> None:
    name = deploy(client, COUNTER)
    r = client.post(f"{API}/functions/{name}/invocations", content=body,
                    headers={"x-fc-invocation-type": "Async", **headers})
    assert r.status_code == status and text in r.json()["Message"], r.text
    assert client.get(f"{API}/functions/{name}/async-tasks").json()["tasks"] == []
    unknown = client.post(f"{API}/functions/nope-{name}/invocations",
                          headers={"x-fc-invocation-type": "Async"})
    assert unknown.status_code == 404


@pytest.mark.parametrize("body", [
    {"maxAsyncRetryAttempts": 9}, {"maxAsyncRetryAttempts": -1},
    {"maxAsyncEventAgeInSeconds": 0}, {"maxAsyncEventAgeInSeconds": 604_801},
    {"destinationConfig": {"onSuccess": {"destination": "ftp://127.0.0.1/x"}}},
    {"destinationConfig": {"onFailure": {"destination": "redis://127.0.0.1:6379/0"}}},
    {"destinationConfig": {"onFailure": {"destination": "mqtt://127.0.0.1?topic=t&qos=5"}}},
    {"destinationConfig": {"onSuccess": "acs:fc:local:1:functions/x"}},
    {"destinationConfig": {"onSuccess": {"destination": "http://[::1"}}},
    {"destinationConfig": {"onFailure": {"destination": "redis://[::1?stream=s"}}},
    {"destinationConfig": {"onFailure": {"destination": "mqtt://127.0.0.1:99999?topic=t"}}},
    {"destinationConfig": {"onFailure": {"destination": "http://127.0.0.1/a b"}}},
    {"destinationConfig": {"onFailure": {"destination": "acs:fc:local:1:functions/x\n"}}},
])
def test_async_config_is_validated(client: httpx.Client, body: dict[str, object]) -> None:
    name = deploy(client, COUNTER)
    r = client.put(f"{API}/functions/{name}/async-invoke-config", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["Code"] == "InvalidArgument" and next(iter(body)) in r.json()["Message"]
    assert client.get(f"{API}/functions/{name}/async-invoke-config").status_code == 404


def test_async_config_round_trips(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    body = {"maxAsyncRetryAttempts": 5, "maxAsyncEventAgeInSeconds": 600}
    assert client.put(f"{API}/functions/{name}/async-invoke-config", json=body).status_code == 200
    got = client.get(f"{API}/functions/{name}/async-invoke-config").json()
    assert (got["maxAsyncRetryAttempts"], got["maxAsyncEventAgeInSeconds"]) == (5, 600)
    assert client.delete(f"{API}/functions/{name}/async-invoke-config").status_code == 204
    assert client.get(f"{API}/functions/{name}/async-invoke-config").status_code == 404


def test_the_fc_sdk_reads_async_tasks(client: httpx.Client, server: Server) -> None:
    name = deploy(client, COUNTER)
    sdk = Client(openapi.Config(access_key_id="a", access_key_secret="b",
                                endpoint=f"127.0.0.1:{server.port}", protocol="http"))
    r = sdk.invoke_function_with_options(
        name, fc.InvokeFunctionRequest(body=b"via sdk"),
        fc.InvokeFunctionHeaders(x_fc_invocation_type="Async", x_fc_async_task_id="sdk-task"),
        __import__("darabonba.runtime", fromlist=["RuntimeOptions"]).RuntimeOptions())
    assert r.status_code == 202
    final(client, name, "sdk-task")
    got = sdk.get_async_task(name, "sdk-task", fc.GetAsyncTaskRequest())
    assert got.body.status == "Succeeded" and got.body.return_payload == "call 1: via sdk"
    assert got.body.events[-1].status == "Succeeded"
    listed = sdk.list_async_tasks(name, fc.ListAsyncTasksRequest(limit=5))
    assert [t.task_id for t in listed.body.tasks] == ["sdk-task"]


def test_accepted_tasks_survive_kill_9(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        name = deploy(client, COUNTER, timeout=30)
        running = accept(client, name, b"sleep 3").headers["x-fc-async-task-id"]
        wait_for(lambda: task(client, name, running)["status"] == "Running")
        waiting = [accept(client, name, f"n{i}".encode(), **{"x-fc-async-delay": "1"})
                   .headers["x-fc-async-task-id"] for i in range(20)]
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert final(client, name, running)["status"] == "Succeeded"
            for task_id in waiting:
                assert final(client, name, task_id)["status"] == "Succeeded"
        assert "Re-queued 1 async tasks" in server.log()
    finally:
        stop_server(server)


def test_the_cli_queues_and_reads_tasks(server: Server, tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(e, c):\n    return b'cli ' + e\n")
    name = unique("cli")
    base = [sys.executable, "-m", "funclet"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args, "--endpoint", server.url],
                              capture_output=True, text=True, timeout=60)

    assert run("deploy", str(tmp_path), "--name", name).returncode == 0
    r = run("invoke", name, "--payload", "hi", "--async", "--task-id", "cli-task")
    assert r.returncode == 0 and "Accepted async task cli-task" in r.stdout, r.stderr
    again = run("invoke", name, "--async", "--task-id", "cli-task")
    assert "Already accepted" in again.stdout
    with httpx.Client(base_url=server.url) as client:
        final(client, name, "cli-task")
    assert "Succeeded" in run("tasks", name).stdout
    assert '"returnPayload": "cli hi"' in run("task", "show", name, "cli-task").stdout
    r = run("async-config", name)  # nothing set: the defaults it runs with
    assert r.returncode == 0 and '"maxAsyncRetryAttempts": 3' in r.stdout
    assert "no async invoke config of its own" in r.stderr
    r = run("async-config", name, "--retries", "1")
    assert r.returncode == 0 and '"maxAsyncRetryAttempts": 1' in r.stdout
    stopped = run("task", "stop", name, "cli-task")  # it had succeeded: nothing to stop
    assert stopped.returncode == 0 and "already ended (Succeeded)" in stopped.stdout
    bad = run("async-config", name, "--retries", "99")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: InvalidArgument")


def test_async_work_never_takes_every_instance_from_sync_callers(tmp_path: Path) -> None:
    import time

    server = start_server(tmp_path, FUNCLET_MAX_INSTANCES="2")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            slow = deploy(client, COUNTER, timeout=30)
            other = deploy(client, COUNTER, timeout=30)
            for i in range(6):  # a backlog of slow async work
                accept(client, slow, b"sleep 1", **{"x-fc-async-task-id": f"slow-{i}"})
            time.sleep(0.5)
            started = time.monotonic()
            r = client.post(f"{API}/functions/{other}/invocations", content=b"sync")
            assert r.status_code == 200 and "x-fc-error-type" not in r.headers
            assert time.monotonic() - started < 3.0  # not behind the 6 s backlog
            running = client.get(f"{API}/functions/{slow}/async-tasks",
                                 params={"status": "Running"}).json()["tasks"]
            assert len(running) <= 1  # async holds at most half of the 2 instances
    finally:
        stop_server(server)


def test_async_configs_are_listed_and_keep_their_flag(client: httpx.Client, server: Server) -> None:
    name = deploy(client, COUNTER)
    r = client.put(f"{API}/functions/{name}/async-invoke-config",
                   json={"maxAsyncRetryAttempts": 1, "asyncTask": False})
    assert r.json()["asyncTask"] is False
    listed = client.get(f"{API}/async-invoke-configs", params={"functionName": name}).json()
    assert [c["functionArn"].rsplit("/", 1)[1] for c in listed["configs"]] == [name]
    sdk = Client(openapi.Config(access_key_id="a", access_key_secret="b",
                                endpoint=f"127.0.0.1:{server.port}", protocol="http"))
    out = sdk.list_async_invoke_configs(fc.ListAsyncInvokeConfigsRequest(function_name=name))
    assert out.body.configs[0].max_async_retry_attempts == 1


def test_started_time_filters_use_when_tasks_started(client: httpx.Client) -> None:
    name = deploy(client, COUNTER)
    task_id = accept(client, name, b"x").headers["x-fc-async-task-id"]
    started = int(final(client, name, task_id)["startedTime"])  # type: ignore[call-overload]
    hit = client.get(f"{API}/functions/{name}/async-tasks",
                     params={"startedTimeBegin": started, "startedTimeEnd": started}).json()
    assert [t["taskId"] for t in hit["tasks"]] == [task_id]
    miss = client.get(f"{API}/functions/{name}/async-tasks",
                      params={"startedTimeBegin": started + 1}).json()
    assert miss["tasks"] == []


def test_every_attempt_runs_and_logs_under_the_accepted_request_id(
        client: httpx.Client) -> None:
    """The request id a caller gets at accept is the one each attempt runs under (retries
    too): its invocation record holds every attempt's log, and the task says it."""
    name = deploy(client, {"index.py": """
        calls = 0

        def handler(event, context):
            global calls
            calls += 1
            print("attempt", calls, "as", context.request_id)
            if calls == 1:
                raise RuntimeError("first time unlucky")
            return "ok"
    """})
    r = client.put(f"{API}/functions/{name}/async-invoke-config",
                   json={"maxAsyncRetryAttempts": 2})
    assert r.status_code == 200
    r = client.post(f"{API}/functions/{name}/invocations",
                    headers={"x-fc-invocation-type": "Async"})
    request_id, task_id = r.headers["x-fc-request-id"], r.headers["x-fc-async-task-id"]
    task = wait_for(lambda: (t := client.get(
        f"{API}/functions/{name}/async-tasks/{task_id}").json())["status"] == "Succeeded"
        and t, timeout=30)
    assert task["requestId"] == request_id and task["alreadyRetriedTimes"] == 1
    record = wait_for(lambda: (x := client.get(
        f"{API}/functions/{name}/invocations/{request_id}")).status_code == 200
        and x.json()["status"] == "succeeded" and x.json())  # (the last attempt's)
    assert f"attempt 1 as {request_id}" in record["log"]
    assert f"attempt 2 as {request_id}" in record["log"]
    assert record["log"].index("attempt 1") < record["log"].index("attempt 2")


def test_finished_tasks_are_pruned_past_the_newest_kept_and_past_their_retention(
        tmp_path: Path) -> None:
    """At most FUNCLET_MAX_ASYNC_TASKS tasks stay, and no finished one past the retention
    (the disk they take is bounded); a waiting task, and a finished one whose destination
    record is not delivered yet, stay; a task id can be used again once its task is gone."""
    from tests.conftest import free_port

    server = start_server(tmp_path, FUNCLET_MAX_ASYNC_TASKS="5",
                          FUNCLET_ASYNC_TASK_RETENTION_DAYS=str(4 / 86400),
                          FUNCLET_RECORDS_PRUNE_INTERVAL_SECONDS="0.3")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, COUNTER)
            undelivered = deploy(client, COUNTER)
            r = client.put(f"{API}/functions/{undelivered}/async-invoke-config", json={
                "destinationConfig": {"onSuccess": {
                    "destination": f"http://127.0.0.1:{free_port()}/nobody-listens"}}})
            assert r.status_code == 200, r.text
            held = accept(client, undelivered, b"x").headers["x-fc-async-task-id"]
            later = accept(client, name, b"x", **{"x-fc-async-delay": "600"}).headers[
                "x-fc-async-task-id"]
            ids = [accept(client, name, b"%d" % n).headers["x-fc-async-task-id"]
                   for n in range(12)]
            again = accept(client, name, b"mine", **{"x-fc-async-task-id": "mine"})
            def done(task_id: str) -> bool:  # (finished, or already pruned)
                r = client.get(f"{API}/functions/{name}/async-tasks/{task_id}")
                return r.status_code == 404 or r.json()["status"] == "Succeeded"

            wait_for(lambda: all(done(task_id) for task_id in [*ids, "mine"]))

            def kept() -> set[str]:
                page = client.get(f"{API}/functions/{name}/async-tasks",
                                  params={"limit": 100}).json()
                return {t["taskId"] for t in page["tasks"]}

            # The newest five tasks of all (finished ones older than those go) ...
            newest = wait_for(lambda: (k := kept()) and len(k) <= 5 and k, timeout=5)
            assert later in newest and newest - {later} <= {*ids[-5:], "mine"}, newest
            # ... then, 4 s on, no finished one; the waiting task and the undelivered
            # record's task stay.
            wait_for(lambda: kept() == {later}, timeout=15)
            status = task(client, undelivered, held)
            assert str(status["destinationStatus"]).startswith("Retrying"), status
            assert task(client, name, later)["status"] == "Enqueued"
            assert "Pruned" in server.log()
            # The id is free again: a new task, run again.
            assert "x-funclet-async-task-duplicate" not in again.headers
            r = accept(client, name, b"mine again", **{"x-fc-async-task-id": "mine"})
            assert "x-funclet-async-task-duplicate" not in r.headers
            assert str(final(client, name, "mine")["returnPayload"]).endswith(": mine again")
    finally:
        stop_server(server)
