"""Isolating one instance: run in the freshly forked child, as root, before user code.

Loaded by file path inside the zygote, so it imports only the standard library.
``enter(box)`` takes the sandbox section of an instance's spec (see
``funclet.sandbox.SandboxConfig.for_instance``) and, in this order:

1. joins the instance's cgroups (memory limit, CPU weight, process count);
2. sets rlimits (open files, no core dumps; process count when there is no pids
   cgroup) and ``no_new_privs`` (no setuid binary grants anything, ever);
3. unshares mount, PID, IPC, UTS and network namespaces;
4. forks: the parent stays outside, waits, and exits as the child did; the child is
   PID 1 of the new namespace, so killing it ends every process of the instance;
5. mounts: / read-only, the code read-only at /code, a private tmpfs /tmp and
   /dev/shm, the runtime's files kept readable, an empty tmpfs over each hidden path
   (the data folder), the platform's /etc/hosts (and resolv.conf), a fresh /proc;
6. sets the hostname, brings up loopback, joins a new session keyring of its own,
   and drops to the function's uid/gid with no groups — or, for an instance started
   ahead of its function, stays root (running only the runtime's own code) until
   ``become(uid, gid)`` once it is specialised.

The platform plugs the network namespace into its bridge (``network.py``) from
outside. ``probe()`` tries the same in a throwaway child and says which protections
work.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
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


def enter(box: dict[str, Any], close_in_parent: list[int]) -> None:
    """Isolate this process (see the module docstring); returns in the isolated child."""
    for controller, path in box.get("cgroups", {}).items():
        os.makedirs(path, exist_ok=True)
        for name, value in box.get("cgroupLimits", {}).get(controller, {}).items():
            _write(os.path.join(path, name), str(value))
        _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
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
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if box.get("netns", True):
        flags |= CLONE_NEWNET
    _check(_libc.unshare(flags), "unshare")
    child = os.fork()
    if child:
        _stand_outside(child, close_in_parent)
    _mounts(box)
    socket.sethostname(box["hostname"])
    if box.get("netns", True):
        _loopback_up()
    _new_session_keyring()
    _drop(box.get("uid"), box.get("gid"))
    # Again after the uid change: the kernel clears the parent-death signal on setuid.
    # The parent is outside the new PID namespace, so getppid() says 0.
    _die_with(0)


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


def _stand_outside(child: int, close: list[int]) -> None:
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
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _mounts(box: dict[str, Any]) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Nothing outside /tmp is writable, and no setuid bit works.
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    code = box["codeMount"]
    _mount(box["codeDir"], code, None, MS_BIND | MS_REC)
    _mount(None, code, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
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


def _loopback_up() -> None:
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


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


def specialize(pid: int, code_dir: str, target: str, hostname: str) -> None:
    """Mount ``code_dir`` read-only at ``target`` inside the mount namespace of ``pid`` (a
    pre-started instance that had no code yet) and give it ``hostname``. The caller (the
    zygote: root, single-threaded) enters those namespaces and comes back to its own; a
    detached copy of the folder, made here, is moved in (the folder itself is hidden in
    there). No fork: the whole costs a few syscalls."""
    own = [os.open(f"/proc/self/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in ("mnt", "uts")]
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    uts = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        mount_code(pid, code_dir, target)
        _check(_libc.setns(uts, CLONE_NEWUTS), "setns uts")
        socket.sethostname(hostname)
    finally:
        if _libc.setns(own[0], CLONE_NEWNS) != 0 or _libc.setns(own[1], CLONE_NEWUTS) != 0:
            os.write(2, b"funclet: the zygote could not return to its own namespaces\n")
            os._exit(70)
        os.fchdir(cwd)
        for fd in (*own, cwd, uts):
            os.close(fd)


def mount_code(pid: int, code_dir: str, target: str) -> None:
    """Mount ``code_dir`` read-only at ``target`` inside the mount namespace of ``pid``,
    leaving the caller in that namespace."""
    tree = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, code_dir.encode(),
                         _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC)
    _check(0 if tree >= 0 else -1, "open_tree")  # a file descriptor on success
    try:
        attr = _MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV, 0, 0, 0)
        _check(_libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH | _AT_RECURSIVE,
                             ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")
        namespace = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(namespace, CLONE_NEWNS), "setns")
            _check(_libc.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, target.encode(),
                                 _MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
        finally:
            os.close(namespace)
    finally:
        os.close(tree)
