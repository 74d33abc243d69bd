"""Every instance has a network of its own, proved from inside functions.

A "remote" test host (a network namespace this module makes, standing for the
internet) is reachable through funclet's NAT; the host itself (its loopback services,
its own addresses, the API), other instances, their loopback ports and abstract
sockets, and other functions' keys are not.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from funclet.sandbox.network import port_of
from tests.conftest import Server, start_server, stop_server
from tests.helpers import deploy, invoke, wait_for

if os.geteuid() != 0:  # the remote host is a network namespace: root makes it
    pytestmark = pytest.mark.skipif(os.environ.get("CI") != "true", reason="needs root")


@dataclass
class Remote:
    address: str  # the remote host, inside its namespace
    gateway: str  # the host's end of the link: one of the host's own addresses
    port: int  # a TCP server on the remote host answers "remote <peer address>"


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    name = f"fclt-remote-{os.getpid()}"
    link = f"fct{os.getpid() % 100000}"
    third = random.randint(0, 255)
    gateway, address = f"198.18.{third}.1", f"198.18.{third}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    server = None
    try:
        ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("addr", "add", f"{gateway}/30", "dev", link)
        ip("link", "set", link, "up")
        ip("-n", name, "addr", "add", f"{address}/30", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "route", "add", "default", "via", gateway)
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", textwrap.dedent(f"""
                import socket
                s = socket.create_server(("{address}", 8080))
                print("ready", flush=True)
                while True:
                    conn, peer = s.accept()
                    conn.sendall(f"remote {{peer[0]}}".encode())
                    conn.close()
            """)], stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        yield Remote(address, gateway, 8080)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "delete", link], capture_output=True)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


REACH = {"index.py": """
    import json, socket

    def reach(host, port):
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.settimeout(1)
                return "open: " + s.recv(100).decode(errors="replace")
        except OSError as exc:
            return "closed: " + type(exc).__name__

    def handler(event, context):
        return json.dumps({f"{h}:{p}": reach(h, p) for h, p in json.loads(event)})
"""}


def reach(client: httpx.Client, name: str, targets: list[tuple[str, int]]) -> dict[str, str]:
    r = invoke(client, name, json.dumps(targets).encode())
    assert "x-fc-error-type" not in r.headers, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP server of the host's, on every address: what instances must not reach."""
    sock = socket.create_server(("0.0.0.0", 0))
    thread = _answer(sock, b"host")
    yield sock.getsockname()[1]
    sock.close()
    thread.join()


def _answer(sock: socket.socket, reply: bytes) -> threading.Thread:
    """Answer every connection to ``sock`` with ``reply``, until ``sock`` is closed."""
    sock.settimeout(0.2)

    def serve() -> None:
        while sock.fileno() >= 0:
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def gateway_of(client: httpx.Client) -> str:
    line = client.get("/healthz").json()["network"]
    return str(line["gateway"])


def test_an_instance_reaches_the_outside_through_nat(client: httpx.Client,
                                                     remote: Remote) -> None:
    name = deploy(client, REACH)
    out = reach(client, name, [(remote.address, remote.port)])
    # The remote host sees the host's address, not the instance's: NAT.
    assert out == {f"{remote.address}:{remote.port}": f"open: remote {remote.gateway}"}


def test_an_instance_cannot_reach_the_host(
    client: httpx.Client, server: Server, remote: Remote, listener: int,
) -> None:
    with socket.create_connection((remote.gateway, listener), timeout=2) as s:
        assert s.recv(10) == b"host"  # it is there, for the host
    gateway = gateway_of(client)
    targets = [("127.0.0.1", 6379), ("127.0.0.1", 5432), ("127.0.0.1", server.port),
               (gateway, 6379), (gateway, 5432), (gateway, server.port), (gateway, listener),
               (remote.gateway, listener), (remote.gateway, server.port),
               ("host.funclet.internal", 6379)]
    out = reach(client, deploy(client, REACH), targets)
    assert all(v.startswith("closed") for v in out.values()), out


LISTEN = {"index.py": """
    import json, os, socket

    # Module state: kept while the instance is warm.
    tcp = socket.create_server(("0.0.0.0", 9000))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\\0funclet-test-secret")
    abstract.listen()

    def address():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: it picks the route
            return s.getsockname()[0]

    def handler(event, context):
        return json.dumps({"address": address(), "tcp": open("/proc/net/tcp").read()})
"""}

PEEK = {"index.py": """
    import ctypes, json, socket

    libc = ctypes.CDLL(None, use_errno=True)

    def attempt(fn):
        try:
            return "ok: " + str(fn())
        except OSError as exc:
            return "refused: " + type(exc).__name__

    def abstract():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect("\\0funclet-test-secret")
            return "connected"

    def tcp(host):
        with socket.create_connection((host, 9000), timeout=1):
            return "connected"

    def handler(event, context):
        target = json.loads(event)
        return json.dumps({"abstract": attempt(abstract), "tcp": attempt(lambda: tcp(target)),
                           "loopback": attempt(lambda: tcp("127.0.0.1")),
                           "sockets": open("/proc/net/tcp").read(),
                           "interfaces": sorted(__import__("os").listdir("/sys/class/net"))})
"""}


def test_instances_reach_neither_each_other_nor_each_others_sockets(
    client: httpx.Client,
) -> None:
    victim = invoke(client, deploy(client, LISTEN)).json()
    assert victim["address"].startswith("10.")
    assert ":2328 " in victim["tcp"]  # port 9000 listens, in the victim's own table
    out = invoke(client, deploy(client, PEEK), json.dumps(victim["address"]).encode()).json()
    assert out["abstract"].startswith("refused")  # abstract sockets are per namespace
    assert out["tcp"].startswith("refused") and out["loopback"].startswith("refused")
    assert ":2328 " not in out["sockets"]  # it sees only its own sockets
    assert out["interfaces"] == ["eth0", "lo"]


def test_a_bridge_port_passes_only_its_own_address_and_mac(client: httpx.Client) -> None:
    """What an instance that kept CAP_NET_ADMIN over its namespace (one forked from a
    snapshot whose function tampered with its set-up) could try: taking another
    instance's address or MAC. The port is played by a namespace this test plugs in
    as funclet would, at the far end of the subnet (given to no instance yet)."""
    net = client.get("/healthz").json()["network"]
    bridge, subnet = net["bridge"], ipaddress.ip_network(net["subnet"])
    own, other = (str(h) for h in list(subnet.hosts())[-1:-3:-1])
    port = port_of(int(bridge.removeprefix("fcb")), subnet, own)
    ns = f"fclt-spoof-{os.getpid()}"

    def ip(*args: str) -> str:
        return subprocess.run(["ip", *args], check=True, capture_output=True,
                              text=True).stdout

    def learned(address: str, mac: str) -> bool:
        """Whether the host takes ``address`` to be at ``mac`` after the port asks it
        for the gateway's MAC (an ARP request names its sender)."""
        subprocess.run(["ip", "neigh", "flush", "dev", bridge], capture_output=True)
        ip("-n", ns, "addr", "flush", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "down")
        ip("-n", ns, "link", "set", "eth0", "address", mac)
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                        "import socket, time\n"
                        "for _ in range(5):\n"
                        "    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto("
                        f"b'x', ('{net['gateway']}', 9))\n"
                        "    time.sleep(0.1)"], check=True, capture_output=True)
        return f"{address} lladdr {mac}" in ip("neigh", "show", "dev", bridge)

    ip("netns", "add", ns)
    try:
        ip("link", "add", port.ifname, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", port.ifname, "master", bridge)
        Path(f"/sys/class/net/{port.ifname}/brport/isolated").write_text("1")
        ip("link", "set", port.ifname, "up")
        assert learned(own, port.mac)  # its own address and MAC: the host answers
        assert not learned(other, port.mac)  # another's address
        assert not learned(own, "02:fc:de:ad:be:ef")  # another MAC
    finally:
        subprocess.run(["ip", "link", "delete", port.ifname], capture_output=True)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


KEYS = {"index.py": """
    import ctypes, json

    libc = ctypes.CDLL(None, use_errno=True)
    SYS_ADD_KEY, SYS_REQUEST_KEY = 248, 249
    SESSION, USER = -3, -4

    def add(keyring):
        data = b"secret"
        serial = libc.syscall(SYS_ADD_KEY, b"user", b"funclet-test-key", data, len(data),
                              keyring)
        return serial if serial > 0 else -ctypes.get_errno()

    def find(keyring):
        serial = libc.syscall(SYS_REQUEST_KEY, b"user", b"funclet-test-key", None, keyring)
        return serial if serial > 0 else -ctypes.get_errno()

    def handler(event, context):
        if event == b"add":
            return json.dumps({"session": add(SESSION), "user": add(USER)})
        return json.dumps({"session": find(SESSION), "user": find(USER)})
"""}


def test_functions_share_no_keys(client: httpx.Client) -> None:
    a, b = deploy(client, KEYS), deploy(client, KEYS)
    added = invoke(client, a, b"add").json()
    assert added["session"] > 0 and added["user"] > 0
    assert invoke(client, a, b"find").json()["user"] > 0  # its own user keyring keeps it
    found = invoke(client, b, b"find").json()
    assert found["session"] < 0 and found["user"] < 0  # ENOKEY: another function's keys


def test_without_internet_access_an_instance_has_only_loopback(
    client: httpx.Client, remote: Remote,
) -> None:
    online = deploy(client, REACH)
    offline = deploy(client, REACH, internetAccess=False)
    target = [(remote.address, remote.port)]
    # (Tried again: on a loaded machine the remote host may miss the 1 s the probe waits.)
    wait_for(lambda: reach(client, online, target)[f"{remote.address}:{remote.port}"]
             .startswith("open"))
    assert reach(client, offline, target)[f"{remote.address}:{remote.port}"].startswith(
        "closed")
    peek = invoke(client, deploy(client, PEEK, internetAccess=False), b'"127.0.0.1"').json()
    assert peek["interfaces"] == ["lo"]


def _dns_server(answer: str) -> tuple[socket.socket, threading.Thread]:
    """A resolver on the host's loopback that answers every A query with ``answer``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)

    def serve() -> None:
        while sock.fileno() >= 0:
            try:
                query, peer = sock.recvfrom(512)
            except OSError:
                if sock.fileno() < 0:
                    return
                continue
            end = query.index(b"\0", 12) + 5  # the question: name, type, class
            reply = (query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x01\x00\x00\x00\x00"
                     + query[12:end] + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04"
                     + socket.inet_aton(answer))
            sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock, thread


def test_exposed_host_ports_and_dns_reach_the_host(tmp_path: Path, remote: Remote) -> None:
    exposed = socket.create_server(("127.0.0.1", 0))  # a loopback-only host service
    closed = socket.create_server(("127.0.0.1", 0))
    dns, _ = _dns_server(remote.address)
    port = exposed.getsockname()[1]
    server = start_server(tmp_path, FUNCLET_EXPOSE_HOST_PORTS=json.dumps([port]),
                          FUNCLET_DNS_SERVER=f"127.0.0.1:{dns.getsockname()[1]}")
    try:
        _answer(exposed, b"exposed")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, REACH)
            out = reach(client, name, [("host.funclet.internal", port),
                                       ("host.funclet.internal", closed.getsockname()[1]),
                                       ("remote.example.test", remote.port)])
            assert out[f"host.funclet.internal:{port}"] == "open: exposed"
            assert out[f"host.funclet.internal:{closed.getsockname()[1]}"].startswith("closed")
            assert out[f"remote.example.test:{remote.port}"].startswith("open: remote")
    finally:
        stop_server(server)
        for sock in (exposed, closed, dns):
            sock.close()


def _links() -> dict[str, int]:
    """The host's links by name, with their index: a name that another platform (a
    parallel test's) takes again is another link."""
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True)
    return {link["ifname"]: link["ifindex"] for link in json.loads(out.stdout)}


def _tables() -> set[tuple[str, str, int]]:
    """The host's nftables tables: family, name, handle (new for a table made again)."""
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True,
                         check=True)
    return {(t["family"], t["name"], t["handle"]) for t in
            (entry["table"] for entry in json.loads(out.stdout)["nftables"] if "table" in entry)}


def test_each_platform_has_its_own_bridge_and_removes_it(tmp_path: Path,
                                                         client: httpx.Client) -> None:
    import signal

    ours = client.get("/healthz").json()["network"]
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as other:
            theirs = other.get("/healthz").json()["network"]
            assert theirs["bridge"] != ours["bridge"] and theirs["subnet"] != ours["subnet"]
            table = f"funclet_{theirs['bridge'][3:]}"
            tables = {t for t in _tables() if t[1] == table}
            assert theirs["bridge"] in _links() and tables
        os.kill(server.process.pid, signal.SIGKILL)  # a killed funclet leaves them behind…
        server.process.wait(10)
        bridge = _links()[theirs["bridge"]]
        assert tables <= _tables()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    # … and the next one in its slot removes them. A new funclet takes the lowest free
    # slot: while other tests' funclets come and go that may be a lower one, which is
    # held (so that the next goes higher) until one lands in the slot.
    held = []
    try:
        for attempt in range(6):
            (tmp_path / str(attempt)).mkdir()
            server = start_server(tmp_path / str(attempt))
            held.append(server)
            if httpx.get(f"{server.url}/healthz").json()["network"]["bridge"] == theirs[
                    "bridge"]:
                break
    finally:
        for server in held:
            stop_server(server)
    wait_for(lambda: _links().get(theirs["bridge"]) != bridge, timeout=5)
    assert not tables & _tables()
    assert ours["bridge"] in _links()  # the other platform's is untouched
