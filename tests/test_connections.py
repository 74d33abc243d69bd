"""HTTP connections are bounded: idle ones close, slow headers close, large headers get
431, and thousands of idle connections leave room for real work."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.helpers import deploy, invoke

IDLE = 2
HEADER = 3


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Started with a common shell's soft limit of open files: the platform raises its own.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    try:
        server = start_server(tmp_path_factory.mktemp("bounded"),
                              FUNCLET_HTTP_IDLE_TIMEOUT_SECONDS=str(IDLE),
                              FUNCLET_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield server
    stop_server(server)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF), or None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def test_thousands_of_idle_connections_leave_room_and_are_closed(
    bounded: Server, tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks: list[socket.socket] = []
    pid = bounded.process.pid
    try:
        with httpx.Client(base_url=bounded.url, timeout=30) as client:
            name = deploy(client, {"index.py": "def handler(e, c):\n    return 'busy'\n"})
            fds_before = _open_fds(pid)
            started = time.monotonic()
            for _ in range(5000):
                socks.append(socket.create_connection(("127.0.0.1", bounded.port)))
            opened = time.monotonic() - started
            time.sleep(0.3)
            fds_held = _open_fds(pid)
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
                assert invoke(client, name).text == "busy"
            with selectors.DefaultSelector() as sel:
                for s in socks:
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ)
                closed = 0
                deadline = time.monotonic() + IDLE + 5
                while closed < len(socks) and time.monotonic() < deadline:
                    for key, _ in sel.select(0.5):
                        sel.unregister(key.fileobj)
                        closed += 1
            took = time.monotonic() - started
            time.sleep(0.3)
            fds_after = _open_fds(pid)
            print(f"5000 connections opened in {opened:.1f} s; server fds {fds_before} "
                  f"before, {fds_held} held, {fds_after} after; all closed by the server "
                  f"{took:.1f} s after the first")
            assert closed == len(socks)
            assert fds_held >= fds_before + 4900
            assert fds_after < fds_before + 50
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _raw(server: Server, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize(("headers", "url", "status", "code"), [
    ([f"x-h{i}: v" for i in range(101)], "/healthz", 431, "RequestHeaderFieldsTooLarge"),
    (["x-big: " + "a" * 70_000], "/healthz", 431, "RequestHeaderFieldsTooLarge"),
    ([], "/healthz?" + "q" * 70_000, 414, "URITooLong"),
])
def test_headers_over_the_limit_are_refused(
    bounded: Server, headers: list[str], url: str, status: int, code: str,
) -> None:
    request = (f"GET {url} HTTP/1.1\r\nhost: x\r\n" + "".join(h + "\r\n" for h in headers)
               + "\r\n").encode()
    out = _raw(bounded, request)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), out[:200]
    assert f'"Code":"{code}"'.encode() in body and b'"RequestId"' in body


def test_headers_within_the_limit_pass(bounded: Server) -> None:
    headers = {f"x-h{i}": "v" * 500 for i in range(90)}
    assert httpx.get(f"{bounded.url}/healthz", headers=headers).status_code == 200


def test_a_trickled_header_is_cut_off_at_the_header_timeout(bounded: Server) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        closed = None
        for byte in b"x-slow: " + b"a" * 100:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            if _closed_within(s, 0.5) is not None:
                closed = time.monotonic() - started
                break
        print(f"the trickled request was cut off after {closed} s")
        assert closed is not None and HEADER - 0.5 < closed < HEADER + 1.5


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(
    bounded: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port)) as s:
        took = _closed_within(s, IDLE + 3)
    assert took is not None and IDLE - 0.5 < took < IDLE + 1.5


def test_past_the_connection_limit_new_connections_get_503(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_MAX_CONNECTIONS="64")
    socks: list[socket.socket] = []
    try:
        # The first connections are the readiness probe's, gone by now: 64 are held.
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(64)]
        time.sleep(0.2)
        out = _raw(server, b"")  # answered at once, before any request is read
        assert out.startswith(b"HTTP/1.1 503 ") and b'"Code":"ServiceUnavailable"' in out
        for s in socks:
            s.close()
        socks = []
        time.sleep(0.2)
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        for s in socks:
            s.close()
        stop_server(server)
