"""Each test session starts its own funclet on a free port with a temporary data folder."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import databases

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Processes started by ``pid``: its zygotes (by parent pid on their command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"zygote" in argv and str(pid).encode() in argv:
            found.append(int(entry))
    return found


def start_server(tmp: Path, port: int | None = None, **env: str) -> Server:
    """A funclet on ``port`` (a free one by default) with its data in ``tmp``."""
    port = port or free_port()
    data_dir = tmp / "data"
    log_path = tmp / "funclet.log"
    full_env = {
        **os.environ,
        "FUNCLET_PORT": str(port),
        "FUNCLET_DATA_DIR": str(data_dir),
        "FUNCLET_LOG_LEVEL": "info",
        "FUNCLET_SECRET_MARKER": "platform-only",
        **databases.server_env(tmp),
        **env,
    }
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "funclet", "serve"],
            env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"funclet exited at start:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, port, data_dir, process, log_path)
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"funclet did not start:\n{log_path.read_text()}")


def serve_once(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``funclet serve`` with its data in ``tmp``, expected to refuse to start: how it
    exited and what it said."""
    return subprocess.run(
        [sys.executable, "-m", "funclet", "serve"], cwd=tmp, timeout=60,
        capture_output=True, text=True,
        env={**os.environ, "FUNCLET_DATA_DIR": str(tmp / "data"),
             "FUNCLET_PORT": str(free_port()), **env})


def stop_server(server: Server) -> None:
    """SIGTERM, then check that no zygote or instance is left behind."""
    pid = server.process.pid
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise AssertionError(
            f"funclet did not stop on SIGTERM:\n{server.log()[-3000:]}"
        ) from None
    deadline = time.monotonic() + 5
    while descendants(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = descendants(pid)
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes left behind by funclet: {left}"
    deadline = time.monotonic() + 10  # the kernel may free a cgroup a moment later
    while cgroups_of(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    cgroups = cgroups_of(server)
    assert not cgroups, (f"cgroups left behind by funclet: {cgroups} holding "
                         f"{[_procs(c) for c in cgroups]}\n{server.log()[-3000:]}")


def _procs(cgroup: str) -> str:
    try:
        return Path(cgroup, "cgroup.procs").read_text().strip()
    except OSError as exc:
        return str(exc)


def cgroups_of(server: Server) -> list[str]:
    """The instance cgroups of a funclet, named after its data folder."""
    key = hashlib.sha256(str(server.data_dir.resolve()).encode()).hexdigest()[:10]
    return glob.glob(f"/sys/fs/cgroup/*/funclet-{key}/*/") + glob.glob(
        f"/sys/fs/cgroup/funclet-{key}/*/")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The data folder lives outside /tmp, so that the sandbox tests prove it is hidden
    # from instances (an instance's /tmp is its own anyway).
    tmp = Path(tempfile.mkdtemp(prefix="funclet-tests-", dir="/var/tmp"))
    tmp.chmod(0o755)  # readable by anyone: only the sandbox may keep instances out
    try:
        srv = start_server(
            tmp,
            FUNCLET_MAX_UNPACKED_SIZE=str(20 * 1024 * 1024),
            FUNCLET_MAX_SYNC_PAYLOAD=str(1024 * 1024),
        )
        yield srv
        stop_server(srv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
