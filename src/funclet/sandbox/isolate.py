"""Isolating one instance: run in the freshly forked child, as root, before user code.

Loaded by file path inside the zygote, so it imports only the standard library.
``enter(box)`` takes the sandbox section of an instance's spec (see
``funclet.sandbox.SandboxConfig.for_instance``) and, in this order:

1. joins the instance's cgroups (memory limit, CPU weight, process count);
2. sets rlimits (open files, no core dumps; process count when there is no pids
   cgroup) and ``no_new_privs`` (no setuid binary grants anything, ever);
3. unshares mount, IPC, UTS and network namespaces, and its PID namespace is new:
   PID 1 of it, so killing it ends every process of the instance. The zygote makes
   the PID namespace (``new_pid_namespace``) before it forks the instance, which is
   then the zygote's own child: no other process stands for it. (An instance that will
   change its own uid — a Node.js one started ahead — loses its parent-death signal
   then, so it unshares the PID namespace itself and forks: the parent stays outside,
   waits, kills PID 1 if the zygote dies and exits as the child did.)
5. mounts: / read-only, the code read-only at /code, a private tmpfs /tmp and
   /dev/shm, the runtime's files kept readable, an empty tmpfs over each hidden path
   (the data folder), the platform's /etc/hosts (and resolv.conf), a fresh /proc;
6. sets the hostname, brings up loopback, plugs its network namespace into the
   platform's bridge (``box["plug"]``: a veth made from a netlink socket opened in the
   host's namespace before the unshare, closed before any other code runs), joins a
   new session keyring of its own, and drops to the function's uid/gid with no groups
   — or, for an instance started ahead of its function, stays root (running only the
   runtime's own code) until ``become(uid, gid)`` once it is specialised.

The instance plugs itself so that the platform's process does no netlink work per
instance (``network.py`` builds the bridge and hands out addresses). The netlink
client below is the few requests this needs, on the standard library's AF_NETLINK:
this file runs in the runtime's interpreter, which has nothing of the platform's
dependencies. ``probe()`` tries the same in a throwaway child and says which
protections work.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
import socket
import struct
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_PR_SET_NO_NEW_PRIVS = 38
_MADV_POPULATE_WRITE = 23  # Linux 5.14
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(
        source.encode() if source else None, target.encode(),
        fstype.encode() if fstype else None, flags, data.encode() if data else None,
    ), f"mount {target}")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def new_pid_namespace() -> int:
    """(The zygote, single-threaded, about to fork an instance.) The next child is PID 1
    of a new PID namespace. Returns a descriptor of the caller's own: right after the
    fork the parent gives it to ``back_to_pid_namespace`` (no other child, nor thread,
    may be made in the new one) and the child closes it."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWPID), "unshare pid")
    except OSError:
        os.close(own)
        raise
    return own


def back_to_pid_namespace(own: int) -> None:
    try:
        if _libc.setns(own, CLONE_NEWPID) != 0:
            os.write(2, b"funclet: the zygote could not return to its PID namespace\n")
            os._exit(70)
    finally:
        os.close(own)


def enter(box: dict[str, Any], close_in_parent: list[int], pid_1: bool = False) -> None:
    """Isolate this process (see the module docstring); returns in the isolated child.
    ``pid_1``: this process is PID 1 of a new PID namespace already."""
    join_cgroups(box.get("cgroups", {}), box.get("cgroupLimits", {}), os.getpid())
    resource.setrlimit(resource.RLIMIT_NOFILE, (box["maxOpenFiles"], box["maxOpenFiles"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if "pids" not in box.get("cgroups", {}) and box.get("maxProcesses"):
        resource.setrlimit(resource.RLIMIT_NPROC, (box["maxProcesses"], box["maxProcesses"]))
    if os.geteuid() == 0:
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid binaries grant nothing
    if not box.get("namespaces"):
        parent = os.getppid()
        _drop(box.get("uid"), box.get("gid"))
        _die_with(parent)
        return
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (0 if pid_1 else CLONE_NEWPID)
    if box.get("netns", True):
        flags |= CLONE_NEWNET
    plug = box.get("plug") if box.get("netns", True) else None
    host = _Netlink() if plug else None  # opened before the unshare: the host's namespace
    try:
        _check(_libc.unshare(flags), "unshare")
        if not pid_1:
            child = os.fork()
            if child:
                _stand_outside(child, [*close_in_parent, *([host.fileno()] if host else [])])
        if host is not None and plug:
            _plug(host, plug)  # before the mounts: /sys is still the host's here
    finally:
        if host is not None:
            host.close()
    _mounts(box)
    socket.sethostname(box["hostname"])
    if box.get("netns", True):
        _link_up("lo")
        if plug:
            _address(plug)
    _new_session_keyring()
    _drop(box.get("uid"), box.get("gid"))
    # Again after the uid change: the kernel clears the parent-death signal on setuid.
    # The parent is outside the new PID namespace, so getppid() says 0.
    _die_with(0)


def join_cgroups(cgroups: dict[str, str], limits: dict[str, dict[str, int]],
                 pid: int) -> None:
    """Make an instance's cgroup folders, set its limits there, move ``pid`` in."""
    for controller, path in cgroups.items():
        os.makedirs(path, exist_ok=True)
        for name, value in limits.get(controller, {}).items():
            _write(os.path.join(path, name), str(value))
        _write(os.path.join(path, "cgroup.procs"), str(pid))


def oom_kills(path: str) -> int:
    """How often the kernel's OOM killer struck in this cgroup (v1 or v2)."""
    for name in ("memory.oom_control", "memory.events"):
        try:
            with open(os.path.join(path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def prefault(ranges: list[list[int]]) -> None:
    """Write-fault these ranges ([start, length]) of this process's memory now, in one
    call each: an instance forked from a template copies, ahead of its first invocation,
    the pages that invocation would copy one fault at a time. Ranges no longer mapped
    are skipped, as is all of it on a kernel without MADV_POPULATE_WRITE."""
    for start, length in ranges:
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length),
                         _MADV_POPULATE_WRITE) != 0 and ctypes.get_errno() == errno.EINVAL:
            return


def become(uid: int | None, gid: int | None) -> None:
    """An instance started ahead, now specialised: drop to its function's uid/gid."""
    _drop(uid, gid)
    _die_with(0)


def _die_with(parent: int) -> None:
    """SIGKILL this process when its parent dies; if the parent is gone already, exit.

    In a new PID namespace the parent (outside it) shows as pid 0.
    """
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _stand_outside(child: int, close: list[int], report: socket.socket | None = None) -> None:
    """The parent left outside the namespace: wait for PID 1 and exit as it did.

    When the zygote dies this process is told (SIGTERM, its parent-death signal) and
    kills PID 1: PID 1 cannot be told itself once a runtime that is not Python changed
    its uid (the kernel clears the parent-death signal then, and Node.js cannot set it
    again)."""
    for fd in close:
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def end(*_: object) -> None:
        os.kill(child, signal.SIGKILL)
        os._exit(1)

    signal.signal(signal.SIGTERM, end)
    parent = os.getppid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        end()
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if report is not None:  # an instance forked from a snapshot: the platform is told
        try:
            report.send(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode())
        except OSError:
            pass
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _mounts(box: dict[str, Any]) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Nothing outside /tmp is writable, and no setuid bit works.
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    for folder, target in ((box["codeDir"], box["codeMount"]),
                           (box.get("optDir"), box.get("optMount"))):
        if folder and target:  # the code at /code; the function's layers at /opt
            _mount(folder, target, None, MS_BIND | MS_REC)
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # The runtime's own files may sit under /tmp (funclet run from a checkout there): keep
    # a handle on them before /tmp becomes the instance's own, and bind them back.
    under_tmp = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in box.get("expose", [])
                 if (p + "/").startswith("/tmp/") and os.path.isdir(p)}
    # The platform's /etc files (host.funclet.internal, a resolver), wherever they are.
    etc = {name: os.open(source, os.O_PATH) for name, source in box.get("etc", {}).items()
           if os.path.exists(f"/etc/{name}")}
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={box['tmpBytes']},mode=1777")
    for path, fd in under_tmp.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "size=64m,mode=1777")
    _expose([p for p in box.get("expose", []) if not (p + "/").startswith("/tmp/")])
    for name, fd in etc.items():
        _mount(f"/proc/self/fd/{fd}", f"/etc/{name}", None, MS_BIND)
        _mount(None, f"/etc/{name}", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
               | MS_NODEV)
        os.close(fd)
    for hidden in box.get("hide", []):
        if os.path.isdir(hidden):
            _mount("tmpfs", hidden, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   "size=4k,mode=755")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if box.get("netns", True) and os.path.isdir("/sys"):  # its own interfaces, not the host's
        _mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _expose(paths: list[str]) -> None:
    """Keep the runtime's own files (its interpreter's prefix) readable by the
    unprivileged user when they sit under a folder it may not enter (pyenv's /root):
    an empty tmpfs goes over that folder and only the runtime is bound back into it."""
    covered: set[str] = set()
    for path in paths:
        blocked = _first_closed_ancestor(path)
        if blocked is None:
            continue
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
        try:
            if blocked not in covered:
                _mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
                covered.add(blocked)
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        finally:
            os.close(fd)


def _first_closed_ancestor(path: str) -> str | None:
    """The topmost folder above ``path`` that others may not traverse (no o+x)."""
    current = "/"
    for part in path.strip("/").split("/")[:-1]:
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & 0o001:
            return current
    return None


def _link_up(name: str) -> None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", name.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | _IFF_UP))


# -- the instance's network: a veth onto the platform's bridge ----------------------------

_RTM_NEWLINK, _RTM_DELLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 17, 20, 24
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 1, 4, 0x200, 0x400
_NLMSG_ERROR = 2
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 1, 3, 10, 18, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_OIF, _RTA_GATEWAY = 4, 5
_RT_TABLE_MAIN, _RTPROT_BOOT, _RTN_UNICAST = 254, 3, 1
_IFINFOMSG = "=BxHiII"  # family, type, index, flags, change


def _attr(kind: int, value: bytes) -> bytes:
    """One netlink attribute (rtattr), padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


class _Netlink:
    """A NETLINK_ROUTE socket of the namespace this process is in when it is made; each
    request waits for the kernel's answer and raises its error."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   0)  # NETLINK_ROUTE
        self._sock.bind((0, 0))
        self._seq = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self._seq += 1
        header = struct.pack("=IHHII", 16 + len(body), kind,
                             _NLM_F_REQUEST | _NLM_F_ACK | flags, self._seq, 0)
        self._sock.send(header + body)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if mtype == _NLMSG_ERROR and seq == self._seq:
                    error = -struct.unpack_from("=i", data, offset + 16)[0]
                    if error:
                        raise OSError(error, f"{what}: {os.strerror(error)}")
                    return
                offset += max(16, (length + 3) & ~3)


def _plug(host: _Netlink, plug: dict[str, Any], netns: int | None = None) -> None:
    """Make the veth: its host end ``plug["ifname"]`` a port of the bridge (isolated from
    the other ports, so instances reach only the gateway), its other end ``eth0`` in this
    process's new network namespace (or in ``netns``, a descriptor of one). ``host``
    talks to the host's namespace."""
    ifname = plug["ifname"]
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC) \
        if netns is None else os.dup(netns)
    try:
        peer = struct.pack(_IFINFOMSG, 0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name("eth0")) \
            + _attr(_IFLA_NET_NS_FD, struct.pack("=I", own))
        if plug.get("mac"):  # the MAC its port is pinned to (network.py)
            peer += _attr(_IFLA_ADDRESS, bytes.fromhex(plug["mac"].replace(":", "")))
        info = _attr(_IFLA_INFO_KIND, b"veth") + _attr(
            _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer))
        host.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL,
                     struct.pack(_IFINFOMSG, 0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name(ifname))
                     + _attr(_IFLA_MASTER, struct.pack("=I", plug["bridgeIndex"]))
                     + _attr(_IFLA_LINKINFO, info), f"create the veth {ifname}")
    finally:
        os.close(own)
    _write(f"/sys/class/net/{ifname}/brport/isolated", "1")
    host.request(_RTM_NEWLINK, 0, struct.pack(_IFINFOMSG, 0, 0, 0, _IFF_UP, _IFF_UP)
                 + _attr(_IFLA_IFNAME, _name(ifname)), f"bring up {ifname}")


def _address(plug: dict[str, Any]) -> None:
    """Inside: ``eth0`` up with the instance's address, the gateway as default route."""
    _link_up("eth0")
    index = socket.if_nametoindex("eth0")
    address = socket.inet_aton(plug["address"])
    inside = _Netlink()
    try:
        inside.request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL,
                       struct.pack("=BBBBI", socket.AF_INET, plug["prefixlen"], 0, 0, index)
                       + _attr(_IFA_LOCAL, address) + _attr(_IFA_ADDRESS, address),
                       f"give eth0 the address {plug['address']}")
        inside.request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL,
                       struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN,
                                   _RTPROT_BOOT, 0, _RTN_UNICAST, 0)
                       + _attr(_RTA_GATEWAY, socket.inet_aton(plug["gateway"]))
                       + _attr(_RTA_OIF, struct.pack("=I", index)),
                       f"route through the gateway {plug['gateway']}")
    finally:
        inside.close()


def plug_into(netns: int, plug: dict[str, Any]) -> None:
    """Plug the network namespace ``netns`` (a descriptor) into the bridge as ``_plug``
    does, from the caller's namespace (the host's): for an instance forked from a
    snapshot, which cannot make the host's end itself. It sets up ``eth0`` inside."""
    host = _Netlink()
    try:
        _plug(host, plug, netns)
    finally:
        host.close()


def unplug(ifname: str) -> None:
    """Delete an instance's veth by the name of an end in the caller's network
    namespace (the host's end from the host, ``eth0`` from inside; both ends go, a gone
    one is fine): the instance keeps only loopback."""
    netlink = _Netlink()
    try:
        netlink.request(_RTM_DELLINK, 0, struct.pack(_IFINFOMSG, 0, 0, 0, 0, 0)
                        + _attr(_IFLA_IFNAME, _name(ifname)), f"delete the veth {ifname}")
    except OSError as exc:
        if exc.errno != errno.ENODEV:  # gone with its instance already
            raise
    finally:
        netlink.close()


_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine, 250)
_KEYCTL_JOIN_SESSION_KEYRING = 1


def _new_session_keyring() -> None:
    """A session keyring of the instance's own: keys it adds are seen by nobody else."""
    if _libc.syscall(_SYS_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"keyctl(JOIN_SESSION_KEYRING): {os.strerror(errno)}")


def _drop(uid: int | None, gid: int | None) -> None:
    if uid is None or gid is None or os.geteuid() != 0:
        return
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid binaries grant nothing
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def probe(box: dict[str, Any]) -> dict[str, Any]:
    """Which protections work here: tried in a throwaway child, reported as JSON."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        found: dict[str, Any] = {"root": os.geteuid() == 0}
        try:
            for controller, path in box.get("cgroups", {}).items():
                os.makedirs(path, exist_ok=True)
                _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
                found[f"cgroup_{controller}"] = True
        except OSError as exc:
            found["cgroup_error"] = str(exc)
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
                                 | CLONE_NEWNET), "unshare")
            found["namespaces"] = True
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
            found["mounts"] = True
        except OSError as exc:
            found["namespace_error"] = str(exc)
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    for path in box.get("cgroups", {}).values():
        try:
            os.rmdir(path)
        except OSError:
            pass
    return json.loads(data or b"{}")  # type: ignore[no-any-return]


# -- putting code into a pre-started instance ---------------------------------------------

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64
_OPEN_TREE_CLONE, _AT_RECURSIVE, _AT_EMPTY_PATH, _AT_FDCWD = 1, 0x8000, 0x1000, -100
_MOVE_MOUNT_F_EMPTY_PATH = 4
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 1, 2, 4


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def specialize(pid: int, mounts: list[tuple[str, str]], hostname: str) -> None:
    """Mount each (folder, target) of ``mounts`` read-only inside the mount namespace of
    ``pid`` (a pre-started instance that had no code yet: its code at /code, its layers
    at /opt) and give it ``hostname``. The caller (the zygote: root, single-threaded)
    enters those namespaces and comes back to its own; detached copies of the folders,
    made here, are moved in (the folders themselves are hidden in there). No fork: the
    whole costs a few syscalls."""
    own = [os.open(f"/proc/self/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in ("mnt", "uts")]
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    uts = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        mount_trees(pid, mounts)
        _check(_libc.setns(uts, CLONE_NEWUTS), "setns uts")
        socket.sethostname(hostname)
    finally:
        if _libc.setns(own[0], CLONE_NEWNS) != 0 or _libc.setns(own[1], CLONE_NEWUTS) != 0:
            os.write(2, b"funclet: the zygote could not return to its own namespaces\n")
            os._exit(70)
        os.fchdir(cwd)
        for fd in (*own, cwd, uts):
            os.close(fd)


def clone_trees(folders: list[str]) -> list[int]:
    """A detached, read-only (nosuid, nodev) copy of each folder's mount tree, as a file
    descriptor (open_tree): what a process in another mount namespace can mount where
    the folder itself is out of its sight. Needs CAP_SYS_ADMIN; the caller closes them."""
    trees: list[int] = []
    try:
        for folder in folders:
            tree = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, folder.encode(),
                                 _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC)
            _check(0 if tree >= 0 else -1, f"open_tree {folder}")  # a descriptor on success
            trees.append(tree)
            attr = _MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV,
                              0, 0, 0)
            _check(_libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH | _AT_RECURSIVE,
                                 ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")
    except OSError:
        for tree in trees:
            os.close(tree)
        raise
    return trees


def move_trees(trees: list[tuple[int, str]]) -> None:
    """Mount each detached tree (``clone_trees``) at its target, in the caller's mount
    namespace."""
    for tree, target in trees:
        _check(_libc.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, target.encode(),
                             _MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target}")


def mount_trees(pid: int, mounts: list[tuple[str, str]]) -> None:
    """Mount each (folder, target) read-only inside the mount namespace of ``pid``,
    leaving the caller in that namespace. Every tree is cloned before entering it (the
    folders are hidden in there)."""
    trees = clone_trees([folder for folder, _ in mounts])
    try:
        namespace = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(namespace, CLONE_NEWNS), "setns")
            move_trees([(tree, mounts[i][1]) for i, tree in enumerate(trees)])
        finally:
            os.close(namespace)
    finally:
        for tree in trees:
            os.close(tree)


def settle(trees: list[tuple[int, str]], hostname: str, offline: bool) -> None:
    """Run in an instance started ahead, still root, when its function is known: mount
    its code and layers (trees the platform cloned, ``clone_trees``), take its hostname,
    and, for a function without internet access, delete its veth (loopback is left).
    The same as ``specialize`` from the zygote, without a trip through the zygote."""
    try:
        move_trees(trees)
    finally:
        for tree, _ in trees:
            os.close(tree)
    socket.sethostname(hostname)
    if offline:
        unplug("eth0")  # its own end: the pair goes


# -- instances forked from a snapshot -----------------------------------------------------

_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine, 126)
_CAP_VERSION_3 = 0x20080522
_CAP_LAST = 63


def restore(box: dict[str, Any], control: socket.socket, close_in_parent: list[int]) -> None:
    """Run in a child just forked from a template (an instance whose imports and
    initializer have run: ``bootstrap``'s snapshots), as the function's unprivileged
    user: give it every namespace of a normal instance, of its own. Returns in the
    isolated child.

    1. a user namespace of its own (its uid and gid mapped to themselves): the only
       place it holds capabilities, for the next steps, and only over namespaces it
       owns;
    2. unshares mount, PID, IPC, UTS (and network) namespaces, and forks: PID 1 of the
       new PID namespace; the parent stays outside, waits, tells the platform how PID 1
       ended (on ``control``) and exits as it did;
    3. PID 1 says hello on ``control`` (the kernel attaches its pid as the platform sees
       it, SCM_CREDENTIALS, which nobody can forge outside its own PID namespace; its
       network namespace goes with it) and waits while the platform moves it into
       cgroups of its own and plugs the namespace into the bridge;
    4. mounts its own /tmp, /dev/shm, /proc (and /sys), brings up loopback and its
       veth, joins a session keyring of its own. It is forked ahead of the cold start
       that takes it; ``seal`` then gives it its hostname and drops every capability
       (bounding and ambient sets too).
    """
    if not box.get("namespaces"):  # still a process outside, that tells how it ended
        child = os.fork()
        if child:
            _stand_outside(child, close_in_parent, control)
        os.setsid()
        _hello(control, None)
        return
    uid, gid = os.getuid(), os.getgid()
    # Dumpable for a moment: /proc/self's files are root's otherwise (since the uid
    # change), and it must write its own maps. Non-dumpable again at the end.
    _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    _check(_libc.unshare(CLONE_NEWUSER), "unshare user")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    netns = box.get("netns", True)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
                         | (CLONE_NEWNET if netns else 0)), "unshare")
    child = os.fork()
    if child:
        _stand_outside(child, close_in_parent, control)
    os.setsid()  # its process group: the platform signals it by its pid
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC) if netns else None
    try:
        _hello(control, own)
    finally:
        if own is not None:
            os.close(own)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={box['tmpBytes']},mode=1777")
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "size=64m,mode=1777")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if netns and os.path.isdir("/sys"):
        _mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if netns:
        _link_up("lo")
        if box.get("plug"):
            _address(box["plug"])
    _new_session_keyring()
    _die_with(0)


def seal(hostname: str) -> None:
    """A forked instance (``restore``) given to its invocation: its hostname, then no
    capability left and non-dumpable (the template, the same user, can neither trace
    it nor read its memory)."""
    socket.sethostname(hostname)
    drop_capabilities()
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _hello(control: socket.socket, netns: int | None) -> None:
    """Tell the platform this process's pid (attached by the kernel) and hand it the
    network namespace; wait for its go (anything else: it gave up, so do we)."""
    control.sendmsg([b"h"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                              struct.pack("i", netns))] if netns is not None else [])
    if control.recv(1) != b"g":
        os._exit(1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """No capability left, ever: the bounding and ambient sets emptied, then the
    effective, permitted and inheritable ones."""
    for cap in range(_CAP_LAST + 1):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            _check(-1, f"drop capability {cap} from the bounding set")
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_CAPSET, ctypes.byref(header), data), "capset")
