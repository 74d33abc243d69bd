"""Helpers for end-to-end tests: packages in memory, deploy and invoke over HTTP."""

from __future__ import annotations

import base64
import io
import stat
import textwrap
import time
import uuid
import zipfile
from typing import Any

import httpx

API = "/2023-03-30"


def make_zip(files: dict[str, str | bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            if isinstance(content, str):
                content = textwrap.dedent(content)
            zf.writestr(name, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unique(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_body(name: str, files: dict[str, str | bytes], **config: Any) -> dict[str, Any]:
    body = {
        "functionName": name,
        "runtime": "python3.11",
        "handler": "index.handler",
        "code": {"zipFile": b64(make_zip(files))},
    }
    body.update(config)
    return body


def deploy(client: httpx.Client, files: dict[str, str | bytes], name: str | None = None,
           **config: Any) -> str:
    name = name or unique()
    r = client.post(f"{API}/functions", json=create_body(name, files, **config))
    assert r.status_code == 200, r.text
    return name


def invoke(client: httpx.Client, name: str, event: bytes = b"", **headers: str) -> httpx.Response:
    return client.post(f"{API}/functions/{name}/invocations", content=event, headers=headers)


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def instance_pids(instance_id: str) -> list[int]:
    """Host pids of an instance's processes, found by the cgroup named after it."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                if f"/{instance_id}\n" in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _namespace_pid(pid: int) -> int | None:
    """The pid a process has in its own PID namespace (the last ``NSpid`` field)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        pass
    return None


def kill_instance(instance_id: str) -> None:
    """SIGKILL an instance from outside, as the OOM killer or an operator would.

    With a PID namespace, its PID 1 goes (and the kernel takes every process of the
    namespace with it); the parent left outside then exits on its own, so killing each
    listed pid in turn would race with that exit. Without one, every process goes. At
    least one kill must land, or the instance was already gone and the test proves
    nothing."""
    import os
    import signal

    pids = instance_pids(instance_id)
    assert pids, f"no process found for instance {instance_id}"
    inits = [pid for pid in pids if _namespace_pid(pid) == 1]
    killed = 0
    for pid in inits or pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    assert killed, f"every process of instance {instance_id} had exited already"
