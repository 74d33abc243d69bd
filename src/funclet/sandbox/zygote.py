"""A zygote: one pre-initialised interpreter of a runtime that forks instances."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from funclet.sandbox.channel import Channel, FrameLimits
from funclet.sandbox.network import Plug

log = logging.getLogger(__name__)
_SPAWN_TIMEOUT = 10.0


class ZygoteFailed(RuntimeError):
    """The runtime's zygote could not be started or died."""


def kill_cgroup(cgroups: dict[str, str]) -> str | None:
    """Of an instance's cgroup folders, the one holding all of its processes."""
    return cgroups.get("pids") or cgroups.get("unified") or cgroups.get("memory")


@dataclass(frozen=True)
class Exit:
    """How an instance's process ended: exit code (negative: killed by that signal), and
    whether the kernel's OOM killer did it."""

    code: int
    oom: bool = False


@dataclass
class SandboxProcess:
    """One instance's process as the OS sees it: a pid, its socket, its exit."""

    pid: int
    channel: Channel
    exited: asyncio.Future[Exit] = field(repr=False)
    cgroup: str | None = None  # a cgroup folder holding all of the instance's processes
    handler_kind: str = "event"  # what its runtime said the handler is (in ``ready``)
    limits: dict[str, str] = field(default_factory=dict)  # its cgroup folders
    plug: Plug | None = None  # its veth on the platform's bridge, if it has one
    init_log: str = ""  # logged before its own start (its snapshot's initialisation)
    # Called once its first invocation is over (its snapshot learns what it wrote).
    after_first: Callable[[], None] | None = field(default=None, repr=False)

    def kill(self) -> None:
        """SIGKILL the instance and everything it started: its process group and, since
        a process may leave the group (setsid), every process in its cgroup."""
        self._signal(signal.SIGKILL)
        self.channel.close()

    def pause(self) -> None:
        """SIGSTOP every process of the instance (PauseSession). A process forked while
        the signals go out is caught by the next pass: passes repeat until one finds
        no process it had not stopped (a stopped process forks nothing)."""
        stopped: set[int] = set()
        for _ in range(100):
            found = self._signal(signal.SIGSTOP)
            if found <= stopped:
                return
            stopped |= found

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def memory_peak(self) -> int | None:
        """The most memory the instance has used since it started, in bytes, as its
        memory cgroup counts it (Lambda's ``Max Memory Used``); None without one."""
        for controller, name in (("memory", "memory.max_usage_in_bytes"),
                                 ("unified", "memory.peak")):
            folder = self.limits.get(controller)
            if folder:
                try:
                    with open(os.path.join(folder, name), "rb") as f:
                        return int(f.read())
                except (OSError, ValueError):
                    return None
        return None

    def _signal(self, sig: int) -> set[int]:
        """Send ``sig`` to the process group, the process, and every process of its
        cgroup; the pids of the cgroup's processes."""
        for send in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(self.pid, sig)
        pids: set[int] = set()
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                with open(os.path.join(self.cgroup, "cgroup.procs")) as procs:
                    pids = {int(pid) for pid in procs.read().split()}
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        return pids


class Zygote:
    """Starts ``interpreter bootstrap zygote`` and asks it to fork instances.

    The control socket is SEQPACKET: a ``spawn`` packet carries the new instance's
    socket as SCM_RIGHTS; the zygote answers ``spawned`` with the pid and, when the
    instance ends, ``exited`` with its exit code (negative: killed by that signal).
    The kernel holds only ``net.unix.max_dgram_qlen`` (10) packets the zygote has not
    read yet: past them, packets wait in order in a backlog sent as the socket drains
    (a burst of cold starts is longer than that).
    """

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 frame_limits: FrameLimits | None = None) -> None:
        self.name = name
        self._frame_limits = frame_limits or FrameLimits()
        self._argv = argv
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._spawns: dict[int, asyncio.Future[tuple[int, asyncio.Future[Exit]]]] = {}
        self._requests: dict[int, asyncio.Future[Any]] = {}  # specialize/plug requests by sid
        self._exits: dict[int, asyncio.Future[Exit]] = {}
        self._next_sid = 0
        self._stopping = False
        self._probe: asyncio.Future[dict[str, Any]] | None = None
        # Packets the socket would not take yet: (packet, descriptors, run once sent).
        self._backlog: deque[tuple[bytes, list[int], Callable[[], None] | None]] = deque()
        self._draining = False  # waiting for the socket to take more

    @property
    def alive(self) -> bool:
        return self._control is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [*self._argv, "zygote", str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={"PATH": os.defpath, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        theirs.close()
        ours.setblocking(False)
        self._control = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        try:
            async with asyncio.timeout(30):
                await self._ready
        except (TimeoutError, ZygoteFailed) as exc:
            await self.stop()
            raise ZygoteFailed(
                f"runtime {self.name} did not start; see {self._log_path}"
            ) from exc
        log.info("Started the %s zygote (pid %d).", self.name, self._proc.pid)

    async def spawn(self, spec: dict[str, Any]) -> SandboxProcess:
        """Fork one instance from the zygote; it starts initialising at once."""
        if self._control is None:
            raise ZygoteFailed(f"runtime {self.name} is not running")
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._next_sid += 1
        sid = self._next_sid
        spawned: asyncio.Future[tuple[int, asyncio.Future[Exit]]] = loop.create_future()
        self._spawns[sid] = spawned
        packet = orjson.dumps({"type": "spawn", "sid": sid, "spec": spec})
        try:
            self._post(packet, [theirs.fileno()], theirs.close)
            async with asyncio.timeout(_SPAWN_TIMEOUT):
                pid, exited = await spawned
        except BaseException as exc:
            self._spawns.pop(sid, None)
            self._withdraw(packet)  # (its descriptor number must not go out once reused)
            theirs.close()
            ours.close()
            if isinstance(exc, (OSError, TimeoutError, ZygoteFailed)):
                raise ZygoteFailed(
                    f"runtime {self.name} could not fork an instance: {exc}") from exc
            raise
        _, channel = await loop.connect_accepted_socket(
            lambda: Channel(self._frame_limits, ours), ours)
        cgroups = (spec.get("sandbox") or {}).get("cgroups") or {}
        return SandboxProcess(pid, channel, exited, kill_cgroup(cgroups), limits=cgroups)

    def _on_readable(self) -> None:
        assert self._control is not None
        while True:
            try:
                data = self._control.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = orjson.loads(data)
            kind = msg["type"]
            if kind == "spawned":
                # The exit future exists before any 'exited' for this pid is read.
                exit_fut = asyncio.get_running_loop().create_future()
                self._exits[msg["pid"]] = exit_fut
                fut = self._spawns.pop(msg["sid"], None)
                if fut is not None and not fut.done():
                    fut.set_result((msg["pid"], exit_fut))
            elif kind == "exited":
                exited = self._exits.pop(msg["pid"], None)
                if exited is not None and not exited.done():
                    exited.set_result(Exit(msg["code"], msg.get("oom", False)))
            elif kind == "zygote_ready" and self._ready and not self._ready.done():
                self._ready.set_result(None)
            elif kind == "probed" and self._probe is not None and not self._probe.done():
                self._probe.set_result(msg["found"])
            elif kind in ("specialized", "plugged"):
                fut = self._requests.pop(msg["sid"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg.get("error"))

    async def specialize(self, pid: int, mounts: list[tuple[str, str]], hostname: str,
                         unplug: str | None = None) -> None:
        """Mount a function's code (and layers), each (folder, target) of ``mounts``,
        into a pre-started instance and give it its hostname (for a runtime that cannot
        do it itself: Node.js); ``unplug``: delete its veth, by the host end's name
        (``OSError`` if any of it fails)."""
        error = await self._request({"type": "specialize", "pid": pid, "mounts": mounts,
                                     "hostname": hostname, "unplug": unplug})
        if error:
            raise OSError(f"the code could not be mounted into instance pid {pid}: {error}")

    async def plug(self, netns: int, plug: dict[str, Any]) -> None:
        """Plug the network namespace ``netns`` (a descriptor) into the bridge: a veth
        whose other end is ``eth0`` in there (for an instance forked from a snapshot,
        which cannot make the host's end itself; ``OSError`` if it fails)."""
        error = await self._request({"type": "plug", "plug": plug}, [netns])
        if error:
            raise OSError(f"the instance's network could not be plugged in: {error}")

    async def _request(self, message: dict[str, Any], fds: list[int] | None = None
                       ) -> str | None:
        """Send ``message`` (with ``fds``) and wait for the zygote's answer to it: the
        error it reports, or None."""
        if self._control is None:
            raise ZygoteFailed(f"runtime {self.name} is not running")
        self._next_sid += 1
        sid = self._next_sid
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._requests[sid] = fut
        packet = orjson.dumps({**message, "sid": sid})
        self._post(packet, fds)
        try:
            async with asyncio.timeout(10):
                return await fut
        finally:
            self._requests.pop(sid, None)
            self._withdraw(packet)  # (``fds`` are the caller's to close once this returns)

    def renamed(self, pid: int, paths: list[str]) -> None:
        """The platform renamed instance ``pid``'s cgroup folders to ``paths``: the
        zygote removes those once it reaps it (no answer: nothing waits for it)."""
        if self._control is not None:
            self._post(orjson.dumps({"type": "renamed", "pid": pid, "paths": paths}))

    async def probe(self, box: dict[str, Any]) -> dict[str, Any]:
        """Ask the zygote which protections work on this host (it tries, in a child)."""
        assert self._control is not None
        self._probe = asyncio.get_running_loop().create_future()
        self._post(orjson.dumps({"type": "probe", "box": box}))
        async with asyncio.timeout(10):
            return await self._probe

    def _post(self, packet: bytes, fds: list[int] | None = None,
              sent: Callable[[], None] | None = None) -> None:
        """Send ``packet`` (with ``fds``, which must stay open until ``sent`` runs)
        after those in the backlog."""
        self._backlog.append((packet, fds or [], sent))
        if len(self._backlog) == 1:
            self._flush()

    def _withdraw(self, packet: bytes) -> None:
        """Take ``packet`` out of the backlog if it is still waiting there."""
        for entry in self._backlog:
            if entry[0] is packet:
                self._backlog.remove(entry)
                return

    def _flush(self) -> None:
        """Send the backlog's packets, in order, until the socket is full (then again
        once it can take more: a writer callback) or the backlog is empty."""
        loop = asyncio.get_running_loop()
        while self._backlog and self._control is not None:
            packet, fds, sent = self._backlog[0]
            try:
                if fds:
                    socket.send_fds(self._control, [packet], fds)
                else:
                    self._control.send(packet)
            except BlockingIOError:
                if not self._draining:
                    loop.add_writer(self._control.fileno(), self._flush)
                    self._draining = True
                return
            except OSError:  # (a zygote gone: its reader sees the end, see _lost)
                pass
            self._backlog.popleft()
            if sent is not None:
                sent()
        if self._draining and self._control is not None:
            loop.remove_writer(self._control.fileno())
        self._draining = False

    def _lost(self) -> None:
        """The zygote is gone; its instances die with it (parent-death signal)."""
        for _, _, sent in self._backlog:
            if sent is not None:
                sent()
        self._backlog.clear()
        if self._control is not None:
            if self._draining:
                asyncio.get_running_loop().remove_writer(self._control.fileno())
                self._draining = False
            asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._control.close()
            self._control = None
            if not self._stopping:
                log.warning("The %s zygote exited; it restarts on the next cold start.", self.name)
        error = ZygoteFailed(f"runtime {self.name} exited")
        for fut in [*self._spawns.values(), *self._requests.values(), self._ready]:
            if fut is not None and not fut.done():
                fut.set_exception(error)
        for exit_fut in self._exits.values():
            if not exit_fut.done():
                exit_fut.set_result(Exit(-signal.SIGKILL))
        self._spawns.clear()
        self._requests.clear()
        self._exits.clear()

    async def stop(self) -> None:
        """Close the control socket: the zygote ends its instances, removes their cgroups
        and exits; past a few seconds it is killed."""
        self._stopping = True
        if self._control is not None:
            self._lost()
        if self._proc is not None:
            try:
                await asyncio.to_thread(self._proc.wait, 5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await asyncio.to_thread(self._proc.wait)
            self._proc = None
