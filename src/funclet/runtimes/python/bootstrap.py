"""The Python runtime: a zygote that forks instances, and the instance loop.

Started by the platform as ``python -I -S -B bootstrap.py zygote FD PARENT_PID``:
isolated mode and no ``site``, so neither the platform's packages nor any
site-packages are on the path; the function sees the standard library, its own
code and what its zip vendors. Only the standard library is imported here.

Zygote: preloads common modules once, then for each ``spawn`` packet on its
control socket forks a child that becomes one instance, and reports the pid
(``spawned``) and, later, the exit status (``exited``).

Instance: imports the handler module and runs the initializer (the end of the
cold start), says ``ready``, then serves ``invoke`` and ``pre_stop`` frames.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_module(name: str, path: str) -> ModuleType:
    """A platform module that runs inside instances, by file path (never by package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = _load_module("_funclet_protocol", os.path.join(os.path.dirname(_HERE), "protocol.py"))
isolate = _load_module("_funclet_isolate",
                os.path.join(os.path.dirname(os.path.dirname(_HERE)), "sandbox", "isolate.py"))
webapp = _load_module("_funclet_webapp", os.path.join(_HERE, "webapp.py"))
# Loaded now, in the zygote: inside the sandbox the platform's files may be out of sight.
custom = _load_module("_funclet_custom", os.path.join(_HERE, "custom.py"))

# Lambda's hooks around snapshots, importable by every function (``import snapshot_restore_py``).
hooks = sys.modules["snapshot_restore_py"] = _load_module(
    "snapshot_restore_py", os.path.join(_HERE, "snapshot_restore_py.py"))

# Preloaded once in the zygote so that an instance's imports of them are free.
_PRELOAD = (
    "json logging traceback threading datetime time base64 hashlib hmac re random uuid "
    "collections functools itertools dataclasses typing decimal io urllib.parse "
    "urllib.request http.client ssl email.utils tempfile shutil struct zlib gzip "
    "importlib importlib.util ctypes selectors math string textwrap contextlib"
).split()

_LOG_LIMIT = 1024 * 1024
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _die_with_parent(parent_pid: int, subreaper: bool = False) -> None:
    """Ask the kernel for SIGKILL when the parent dies, so nothing outlives the platform;
    as a subreaper, orphans of the instances are reparented here and reaped."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if subreaper:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


# ---------------------------------------------------------------- zygote


def zygote(control_fd: int, parent_pid: int) -> None:
    import json
    import selectors

    _die_with_parent(parent_pid, subreaper=True)
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    control.send(json.dumps({"type": "zygote_ready", "pid": os.getpid()}).encode())
    me = os.getpid()
    cgroups: dict[int, list[str]] = {}  # pid -> its cgroup folders, removed once it is reaped
    while True:
        for key, _ in sel.select(timeout=1.0 if cgroups.get(0) else None):
            if key.fileobj is wake_r:
                os.read(wake_r, 4096)
                _reap(control, cgroups)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(control, 1 << 20, 4)
            except ConnectionResetError:  # closed with our messages unread: stopping too
                data, fds = b"", []
            if not data:  # the platform is stopping: end every instance, leave nothing
                _end_all(cgroups)
                os._exit(0)
            msg = json.loads(data)
            if msg["type"] == "probe":
                found = isolate.probe(msg["box"])
                control.send(json.dumps({"type": "probed", "found": found}).encode())
                continue
            if msg["type"] == "renamed":  # the platform renamed an instance's cgroups
                if msg["pid"] in cgroups:
                    cgroups[msg["pid"]] = msg["paths"]
                else:  # reaped already: its folders go with the others'
                    cgroups.setdefault(0, []).extend(msg["paths"])
                continue
            if msg["type"] == "plug":  # an instance forked from a snapshot: its network
                error = None
                try:
                    if len(fds) != 1:
                        raise OSError("no network namespace came with it")
                    isolate.plug_into(fds[0], msg["plug"])
                except OSError as exc:
                    error = str(exc)
                finally:
                    for fd in fds:
                        os.close(fd)
                control.send(json.dumps({"type": "plugged", "sid": msg["sid"],
                                         "error": error}).encode())
                continue
            if msg["type"] == "specialize":
                error = _specialize(cgroups, msg["pid"], msg["mounts"], msg["hostname"],
                                    msg.get("unplug"))
                control.send(json.dumps({"type": "specialized", "sid": msg["sid"],
                                         "error": error}).encode())
                continue
            spec = msg["spec"]
            # PID 1 of a PID namespace made here: the instance is our own child, and no
            # process of its own stands outside for it (its memory was a tenth of an idle
            # instance's). Not for a runtime that changes its uid itself (see isolate).
            pid_1 = bool((spec.get("sandbox") or {}).get("namespaces")) and not (
                spec.get("prestarted") and "exec" in spec)
            own_ns = None
            if pid_1:
                try:
                    own_ns = isolate.new_pid_namespace()
                except OSError:  # (the instance unshares it itself, and says if that fails)
                    pid_1 = False
            pid = -1
            try:
                pid = os.fork()
            finally:
                if own_ns is not None:
                    if pid == 0:
                        os.close(own_ns)
                    else:
                        isolate.back_to_pid_namespace(own_ns)
            if pid == 0:
                sel.close()
                control.close()
                os.close(wake_r)
                os.close(wake_w)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.setpgid(0, 0)
                _die_with_parent(0 if pid_1 else me)  # (a parent outside shows as 0)
                # Nothing of the zygote's: its stdout/stderr are the runtime's log, in the
                # data folder. stderr stays until user code starts (start-up failures).
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.close(devnull)
                try:
                    os.set_inheritable(fds[0], False)  # not into the user's subprocesses
                    _isolated_instance(spec, socket.socket(fileno=fds[0]), pid_1)
                except BaseException:
                    import traceback

                    traceback.print_exc(file=sys.__stderr__)  # into the runtime's log
                    os._exit(70)
                os._exit(0)
            for fd in fds:
                os.close(fd)
            box = spec.get("sandbox") or {}
            cgroups[pid] = list(box.get("cgroups", {}).values())
            control.send(json.dumps({"type": "spawned", "sid": msg["sid"], "pid": pid}).encode())
        if cgroups.get(0):
            _remove_cgroups(cgroups)


def _specialize(cgroups: dict[int, list[str]], pid: int, mounts: list[list[str]],
                hostname: str, unplug: str | None) -> str | None:
    """Put a function's code into a pre-started instance and give it its name (the zygote
    enters the instance's namespaces and returns); ``unplug``: delete its veth (a
    function without internet access). The error, if it failed. ``pid`` must be a live
    instance of this zygote's: a pid that was reaped could be another's."""
    if pid not in cgroups:
        return f"pid {pid} is not a running instance"
    try:
        isolate.specialize(pid, [(folder, target) for folder, target in mounts], hostname)
        if unplug:
            isolate.unplug(unplug)
    except OSError as exc:
        return str(exc)
    return None


def _reap(control: socket.socket, cgroups: dict[int, list[str]]) -> None:
    import json

    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid not in cgroups:
            continue  # an orphan of an instance, reparented to us: reaped, nothing to say
        code = os.waitstatus_to_exitcode(status)
        paths = cgroups.pop(pid, [])
        oom = any(isolate.oom_kills(path) for path in paths)
        cgroups.setdefault(0, []).extend(paths)  # 0: folders waiting to be removed
        try:
            control.send(json.dumps({"type": "exited", "pid": pid, "code": code,
                                     "oom": oom}).encode())
        except OSError:
            pass  # the platform is gone or going: nobody to tell
    _remove_cgroups(cgroups)


def _end_all(cgroups: dict[int, list[str]]) -> None:
    """Kill every instance still running, reap it, and remove its cgroups."""
    import time

    for pid in [p for p in cgroups if p]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for _ in range(150):
        while True:  # orphans of the killed instances keep arriving to be reaped
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            cgroups.setdefault(0, []).extend(cgroups.pop(pid, []))
        _remove_cgroups(cgroups)
        if not cgroups.get(0) and not [p for p in cgroups if p]:
            return
        time.sleep(0.02)


def _remove_cgroups(cgroups: dict[int, list[str]]) -> None:
    """Remove the cgroup folders of reaped instances; busy ones are tried again later."""
    left = []
    for path in cgroups.pop(0, []):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(path)
    if left:
        cgroups[0] = left


# ---------------------------------------------------------------- instance


def _isolated_instance(spec: dict[str, Any], sock: socket.socket, pid_1: bool = False) -> None:
    """Enter the sandbox (when the spec has one), then become the instance. ``pid_1``: the
    zygote made its PID namespace."""
    box = spec.get("sandbox")
    if box:
        # The interpreter's files, and the program another language's instance becomes.
        runtime_dirs = {os.path.dirname(a) for a in spec.get("exec", [])[1:]
                        if a.startswith("/") and os.path.isfile(a)}
        box = dict(box, expose=sorted({sys.base_prefix, sys.base_exec_prefix,
                                       *runtime_dirs}))
        try:
            isolate.enter(box, [sock.fileno()], pid_1)
        except OSError as exc:
            sock.sendall(protocol.encode({"type": protocol.INIT_ERROR, "log": "", "error": {
                "errorMessage": f"The instance's sandbox could not be set up: {exc}",
                "errorType": "Runtime.SandboxError", "stackTrace": []}}))
            os._exit(1)
        spec = dict(spec, codeDir=box["codeMount"])
    if spec.get("prestarted") and "exec" not in spec:
        spec = _specialization(sock)
    if "exec" in spec:
        _become(spec, sock)
    if "adapter" in spec:
        _adapt(spec, sock)
    _instance(spec, sock)


def _specialization(sock: socket.socket) -> dict[str, Any]:
    """A Python instance started ahead: rehearse, say so, wait for its function's spec;
    mount the function's code (and layers) that comes with it, and take the function's
    hostname and uid (the platform has set its limits meanwhile)."""
    _rehearse()
    sock.sendall(protocol.encode({"type": protocol.PRESTARTED}))
    while True:
        header, fds = _read_frame_with_fds(sock)
        if header["type"] != protocol.SPECIALIZE:
            for fd in fds:
                os.close(fd)
            continue
        spec: dict[str, Any] = header["spec"]
        mounts = header.get("mounts")
        if mounts is not None:
            try:
                if len(fds) != len(mounts):
                    raise OSError(f"{len(fds)} mounts came for {len(mounts)} targets")
                isolate.settle([(fd, mounts[i]) for i, fd in enumerate(fds)],
                               header["hostname"], header.get("offline", False))
            except OSError as exc:
                sock.sendall(protocol.encode({"type": protocol.INIT_ERROR, "log": "", "error": {
                    "errorMessage": f"The function's code could not be mounted: {exc}",
                    "errorType": "Runtime.SandboxError", "stackTrace": []}}))
                os._exit(1)
        isolate.become(spec.get("uid"), spec.get("gid"))
        return spec


def _read_frame_with_fds(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One frame (no body) and the descriptors sent with its first bytes; exits at end
    of stream."""
    import json

    data, fds, _, _ = socket.recv_fds(sock, protocol.PREFIX.size, 8)
    if not data:
        os._exit(0)
    data += _read_exactly(sock, protocol.PREFIX.size - len(data))
    header_len, body_len = protocol.PREFIX.unpack(data)
    payload = _read_exactly(sock, header_len + body_len)
    return json.loads(payload[:header_len]), fds


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            os._exit(0)
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


_REHEARSAL = "_funclet_rehearsal"


def _rehearse() -> None:
    """Run a cold start and an invocation of each kind (FC's, Lambda's) of a hello
    function of the runtime's own, then forget it: an instance started ahead does, while
    it waits, the first-time work of its function's cold start (the pages that the
    zygote's memory shares copied, fresh ones touched, the import system's caches warmed),
    which would otherwise come on the cold start's path (some 340 page faults, ~1 ms).
    What it sets up the real one sets up again; what it adds it takes away."""
    import shutil
    import tempfile
    import time

    folder = tempfile.mkdtemp(prefix=".funclet-rehearsal-")
    saved_out, saved_err, saved_fallback = sys.stdout, sys.stderr, _Capture.fallback
    ours, theirs = socket.socketpair()
    try:
        with open(os.path.join(folder, f"{_REHEARSAL}.py"), "w") as f:
            f.write("def handler(event, context):\n    return 'hello'\n")
        sys.path.insert(0, folder)
        _load(f"{_REHEARSAL}.handler", "Handler")  # raises here, never in initialise's exit
        for semantics in ("fc", "lambda"):
            spec: dict[str, Any] = {
                "handler": f"{_REHEARSAL}.handler", "region": "", "accountId": "",
                "functionName": _REHEARSAL, "semantics": semantics, "env": {}}
            runtime = _Runtime(spec, ours)
            runtime.initialise(time.monotonic())
            theirs.sendall(protocol.encode({"type": protocol.INVOKE, "id": "rehearsal",
                                            "deadline": time.time() * 1000 + 1000}, b"{}"))
            frame = protocol.read_frame(ours)
            assert frame is not None
            runtime.invoke(*frame)
            theirs.recv(65536)
    except Exception:  # a rehearsal that fails costs the real cold start its first time
        pass
    finally:
        sys.stdout, sys.stderr, _Capture.fallback = saved_out, saved_err, saved_fallback
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        sys.path_importer_cache.pop(folder, None)
        sys.modules.pop(_REHEARSAL, None)
        ours.close()
        theirs.close()
        shutil.rmtree(folder, ignore_errors=True)


def _adapt(spec: dict[str, Any], sock: socket.socket) -> None:
    """A custom runtime: this process drives the user's program (see custom.py)."""
    os.chdir(spec["codeDir"])
    kind = custom.LambdaRuntime if spec["adapter"] == "lambda" else custom.HttpServerRuntime
    kind(spec, sock, protocol, webapp).run()
    os._exit(0)


def _become(spec: dict[str, Any], sock: socket.socket) -> None:
    """An instance of another language: exec its runtime program, with the instance's
    socket on fd 3 and the spec (JSON) readable on fd 4. stderr stays the runtime log
    until the program takes over (its start-up failures land there)."""
    import json

    data = json.dumps(spec).encode()
    read, write = os.pipe()
    if len(data) > 60_000:  # over a pipe's buffer: write it from a child
        if os.fork() == 0:
            os.close(read)
            os.write(write, data)
            os._exit(0)
    else:
        os.write(write, data)
    os.close(write)
    high_sock, high_read = os.dup(sock.fileno()), os.dup(read)
    os.dup2(high_sock, 3)
    os.dup2(high_read, 4)
    for fd in (high_sock, high_read, read, sock.detach()):
        if fd not in (3, 4):
            os.close(fd)
    os.chdir(spec["codeDir"])
    argv = spec["exec"]
    os.execve(argv[0], argv, {**spec["env"], "FUNCLET_RUNTIME_FDS": "3,4"})


def _instance(spec: dict[str, Any], sock: socket.socket) -> None:
    import time

    started = time.monotonic()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # from here on, the user's code runs
    os.close(devnull)
    code_dir = spec["codeDir"]
    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    if spec.get("optDir"):  # its layers: after the code, before the runtime's own
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        sys.path[1:1] = [f"{spec['optDir']}/python",
                         f"{spec['optDir']}/python/lib/{version}/site-packages"]
    sys.dont_write_bytecode = True
    os.environ.clear()
    os.environ.update(spec["env"])
    if spec.get("semantics") == "lambda":
        os.environ["LAMBDA_TASK_ROOT"] = code_dir
    runtime = _Runtime(spec, sock)
    runtime.initialise(started)
    if spec.get("template"):
        _serve_template(runtime)
    runtime.serve()


# ---------------------------------------------------------------- snapshots


def _serve_template(runtime: _Runtime) -> None:
    """A template: the function's imports and initializer have run (and its
    before-snapshot hooks); each ``fork`` frame, with the new instance's socket and
    control socket, forks an instance of this memory (``_restored``). Forked instances
    are reaped by the kernel (SIGCHLD ignored); the template ends at end of stream."""
    import gc

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # The initialised heap out of the collector's sight: a forked instance's collections
    # neither scan it nor copy its pages (copy-on-write).
    gc.collect()
    gc.freeze()
    while True:
        header, fds = _read_frame_with_fds(runtime.sock)
        if header["type"] != protocol.FORK or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            try:
                _restored(runtime, header, fds)
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)


def _restored(runtime: _Runtime, header: dict[str, Any], fds: list[int]) -> None:
    """A new instance forked from the template, ahead of the cold start that takes it:
    isolated afresh (``isolate.restore``); once taken (``specialize``), given its own
    identity (hostname, instance id, environment), its capabilities dropped, random state
    reseeded, its after-restore hooks run; then it serves like any instance."""
    import random
    import tempfile
    import time

    started = time.monotonic()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    runtime.sock.close()
    for fd in fds:
        os.set_inheritable(fd, False)
    channel, control = socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1])
    runtime.sock = channel
    try:
        isolate.restore(header["box"], control, [channel.fileno()])
    except OSError as exc:  # said where the platform listens: before or after the hello
        with contextlib.suppress(OSError):
            control.send(b"e" + str(exc).encode()[:1000])
        with contextlib.suppress(OSError):
            runtime.send({"type": protocol.INIT_ERROR, "log": "", "error": {
                "errorMessage": f"The instance could not be isolated: {exc}",
                "errorType": "Runtime.SandboxError", "stackTrace": []}})
        os._exit(1)
    control.close()
    isolate.prefault(header["box"].get("warm") or [])  # in its own cgroup by now
    while True:  # forked ahead: until a cold start takes it
        header, _ = _read_frame_with_fds(channel)
        if header["type"] == protocol.SPECIALIZE:
            break
    if header.get("hostname"):
        isolate.seal(header["hostname"])
    spec = runtime.spec = dict(runtime.spec, **header["spec"])
    os.environ.clear()
    os.environ.update(spec["env"])
    if spec.get("semantics") == "lambda":
        os.environ["LAMBDA_TASK_ROOT"] = spec["codeDir"]
    # What funclet knows to carry state that a copy must not share: reseeded.
    random.seed()
    tempfile._name_sequence = None  # type: ignore[attr-defined]
    log = _Capture.fallback = _Log()
    for func, args, kwargs in hooks.get_after_restore():
        try:
            func(*args, **kwargs)
        except Exception as exc:
            runtime.send({"type": protocol.INIT_ERROR, "log": log.text(),
                          "error": _user_error(exc, "After-restore hook failed: ")})
            os._exit(0)
    _Capture.fallback = _Log()
    runtime.send({"type": protocol.READY, "initMs": (time.monotonic() - started) * 1000,
                  "log": log.text(), "handlerKind": runtime.kind})
    runtime.serve()
    os._exit(0)


class _Credentials:
    def __init__(self) -> None:
        self.access_key_id = ""
        self.access_key_secret = ""
        self.security_token = ""


class _FunctionMeta:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.name = spec["functionName"]
        self.handler = spec["handler"]
        self.memory = spec["memorySize"]
        self.timeout = spec["timeout"]
        init = spec.get("initializer") or {}
        self.initializer = init.get("handler", "")
        self.initialization_timeout = init.get("timeout", 0)
        self.qualifier = "LATEST"
        self.version_id = spec.get("versionId", "LATEST")


class _Service:
    """``context.service``, as FC gives it to python3.10 and older: the function's
    service (FC 3.0 has none: the function's name; a 2.0 function ``svc$fn``: ``svc``),
    its log config, its version."""

    def __init__(self, spec: dict[str, Any], qualifier: str) -> None:
        self.name = spec["functionName"].split("$", 1)[0]
        self.log_project = spec.get("logProject", "")
        self.log_store = spec.get("logStore", "")
        self.qualifier = qualifier
        self.version_id = spec.get("versionId", "LATEST")


class _Tracing:
    """``context.tracing`` (python3.10 and older): no tracing backend here."""

    def __init__(self) -> None:
        self.open_tracing_span_context = None
        self.open_tracing_span_baggages: dict[str, str] = {}
        self.jaeger_endpoint = None


class Context:
    """What a handler receives beside its event (FC's Python context): the fields of
    every runtime version (python3.12's ``function.qualifier`` and ``log_project``,
    older ones' ``service`` and ``tracing``)."""

    def __init__(
        self, request_id: str, spec: dict[str, Any], deadline_ms: float, logger: Any,
        qualifier: str = "LATEST",
    ) -> None:
        self.request_id = request_id
        self.function = _FunctionMeta(spec)
        self.function.qualifier = qualifier
        self.function.version_id = spec.get("versionId", "LATEST")
        self.service = _Service(spec, qualifier)
        self.tracing = _Tracing()
        self.log_project = spec.get("logProject", "")
        self.log_store = spec.get("logStore", "")
        self.region = spec["region"]
        self.account_id = spec["accountId"]
        self.credentials = _Credentials()
        self.logger = logger
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int(self._deadline_ms - time.time() * 1000))


class _Identity:
    """``context.identity`` (Amazon Cognito's): none here."""

    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None


class _Client:
    """``context.client_context.client`` (a mobile app's, as the caller said)."""

    def __init__(self, given: dict[str, Any]) -> None:
        self.installation_id = given.get("installation_id")
        self.app_title = given.get("app_title")
        self.app_version_name = given.get("app_version_name")
        self.app_version_code = given.get("app_version_code")
        self.app_package_name = given.get("app_package_name")


class _ClientContext:
    """``context.client_context``: what the caller's ``X-Amz-Client-Context`` held."""

    def __init__(self, given: dict[str, Any]) -> None:
        client = given.get("client")
        self.client = _Client(client) if isinstance(client, dict) else None
        self.custom = given.get("custom")
        self.env = given.get("env")


class LambdaContext:
    """Lambda's Python context, for a function created through Lambda's API (the
    fields awslambdaric gives)."""

    def __init__(self, request_id: str, spec: dict[str, Any], deadline_ms: float,
                 qualifier: str = "LATEST", client_context: str = "") -> None:
        version = spec.get("versionId", "LATEST")
        arn = (f"arn:aws:lambda:{spec['region']}:{spec['accountId']}:function:"
               f"{spec['functionName']}")
        self.aws_request_id = request_id
        self.function_name = spec["functionName"]
        self.function_version = "$LATEST" if version == "LATEST" else version
        self.invoked_function_arn = arn if qualifier == "LATEST" else f"{arn}:{qualifier}"
        self.memory_limit_in_mb = str(spec["memorySize"])
        self.log_group_name = f"/aws/lambda/{spec['functionName']}"
        self.log_stream_name = spec["env"].get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = _Identity()
        self.client_context = None
        if client_context:
            import json

            given = json.loads(client_context)
            self.client_context = _ClientContext(given) if isinstance(given, dict) else None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int(self._deadline_ms - time.time() * 1000))


class _Log:
    """One invocation's captured output, bounded."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        if self.size >= _LOG_LIMIT:
            return
        self.size += len(text)
        if self.size >= _LOG_LIMIT:
            text = text[: max(0, _LOG_LIMIT - (self.size - len(text)))]
            text += "\n[funclet: log of this invocation cut at 1 MiB]\n"
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


class _Capture:
    """Stands in for sys.stdout/sys.stderr: routes writes to the current invocation's log.

    A thread with no invocation of its own (one the user started) writes to
    ``fallback``: the log of the invocation that started last.
    """

    fallback = _Log()
    encoding = "utf-8"
    errors = "replace"

    def __init__(self, current: threading.local) -> None:
        self._current = current

    def write(self, text: str | bytes) -> int:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        log = getattr(self._current, "log", None) or _Capture.fallback
        log.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("captured stream has no file descriptor")

    def writable(self) -> bool:
        return True


class _Runtime:
    """One instance's runtime: loads the handler, then answers frames until EOF."""

    def __init__(self, spec: dict[str, Any], sock: socket.socket) -> None:
        import logging

        self.spec = spec
        self.sock = sock
        self.send_lock = threading.Lock()
        self.current = threading.local()
        sys.stdout = _Capture(self.current)
        sys.stderr = _Capture(self.current)
        current = self.current

        class _RequestId(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.request_id = getattr(current, "request_id", "")
                return True

        class _Formatter(logging.Formatter):
            def formatTime(  # noqa: N802
                self, record: logging.LogRecord, datefmt: str | None = None
            ) -> str:
                import time

                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                return f"{stamp}.{int(record.msecs):03d}Z"

        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(_RequestId())
        handler.setFormatter(_Formatter("%(asctime)s %(request_id)s [%(levelname)s] %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        self.logger = root

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        frame = protocol.encode(header, body)
        with self.send_lock:
            self.sock.sendall(frame)

    # -- cold start ---------------------------------------------------

    def initialise(self, started: float) -> None:
        import time

        spec = self.spec
        request_id = spec.get("requestId", "")
        log = _Capture.fallback
        try:
            self.handler = _load(spec["handler"], "Handler")
            self.kind = webapp.kind_of(self.handler)
            init = spec.get("initializer")
            pre_stop = spec.get("preStop")
            self.pre_stop = _load(pre_stop["handler"], "PreStop handler") if pre_stop else None
            if init:
                initializer = _load(init["handler"], "Initializer")
                self.send({"type": protocol.INITIALIZING})
                log.write(f"FC Initialize Start RequestId: {request_id}\n")
                self.current.request_id = request_id
                try:
                    ctx = Context(request_id, spec, time.time() * 1000 + init["timeout"] * 1000,
                                  self.logger)
                    initializer(ctx)
                except Exception as exc:
                    raise _Failure(_user_error(exc, "Initializer failed: ")) from None
                finally:
                    log.write(f"FC Initialize End RequestId: {request_id}\n")
            if spec.get("template"):  # the state a snapshot keeps is there: its hooks
                for func, args, kwargs in hooks.get_before_snapshot():
                    try:
                        func(*args, **kwargs)
                    except Exception as exc:
                        raise _Failure(_user_error(exc, "Before-snapshot hook failed: ")) \
                            from None
        except _Failure as failure:
            self.send({"type": protocol.INIT_ERROR, "error": failure.error, "log": log.text()})
            os._exit(0)
        init_ms = (time.monotonic() - started) * 1000
        _Capture.fallback = _Log()
        self.send({"type": protocol.READY, "initMs": init_ms, "log": log.text(),
                   "handlerKind": self.kind})

    # -- warm loop ----------------------------------------------------

    def serve(self) -> None:
        """Answer frames until the platform closes the socket.

        With instance concurrency above 1, handlers run on a thread pool of that size,
        each thread with its own captured log; otherwise inline, on this thread.
        """
        import time

        run: Callable[..., Any] = lambda fn, *args: fn(*args)  # noqa: E731
        concurrency = self.spec.get("instanceConcurrency", 1)
        # A web app reads its request body while this thread receives it: never inline.
        if concurrency > 1 or self.kind != webapp.EVENT:
            from concurrent.futures import ThreadPoolExecutor

            run = ThreadPoolExecutor(concurrency, thread_name_prefix="handler").submit
        self.bodies: dict[str, Any] = {}
        while True:
            frame = protocol.read_frame(self.sock)
            if frame is None:
                return
            header, body = frame
            kind = header["type"]
            if kind == protocol.INVOKE:
                if "deadlineIn" in header:  # sent ahead, behind the spec: from now
                    header["deadline"] = time.time() * 1000 + header.pop("deadlineIn")
                if "http" in header:
                    self.bodies[header["id"]] = webapp.Body()
                run(self.invoke, header, body)
            elif kind == protocol.BODY:
                request_body = self.bodies.get(header["id"])
                if request_body is not None:
                    request_body.put(body, header.get("more", False))
            elif kind == protocol.PRE_STOP:
                self.run_pre_stop(header)

    def invoke(self, header: dict[str, Any], event: bytes) -> None:
        if self.spec.get("semantics") == "lambda" and "http" not in header:
            self.invoke_lambda(header, event)
            return
        request_id = header["id"]
        log = _Log()
        log.write(f"FC Invoke Start RequestId: {request_id}\n")
        current = self.current
        current.log = log
        current.request_id = request_id
        _Capture.fallback = log
        ctx = Context(request_id, self.spec, header["deadline"], self.logger,
                      header.get("qualifier", "LATEST"))
        try:
            if "http" in header:
                self.serve_http(header, ctx)
                body = b""
            else:
                body = _to_bytes(self.handler(event, ctx))
        except Exception as exc:
            error = _user_error(exc)
            log.write(f"FC Invoke End RequestId: {request_id}\n")
            current.log = None
            self.send({"type": protocol.ERROR, "id": request_id, "error": error,
                       "log": log.text()})
            return
        log.write(f"FC Invoke End RequestId: {request_id}\n")
        current.log = None
        self.send({"type": protocol.RESULT, "id": request_id, "log": log.text()}, body)

    def invoke_lambda(self, header: dict[str, Any], event: bytes) -> None:
        """Lambda's way: the event JSON-decoded (an event that is not JSON, from a
        trigger, as its text), Lambda's context, the result JSON-encoded; Lambda's
        START and END lines around the log (the platform adds REPORT)."""
        import json

        request_id = header["id"]
        version = self.spec.get("versionId", "LATEST")
        log = _Log()
        log.write(f"START RequestId: {request_id} Version: "
                  f"{'$LATEST' if version == 'LATEST' else version}\n")
        current = self.current
        current.log = log
        current.request_id = request_id
        _Capture.fallback = log
        ctx = LambdaContext(request_id, self.spec, header["deadline"],
                            header.get("qualifier", "LATEST"), header.get("clientContext", ""))
        try:
            try:
                decoded = json.loads(event) if event.strip() else {}
            except ValueError:
                decoded = event.decode("utf-8", "replace")
            result = self.handler(decoded, ctx)
            try:
                body = json.dumps(result).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise _Failure({"errorMessage": f"Unable to marshal response: {exc}",
                                "errorType": "Runtime.MarshalError",
                                "stackTrace": []}) from None
        except Exception as exc:
            error = exc.error if isinstance(exc, _Failure) else _user_error(exc)
            log.write(f"END RequestId: {request_id}\n")
            current.log = None
            self.send({"type": protocol.ERROR, "id": request_id, "error": error,
                       "log": log.text()})
            return
        log.write(f"END RequestId: {request_id}\n")
        current.log = None
        self.send({"type": protocol.RESULT, "id": request_id, "log": log.text()}, body)

    def serve_http(self, header: dict[str, Any], ctx: Context) -> None:
        """A web app's request: its response goes out as it is produced."""
        request_id = header["id"]
        body = self.bodies[request_id]
        try:
            if self.kind == webapp.WSGI:
                webapp.serve_wsgi(self.handler, header["http"], body, request_id, ctx,
                                  self.send)
            elif self.kind == webapp.ASGI:
                webapp.serve_asgi(self.handler, header["http"], body, request_id, self.send)
            else:
                raise TypeError("the handler is not a WSGI or ASGI application")
        finally:
            del self.bodies[request_id]

    def run_pre_stop(self, header: dict[str, Any]) -> None:
        log = _Log()
        request_id = header.get("id", "")
        self.current.log = log
        self.current.request_id = request_id
        error = None
        if self.pre_stop is not None:
            log.write(f"FC PreStop Start RequestId: {request_id}\n")
            ctx = Context(request_id, self.spec, header["deadline"], self.logger,
                      header.get("qualifier", "LATEST"))
            try:
                self.pre_stop(ctx)
            except Exception as exc:
                error = _user_error(exc)
            log.write(f"FC PreStop End RequestId: {request_id}\n")
        self.current.log = None
        self.send({"type": protocol.PRE_STOP_DONE, "error": error, "log": log.text()})


class _Failure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def _load(handler: str, what: str) -> Callable[..., Any]:
    """Import ``module.function`` from the code package, or fail with a stable error code."""
    import importlib

    module_name, _, attr = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise _Failure(_user_error(exc, f"Syntax error in module '{module_name}': ",
                                   "Runtime.UserCodeSyntaxError")) from None
    except Exception as exc:
        raise _Failure(_user_error(exc, f"Unable to import module '{module_name}': ",
                                   "Runtime.ImportModuleError")) from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise _Failure({
            "errorMessage": f"{what} '{attr}' missing on module '{module_name}'",
            "errorType": "Runtime.HandlerNotFound",
            "stackTrace": [],
        })
    return func  # type: ignore[no-any-return]


def _user_error(
    exc: BaseException, prefix: str = "", error_type: str | None = None
) -> dict[str, Any]:
    """FC's error body, with the runtime's own frames removed from the trace."""
    import importlib
    import traceback

    machinery = os.path.dirname(importlib.__file__) + os.sep  # import_module's frames
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((_HERE, machinery))
              and "<frozen importlib" not in f.filename]
    stack = traceback.format_list(frames)
    if isinstance(exc, SyntaxError) and exc.filename:
        code = (exc.text or "").strip()
        stack.append(f'  File "{exc.filename}", line {exc.lineno}\n    {code}\n')
    message = str(exc)
    return {
        "errorMessage": prefix + (message or type(exc).__name__),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": stack,
    }


def _to_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    import json

    return json.dumps(value).encode("utf-8")


if __name__ == "__main__":
    if sys.argv[1] == "zygote":
        zygote(int(sys.argv[2]), int(sys.argv[3]))
