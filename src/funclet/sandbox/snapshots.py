"""Snapshots: a function version's imports and initializer run once, in a template;
every new instance of the version is forked from it.

A template is an instance like any other (started ahead, specialised, in its cgroups,
as its function's uid) whose spec says ``template``: once its handler, initializer and
before-snapshot hooks have run, it says ``ready`` and then forks an instance for each
``fork`` frame (``bootstrap._serve_template``). Each forked instance isolates itself
afresh (``isolate.restore``): a user namespace of its own, then mount, PID, IPC, UTS and
network namespaces owned by it, PID 1 in there, its own /tmp, /dev/shm and /proc; it
says hello on its control socket, where the kernel attaches its pid as the platform
sees it (SCM_CREDENTIALS) and its network namespace rides along; the platform moves it
into cgroups of its own (the function's memory limit, CPU weight, process limit), has
the zygote plug its namespace into the bridge, and lets it go. It then drops every
capability, reseeds ``random``, runs its after-restore hooks and serves.

Everything that runs in a template after the function's code is the function's, so
what a forked instance sends is taken as hostile: its pid can only name a process of
its own PID namespace (the kernel checks it), its network namespace can only be one of
its own sandbox's, its exit report speaks only of itself. The bridge pins each port to
its address (``network.py``): an instance that kept its capabilities cannot spoof
another's.

A template is retired — no more forks; it ends with its last forked instance, which
lives in its PID namespace — when its version goes, when its version has had no instance
for its keep-alive (``Pool.reclaim_snapshot``; the next cold start makes it again), and
when a sandbox that holds ``limit`` templates (the account's instance limit) needs room
for another: the least recently used one goes, one without instances first. So the
templates alive are at most the limit plus those whose instances still run (each of
them counted in the limit), and each is held to its function's memory in its cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import secrets
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from funclet.runtimes import Runtime, protocol
from funclet.sandbox import isolate
from funclet.sandbox.ahead import REFILL_DELAY
from funclet.sandbox.channel import INIT, Channel, ChannelClosed
from funclet.sandbox.zygote import Exit, SandboxProcess, ZygoteFailed, kill_cgroup

if TYPE_CHECKING:
    from funclet.sandbox import Sandbox

log = logging.getLogger(__name__)
_HELLO_TIMEOUT = 10.0
_AHEAD = 1  # instances kept forked ahead per template
_UCRED = struct.Struct("iII")  # pid, uid, gid


class SnapshotFailed(Exception):
    """The template could not be made: the function's imports, initializer or
    before-snapshot hooks failed (``error``: as the runtime reported it)."""

    def __init__(self, error: dict[str, Any], log_text: str = "") -> None:
        super().__init__(error.get("errorMessage", "the snapshot failed"))
        self.error = error
        self.log = log_text


@dataclass
class Template:
    process: SandboxProcess
    spec: dict[str, Any]  # its version's (what every instance forked from it shares)
    children: set[int] = field(default_factory=set)  # pids of its forked instances
    ahead: list[SandboxProcess] = field(default_factory=list)  # forked, not taken yet
    forking: int = 0  # forks ahead under way
    retired: bool = False
    used: float = 0.0  # when an instance was last taken from it (monotonic)
    log: str = ""  # what its initialisation logged: the first instance's first log
    # The pages its first instance wrote by the end of its first invocation, [start,
    # length]: every later one copies them ahead (``isolate.prefault``).
    warm: list[list[int]] | None = None
    learning: bool = False

    def retire(self) -> None:
        """Its version is gone: it ends with its last forked instance (those forked
        ahead go now)."""
        self.retired = True
        for child in self.ahead:
            child.kill()
        self.ahead.clear()
        if not self.children:
            self.process.kill()

    def child_gone(self, pid: int) -> None:
        self.children.discard(pid)
        if self.retired and not self.children:
            self.process.kill()


class Snapshots:
    """The templates of one sandbox, by snapshot key (a function version's revision)."""

    def __init__(self, sandbox: Sandbox, limit: int = 100) -> None:
        self._sandbox = sandbox
        self._limit = limit
        self._templates: dict[str, asyncio.Future[Template]] = {}
        self._forks: set[asyncio.Task[None]] = set()

    async def create(self, rt: Runtime, spec: dict[str, Any]) -> SandboxProcess:
        """A new instance of ``spec``'s version, forked from its template (made first
        if there is none: the cold start that makes it waits for its initialisation)."""
        template, made = await self._template(rt, spec)
        template.used = time.monotonic()
        child = None
        while template.ahead and child is None:
            child = template.ahead.pop(0)
            if child.channel.is_closed or child.exited.done():
                child = None
        if child is None:
            child = await self._fork(rt, template)
        asyncio.get_running_loop().call_later(REFILL_DELAY, self._refill, rt, template)
        instance_id = spec["env"]["FC_INSTANCE_ID"]
        try:
            if self._sandbox.config.cgroup_version == 1:  # named after it (v1 renames)
                renamed = {c: os.path.join(os.path.dirname(p), instance_id)
                           for c, p in child.limits.items()}
                for controller, path in child.limits.items():
                    os.rename(path, renamed[controller])
                    child.limits[controller] = renamed[controller]
                child.cgroup = kill_cgroup(child.limits)
            child.channel.send({"type": protocol.SPECIALIZE,
                                "hostname": instance_id[:63] if self._sandbox.config.namespaces
                                else None,
                                "spec": {"env": spec["env"], "requestId": spec["requestId"]}})
        except (OSError, ChannelClosed) as exc:
            child.kill()
            raise ZygoteFailed(f"an instance forked from the snapshot could not be "
                               f"started: {exc}") from exc
        if made:
            child.init_log = template.log
        if template.warm is None and not template.learning:
            template.learning = True
            child.after_first = functools.partial(self._learn, template, child.pid)
        return child

    def _learn(self, template: Template, pid: int) -> None:
        """An instance's first invocation is over: which of its template's pages it
        copied on write (and which it added), read from outside (the platform is root)."""
        async def learn() -> None:
            try:
                template.warm = await asyncio.to_thread(written_pages, pid)
            except OSError as exc:  # it is gone: the next one tells
                log.debug("Could not read the pages of instance pid %d: %s", pid, exc)
                template.learning = False
                return
            log.debug("Snapshot %s: each instance copies %d KB ahead (%d ranges).",
                      template.spec["snapshot"], sum(n for _, n in template.warm) >> 10,
                      len(template.warm))

        task = asyncio.get_running_loop().create_task(learn())
        self._forks.add(task)
        task.add_done_callback(self._forks.discard)

    def _refill(self, rt: Runtime, template: Template) -> None:
        """Keep one instance forked ahead (off the cold start's path: the fork, its
        namespaces, its cgroups — moving a process into a v1 cgroup costs milliseconds —
        and its veth)."""
        if template.retired or template.process.exited.done() or \
                len(template.ahead) + template.forking >= _AHEAD:
            return
        template.forking += 1

        async def fork() -> None:
            try:
                child = await self._fork(rt, template)
            except ZygoteFailed as exc:
                log.warning("Could not fork an instance ahead from snapshot %s: %s",
                            template.spec["snapshot"], exc)
                return
            finally:
                template.forking -= 1
            if template.retired:
                child.kill()
            else:
                template.ahead.append(child)

        task = asyncio.get_running_loop().create_task(fork())
        self._forks.add(task)
        task.add_done_callback(self._forks.discard)

    def retire(self, key: str) -> None:
        """The template of ``key`` forks no more (see the module docstring)."""
        made = self._templates.pop(key, None)
        if made is None:
            return
        def retire(made: asyncio.Future[Template]) -> None:
            if not made.cancelled() and made.exception() is None:
                made.result().retire()

        if made.done():
            retire(made)
        else:
            made.add_done_callback(retire)

    def close(self) -> None:
        for task in self._forks:
            task.cancel()
        for made in self._templates.values():
            if made.done() and not made.cancelled() and made.exception() is None:
                made.result().process.kill()
            else:
                made.cancel()
        self._templates.clear()

    async def _template(self, rt: Runtime, spec: dict[str, Any]) -> tuple[Template, bool]:
        """The template of ``spec``'s version, and whether this call made it."""
        key = spec["snapshot"]
        made = self._templates.get(key)
        if made is not None and made.done() and (
                made.cancelled() or made.exception() is not None
                or made.result().process.exited.done()):
            del self._templates[key]  # it failed or died: made again
            made = None
        if made is not None:
            return await asyncio.shield(made), False
        if len(self._templates) >= self._limit:
            self._make_room()
        made = self._templates[key] = asyncio.ensure_future(self._make(rt, spec))
        made.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen if unused
        return await asyncio.shield(made), True

    def _make_room(self) -> None:
        """Retire the least recently used template, one without instances first (those
        still being made are left alone)."""
        ready = [(key, made.result()) for key, made in self._templates.items()
                 if made.done() and not made.cancelled() and made.exception() is None]
        if ready:
            key, _ = min(ready, key=lambda kt: (bool(kt[1].children), kt[1].used))
            log.info("Retiring snapshot %s to make room: this node holds %d templates, "
                     "its limit.", key, self._limit)
            self.retire(key)

    async def _make(self, rt: Runtime, spec: dict[str, Any]) -> Template:
        instance_id = "t" + spec["env"]["FC_INSTANCE_ID"][1:]
        tspec = {k: v for k, v in spec.items() if k != "snapshot"}
        tspec.update(template=True, env=dict(spec["env"], FC_INSTANCE_ID=instance_id))
        process = await self._sandbox.create(rt.name, tspec)
        timeout = spec["timeout"] + (spec.get("initializer") or {}).get("timeout", 0)
        try:
            async with asyncio.timeout(timeout):
                header, _ = await process.channel.expect(INIT)
                while header["type"] == protocol.INITIALIZING:
                    header, _ = await process.channel.expect(INIT)
        except TimeoutError:
            process.kill()
            raise SnapshotFailed({
                "errorMessage": f"The snapshot's initialization (imports, module code, "
                                f"initializer) timed out after {timeout:g} seconds",
                "errorType": "InitializationTimeout", "stackTrace": []}) from None
        except ChannelClosed:
            ended = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    ended = await asyncio.shield(process.exited)
            process.kill()
            if ended is not None and ended.oom:
                raise SnapshotFailed({
                    "errorMessage": "The snapshot ran out of memory during initialization: "
                                    f"it exceeded its memorySize of {spec['memorySize']} MB",
                    "errorType": "Runtime.OutOfMemory", "stackTrace": []}) from None
            raise SnapshotFailed({
                "errorMessage": "Process exited unexpectedly during the snapshot's "
                                f"initialization (exit code {ended.code if ended else None})",
                "errorType": "Runtime.ExitError", "stackTrace": []}) from None
        if header["type"] != protocol.READY:
            process.kill()
            raise SnapshotFailed(header.get("error") or {}, header.get("log", ""))
        log.info("Snapshot %s is ready (instance %s, %.0f ms of initialization).",
                 spec["snapshot"], instance_id, header.get("initMs", 0))
        return Template(process, spec, log=header.get("log", ""))

    async def _fork(self, rt: Runtime, template: Template) -> SandboxProcess:
        """One more instance of the template's memory, isolated, in cgroups of its own,
        plugged in; waiting for its identity (``create``)."""
        sandbox, config, spec = self._sandbox, self._sandbox.config, template.spec
        instance_id = f"f-{secrets.token_hex(8)}"
        network = sandbox.network
        online = config.namespaces and network is not None and spec.get("internetAccess", True)
        netns = config.namespaces and (network is not None or not spec.get("internetAccess",
                                                                             True))
        plug = network.allocate() if online and network is not None else None
        box: dict[str, Any] = {"namespaces": config.namespaces, "netns": netns,
                               "tmpBytes": config.tmp_bytes, "warm": template.warm or [],
                               "plug": network.plug_spec(plug) if network and plug else None}
        limits = config.for_instance(instance_id, "/", spec["memorySize"], netns, None) or {}
        cgroups: dict[str, str] = limits.get("cgroups") or {}
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        control, control_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        control.setblocking(False)
        pid = 0
        try:
            try:
                template.process.channel.send_fds({"type": protocol.FORK, "box": box},
                                                  [theirs.fileno(), control_theirs.fileno()])
            finally:
                theirs.close()
                control_theirs.close()
            async with asyncio.timeout(_HELLO_TIMEOUT):
                pid, namespace = await _hello(control)
            try:
                isolate.join_cgroups(cgroups, limits.get("cgroupLimits") or {}, pid)
                if plug is not None and network is not None:
                    if namespace is None:
                        raise OSError("the instance sent no network namespace")
                    zygote = await sandbox.zygote_for(rt)
                    await zygote.plug(namespace, network.plug_spec(plug))
            finally:
                if namespace is not None:
                    os.close(namespace)
            control.send(b"g")
        except (OSError, TimeoutError, ChannelClosed, ZygoteFailed) as exc:
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _remove_cgroups(cgroups)
            if plug is not None and network is not None:
                network.release(plug)
            control.close()
            ours.close()
            raise ZygoteFailed(f"an instance could not be forked from the snapshot: "
                               f"{exc or type(exc).__name__}") from exc
        loop = asyncio.get_running_loop()
        _, channel = await loop.connect_accepted_socket(
            lambda: Channel(sandbox.frame_limits, ours), ours)
        exited: asyncio.Future[Exit] = loop.create_future()
        child = SandboxProcess(pid, channel, exited, kill_cgroup(cgroups), limits=cgroups,
                               plug=plug)
        template.children.add(pid)
        loop.add_reader(control.fileno(), _on_report, control, exited, cgroups)

        def gone(_: asyncio.Future[Exit]) -> None:
            loop.remove_reader(control.fileno())
            control.close()
            if plug is not None and network is not None:
                network.release(plug)
            _remove_cgroups(cgroups)
            template.child_gone(pid)
            if child.after_first is not None:  # gone before its first invocation ended
                child.after_first = None
                template.learning = False  # (the next instance forked tells instead)

        exited.add_done_callback(gone)
        return child


async def _hello(control: socket.socket) -> tuple[int, int | None]:
    """The forked instance's hello: its pid as this process sees it (attached by the
    kernel) and its network namespace, if it sent one."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[tuple[int, int | None]] = loop.create_future()

    def readable() -> None:
        try:
            data, ancillary, _, _ = control.recvmsg(
                1024, socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(4 * 4),
                socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return
        except OSError as exc:
            got.set_exception(exc)
            return
        pid, fds = 0, []
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack_from(value)[0]
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"{len(value) // 4}i", value[:len(value) // 4 * 4]))
        if data != b"h" or pid <= 0 or len(fds) > 1:
            for fd in fds:
                os.close(fd)
            said = data[1:].decode("utf-8", "replace") if data[:1] == b"e" else \
                f"its hello was malformed ({data[:16]!r})" if data else "it exited"
            got.set_exception(OSError(said))
            return
        got.set_result((pid, fds[0] if fds else None))

    loop.add_reader(control.fileno(), readable)
    try:
        return await got
    except asyncio.CancelledError:  # given up on just as it came: its descriptor goes
        if got.done() and not got.cancelled() and got.exception() is None:
            namespace = got.result()[1]
            if namespace is not None:
                os.close(namespace)
        raise
    finally:
        loop.remove_reader(control.fileno())


def _on_report(control: socket.socket, exited: asyncio.Future[Exit],
               cgroups: dict[str, str]) -> None:
    """The forked instance ended: its outer process reports PID 1's exit code, then
    the socket closes (no report: it was killed with its template)."""
    try:
        data = control.recv(256)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    code = -signal.SIGKILL
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        code = int(json.loads(data)["code"]) if data else code
    if not exited.done():
        exited.set_result(Exit(code, any(isolate.oom_kills(path) for path in cgroups.values())))


_WRITTEN = bytes(0x31 if b & 0x81 == 0x81 else 0x30 for b in range(256))  # see below
_MAX_RANGES = 2048
_MAX_SCAN = 4 << 30  # bytes of address space looked at, at most (sparse mappings may be vast)
_CHUNK = 1 << 15  # pages read from pagemap at a time (256 KB)


def written_pages(pid: int) -> list[list[int]]:
    """The pages process ``pid`` holds as its own (present and mapped by it alone: copied
    on write from its template, or new) in its anonymous memory, as [start, length]
    ranges (at most ``_MAX_RANGES``, from the first ``_MAX_SCAN`` bytes of it).
    /proc/<pid>/pagemap has 8 bytes per page, whose top byte holds "present" (bit 63)
    and "exclusively mapped" (bit 56)."""
    page = os.sysconf("SC_PAGE_SIZE")
    ranges: list[list[int]] = []
    left = _MAX_SCAN // page
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if fields[1][:2] != "rw" or fields[1][3] != "p" or (
                    len(fields) > 5 and fields[5] not in ("[heap]", "[stack]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            for first in range(start // page, end // page, _CHUNK):
                count = min(_CHUNK, end // page - first, left)
                if count <= 0:
                    return ranges
                left -= count
                pagemap.seek(first * 8)
                flags = pagemap.read(count * 8)[7::8].translate(_WRITTEN)
                for run in re.finditer(b"1+", flags):
                    at, size = (first + run.start()) * page, (run.end() - run.start()) * page
                    if ranges and sum(ranges[-1]) == at:  # (across two reads)
                        ranges[-1][1] += size
                    elif len(ranges) == _MAX_RANGES:
                        return ranges
                    else:
                        ranges.append([at, size])
    return ranges


def _remove_cgroups(cgroups: dict[str, str], tries: int = 50) -> None:
    """Remove an ended instance's cgroup folders; busy ones are tried again shortly."""
    left = {}
    for controller, path in cgroups.items():
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            left[controller] = path
    if left and tries:
        asyncio.get_running_loop().call_later(0.05, _remove_cgroups, left, tries - 1)
