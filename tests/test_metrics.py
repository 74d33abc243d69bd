"""Prometheus metrics at /metrics: invocations by outcome, durations, cold starts, queue
waits, instances, the limit, async tasks, the outbox, trigger fires; behind the API's
credentials when auth is on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, invoke, wait_for

CODE = {"index.py": """
def handler(event, context):
    if event == b"boom":
        raise ValueError("boom")
    return "ok"
"""}


def _samples(client: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
           **labels: str) -> float:
    return sum(v for got, v in samples.get(name, [])
               if all(got.get(k) == want for k, want in labels.items()))


def test_invocations_instances_and_tasks_are_counted(client: httpx.Client) -> None:
    name = deploy(client, CODE)
    for event in (b"", b"", b"boom"):
        assert invoke(client, name, event).status_code == 200
    r = client.post(f"{API}/functions/{name}/invocations",
                    headers={"x-fc-invocation-type": "Async"})
    assert r.status_code == 202
    # Its run over (on the one instance), the trigger's request finds that one warm.
    wait_for(lambda: _value(_samples(client), "funclet_invocations_total", function=name,
                            mode="async") == 1)
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["GET"]}})
    assert r.status_code == 200
    assert client.get(f"/http/{name}/").status_code == 200

    def counted() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        samples = _samples(client)
        done = _value(samples, "funclet_invocations_total", function=name)
        return samples if done == 5 else None

    samples = wait_for(counted)
    total = "funclet_invocations_total"
    assert _value(samples, total, function=name, mode="sync", status="succeeded",
                  start_kind="cold", qualifier="LATEST") == 1
    assert _value(samples, total, function=name, mode="sync", status="succeeded",
                  start_kind="warm") == 2  # one of them the HTTP trigger's
    assert _value(samples, total, function=name, status="failed") == 1
    assert _value(samples, total, function=name, mode="async", status="succeeded") == 1
    assert _value(samples, "funclet_invocation_duration_seconds_count", function=name) == 5
    assert _value(samples, "funclet_invocation_duration_seconds_bucket", function=name,
                  le="+Inf") == 5
    assert _value(samples, "funclet_cold_start_seconds_count", function=name) == 1
    assert _value(samples, "funclet_cold_start_seconds_sum", function=name) > 0
    assert _value(samples, "funclet_queue_wait_seconds_count", function=name) == 5
    assert _value(samples, "funclet_instances", function=name) >= 1
    assert _value(samples, "funclet_account_instances_limit") == 100
    assert _value(samples, "funclet_async_tasks", status="Succeeded") >= 1
    assert "funclet_outbox_pending" in samples
    assert _value(samples, "funclet_trigger_fires_total", type="http") >= 1

    client.delete(f"{API}/functions/{name}/triggers/web")
    assert client.delete(f"{API}/functions/{name}").status_code == 204
    after = _samples(client)  # a deleted function's series go with it
    assert _value(after, total, function=name) == 0


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("metrics"), FUNCLET_REQUIRE_AUTH="true",
                          FUNCLET_API_TOKEN="tok")
    yield server
    stop_server(server)


def test_metrics_need_the_apis_credentials_when_auth_is_on(secured: Server) -> None:
    assert httpx.get(f"{secured.url}/metrics").status_code == 401
    r = httpx.get(f"{secured.url}/metrics", headers={"authorization": "Bearer tok"})
    assert r.status_code == 200 and "funclet_account_instances_limit" in r.text
