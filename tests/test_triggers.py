"""The trigger API, and timer triggers end to end: scheduled time in the event, late
runs that still know when they were meant to run, restarts, enable and disable."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, unique, wait_for
from tests.test_cli import cli

ECHO = """
import json, time

def handler(event, context):
    return json.dumps({"event": json.loads(event), "startedAt": time.time()})
"""


def _triggers(client: httpx.Client, name: str) -> str:
    return f"{API}/functions/{name}/triggers"


def _tasks(client: httpx.Client, name: str, status: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 100, "includePayload": "true",
                              **({"status": status} if status else {})}
    return list(client.get(f"{API}/functions/{name}/async-tasks", params=params).json()["tasks"])


def _trigger_times(client: httpx.Client, name: str) -> list[str]:
    return sorted(json.loads(t["taskPayload"])["triggerTime"] for t in _tasks(client, name))


def _epoch(fc_time: str) -> float:
    return datetime.fromisoformat(fc_time.replace("Z", "+00:00")).timestamp()


def test_trigger_api_round_trip(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": ECHO})
    url = _triggers(client, name)
    created = client.post(url, json={
        "triggerName": "nightly", "triggerType": "timer", "description": "cleanup",
        "triggerConfig": json.dumps({"cronExpression": "0 0 4 * * *", "payload": "go"})})
    assert created.status_code == 200, created.text
    body = created.json()
    assert json.loads(body["triggerConfig"]) == {
        "cronExpression": "0 0 4 * * *", "payload": "go", "enable": True}
    assert body["triggerType"] == "timer" and body["qualifier"] == "LATEST"
    assert body["targetArn"].endswith(f":functions/{name}") and body["status"] == "OK"
    assert body["nextFireTime"].endswith("T04:00:00Z")
    # triggerConfig as an object works too
    http = client.post(url, json={"triggerName": "web", "triggerType": "http",
                                  "triggerConfig": {"authType": "anonymous",
                                                    "methods": ["get", "POST"]}})
    assert http.status_code == 200, http.text
    assert json.loads(http.json()["triggerConfig"])["methods"] == ["GET", "POST"]
    assert http.json()["httpTrigger"]["urlInternet"].endswith(f"/http/{name}/")

    got = client.get(f"{url}/nightly").json()
    assert got["triggerId"] == body["triggerId"] and got["description"] == "cleanup"
    updated = client.put(f"{url}/nightly", json={
        "triggerConfig": {"cronExpression": "@every 5m", "enable": False}})
    assert updated.status_code == 200, updated.text
    assert json.loads(updated.json()["triggerConfig"])["enable"] is False
    assert "nextFireTime" not in updated.json()  # disabled
    assert updated.json()["description"] == "cleanup"  # untouched fields stay

    page = client.get(url, params={"limit": 1}).json()
    assert [t["triggerName"] for t in page["triggers"]] == ["nightly"]
    rest = client.get(url, params={"limit": 1, "nextToken": page["nextToken"]}).json()
    assert [t["triggerName"] for t in rest["triggers"]] == ["web"] and "nextToken" not in rest
    assert [t["triggerName"] for t in client.get(url, params={"prefix": "we"}).json()[
        "triggers"]] == ["web"]

    assert client.delete(f"{url}/nightly").status_code == 204
    gone = client.get(f"{url}/nightly")
    assert gone.status_code == 404 and gone.json()["Code"] == "TriggerNotFound"


@pytest.mark.parametrize(("body", "says"), [
    ({"triggerType": "timer", "triggerConfig": {"cronExpression": "@every 1m"}},
     "triggerName"),
    ({"triggerName": "9lives", "triggerType": "timer",
      "triggerConfig": {"cronExpression": "@every 1m"}}, "triggerName"),
    ({"triggerName": "t", "triggerType": "oss", "triggerConfig": {}}, "triggerType"),
    ({"triggerName": "t", "triggerType": "timer", "triggerConfig": {}},
     "triggerConfig.cronExpression"),
    ({"triggerName": "t", "triggerType": "timer",
      "triggerConfig": {"cronExpression": "0 4 * * *"}}, "six fields"),
    ({"triggerName": "t", "triggerType": "timer", "triggerConfig": "{not json"},
     "not valid JSON"),
    ({"triggerName": "t", "triggerType": "timer",
      "triggerConfig": {"cronExpression": "@every 1m", "enable": "yes"}},
     "triggerConfig.enable"),
    ({"triggerName": "t", "triggerType": "http", "triggerConfig": {"methods": ["BREW"]}},
     "triggerConfig.methods"),
    ({"triggerName": "t", "triggerType": "http", "triggerConfig": {"authType": "jwt"}},
     "triggerConfig.authType"),
    ({"triggerName": "t", "triggerType": "redis",
      "triggerConfig": {"url": "http://127.0.0.1", "stream": "s"}}, "triggerConfig.url"),
    ({"triggerName": "t", "triggerType": "rabbitmq",
      "triggerConfig": {"url": "amqp://127.0.0.1"}}, "triggerConfig.queue"),
    ({"triggerName": "t", "triggerType": "nats",
      "triggerConfig": {"url": "nats://127.0.0.1", "subject": "s", "batchSize": 101}},
     "triggerConfig.batchSize"),
    ({"triggerName": "t", "triggerType": "mqtt",
      "triggerConfig": {"url": "mqtt://127.0.0.1", "topic": "t",
                        "batchWindowInSeconds": 16}}, "triggerConfig.batchWindowInSeconds"),
    ({"triggerName": "t", "triggerType": "timer",
      "triggerConfig": {"cronExpression": "0 0 0 30 2 *"}}, "'0 0 0 30 2 *' never fires"),
    ({"triggerName": "t", "triggerType": "timer",
      "triggerConfig": {"cronExpression": "@every 999999999999999999999h"}}, "at most 8784h"),
    ({"triggerName": "t", "triggerType": "redis",
      "triggerConfig": {"url": "redis://[::1", "stream": "s"}},
     'triggerConfig.url "redis://[::1" is not a valid URL'),
    ({"triggerName": "t", "triggerType": "redis",
      "triggerConfig": {"url": "redis://127.0.0.1:99999", "stream": "s"}}, "Port out of range"),
    ({"triggerName": "t", "triggerType": "mqtt",
      "triggerConfig": {"url": "mqtt://127.0.0.1:x", "topic": "t"}}, "triggerConfig.url"),
    ({"triggerName": "t", "triggerType": "nats",
      "triggerConfig": {"url": "nats://127.0.0.1\n:4222", "subject": "s"}}, "control character"),
])
def test_invalid_triggers_are_refused_naming_the_field(
    client: httpx.Client, body: dict[str, Any], says: str,
) -> None:
    name = deploy(client, {"index.py": ECHO})
    r = client.post(_triggers(client, name), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["Code"] == "InvalidArgument" and says in r.json()["Message"]
    assert client.get(_triggers(client, name)).json()["triggers"] == []


def test_trigger_conflicts_and_unknowns(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": ECHO})
    url = _triggers(client, name)
    timer = {"triggerName": "t", "triggerType": "timer",
             "triggerConfig": {"cronExpression": "@every 1h"}}
    assert client.post(url, json=timer).status_code == 200
    again = client.post(url, json=timer)
    assert again.status_code == 409 and again.json()["Code"] == "TriggerAlreadyExists"
    http = {"triggerType": "http", "triggerConfig": {}}
    assert client.post(url, json={"triggerName": "h1", **http}).status_code == 200
    assert client.post(url, json={"triggerName": "h2", **http}).status_code == 409
    retype = client.put(f"{url}/t", json={"triggerType": "http"})
    assert retype.status_code == 400
    missing = client.post(f"{API}/functions/{unique('none')}/triggers", json=timer)
    assert missing.status_code == 404 and missing.json()["Code"] == "FunctionNotFound"
    assert client.put(f"{url}/nope", json={}).status_code == 404
    assert client.delete(f"{url}/nope").status_code == 404
    # deleting the function deletes its triggers
    assert client.delete(f"{API}/functions/{name}").status_code == 204
    deploy(client, {"index.py": ECHO}, name=name)
    assert client.get(url).json()["triggers"] == []


def test_timer_events_carry_their_scheduled_time(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": ECHO})
    r = client.post(_triggers(client, name), json={
        "triggerName": "tick", "triggerType": "timer",
        "triggerConfig": {"cronExpression": "@every 1s", "payload": "hello"}})
    assert r.status_code == 200, r.text
    wait_for(lambda: len(_tasks(client, name, "Succeeded")) >= 3, timeout=15)
    client.delete(f"{_triggers(client, name)}/tick")
    for task in _tasks(client, name, "Succeeded"):
        out = json.loads(task["returnPayload"])
        assert out["event"]["triggerName"] == "tick" and out["event"]["payload"] == "hello"
        scheduled = _epoch(out["event"]["triggerTime"])
        assert scheduled == int(scheduled)  # a whole second, FC's format
        assert out["startedAt"] >= scheduled
    times = _trigger_times(client, name)
    assert len(times) == len(set(times))  # one fire per scheduled time
    steps = {_epoch(b) - _epoch(a) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {1.0}


def test_late_timer_runs_still_see_their_own_trigger_time(client: httpx.Client) -> None:
    """The classic trap: fires every second, each run takes 1.5 s, one at a time. The
    events queue up and run later and later; each still carries its scheduled time."""
    name = deploy(client, {"index.py": ECHO.replace(
        'return json.dumps', 'time.sleep(1.5)\n    return json.dumps')},
        instanceConcurrency=1)
    assert client.put(f"{API}/functions/{name}/concurrency",
                      json={"reservedConcurrency": 1}).status_code == 200
    client.post(_triggers(client, name), json={
        "triggerName": "tick", "triggerType": "timer",
        "triggerConfig": {"cronExpression": "@every 1s"}})
    wait_for(lambda: len(_tasks(client, name, "Succeeded")) >= 4, timeout=30)
    client.delete(f"{_triggers(client, name)}/tick")
    runs = sorted((json.loads(t["returnPayload"]) for t in _tasks(client, name, "Succeeded")),
                  key=lambda o: o["startedAt"])
    lags = [o["startedAt"] - _epoch(o["event"]["triggerTime"]) for o in runs]
    times = [o["event"]["triggerTime"] for o in runs]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert lags[-1] > lags[0] + 1.0  # later and later, and each run knows it


def test_disabling_and_enabling_a_timer_needs_no_restart(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": ECHO})
    url = _triggers(client, name)
    client.post(url, json={"triggerName": "tick", "triggerType": "timer",
                           "triggerConfig": {"cronExpression": "@every 1s"}})
    wait_for(lambda: _tasks(client, name), timeout=10)
    off = client.put(f"{url}/tick", json={
        "triggerConfig": {"cronExpression": "@every 1s", "enable": False}})
    assert off.status_code == 200
    time.sleep(0.3)
    count = len(_tasks(client, name))
    time.sleep(2.2)
    assert len(_tasks(client, name)) == count
    client.put(f"{url}/tick", json={"triggerConfig": {"cronExpression": "@every 1s"}})
    wait_for(lambda: len(_tasks(client, name)) >= count + 2, timeout=10)
    client.delete(f"{url}/tick")


@pytest.mark.parametrize("config", [
    {"cronExpression": "0 0 0 30 2 *"},
    {"cronExpression": "@every 999999999999999999999h"},
    {"cronExpression": "@every 1s", "enable": "no"},
    "not json",
])
def test_a_refused_update_leaves_the_timer_stored_and_firing(
    client: httpx.Client, config: Any,
) -> None:
    name = deploy(client, {"index.py": ECHO})
    url = _triggers(client, name)
    created = client.post(url, json={"triggerName": "tick", "triggerType": "timer",
                                     "triggerConfig": {"cronExpression": "@every 1s"}})
    assert created.status_code == 200, created.text
    r = client.put(f"{url}/tick", json={"triggerConfig": config})
    assert r.status_code == 400 and r.json()["Code"] == "InvalidArgument", r.text
    assert "triggerConfig" in r.json()["Message"]
    got = client.get(f"{url}/tick")
    assert got.status_code == 200, got.text
    assert json.loads(got.json()["triggerConfig"])["cronExpression"] == "@every 1s"
    assert "nextFireTime" in got.json()
    count = len(_tasks(client, name))
    wait_for(lambda: len(_tasks(client, name)) >= count + 2, timeout=10)  # still firing
    client.delete(f"{url}/tick")


def _timer_function(client: httpx.Client) -> str:
    name = deploy(client, {"index.py": ECHO})
    r = client.post(_triggers(client, name), json={
        "triggerName": "tick", "triggerType": "timer",
        "triggerConfig": {"cronExpression": "@every 1s"}})
    assert r.status_code == 200, r.text
    return name


def test_a_timer_fires_once_per_time_across_restarts_and_once_after_downtime(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = _timer_function(client)
            wait_for(lambda: len(_tasks(client, name)) >= 2, timeout=10)
        stop_server(server)
        time.sleep(3.5)  # three or four fires missed
        server = start_server(tmp_path)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            before = len(_tasks(client, name))
            wait_for(lambda: len(_tasks(client, name)) >= before + 2, timeout=10)
            client.delete(f"{_triggers(client, name)}/tick")
            times = [_epoch(t) for t in _trigger_times(client, name)]
    finally:
        stop_server(server)
    assert len(times) == len(set(times))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # one gap covers the downtime (the missed fires became one, the latest); no burst
    assert max(gaps) >= 3 and sorted(gaps)[:-1] == [1.0] * (len(gaps) - 1)


def test_a_killed_funclet_does_not_fire_a_scheduled_time_twice(tmp_path: Path) -> None:
    server: Server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = _timer_function(client)
            for _ in range(3):
                wait_for(lambda: len(_tasks(client, name)) >= 1, timeout=10)
                time.sleep(1.2)
                os.kill(server.process.pid, signal.SIGKILL)
                server.process.wait(10)
                server = start_server(tmp_path, server.port)
            wait_for(lambda: len(_tasks(client, name)) >= 5, timeout=10)
            client.delete(f"{_triggers(client, name)}/tick")
            times = _trigger_times(client, name)
    finally:
        stop_server(server)
    assert len(times) == len(set(times))


def test_the_timer_lag_example_through_the_cli(client: httpx.Client, server: Server) -> None:
    """examples/timer-lag: deployed with its manifest (reservedConcurrency, a disabled
    timer), the timer turned on and off with the CLI; late runs process their own window."""
    name = unique("timer-lag")
    example = Path(__file__).resolve().parent.parent / "examples" / "timer-lag"
    deployed = cli(server.url, "deploy", str(example), "--name", name)
    assert deployed.returncode == 0, deployed.stderr
    assert "trigger every-second (timer)" in deployed.stdout
    assert client.get(f"{API}/functions/{name}/concurrency").json()["reservedConcurrency"] == 1
    on = cli(server.url, "trigger", "add", name, "every-second", "--type", "timer",
             "--cron", "@every 1s", "--payload", "tick", "--enable", "--update")
    assert on.returncode == 0, on.stderr
    listed = cli(server.url, "trigger", "ls", name)
    assert "every-second" in listed.stdout and "timer" in listed.stdout
    wait_for(lambda: len(_tasks(client, name, "Succeeded")) >= 3, timeout=40)
    off = cli(server.url, "trigger", "add", name, "every-second", "--type", "timer",
              "--disable", "--update")
    assert off.returncode == 0, off.stderr
    runs = sorted((json.loads(t["returnPayload"]) for t in _tasks(client, name, "Succeeded")),
                  key=lambda r: r["triggerTime"])
    assert [r["lagSeconds"] for r in runs] == sorted(r["lagSeconds"] for r in runs)
    assert runs[-1]["lagSeconds"] > runs[0]["lagSeconds"] + 1
    assert all(r["window"][1].startswith(r["triggerTime"][:19]) for r in runs)
    assert cli(server.url, "trigger", "rm", name, "every-second").returncode == 0
    assert cli(server.url, "trigger", "info", name, "every-second").returncode == 1
