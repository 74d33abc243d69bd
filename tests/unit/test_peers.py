"""RefuseInstances fails closed, and PeerUids answers only for live, owned sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from funclet.api.auth import RefuseInstances
from funclet.api.peers import CONNECTION, PeerUids

Addr = tuple[str, int]


def _call(middleware: RefuseInstances, scope: dict[str, Any]) -> tuple[list[Any], bool]:
    """Run one request through the middleware: what it sent, and whether the app ran."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent, bool(scope.get("ran"))


def _middleware(uids: range) -> RefuseInstances:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["ran"] = True

    return RefuseInstances(app, instance_uids=uids)


def _scope(path: str, client: Addr | None, server: Addr | None) -> dict[str, Any]:
    return {"type": "http", "path": path, "method": "DELETE", "headers": [],
            "client": client, "server": server}


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, Addr, Addr]]:
    """A live loopback TCP connection of this process: (client socket, client, server)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        try:
            yield client, client.getsockname(), listener.getsockname()
        finally:
            client.close()
            accepted.close()


def test_a_request_without_a_peer_address_is_refused() -> None:
    sent, ran = _call(_middleware(range(65534, 65535)),
                      _scope("/2023-03-30/functions/other", None, ("127.0.0.1", 9000)))
    assert not ran
    assert sent[0]["status"] == 403
    body = orjson.loads(sent[1]["body"])
    assert body["Code"] == "AccessDenied" and set(body) == {"Code", "Message", "RequestId"}


def test_a_trigger_request_without_a_peer_address_is_marked_unauthenticated() -> None:
    scope = _scope("/http/fn/", None, ("127.0.0.1", 9000))
    _, ran = _call(_middleware(range(65534, 65535)), scope)
    assert ran and scope["state"]["authenticated"] is False


def test_a_live_peer_passes_unless_its_uid_is_an_instances(
    connection: tuple[socket.socket, Addr, Addr],
) -> None:
    _, client, server = connection
    me = os.geteuid()
    _, ran = _call(_middleware(range(me + 1, me + 100)),
                   _scope("/2023-03-30/functions", client, server))
    assert ran
    for uids in (range(me, me + 1), range(max(0, me - 5), me + 5)):
        sent, ran = _call(_middleware(uids), _scope("/2023-03-30/functions", client, server))
        assert not ran and sent[0]["status"] == 403


def test_the_uid_is_that_of_the_live_socket_and_none_once_it_is_gone(
    connection: tuple[socket.socket, Addr, Addr],
) -> None:
    sock, client, server = connection
    peers = PeerUids()
    assert peers.uid(client, server) == os.geteuid()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # reset: the kernel forgets the socket
    assert peers.uid(client, server) is None


def test_a_closed_but_lingering_socket_has_no_owner() -> None:
    """A normal close right after a request leaves an orphan (FIN_WAIT, TIME_WAIT) that
    the kernel reports as uid 0: it must not pass for root."""
    peers = PeerUids()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        client, server = sock.getsockname(), listener.getsockname()
        sock.close()
        time.sleep(0.05)
        try:
            assert peers.uid(client, server) is None
        finally:
            accepted.close()


def test_the_owner_is_asked_once_per_connection_and_kept_with_it_alone(
    connection: tuple[socket.socket, Addr, Addr],
) -> None:
    sock, client, server = connection
    peers = PeerUids()
    kept: dict[str, int] = {}  # what the server's protocol gives one connection
    first = dict(_scope("/2023-03-30/functions", client, server), **{CONNECTION: kept})
    assert peers.of(first) == os.geteuid() and kept == {"uid": os.geteuid()}
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # the kernel forgets it: only what was kept answers now
    again = dict(_scope("/2023-03-30/functions", client, server), **{CONNECTION: kept})
    assert peers.of(again) == os.geteuid()
    # Another connection from the same address (a port bound again) is asked afresh.
    other = dict(_scope("/2023-03-30/functions", client, server), **{CONNECTION: {}})
    assert peers.of(other) is None
    assert peers.of(_scope("/2023-03-30/functions", client, server)) is None
