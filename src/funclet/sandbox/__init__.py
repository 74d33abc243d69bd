"""Where instances' processes come from: one zygote per runtime, forked on demand, each
instance isolated in the forked child (``isolate.py``) as ``SandboxConfig`` describes.

Knows processes, sockets, namespaces and cgroups; knows nothing of pools or invocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from funclet.runtimes import Runtime, protocol
from funclet.sandbox import isolate
from funclet.sandbox.ahead import REFILL_DELAY, TRIM_AFTER, AheadSize
from funclet.sandbox.channel import INIT, Channel, ChannelClosed, FrameLimits, OversizedFrame
from funclet.sandbox.network import Network, NetworkUnavailable
from funclet.sandbox.slots import MAX_SLOTS, HostSlot
from funclet.sandbox.snapshots import SnapshotFailed, Snapshots
from funclet.sandbox.zygote import Exit, SandboxProcess, Zygote, ZygoteFailed, kill_cgroup

__all__ = [
    "Channel", "ChannelClosed", "Exit", "FrameLimits", "OversizedFrame", "Sandbox",
    "SandboxConfig", "SandboxProcess", "SnapshotFailed", "ZygoteFailed",
]

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CODE_MOUNT = "/code"
LAMBDA_CODE_MOUNT = "/var/task"  # a function with Lambda's semantics: Lambda's place
OPT_MOUNT = "/opt"  # a function's layers, merged (FC's and Lambda's place for them)


def code_mount(spec: dict[str, Any]) -> str:
    """Where an instance sees its code: /code, or /var/task for Lambda's semantics."""
    return LAMBDA_CODE_MOUNT if spec.get("semantics") == "lambda" else CODE_MOUNT


def layer_env(env: dict[str, str], opt: str) -> dict[str, str]:
    """An instance's environment with its layers (at ``opt``) on the search paths, as FC
    sets them: ``bin`` on PATH, ``lib`` on LD_LIBRARY_PATH, Node.js's modules on
    NODE_PATH (Python's ``python`` folders go on sys.path in the runtime)."""
    def first(name: str, *paths: str) -> str:
        return ":".join([*paths, *([env[name]] if env.get(name) else [])])

    return {**env, "PATH": first("PATH", f"{opt}/bin"),
            "LD_LIBRARY_PATH": first("LD_LIBRARY_PATH", f"{opt}/lib"),
            "NODE_PATH": first("NODE_PATH", f"{opt}/nodejs/node_modules",
                               f"{opt}/nodejs/node20/node_modules")}


@dataclass(frozen=True)
class SandboxConfig:
    """How instances are isolated; ``detect`` turns off what the host cannot do."""

    namespaces: bool = True
    cgroups: dict[str, Path] = field(default_factory=dict)  # controller -> parent folder
    cgroup_version: int = 0  # 1, 2, or 0 for none
    uids: range | None = None  # one uid (and gid) per function, from this block
    tmp_bytes: int = 512 * 1024 * 1024
    max_open_files: int = 1024
    max_processes: int = 512
    hide: tuple[str, ...] = ()  # paths an instance must not see (the data folder)
    disabled: bool = False  # turned off by configuration (FUNCLET_SANDBOX=false)
    network: str = ""  # instances' network (network.Network.describe), "" when not set up
    network_error: str = ""  # why instances share the host's network, if they do

    @classmethod
    def detect(cls, enabled: bool, hide: tuple[str, ...], tmp_mb: int,
               name: str) -> SandboxConfig:
        """What this host offers: root, and cgroups v1 or v2 (checked again by ``probe``)."""
        if not enabled:
            return cls(namespaces=False, disabled=True)
        root = os.geteuid() == 0
        if root:
            try:
                # The mount points: code (FC's, Lambda's), layers.
                for point in (CODE_MOUNT, LAMBDA_CODE_MOUNT, OPT_MOUNT):
                    os.makedirs(point, exist_ok=True)
            except OSError:
                root = False
        version, cgroups = 0, {}
        if root and (CGROUP_ROOT / "cgroup.controllers").exists():
            version, cgroups = 2, {"unified": CGROUP_ROOT / name}
        elif root:
            version = 1
            cgroups = {c: CGROUP_ROOT / c / name for c in ("memory", "cpu", "pids")
                       if (CGROUP_ROOT / c / "cgroup.procs").exists()}
        return cls(
            namespaces=root, cgroups=cgroups, cgroup_version=version if cgroups else 0,
            tmp_bytes=tmp_mb * 1024 * 1024, hide=hide,
        )

    def for_instance(
        self, instance_id: str, code_dir: str, memory_mb: int, netns: bool,
        uid: int | None, etc: dict[str, str] | None = None, opt_dir: str | None = None,
        code_mount: str = CODE_MOUNT,
    ) -> dict[str, Any] | None:
        """The ``sandbox`` section of one instance's spec (``isolate.enter`` reads it).
        ``uid`` None with namespaces: started ahead, root until it is specialised."""
        if not self.namespaces and not self.cgroups and self.uids is None:
            return None
        memory = memory_mb * 1024 * 1024
        shares = max(2, memory_mb * 2)  # CPU weight in proportion to memory: 512 MB = 1024
        if self.cgroup_version == 2:
            limits = {"unified": {"memory.max": memory, "memory.swap.max": 0,
                                  "cpu.weight": max(1, min(10_000, shares * 100 // 1024)),
                                  "pids.max": self.max_processes}}
        else:
            limits = {"memory": {"memory.limit_in_bytes": memory},
                      "cpu": {"cpu.shares": shares},
                      "pids": {"pids.max": self.max_processes}}
        return {
            "namespaces": self.namespaces,
            "netns": netns,
            "cgroups": {c: str(p / instance_id) for c, p in self.cgroups.items()},
            "cgroupLimits": {c: v for c, v in limits.items() if c in self.cgroups},
            "uid": uid,
            "gid": uid,
            "tmpBytes": self.tmp_bytes,
            "maxOpenFiles": self.max_open_files,
            "maxProcesses": self.max_processes,
            "hide": list(self.hide),
            "etc": etc or {},
            "codeDir": code_dir,
            "codeMount": code_mount,
            "optDir": opt_dir,
            "optMount": OPT_MOUNT,
            "hostname": instance_id[:63],
        }

    def sweep(self) -> int:
        """Remove cgroups left by an earlier run that died (kill -9): kill what is still
        in them, then remove them. Returns how many were removed."""
        removed = 0
        for parent in self.cgroups.values():
            if not parent.is_dir():
                continue
            for child in [p for p in parent.iterdir() if p.is_dir()]:
                with contextlib.suppress(OSError):
                    for pid in (child / "cgroup.procs").read_text().split():
                        with contextlib.suppress(OSError):
                            os.kill(int(pid), signal.SIGKILL)
                for _ in range(50):
                    try:
                        child.rmdir()
                        removed += 1
                        break
                    except OSError:
                        time.sleep(0.02)
        return removed

    def protections(self) -> dict[str, bool]:
        """Which protections are on, by name (reported by /healthz)."""
        def cgroup(controller: str) -> bool:
            return controller in self.cgroups or "unified" in self.cgroups

        return {
            "namespaces": self.namespaces,
            "memoryLimit": cgroup("memory"),
            "cpuWeight": cgroup("cpu"),
            "processLimit": cgroup("pids"),
            "unprivilegedUser": self.uids is not None,
            "uidPerFunction": self.uids is not None,
            "networkNamespace": bool(self.network),
        }

    def describe(self) -> list[str]:
        """One line per protection: on, or off and why."""
        def state(on: bool, why: str) -> str:
            if self.disabled:
                return "off (the sandbox is turned off: FUNCLET_SANDBOX=false)"
            return "on" if on else f"off ({why})"

        v = f"cgroup v{self.cgroup_version}" if self.cgroup_version else "cgroup"

        def cgroup(controller: str) -> bool:
            return controller in self.cgroups or "unified" in self.cgroups

        uids = f"uids {self.uids.start}-{self.uids.stop - 1}" if self.uids else "uids"
        return [
            "namespaces (mount, pid, ipc, uts, net): "
            + state(self.namespaces, "needs root and unshare"),
            "a network of its own per instance (" + (self.network or "veth, bridge, NAT")
            + "): " + state(bool(self.network), self.network_error or "needs namespaces"),
            "read-only /code, private /tmp and /proc, hidden data folder: "
            + state(self.namespaces, "needs namespaces"),
            f"memory limit and OOM kill ({v}): "
            + state(cgroup("memory"), "no writable memory cgroup"),
            f"CPU weight by memory ({v}): " + state(cgroup("cpu"), "no writable cpu cgroup"),
            "process limit per instance (pids cgroup): "
            + state(cgroup("pids"), "falls back to RLIMIT_NPROC per uid"),
            f"one unprivileged user per function ({uids}), a keyring per instance: "
            + state(self.uids is not None, "needs root"),
            f"open files ({self.max_open_files}) and no core dumps (rlimits): on",
        ]


PRESTART_MEMORY_MB = 32768  # until specialised: the most a function may have
_SPECIALIZE_ATTEMPTS = 3  # instances started ahead a cold start tries before it fails


def _set_limits(paths: dict[str, str], limits: dict[str, dict[str, int]]) -> None:
    """A specialised instance's cgroup limits: its function's memory, CPU weight."""
    for controller, values in limits.items():
        for name, value in values.items():
            with open(os.path.join(paths[controller], name), "w") as f:
                f.write(str(value))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Uids:
    """One uid (and gid, the same number) per function, from the platform's block:
    instances of different functions cannot signal each other, share a user keyring,
    or read each other's files. Given on a function's first cold start; freed when the
    function is deleted."""

    def __init__(self, block: range) -> None:
        self._block = block
        self._of: dict[str, int] = {}
        self._free = list(reversed(block))

    def of(self, function: str) -> int:
        uid = self._of.get(function)
        if uid is None:
            if not self._free:
                raise OSError(f"every uid of {self._block.start}-{self._block.stop - 1} "
                              "is given to a function; widen uid_range_size")
            uid = self._of[function] = self._free.pop()
        return uid

    def forget(self, function: str) -> None:
        uid = self._of.pop(function, None)
        if uid is not None:  # reused last: the function's draining instances may still run
            self._free.insert(0, uid)


class Sandbox:
    """Creates isolated instance processes for any known runtime.

    With namespaces, every instance is started ahead of its function (off the
    cold-start path: fork, cgroups, namespaces, mounts, its network plugged in), then
    specialised on a cold start: the function's code mounted into its namespace, its
    hostname and cgroup limits set, its spec sent; the instance takes the function's
    uid and loads the handler. Between ``prestart`` and ``prestart_max`` instances wait
    per runtime, as many as the rate of cold starts needs, refilled just after the cold
    start that took one (``ahead.py``); a cold start that finds none takes the next one
    to finish starting.
    """

    def __init__(self, runtimes: dict[str, Runtime], run_dir: Path, config: SandboxConfig,
                 prestart: int = 2, frame_limits: FrameLimits | None = None,
                 prestart_max: int = 16, prestart_idle: float = TRIM_AFTER,
                 max_templates: int = 100) -> None:
        self._runtimes = runtimes
        self.frame_limits = frame_limits or FrameLimits()
        self._run_dir = run_dir
        self.config = config
        self.network: Network | None = None  # set by ``open``, as are the uids
        self.uids: Uids | None = None
        self._zygotes: dict[str, Zygote] = {}
        self._lock = asyncio.Lock()
        self._probed = False
        self._prestart_least, self._prestart_most = prestart, prestart_max
        self._sizes: dict[str, AheadSize] = {}  # per kind: how many to keep started ahead
        self._trims: dict[str, asyncio.TimerHandle] = {}
        self._trim_after = prestart_idle  # without a cold start: the surplus goes
        self._prestarted: dict[str, list[SandboxProcess]] = {}
        self._prestarting: dict[str, set[asyncio.Task[None]]] = {}
        self._takers: dict[str, list[asyncio.Future[SandboxProcess]]] = {}
        self._closing = False
        self._empty_made = False
        self._slot: HostSlot | None = None
        self.snapshots = Snapshots(self, max_templates)  # (the account's instance limit)

    def _kind(self, runtime: str) -> str:
        """Which instances started ahead serve ``runtime``: Python's serve custom
        runtimes too (the same zygote); Node.js has its own (already exec'ed)."""
        rt = self._runtimes[runtime]
        return rt.name if rt.language == "nodejs" else (rt.zygote or rt.name)

    def _ahead(self, runtime: str, internet: bool) -> bool:
        """Whether ``runtime``'s instances are started ahead: always with namespaces
        (whose set-up is then off the cold-start path) — but an instance without
        internet access on a host without the instances' network is unshared afresh."""
        if not self.config.namespaces:
            return False
        return self.network is not None or internet

    async def open(self, cidr: str, exposed: tuple[int, ...], dns: str | None,
                   uid_start: int, uid_count: int) -> None:
        """Take this platform's host slot: its block of uids and its network (bridge,
        subnet, filter table). Without namespaces there is nothing to take."""
        if not self.config.namespaces:
            return
        self._slot = await asyncio.to_thread(HostSlot.take)
        per_slot = uid_count // MAX_SLOTS
        block = range(uid_start + self._slot.number * per_slot,
                      uid_start + (self._slot.number + 1) * per_slot)
        self.config = replace(self.config, uids=block)
        self.uids = Uids(block)
        try:
            self.network = await asyncio.to_thread(Network.open, self._slot, cidr, exposed, dns,
                                                   self._run_dir / "etc")
        except NetworkUnavailable as exc:
            self.config = replace(self.config, network_error=str(exc))
            return
        self.config = replace(self.config, network=self.network.describe())

    async def warm_up(self, runtime: str) -> None:
        """Start the runtime's zygote (and instances started ahead) before the first cold
        start."""
        await self._zygote(self._runtimes[runtime].zygote or runtime)
        if self._ahead(runtime, True):
            self._refill(self._kind(runtime))

    async def create(self, runtime: str, spec: dict[str, Any]) -> SandboxProcess:
        """A new instance process for ``spec``: specialised from one started ahead, forked
        from its version's snapshot (``spec["snapshot"]``, Python: ``snapshots.py``;
        ``SnapshotFailed`` when the snapshot cannot be made), or started afresh."""
        rt = self._runtimes[runtime]
        if spec.get("snapshot") and rt.language == "python":
            return await self.snapshots.create(rt, spec)
        internet = spec.get("internetAccess", True)
        uid = self.uids.of(spec["functionName"]) if self.uids is not None else None
        if self._ahead(runtime, internet):
            kind = self._kind(runtime)
            for attempt in range(1, _SPECIALIZE_ATTEMPTS + 1):
                process = await self._take(kind)
                try:
                    await self._specialize(process, rt, spec, uid)
                    return process
                except (OSError, ZygoteFailed) as exc:
                    process.kill()
                    if attempt == _SPECIALIZE_ATTEMPTS:
                        raise
                    log.warning("An instance started ahead could not be specialised (%s); "
                                "taking another.", exc)
        zygote = await self._zygote(rt.zygote or runtime)
        argv = rt.exec_argv(spec["memorySize"])
        if argv is not None:  # forked, sandboxed, then it becomes this program
            spec = dict(spec, exec=argv)
        if rt.adapter is not None:
            spec = dict(spec, adapter=rt.adapter)
        box = self.config.for_instance(
            spec["env"]["FC_INSTANCE_ID"], spec["codeDir"], spec["memorySize"],
            not internet, uid, opt_dir=spec.get("optDir") or str(self._empty_code_dir()),
            code_mount=code_mount(spec),
        )
        if box is not None:
            spec = dict(spec, sandbox=box)
            if box["namespaces"]:  # the instance sees its code at /code, layers at /opt
                spec["env"] = dict(spec["env"], FC_FUNC_CODE_PATH=box["codeMount"])
                if spec.get("optDir"):
                    spec["optDir"] = OPT_MOUNT
        if spec.get("optDir"):
            spec["env"] = layer_env(spec["env"], spec["optDir"])
        if rt.language == "custom" and not (box and box["namespaces"] and box["netns"]):
            spec["serverPort"] = _free_port()  # the host's network: never clash
        return await zygote.spawn(spec)

    def invoke_ahead(self, runtime: str) -> bool:
        """Whether ``runtime``'s instances take their first invocation before they are
        ready (``Runtime.invoke_ahead``)."""
        rt = self._runtimes.get(runtime)
        return rt is not None and rt.invoke_ahead

    def forget(self, function: str) -> None:
        """A function is gone: its uid may go to another."""
        if self.uids is not None:
            self.uids.forget(function)

    # -- instances started ahead ------------------------------------------------------

    def _size(self, kind: str) -> AheadSize:
        size = self._sizes.get(kind)
        if size is None:
            size = self._sizes[kind] = AheadSize(self._prestart_least, self._prestart_most)
        return size

    async def _take(self, kind: str) -> SandboxProcess:
        """A waiting instance of ``kind``, or the next one to finish starting."""
        loop = asyncio.get_running_loop()
        self._size(kind).taken(loop.time())
        trim = self._trims.pop(kind, None)
        if trim is not None:
            trim.cancel()
        self._trims[kind] = loop.call_later(self._trim_after, self._trim, kind)
        waiting = self._prestarted.setdefault(kind, [])
        while waiting:
            process = waiting.pop(0)
            if not process.channel.is_closed and not process.exited.done():
                # Not beside this cold start: after it (see ahead.py).
                loop.call_later(REFILL_DELAY, self._refill, kind)
                return process
        taker: asyncio.Future[SandboxProcess] = asyncio.get_running_loop().create_future()
        takers = self._takers.setdefault(kind, [])
        takers.append(taker)
        self._refill(kind)
        try:
            return await taker
        except asyncio.CancelledError:
            if taker.done() and not taker.cancelled() and taker.exception() is None:
                waiting.append(taker.result())  # handed over as we were cancelled: keep it
            raise
        finally:
            with contextlib.suppress(ValueError):
                takers.remove(taker)

    def _refill(self, kind: str) -> None:
        """Start instances ahead until ``kind`` has as many as its size says (plus one
        per cold start waiting for one)."""
        if self._closing:
            return
        waiting = self._prestarted.setdefault(kind, [])
        starting = self._prestarting.setdefault(kind, set())
        takers = self._takers.get(kind, [])
        target = self._size(kind).target(asyncio.get_running_loop().time())
        for _ in range(target + len(takers) - len(waiting) - len(starting)):
            task = asyncio.get_running_loop().create_task(self._prestart(kind))
            starting.add(task)
            task.add_done_callback(starting.discard)

    def ahead(self) -> dict[str, tuple[int, int]]:
        """Per kind of runtime: the instances started ahead that wait, and the number
        the rate of cold starts keeps (``ahead.py``)."""
        now = asyncio.get_running_loop().time()
        return {kind: (len(waiting), self._size(kind).target(now))
                for kind, waiting in self._prestarted.items()}

    def _trim(self, kind: str) -> None:
        """A spell without cold starts: surplus instances started ahead go."""
        self._trims.pop(kind, None)
        waiting = self._prestarted.get(kind, [])
        surplus = len(waiting) - self._size(kind).target(asyncio.get_running_loop().time())
        for process in waiting[:max(0, surplus)]:
            process.kill()
        del waiting[:max(0, surplus)]

    async def _prestart(self, kind: str) -> None:
        began = time.perf_counter()
        try:
            process = await self._start_ahead(kind)
        except Exception as exc:
            log.warning("Could not start a %s instance ahead: %s", kind, exc)
            takers = self._takers.get(kind, [])
            for taker in takers:  # a cold start waiting for it fails, rather than hang
                if not taker.done():
                    taker.set_exception(ZygoteFailed(
                        f"runtime {kind} could not start an instance: {exc}"))
                    break
            return
        self._size(kind).started(time.perf_counter() - began)
        for taker in self._takers.get(kind, []):
            if not taker.done():
                taker.set_result(process)
                return
        self._prestarted.setdefault(kind, []).append(process)

    async def _start_ahead(self, kind: str) -> SandboxProcess:
        rt = self._runtimes[kind]
        slot = f"p-{secrets.token_hex(8)}"
        box = self.config.for_instance(slot, str(self._empty_code_dir()), PRESTART_MEMORY_MB,
                                       self.network is not None, None, self._etc())
        assert box is not None
        spec: dict[str, Any] = {"prestarted": True, "codeDir": CODE_MOUNT, "sandbox": box,
                                "env": {}, "memorySize": PRESTART_MEMORY_MB}
        argv = rt.exec_argv(None)
        if argv is not None:
            spec["exec"] = argv
        zygote = await self._zygote(rt.zygote or kind)
        network, plug = self.network, None
        if network is not None:  # the instance plugs itself in (isolate.py)
            plug = network.allocate()
            box["plug"] = network.plug_spec(plug)
        try:
            process = await zygote.spawn(spec)
        except BaseException:
            if network is not None and plug is not None:
                network.release(plug)
            raise
        if network is not None and plug is not None:
            process.plug = plug
            process.exited.add_done_callback(lambda _: network.release(plug))
        try:
            async with asyncio.timeout(30):
                header, _ = await process.channel.expect(INIT)
            if header["type"] != protocol.PRESTARTED:
                error = (header.get("error") or {}).get("errorMessage", header["type"])
                raise ZygoteFailed(error)
        except BaseException:
            process.kill()
            raise
        process.limits = box["cgroups"]
        return process

    def _etc(self) -> dict[str, str]:
        """Files bound over /etc in every instance: hosts (host.funclet.internal), and a
        resolv.conf naming the gateway when the host's resolver is on loopback."""
        if self.network is None:
            return {}
        etc = {"hosts": str(self.network.hosts_file)}
        if self.network.resolv_file is not None:
            etc["resolv.conf"] = str(self.network.resolv_file)
        return etc

    async def _specialize(self, process: SandboxProcess, rt: Runtime, spec: dict[str, Any],
                          uid: int | None) -> None:
        """Make an instance started ahead into ``spec``'s (see the class docstring)."""
        instance_id = spec["env"]["FC_INSTANCE_ID"]
        box = self.config.for_instance(instance_id, spec["codeDir"], spec["memorySize"], True,
                                       uid)
        assert box is not None
        zygote = await self._zygote(rt.zygote or rt.name)
        # No internet access: loopback only (its veth goes).
        offline = process.plug is not None and not spec.get("internetAccess", True)
        # Its layers at /opt; none: an empty /opt (the host's stays out of sight).
        mount = code_mount(spec)
        mounts = [(spec["codeDir"], mount),
                  (spec.get("optDir") or str(self._empty_code_dir()), OPT_MOUNT)]
        # A Python instance mounts its code itself (trees cloned here, sent with its spec):
        # no trip through the zygote on the cold start's path. Node.js cannot make those
        # syscalls: the zygote enters its namespaces for it.
        trees = isolate.clone_trees([folder for folder, _ in mounts]) \
            if rt.language != "nodejs" else None
        try:
            if trees is None:
                unplug = process.plug.ifname if offline and process.plug is not None else None
                await zygote.specialize(process.pid, mounts, box["hostname"], unplug)
            _set_limits(process.limits, box["cgroupLimits"])  # before any of its code runs
            full = self._full_spec(rt, spec, uid, mount)
            if trees is None:
                process.channel.send({"type": protocol.SPECIALIZE, "spec": full})
            else:
                process.channel.send_fds({"type": protocol.SPECIALIZE, "spec": full,
                                          "mounts": [target for _, target in mounts],
                                          "hostname": box["hostname"], "offline": offline},
                                         trees)
        finally:
            for tree in trees or []:
                os.close(tree)
        # While it loads its handler: its cgroups named after it (cgroup v1 renames).
        if self._rename_cgroups(zygote, process, instance_id):
            process.limits = box["cgroups"]
            process.cgroup = kill_cgroup(box["cgroups"])

    def _rename_cgroups(self, zygote: Zygote, process: SandboxProcess, name: str) -> bool:
        """Name an instance's cgroups after it (cgroup v1; v2 refuses renames) and tell
        the zygote, which removes them once the instance is reaped. False: they keep
        the names they were started under."""
        if self.config.cgroup_version != 1 or not process.limits:
            return False
        renamed: dict[str, str] = {}
        try:
            for controller, path in process.limits.items():
                target = os.path.join(os.path.dirname(path), name)
                os.rename(path, target)
                renamed[controller] = target
        except OSError:
            for controller, target in renamed.items():  # half way: put back the ones done
                with contextlib.suppress(OSError):
                    os.rename(target, process.limits[controller])
            return False
        zygote.renamed(process.pid, list(renamed.values()))
        return True

    def _full_spec(self, rt: Runtime, spec: dict[str, Any], uid: int | None,
                   mount: str) -> dict[str, Any]:
        """The spec a specialised instance runs with: its code at ``mount``, layers at /opt."""
        env = dict(spec["env"], FC_FUNC_CODE_PATH=mount)
        full = dict(spec, env=env, codeDir=mount, uid=uid, gid=uid)
        if spec.get("optDir"):
            full["optDir"] = OPT_MOUNT
            full["env"] = layer_env(env, OPT_MOUNT)
        if rt.adapter is not None:
            full["adapter"] = rt.adapter
        if rt.language == "custom" and self.network is None:
            full["serverPort"] = _free_port()  # the host's network: never clash
        return full

    def _empty_code_dir(self) -> Path:
        path = self._run_dir / "empty-code"
        if not self._empty_made:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
            self._empty_made = True
        return path

    async def zygote_for(self, rt: Runtime) -> Zygote:
        """The zygote that forks ``rt``'s instances."""
        return await self._zygote(rt.zygote or rt.name)

    async def _zygote(self, runtime: str) -> Zygote:
        zygote = self._zygotes.get(runtime)
        if zygote is not None and zygote.alive:
            return zygote
        async with self._lock:
            zygote = self._zygotes.get(runtime)
            if zygote is None or not zygote.alive:
                rt = self._runtimes[runtime]
                zygote = Zygote(rt.name, rt.zygote_argv(), self._run_dir / f"{rt.name}.log",
                                self.frame_limits)
                await zygote.start()
                if not self._probed:
                    await self._probe(zygote)
                self._zygotes[runtime] = zygote
            return zygote

    async def _probe(self, zygote: Zygote) -> None:
        """Try the protections once and turn off, loudly, what does not work here."""
        self._probed = True
        if self.config.disabled:
            for line in self.config.describe():
                log.warning("Sandbox: %s", line)
            return
        box = self.config.for_instance("funclet-probe", "/", 128, True, None)
        found = await zygote.probe(box) if box else {}
        config = self.config
        if config.namespaces and not found.get("mounts"):
            config = replace(config, namespaces=False, network="")
            log.warning("Namespaces do not work here: %s", found.get("namespace_error"))
            if self.network is not None:
                await asyncio.to_thread(self.network.close)
                self.network = None
        working = {c: p for c, p in config.cgroups.items() if found.get(f"cgroup_{c}")}
        if working != config.cgroups:
            log.warning("Some cgroups are not usable here: %s", found.get("cgroup_error"))
            config = replace(config, cgroups=working,
                             cgroup_version=config.cgroup_version if working else 0)
        self.config = config
        for line in config.describe():
            (log.warning if "off" in line.split(": ")[-1] else log.info)("Sandbox: %s", line)

    async def close(self) -> None:
        self._closing = True
        self.snapshots.close()
        for trim in self._trims.values():
            trim.cancel()
        for tasks in self._prestarting.values():
            for task in list(tasks):
                task.cancel()
        for waiting in self._prestarted.values():
            for process in waiting:
                process.kill()
        for zygote in self._zygotes.values():
            await zygote.stop()
        self._zygotes.clear()
        # The zygotes removed their instances' cgroups; one whose instance was being
        # started as the platform stopped can slip through: nothing of ours runs now.
        await asyncio.to_thread(self.config.sweep)
        for parent in self.config.cgroups.values():  # empty by now
            with contextlib.suppress(OSError):
                parent.rmdir()
        if self.network is not None:
            await asyncio.to_thread(self.network.close)
            self.network = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None
