"""The instance's socket is bounded: a frame over the limit ends the instance before the
platform buffers it, and legitimate large responses still get through."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import API, deploy, invoke

# Finds its own socket to the platform (the AF_UNIX stream socket among its fds) and
# writes a frame prefix announcing far more than any limit, then keeps writing.
ATTACK = {"index.py": """
    import json, os, socket, struct

    def _platform_socket():
        for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
            try:
                s = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            if s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM:
                return s
            s.close()
        raise RuntimeError("no socket to the platform")

    def handler(event, context):
        e = json.loads(event)
        s = _platform_socket()
        header = b'{"type":1}'
        s.sendall(struct.pack("!II", e["header_len"], e["body_len"]) + header)
        chunk = b"x" * (1024 * 1024)
        sent = 0
        try:
            for _ in range(200):
                s.sendall(chunk)
                sent += len(chunk)
        except OSError as exc:
            return f"stopped after {sent} bytes: {exc}"
        return f"sent {sent} bytes"
"""}


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


@pytest.mark.parametrize(("part", "header_len", "body_len"), [
    ("body", 10, 2**32 - 1),  # 4 GB announced
    ("header", 2**31, 0),
])
def test_a_frame_over_the_limit_ends_the_instance_before_it_is_buffered(
    client: httpx.Client, server: Server, part: str, header_len: int, body_len: int,
) -> None:
    name = deploy(client, ATTACK)
    pid = server.process.pid
    before = _rss_kb(pid)
    r = invoke(client, name, json.dumps({"header_len": header_len,
                                         "body_len": body_len}).encode())
    after = _rss_kb(pid)
    print(f"platform RSS before {before // 1024} MB, after {after // 1024} MB, "
          f"peak {_rss_kb(pid, 'VmHWM') // 1024} MB")
    assert r.status_code == 200 and r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    error = r.json()
    assert error["errorType"] == "Runtime.ResponseTooLarge"
    size = header_len if part == "header" else body_len
    assert f"a frame whose {part} is {size} bytes, over the limit of" in error["errorMessage"]
    assert after - before < 50 * 1024, (before, after)
    instance = r.headers["x-funclet-instance-id"]
    items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
    (record,) = [i for i in items if i["instanceId"] == instance]
    assert record["state"] == "stopped" and record["stopReason"] == "frame_too_large"
    assert f"Instance {instance} of {name} sent a frame whose {part}" in server.log()
    # The function itself is fine: the next invocation gets a new instance.
    again = invoke(client, name, json.dumps({"header_len": 10, "body_len": 10}).encode())
    assert again.headers["x-funclet-instance-id"] != instance


def test_a_web_app_response_larger_than_the_frame_limit_streams_in_pieces(
    client: httpx.Client,
) -> None:
    # The session server's limit is 1 MB (FUNCLET_MAX_SYNC_PAYLOAD): one 3 MB write.
    name = deploy(client, {"index.py": """
        def handler(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [b"y" * (3 * 1024 * 1024)]
    """})
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["GET"]}})
    assert r.status_code == 200, r.text
    r = client.get(f"/http/{name}/")
    assert r.status_code == 200 and r.content == b"y" * (3 * 1024 * 1024)


def test_a_slow_client_slows_a_streaming_web_app_instead_of_filling_memory(
    client: httpx.Client, server: Server,
) -> None:
    import time

    name = deploy(client, {"index.py": """
        def handler(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            chunk = b"z" * (1024 * 1024)
            return (chunk for _ in range(150))
    """})
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["GET"]}})
    assert r.status_code == 200, r.text
    pid = server.process.pid
    before = _rss_kb(pid)
    with client.stream("GET", f"/http/{name}/") as response:
        stream = response.iter_raw(65536)
        got = len(next(stream))
        time.sleep(2)  # the app could have sent all 150 MB by now
        held = _rss_kb(pid)
        got += sum(len(part) for part in stream)
    print(f"platform RSS before {before // 1024} MB, while the client paused "
          f"{held // 1024} MB")
    assert got == 150 * 1024 * 1024
    assert held - before < 50 * 1024, (before, held)
