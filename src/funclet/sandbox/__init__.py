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
from funclet.sandbox.channel import INIT, Channel, ChannelClosed, FrameLimits, OversizedFrame
from funclet.sandbox.zygote import Exit, SandboxProcess, Zygote, ZygoteFailed

__all__ = [
    "Channel", "ChannelClosed", "Exit", "FrameLimits", "OversizedFrame", "Sandbox",
    "SandboxConfig", "SandboxProcess", "ZygoteFailed",
]

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CODE_MOUNT = "/code"


@dataclass(frozen=True)
class SandboxConfig:
    """How instances are isolated; ``detect`` turns off what the host cannot do."""

    namespaces: bool = True
    cgroups: dict[str, Path] = field(default_factory=dict)  # controller -> parent folder
    cgroup_version: int = 0  # 1, 2, or 0 for none
    uid: int | None = 65534  # nobody
    gid: int | None = 65534
    tmp_bytes: int = 512 * 1024 * 1024
    max_open_files: int = 1024
    max_processes: int = 512
    hide: tuple[str, ...] = ()  # paths an instance must not see (the data folder)
    disabled: bool = False  # turned off by configuration (FUNCLET_SANDBOX=false)

    @classmethod
    def detect(cls, enabled: bool, hide: tuple[str, ...], tmp_mb: int, name: str) -> SandboxConfig:
        """What this host offers: root, and cgroups v1 or v2 (checked again by ``probe``)."""
        if not enabled:
            return cls(namespaces=False, uid=None, gid=None, disabled=True)
        root = os.geteuid() == 0
        if root:
            try:
                os.makedirs(CODE_MOUNT, exist_ok=True)  # the mount point for code
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
            uid=65534 if root else None, gid=65534 if root else None,
            tmp_bytes=tmp_mb * 1024 * 1024, hide=hide,
        )

    def for_instance(
        self, instance_id: str, code_dir: str, memory_mb: int, internet: bool
    ) -> dict[str, Any] | None:
        """The ``sandbox`` section of one instance's spec (``isolate.enter`` reads it)."""
        if not self.namespaces and not self.cgroups and self.uid is None:
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
            "network": internet,
            "cgroups": {c: str(p / instance_id) for c, p in self.cgroups.items()},
            "cgroupLimits": {c: v for c, v in limits.items() if c in self.cgroups},
            "uid": self.uid,
            "gid": self.gid,
            "tmpBytes": self.tmp_bytes,
            "maxOpenFiles": self.max_open_files,
            "maxProcesses": self.max_processes,
            "hide": list(self.hide),
            "codeDir": code_dir,
            "codeMount": CODE_MOUNT,
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
            "unprivilegedUser": self.uid is not None,
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

        return [
            "namespaces (mount, pid, ipc, uts; net without internet access): "
            + state(self.namespaces, "needs root and unshare"),
            "read-only /code, private /tmp and /proc, hidden data folder: "
            + state(self.namespaces, "needs namespaces"),
            f"memory limit and OOM kill ({v}): "
            + state(cgroup("memory"), "no writable memory cgroup"),
            f"CPU weight by memory ({v}): " + state(cgroup("cpu"), "no writable cpu cgroup"),
            "process limit per instance (pids cgroup): "
            + state(cgroup("pids"), "falls back to RLIMIT_NPROC per uid"),
            f"unprivileged user (uid {self.uid or 65534}): "
            + state(self.uid is not None, "needs root"),
            f"open files ({self.max_open_files}) and no core dumps (rlimits): on",
        ]


PRESTART_MEMORY_MB = 32768  # until specialised: the most a function may have


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


class Sandbox:
    """Creates isolated instance processes for any known runtime."""

    def __init__(self, runtimes: dict[str, Runtime], run_dir: Path, config: SandboxConfig,
                 prestart: int = 2, frame_limits: FrameLimits | None = None) -> None:
        self._runtimes = runtimes
        self._frame_limits = frame_limits or FrameLimits()
        self._run_dir = run_dir
        self.config = config
        self._zygotes: dict[str, Zygote] = {}
        self._lock = asyncio.Lock()
        self._probed = False
        self.prestart = prestart  # instances started ahead, per runtime that needs them
        self._prestarted: dict[str, list[SandboxProcess]] = {}
        self._prestarting: dict[str, set[asyncio.Task[None]]] = {}
        self._closing = False

    async def warm_up(self, runtime: str) -> None:
        """Start the runtime's zygote (and instances started ahead) before the first cold
        start."""
        await self._zygote(self._runtimes[runtime].zygote or runtime)
        if self._runtimes[runtime].prestarts:
            self._refill(runtime)

    async def create(self, runtime: str, spec: dict[str, Any]) -> SandboxProcess:
        rt = self._runtimes[runtime]
        if rt.prestarts:
            self._refill(runtime)
            if spec.get("internetAccess", True):
                process = await self._specialize(runtime, spec)
                if process is not None:
                    return process
        zygote = await self._zygote(rt.zygote or runtime)
        argv = rt.exec_argv(spec["memorySize"])
        if argv is not None:  # forked, sandboxed, then it becomes this program
            spec = dict(spec, exec=argv)
        if rt.adapter is not None:
            spec = dict(spec, adapter=rt.adapter)
        box = self.config.for_instance(
            spec["env"]["FC_INSTANCE_ID"], spec["codeDir"], spec["memorySize"],
            spec.get("internetAccess", True),
        )
        if box is not None:
            spec = dict(spec, sandbox=box)
            if box["namespaces"]:  # the instance sees its code at /code
                spec["env"] = dict(spec["env"], FC_FUNC_CODE_PATH=CODE_MOUNT)
        if rt.language == "custom":
            # Its own network namespace: the port it asked for. Else the host's: a free
            # one, so that instances never clash.
            own_net = box is not None and box["namespaces"] and not box.get("network", True)
            spec["serverPort"] = spec["serverPort"] if own_net else _free_port()
        return await zygote.spawn(spec)

    # -- pre-started instances --------------------------------------------------------
    # A runtime that cannot fork a warm interpreter (Node.js) keeps a few instances
    # started ahead: sandboxed, its interpreter loaded, no function yet. A cold start
    # takes one and specialises it: the function's code is mounted at /code in its
    # namespace, its cgroup limits set, its spec sent; then it loads the handler.

    def _refill(self, runtime: str) -> None:
        """Start instances ahead until the runtime has ``prestart`` of them."""
        if self._closing:
            return
        waiting = self._prestarted.setdefault(runtime, [])
        starting = self._prestarting.setdefault(runtime, set())
        for _ in range(self.prestart - len(waiting) - len(starting)):
            task = asyncio.get_running_loop().create_task(self._prestart(runtime))
            starting.add(task)
            task.add_done_callback(starting.discard)

    async def _prestart(self, runtime: str) -> None:
        rt = self._runtimes[runtime]
        slot = f"p-{secrets.token_hex(8)}"
        box = self.config.for_instance(slot, str(self._empty_code_dir()), PRESTART_MEMORY_MB,
                                       True)
        if box is None or not box["namespaces"]:
            return  # without a mount namespace there is nowhere to put code later
        argv = rt.exec_argv(None)
        assert argv is not None
        spec = {"prestarted": True, "codeDir": CODE_MOUNT, "sandbox": box, "exec": argv,
                "env": {}, "memorySize": PRESTART_MEMORY_MB}
        try:
            zygote = await self._zygote(rt.zygote or runtime)
            process = await zygote.spawn(spec)
            async with asyncio.timeout(30):
                header, _ = await process.channel.expect(INIT)
        except Exception as exc:  # the next cold start is simply not faster
            log.warning("Could not start a %s instance ahead: %s", runtime, exc)
            return
        if header["type"] != protocol.PRESTARTED:
            process.kill()
            return
        process.limits = box["cgroups"]
        self._prestarted.setdefault(runtime, []).append(process)

    async def _specialize(self, runtime: str, spec: dict[str, Any]) -> SandboxProcess | None:
        """A pre-started instance of ``runtime`` made into ``spec``'s, if one is waiting."""
        waiting = self._prestarted.get(runtime, [])
        while waiting:
            process = waiting.pop()
            if process.channel.is_closed or process.exited.done():
                continue
            box = self.config.for_instance(spec["env"]["FC_INSTANCE_ID"], spec["codeDir"],
                                           spec["memorySize"], True)
            assert box is not None
            try:
                zygote = await self._zygote(self._runtimes[runtime].zygote or runtime)
                await zygote.mount_code(process.pid, spec["codeDir"], CODE_MOUNT)
                await asyncio.to_thread(_set_limits, process.limits, box["cgroupLimits"])
            except (OSError, ZygoteFailed) as exc:
                log.warning("A pre-started %s instance could not be specialised (%s); "
                            "starting one afresh.", runtime, exc)
                process.kill()
                continue
            env = dict(spec["env"], FC_FUNC_CODE_PATH=CODE_MOUNT)
            process.channel.send({"type": protocol.SPECIALIZE,
                                  "spec": dict(spec, env=env, codeDir=CODE_MOUNT)})
            return process
        return None

    def _empty_code_dir(self) -> Path:
        path = self._run_dir / "empty-code"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
        return path

    async def _zygote(self, runtime: str) -> Zygote:
        zygote = self._zygotes.get(runtime)
        if zygote is not None and zygote.alive:
            return zygote
        async with self._lock:
            zygote = self._zygotes.get(runtime)
            if zygote is None or not zygote.alive:
                rt = self._runtimes[runtime]
                zygote = Zygote(rt.name, rt.zygote_argv(), self._run_dir / f"{rt.name}.log",
                                self._frame_limits)
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
        box = self.config.for_instance("funclet-probe", "/", 128, False)
        found = await zygote.probe(box) if box else {}
        config = self.config
        if config.namespaces and not found.get("mounts"):
            config = replace(config, namespaces=False)
            log.warning("Namespaces do not work here: %s", found.get("namespace_error"))
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
