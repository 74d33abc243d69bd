"""A full disk under the data folder, for real (a small tmpfs): calls that must write
answer 507 DiskFull naming the folder, nothing accepted before is lost, no partial
file is left, and everything works again once there is room."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, create_body, deploy, invoke, unique, wait_for
from tests.test_async import COUNTER, accept, final

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A folder whose ``data`` is an 8 MB tmpfs (the log stays outside it)."""
    tmp = Path(tempfile.mkdtemp(prefix="funclet-disk-", dir="/var/tmp"))
    tmp.chmod(0o755)
    data = tmp / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(data)],
                   check=True)
    try:
        yield tmp
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; it is the space to free later."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def _assert_disk_full(r: httpx.Response, server: Server) -> None:
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["Code"] == "DiskFull" and body["RequestId"], body
    assert f"no space left on the disk holding {server.data_dir}" in body["Message"], body
    assert "SQL" not in body["Message"] and "INSERT" not in body["Message"]


def test_a_full_disk_is_a_507_and_loses_nothing(small_disk: Path) -> None:
    server = start_server(small_disk)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            name = deploy(client, COUNTER)
            assert invoke(client, name, b"warm").status_code == 200
            before = accept(client, name, b"before", **{"x-fc-async-delay": "3"})
            filler = _fill(server.data_dir)

            r = client.post(f"{API}/functions", json=create_body(
                unique(), {"index.py": "def handler(e, c):\n    return 'new'\n" + "#" * 4096}))
            _assert_disk_full(r, server)
            for _ in range(20):  # the WAL may still hold room for a few rows
                r = client.post(f"{API}/functions/{name}/invocations", content=b"during",
                                headers={"x-fc-invocation-type": "Async"})
                if r.status_code != 202:
                    break
            _assert_disk_full(r, server)
            sync = invoke(client, name, b"sync")  # a warm instance needs no disk
            assert sync.status_code in (200, 507), sync.text
            if sync.status_code == 507:
                _assert_disk_full(sync, server)
            code = server.data_dir / "code"
            partial = [p for p in code.rglob("*") if p.name.startswith(".unpack-")
                       or p.suffix == ".part"]
            assert partial == []

            filler.unlink()
            functions = client.get(f"{API}/functions", params={"limit": 100}).json()
            assert [f["functionName"] for f in functions["functions"]] == [name]
            done = final(client, name, before.headers["x-fc-async-task-id"])
            assert done["status"] == "Succeeded", done
            assert "before" in str(done["returnPayload"])
            after = accept(client, name, b"after")
            assert final(client, name, after.headers["x-fc-async-task-id"])[
                "status"] == "Succeeded"
            again = deploy(client, {"index.py": "def handler(e, c):\n    return 'again'\n"})
            assert invoke(client, again).text == "again"
            wait_for(lambda: client.get(f"{API}/functions/{name}/invocations").json()[
                "invocations"], timeout=10)
    finally:
        stop_server(server)
