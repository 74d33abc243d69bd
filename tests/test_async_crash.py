"""Crash safety: accepted means never lost, across repeated kill -9 of funclet."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from pathlib import Path

import httpx

from tests.brokers import need_broker
from tests.conftest import start_server, stop_server
from tests.helpers import API, deploy, unique, wait_for

TASKS = 1000


def _final_count(client: httpx.Client, name: str) -> int:
    done, token = 0, None
    while True:
        params = {"limit": 100, "status": "Succeeded", **({"nextToken": token} if token else {})}
        page = client.get(f"{API}/functions/{name}/async-tasks", params=params).json()
        done += len(page["tasks"])
        token = page.get("nextToken")
        if not token:
            return done


def test_no_accepted_task_is_lost_across_repeated_kill_9(tmp_path: Path) -> None:
    need_broker("redis")
    import redis

    stream = unique("crash")
    server = start_server(tmp_path)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        name = deploy(client, {"index.py": "def handler(e, c):\n    return e\n"})
        client.put(f"{API}/functions/{name}/async-invoke-config", json={
            "destinationConfig": {"onSuccess": {
                "destination": f"redis://127.0.0.1:6379/0?stream={stream}"}}})

        def accept(i: int) -> None:
            r = client.post(f"{API}/functions/{name}/invocations", content=f"task {i}",
                            headers={"x-fc-invocation-type": "Async",
                                     "x-fc-async-task-id": f"t-{i:04d}"})
            assert r.status_code == 202

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(accept, range(TASKS)))
    kills = 0
    try:
        for _ in range(3):  # kill it while it works, three times
            time.sleep(0.7)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(10)
            kills += 1
            server = start_server(tmp_path)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            wait_for(lambda: _final_count(client, name) == TASKS, timeout=120, interval=0.5)
        r = redis.Redis(port=6379)
        wait_for(lambda: len({json.loads(fields[b"record"])["requestPayload"]
                              for _, fields in r.xrange(stream)}) == TASKS, timeout=60)
        delivered = [json.loads(fields[b"record"])["requestPayload"]
                     for _, fields in r.xrange(stream)]
        duplicates = len(delivered) - len(set(delivered))
        print(f"\n{TASKS} tasks, {kills} kills: every one delivered, {duplicates} duplicates")
        assert set(delivered) == {f"task {i}" for i in range(TASKS)}
        r.delete(stream)
    finally:
        stop_server(server)
