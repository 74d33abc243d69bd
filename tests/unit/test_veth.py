"""An instance plugs itself into the bridge (isolate.py's netlink client), checked in
network namespaces of the test's own: a "host" with a bridge, an "instance" beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, json, os, socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
import isolate

libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what)
def ip(*args):
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout

# The "host": a network and a /sys of its own, with a bridge.
check(libc.unshare(isolate.CLONE_NEWNET | isolate.CLONE_NEWNS), "unshare host")
isolate._mount(None, "/", None, isolate.MS_REC | isolate.MS_PRIVATE)
isolate._mount("sysfs", "/sys", "sysfs", 0)
ip("link", "add", "fcbT", "type", "bridge")
ip("addr", "add", "10.9.0.1/24", "dev", "fcbT")
ip("link", "set", "fcbT", "up")
plug = {"ifname": "fcvT-1", "address": "10.9.0.2", "prefixlen": 24, "gateway": "10.9.0.1",
        "bridgeIndex": socket.if_nametoindex("fcbT")}
host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
host = isolate._Netlink()

# The "instance": a network of its own, plugged in as isolate.enter does.
check(libc.unshare(isolate.CLONE_NEWNET), "unshare instance")
isolate._plug(host, plug)
isolate._link_up("lo")
isolate._address(plug)
out = {"inside": ip("-4", "-o", "addr", "show", "eth0"), "routes": ip("-4", "route")}
try:
    isolate._plug(host, plug)
except OSError as exc:
    out["again"] = [exc.errno, str(exc)]
host.close()

check(libc.setns(host_ns, isolate.CLONE_NEWNET), "setns host")
out["port"] = ip("-o", "link", "show", "master", "fcbT")
out["isolated"] = open("/sys/class/net/fcvT-1/brport/isolated").read().strip()
isolate.unplug("fcvT-1")
out["after"] = ip("-o", "link", "show", "master", "fcbT")
isolate.unplug("fcvT-1")  # gone already: fine
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def plugged() -> dict[str, object]:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("network namespaces need root")
    here = os.path.join(os.path.dirname(__file__), "..", "..", "src", "funclet", "sandbox")
    done = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(here)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_an_instance_plugs_itself_into_the_bridge(plugged: dict[str, str]) -> None:
    assert "inet 10.9.0.2/24" in plugged["inside"]
    assert "default via 10.9.0.1 dev eth0" in plugged["routes"]
    assert "fcvT-1@" in plugged["port"] and "state UP" in plugged["port"]
    assert plugged["isolated"] == "1"  # no frame from one instance to another


def test_netlink_errors_name_what_failed(plugged: dict[str, object]) -> None:
    errno, message = plugged["again"]  # type: ignore[misc]
    assert errno == 17 and message == "[Errno 17] create the veth fcvT-1: File exists"


def test_unplugging_deletes_both_ends_once(plugged: dict[str, str]) -> None:
    assert plugged["after"] == ""
