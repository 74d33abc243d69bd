"""Invocation records (listed newest first, filtered, paged, read back) and their logs."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import start_server, stop_server
from tests.helpers import API, deploy, invoke, wait_for

FLAKY = {"index.py": """
    def handler(event, context):
        print("event", event.decode())
        if event == b"fail":
            raise KeyError("missing")
        return "ok"
"""}


def test_invocations_are_recorded_newest_first_with_their_details(client: httpx.Client) -> None:
    name = deploy(client, FLAKY)
    ids = [invoke(client, name, e).headers["x-fc-request-id"] for e in (b"a", b"fail", b"b")]
    page = client.get(f"{API}/functions/{name}/invocations").json()
    records = page["invocations"]
    assert [r["requestId"] for r in records] == ids[::-1]
    oldest = records[-1]
    assert oldest["startKind"] == "cold" and oldest["initDurationMs"] > 0
    assert records[0]["startKind"] == "warm"
    assert {r["instanceId"] for r in records} == {oldest["instanceId"]}
    failed = records[1]
    assert (failed["status"], failed["errorType"]) == ("failed", "KeyError")
    assert failed["mode"] == "sync"
    assert "log" not in failed


def test_invocations_filter_by_status_and_page(client: httpx.Client) -> None:
    name = deploy(client, FLAKY)
    for e in (b"1", b"fail", b"2", b"fail", b"3"):
        invoke(client, name, e)
    failed = client.get(f"{API}/functions/{name}/invocations",
                        params={"status": "failed"}).json()["invocations"]
    assert len(failed) == 2 and all(r["status"] == "failed" for r in failed)
    seen, token = [], None
    while True:
        params = {"limit": 2, **({"nextToken": token} if token else {})}
        page = client.get(f"{API}/functions/{name}/invocations", params=params).json()
        seen += [r["requestId"] for r in page["invocations"]]
        token = page.get("nextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    bad = client.get(f"{API}/functions/{name}/invocations", params={"status": "weird"})
    assert bad.status_code == 400


def test_one_invocation_reads_back_with_its_full_log(client: httpx.Client) -> None:
    name = deploy(client, FLAKY)
    rid = invoke(client, name, b"hello").headers["x-fc-request-id"]
    rec = client.get(f"{API}/functions/{name}/invocations/{rid}").json()
    assert rec["requestId"] == rid
    assert rec["log"] == (f"FC Invoke Start RequestId: {rid}\nevent hello\n"
                          f"FC Invoke End RequestId: {rid}\n")
    missing = client.get(f"{API}/functions/{name}/invocations/1-nope")
    assert missing.status_code == 404 and missing.json()["Code"] == "InvocationNotFound"


def test_a_log_line_over_32_kb_is_cut_with_a_marker(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        def handler(event, context):
            print("A" * 100_000)
            print("short line")
            return "ok"
    """})
    rid = invoke(client, name).headers["x-fc-request-id"]
    log = client.get(f"{API}/functions/{name}/invocations/{rid}").json()["log"]
    lines = log.split("\n")
    long_line = next(line for line in lines if line.startswith("AAAA"))
    assert long_line == "A" * 32 * 1024 + " [funclet: line cut, it exceeded 32 KB]"
    assert "short line" in lines


def test_failed_cold_starts_are_recorded_too(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": "raise SystemError('boom at import')\n"})
    rid = invoke(client, name).headers["x-fc-request-id"]
    rec = client.get(f"{API}/functions/{name}/invocations/{rid}").json()
    assert rec["status"] == "failed"
    assert rec["errorType"] == "Runtime.ImportModuleError"
    assert rec["startKind"] == "cold"


def test_records_are_pruned_past_the_newest_kept_and_past_their_retention(
        tmp_path: Path) -> None:
    """At most FUNCLET_MAX_INVOCATION_RECORDS invocation records stay (the newest); after
    the retention, none, nor the records of instances that stopped (the disk they take
    is bounded, and so is the cost of writing the next record)."""
    server = start_server(tmp_path, FUNCLET_MAX_INVOCATION_RECORDS="20",
                          FUNCLET_RECORDS_RETENTION_DAYS=str(4 / 86400),
                          FUNCLET_RECORDS_PRUNE_INTERVAL_SECONDS="0.3")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, FLAKY, keepAliveSeconds=1)
            ids = [invoke(client, name, b"x").headers["x-fc-request-id"] for _ in range(60)]
            instance = invoke(client, name, b"x").headers["x-funclet-instance-id"]

            def kept() -> list[str]:
                page = client.get(f"{API}/functions/{name}/invocations",
                                  params={"limit": 100}).json()
                return [r["requestId"] for r in page["invocations"]]

            newest = wait_for(lambda: (k := kept()) and len(k) <= 20 and k, timeout=5)
            # The newest ones (those of the cut's millisecond may go with it; records of
            # one millisecond list in their ids' order, not in the order they ran).
            assert 14 <= len(newest) <= 20, newest
            assert set(newest[1:]) == set(ids[::-1][:len(newest) - 1]), (newest, ids)

            def stopped() -> list[str]:
                items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
                return [i["instanceId"] for i in items if i.get("stopReason")]

            # Its instance stops after 1 s idle (its record: a stopped instance's) ...
            assert instance in wait_for(lambda: (i := stopped()) and i, timeout=4)
            # ... and 4 s after, nothing of it or of its invocations is left.
            wait_for(lambda: not kept() and instance not in stopped(), timeout=15)
            assert "Pruned" in server.log()
    finally:
        stop_server(server)
