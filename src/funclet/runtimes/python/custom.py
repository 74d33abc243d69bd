"""Custom runtimes inside an instance: the user's own server or program, driven by a
small adapter that speaks funclet's frame protocol on the instance socket.

- ``HttpServerRuntime`` — FC's custom runtime (``custom``, ``custom.debian10/11/12``):
  starts ``customRuntimeConfig.command + args`` with ``FC_SERVER_PORT``, waits for the
  port, then calls it as FC does: ``POST /invoke`` for events, ``POST /initialize`` and
  ``GET /pre-stop`` for the hooks, and HTTP trigger requests forwarded as they are.
- ``LambdaRuntime`` — the Lambda Runtime API (``custom.lambda``, ``provided``): serves
  ``/2018-06-01/runtime/...`` on loopback and starts the package's ``bootstrap`` with
  ``AWS_LAMBDA_RUNTIME_API``; AWS's own runtime clients run unchanged.

Runs inside instances: the standard library only, loaded by file path.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer",
               "proxy-connection"}
_OUTPUT_LIMIT = 64 * 1024
Send = Callable[[dict[str, Any], bytes], None]


class _Output:
    """The program's stdout and stderr: to the invocation running (when exactly one
    runs), else kept for the next start-up error or the instance's log.

    Every read of the pipe, and the attribution of what it read, happens under one
    lock, and ``end`` first takes what the pipe still holds: output the program wrote
    before it answered is in the pipe or already attributed, never in between.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream  # kept open: the pipe is read through its descriptor
        self._fd = stream.fileno()
        os.set_blocking(self._fd, False)
        self._lock = threading.Lock()
        self._current: dict[str, list[bytes]] = {}
        self._tail: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        more = True
        while more:
            select.select([self._fd], [], [])
            with self._lock:
                more = self._take()

    def _take(self) -> bool:
        """Move what the pipe holds to its owner (the lock held); ``False`` at its end."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                return False
            if len(self._current) == 1:
                next(iter(self._current.values())).append(data)
            else:
                self._tail.append(data)
                while len(self._tail) > 1 and sum(map(len, self._tail)) > _OUTPUT_LIMIT:
                    self._tail.pop(0)

    def begin(self, request_id: str) -> None:
        with self._lock:
            self._current[request_id] = []

    def end(self, request_id: str, what: str = "Invoke") -> str:
        """The invocation's output, bracketed the way every runtime's log is."""
        with self._lock:
            self._take()  # output still in the pipe belongs to this answer
            text = b"".join(self._current.pop(request_id, [])).decode("utf-8", "replace")
        return (f"FC {what} Start RequestId: {request_id}\n{text}"
                f"FC {what} End RequestId: {request_id}\n")

    def tail(self) -> str:
        with self._lock:
            self._take()
            return b"".join(self._tail).decode("utf-8", "replace")


class _Adapter:
    """What both custom runtimes share: the program, its output, the frames."""

    def __init__(self, spec: dict[str, Any], sock: socket.socket, protocol: Any,
                 webapp: Any) -> None:
        self.spec = spec
        self.sock = sock
        self.protocol = protocol
        self.webapp = webapp  # its Body: a request body arriving in frames
        self.send_lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.output: _Output | None = None
        # The platform's init step allows the function's timeout; answer before it does.
        self.init_deadline = time.monotonic() + max(0.5, spec["timeout"] - 0.3)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        frame = self.protocol.encode(header, body)
        with self.send_lock:
            self.sock.sendall(frame)

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        env = {"PATH": _PATH, "HOME": "/tmp", **env}
        self.process = subprocess.Popen(
            argv, cwd=self.spec["codeDir"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=False)
        self.output = _Output(self.process.stdout)

    def init_error(self, message: str, error_type: str = "Runtime.InitError") -> None:
        out = self.output.tail() if self.output else ""
        self.send({"type": self.protocol.INIT_ERROR, "log": out, "error": {
            "errorMessage": message + (f"; its output:\n{out[-4000:]}" if out else ""),
            "errorType": error_type, "stackTrace": []}})
        self.stop_program()
        os._exit(0)

    def stop_program(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def exited(self) -> str | None:
        """Why the program is gone, if it is."""
        if self.process is None or self.process.poll() is None:
            return None
        return f"the program exited with code {self.process.returncode}"


# ------------------------------------------------------------------ FC's HTTP contract


class HttpServerRuntime(_Adapter):
    """FC's custom runtime: the function is an HTTP server (see the module docstring)."""

    def run(self) -> None:
        config = self.spec.get("customRuntime") or {}
        command = list(config.get("command") or []) + list(config.get("args") or [])
        if not command:
            command = _command_of(os.path.join(self.spec["codeDir"], "bootstrap"))
        self.port = self.spec["serverPort"]
        self.connections = threading.local()  # each worker thread keeps one alive
        env = dict(self.spec["env"], FC_SERVER_PORT=str(self.port),
                   FC_CUSTOM_LISTEN_PORT=str(self.port))
        try:
            self.start(command, env)
        except OSError as exc:
            self.init_error(f"The custom runtime's command {command} could not start: {exc}",
                            "Runtime.StartFailed")
        self._wait_for_port(command)
        init = self.spec.get("initializer")
        if init:
            self.send({"type": self.protocol.INITIALIZING})
            status, body, _ = self._call("POST", "/initialize", b"",
                                         self._fc_headers(self.spec.get("requestId", "")),
                                         init["timeout"])
            if status != 200:
                self.init_error(f"POST /initialize answered {status}: "
                                f"{body.decode('utf-8', 'replace')[:2000]}",
                                "Runtime.InitializerError")
        log = self.output.tail() if self.output else ""
        self.send({"type": self.protocol.READY, "initMs": 0, "log": log, "handlerKind": "http"})
        _serve(self)

    def _wait_for_port(self, command: list[str]) -> None:
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                pass
            if (why := self.exited()) is not None:
                self.init_error(f"The custom runtime's command {command} ended before it "
                                f"listened on port {self.port}: {why}")
            if time.monotonic() > self.init_deadline:
                self.init_error(f"The custom runtime's command {command} did not listen on "
                                f"port {self.port} (FC_SERVER_PORT) in time")
            time.sleep(0.005)

    def _fc_headers(self, request_id: str) -> dict[str, str]:
        spec = self.spec
        init = spec.get("initializer") or {}
        return {
            "x-fc-request-id": request_id,
            "x-fc-function-name": spec["functionName"],
            "x-fc-function-handler": spec["handler"],
            "x-fc-function-memory": str(spec["memorySize"]),
            "x-fc-function-timeout": str(spec["timeout"]),
            "x-fc-function-initializer": init.get("handler", ""),
            "x-fc-initialization-timeout": str(init.get("timeout", "")),
            "x-fc-region": spec["region"],
            "x-fc-account-id": spec["accountId"],
            "x-fc-qualifier": "LATEST",
            "x-fc-version-id": "LATEST",
            "x-fc-instance-id": spec["env"].get("FC_INSTANCE_ID", ""),
            "x-fc-access-key-id": "",
            "x-fc-access-key-secret": "",
            "x-fc-security-token": "",
        }

    def _call(self, method: str, path: str, body: bytes, headers: dict[str, str],
              timeout: float) -> tuple[int, bytes, dict[str, str]]:
        """One request on this thread's kept-alive connection (a new one if it broke)."""
        import http.client

        for attempt in (1, 2):
            conn = getattr(self.connections, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port)
                self.connections.conn = conn
            try:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    conn.close()
                    self.connections.conn = None
                return response.status, data, {k.lower(): v for k, v in
                                               response.getheaders()}
            except (ConnectionError, http.client.BadStatusLine) as exc:
                conn.close()
                self.connections.conn = None
                if fresh or attempt == 2:
                    raise exc
        raise AssertionError("unreachable")

    def invoke(self, header: dict[str, Any], event: bytes, body: Any) -> None:
        request_id = header["id"]
        assert self.output is not None
        self.output.begin(request_id)
        timeout = max(1.0, header["deadline"] / 1000 - time.time() + 1)
        try:
            if "http" in header:
                self._forward(header, body, timeout)
                status, error = 200, None
            else:
                headers = dict(self._fc_headers(request_id),
                               **{"content-type": "application/octet-stream"})
                status, out, got = self._call("POST", "/invoke", event, headers, timeout)
                status = int(got.get("x-fc-status", status))
                error = None if 200 <= status < 300 else (out, "x-fc-status" in got)
        except Exception as exc:  # the server broke the connection, or timed out
            log = self.output.end(request_id)
            self.send({"type": self.protocol.ERROR, "id": request_id, "log": log, "error": {
                "errorMessage": f"The custom runtime's server failed to answer: {exc}",
                "errorType": "Runtime.CustomRuntimeError", "stackTrace": []}})
            return
        log = self.output.end(request_id)
        if error is None:
            self.send({"type": self.protocol.RESULT, "id": request_id, "log": log},
                      b"" if "http" in header else out)
            return
        data, handled = error
        self.send({"type": self.protocol.ERROR, "id": request_id, "log": log,
                   "handled": handled, "error": _error_of(data, status)})

    def _forward(self, header: dict[str, Any], body: Any, timeout: float) -> None:
        """An HTTP trigger request, forwarded as it came; the answer streamed back."""
        import http.client

        request_id = header["id"]
        head = header["http"]
        path = head["rawPath"] + ("?" + head["query"] if head["query"] else "")
        sent = {k.lower() for k, _ in head["headers"]}
        # A body of unknown length goes on chunked, as it came; none, or a known length,
        # as it came too (a plain server need not decode chunks).
        chunked = "transfer-encoding" in sent and "content-length" not in sent
        headers = [(k, v) for k, v in head["headers"] if k.lower() not in _HOP_BY_HOP]
        names = {k.lower() for k, _ in headers}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(head["method"], path, skip_host="host" in names,
                            skip_accept_encoding=True)
            for k, v in [*headers, *self._fc_headers(request_id).items()]:
                conn.putheader(k, v)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            while (chunk := body.next_chunk()) is not None:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
            self.send({"type": self.protocol.HTTP_START, "id": request_id,
                       "status": response.status,
                       "headers": [[k, v] for k, v in response.getheaders()]})
            while data := response.read1(65536):
                self.send({"type": self.protocol.BODY, "id": request_id}, data)
        finally:
            conn.close()

    def pre_stop(self, header: dict[str, Any]) -> None:
        request_id = header.get("id", "")
        assert self.output is not None
        self.output.begin(request_id)
        error = None
        if self.spec.get("preStop"):
            try:
                status, out, _ = self._call("GET", "/pre-stop", b"",
                                            self._fc_headers(request_id),
                                            self.spec["preStop"]["timeout"])
                if status != 200:
                    error = _error_of(out, status)
            except Exception as exc:
                error = {"errorMessage": f"GET /pre-stop failed: {exc}",
                         "errorType": "Runtime.CustomRuntimeError", "stackTrace": []}
        self.send({"type": self.protocol.PRE_STOP_DONE, "error": error,
                   "log": self.output.end(request_id, "PreStop")})


def _error_of(data: bytes, status: int) -> dict[str, Any]:
    try:
        body = json.loads(data)
        if isinstance(body, dict) and "errorMessage" in body:
            return {"errorMessage": str(body["errorMessage"]),
                    "errorType": str(body.get("errorType", "CustomRuntimeError")),
                    "stackTrace": list(body.get("stackTrace") or [])}
    except ValueError:
        pass
    return {"errorMessage": data.decode("utf-8", "replace")[:4000] or f"HTTP {status}",
            "errorType": f"HTTP{status}", "stackTrace": []}


def _serve(adapter: HttpServerRuntime | LambdaRuntime) -> None:
    """Frames until the platform closes the socket; each invocation on its own thread."""
    from concurrent.futures import ThreadPoolExecutor

    protocol = adapter.protocol
    workers = ThreadPoolExecutor(max(1, adapter.spec.get("instanceConcurrency", 1)) + 1)
    bodies: dict[str, Any] = {}

    def run(header: dict[str, Any], event: bytes) -> None:
        try:
            adapter.invoke(header, event, bodies.get(header["id"]))
        finally:
            bodies.pop(header["id"], None)

    while True:
        frame = protocol.read_frame(adapter.sock)
        if frame is None:
            adapter.stop_program()
            os._exit(0)
        header, data = frame
        kind = header["type"]
        if kind == protocol.INVOKE:
            if "http" in header:
                bodies[header["id"]] = adapter.webapp.Body()
            workers.submit(run, header, data)
        elif kind == protocol.BODY:
            if (body := bodies.get(header["id"])) is not None:
                body.put(data, header.get("more", False))
        elif kind == protocol.PRE_STOP:
            adapter.pre_stop(header)


# ------------------------------------------------------------------ the Lambda Runtime API


class LambdaRuntime(_Adapter):
    """AWS Lambda's Runtime API for the package's ``bootstrap`` (module docstring)."""

    def run(self) -> None:
        from http.server import ThreadingHTTPServer

        self.pending: queue.Queue[tuple[dict[str, Any], bytes]] = queue.Queue()
        self.running: dict[str, threading.Event] = {}
        self.live: set[str] = set()  # invocations whose caller takes a stream
        self.ready = threading.Event()
        self.failed: dict[str, Any] | None = None
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        spec = self.spec
        env = dict(spec["env"], **{
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
            "_HANDLER": spec["handler"],
            "LAMBDA_TASK_ROOT": spec["codeDir"],
            "LAMBDA_RUNTIME_DIR": spec["codeDir"],
            "AWS_LAMBDA_FUNCTION_NAME": spec["functionName"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memorySize"]),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/funclet/{spec['functionName']}",
            "AWS_LAMBDA_LOG_STREAM_NAME": spec["env"].get("FC_INSTANCE_ID", ""),
            "AWS_REGION": spec["region"],
            "AWS_DEFAULT_REGION": spec["region"],
            "AWS_EXECUTION_ENV": "funclet_provided",
            "TZ": ":UTC",
        })
        bootstrap = os.path.join(spec["codeDir"], "bootstrap")
        try:
            self.start(_command_of(bootstrap), env)
        except OSError as exc:
            self.init_error(f"The package's bootstrap could not start: {exc} (it must be an "
                            "executable file at the root of the package)",
                            "Runtime.InvalidEntrypoint")
        while not self.ready.wait(0.005):
            if self.failed is not None:
                self.send({"type": self.protocol.INIT_ERROR, "error": self.failed,
                           "log": self.output.tail() if self.output else ""})
                self.stop_program()
                os._exit(0)
            if (why := self.exited()) is not None:
                self.init_error(f"The bootstrap ended before it asked for an invocation: {why}",
                                "Runtime.ExitError")
            if time.monotonic() > self.init_deadline:
                self.init_error("The bootstrap did not ask for an invocation in time")
        log = self.output.tail() if self.output else ""
        self.send({"type": self.protocol.READY, "initMs": 0, "log": log,
                   "handlerKind": "event"})
        threading.Thread(target=self._watch, daemon=True).start()
        _serve(self)

    def _watch(self) -> None:
        """The bootstrap ended (crashed, exited): the invocation it ran fails now, with
        what it printed, and the instance goes (not a wait for the timeout)."""
        assert self.process is not None
        self.process.wait()
        for request_id in list(self.running):
            self.answer(request_id, {"type": self.protocol.ERROR, "exiting": True, "error": {
                "errorMessage": "The bootstrap exited during the invocation "
                                f"(exit code {self.process.returncode})",
                "errorType": "Runtime.ExitError", "stackTrace": []}})
        os._exit(0)

    def invoke(self, header: dict[str, Any], event: bytes, body: Any) -> None:
        """Queue it for ``next``; one at a time, as a Lambda runtime works."""
        assert self.output is not None
        done = threading.Event()
        self.running[header["id"]] = done
        if header.get("stream"):
            self.live.add(header["id"])
        self.pending.put((header, event))
        done.wait()

    def stream(self, request_id: str, content_type: str, chunks: Any) -> dict[str, Any]:
        """A response the bootstrap streams (``Lambda-Runtime-Function-Response-Mode:
        streaming``): passed on as ``http_start`` and ``body`` frames when the caller
        takes a stream, else kept for the result. The header that answers it."""
        live = request_id in self.live
        kept: list[bytes] = []
        if live:
            self.send({"type": self.protocol.HTTP_START, "id": request_id, "status": 200,
                       "headers": [["content-type", content_type]]})
        for chunk in chunks:
            if not live:
                kept.append(chunk)
                continue
            for at in range(0, len(chunk), self.protocol.MAX_BODY_CHUNK):
                self.send({"type": self.protocol.BODY, "id": request_id},
                          chunk[at:at + self.protocol.MAX_BODY_CHUNK])
        return {"kept": b"".join(kept)}

    def answer(self, request_id: str, header: dict[str, Any], body: bytes = b"") -> bool:
        self.live.discard(request_id)
        done = self.running.pop(request_id, None)
        if done is None:
            return False
        assert self.output is not None
        self.send(dict(header, id=request_id, log=self.output.end(request_id)), body)
        done.set()
        return True

    def pre_stop(self, header: dict[str, Any]) -> None:
        self.send({"type": self.protocol.PRE_STOP_DONE, "error": None, "log": ""})


def _command_of(program: str) -> list[str]:
    """How to run ``program``: itself when executable; else through the interpreter its
    ``#!`` line names (a zip made without file modes still works)."""
    if os.access(program, os.X_OK):
        return [program]
    try:
        with open(program, "rb") as f:
            first = f.readline(256)
    except OSError:
        return [program]
    if first.startswith(b"#!"):
        return [*first[2:].decode("utf-8", "replace").split(), program]
    return [program]


def _handler_for(runtime: LambdaRuntime) -> Any:
    from http.server import BaseHTTPRequestHandler

    prefix = "/2018-06-01/runtime"
    protocol = runtime.protocol

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # headers and body leave in one write (flushed by the handler)

        def setup(self) -> None:
            super().setup()
            # Small replies on a kept-alive connection: no Nagle wait for the client's ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                   raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(body or {}).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if raw is None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _body(self) -> bytes:
            size = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(size) if size else b""

        def do_GET(self) -> None:  # noqa: N802
            if self.path != f"{prefix}/invocation/next":
                self._reply(404, {"errorMessage": f"no such API: GET {self.path}",
                                  "errorType": "InvalidRequest"})
                return
            runtime.ready.set()
            header, event = runtime.pending.get()
            request_id = header["id"]
            assert runtime.output is not None
            runtime.output.begin(request_id)
            # (no payload is Lambda's {}: what runtime clients JSON-decode)
            self._reply(200, raw=event if event.strip() else b"{}", headers={
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(header["deadline"]),
                "Lambda-Runtime-Invoked-Function-Arn": runtime.spec.get("functionArn", ""),
                "Lambda-Runtime-Trace-Id":
                    f"Root=1-{request_id.split('-', 2)[-1][:8]}-{request_id[-24:]};Sampled=0",
                "Content-Type": "application/json",
            })

        def _chunks(self, trailers: dict[str, str]) -> Any:
            """A chunked body's chunks as they come; its trailers into ``trailers``."""
            while True:
                size = int(self.rfile.readline(64).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (line := self.rfile.readline(65536).strip()):
                        key, _, value = line.decode("latin-1").partition(":")
                        trailers[key.strip().lower()] = value.strip()
                    return
                yield self.rfile.read(size)
                self.rfile.readline(8)  # (the chunk's CRLF)

        def _streamed(self, request_id: str) -> None:
            """``POST …/response`` in streaming mode: chunked, and an error that came
            after the first write in its trailers (base64 JSON, as the ric sends)."""
            if request_id not in runtime.running:
                self._reply(400, {"errorMessage": f"no invocation {request_id} is running",
                                  "errorType": "InvalidRequestID"})
                return
            trailers: dict[str, str] = {}
            kind = self.headers.get("Content-Type", "application/octet-stream")
            try:
                out = runtime.stream(request_id, kind, self._chunks(trailers))
            except (ValueError, OSError):  # a broken body: what follows is not HTTP
                trailers.setdefault("lambda-runtime-function-error-type",
                                    "Runtime.TruncatedResponse")
                out = {"kept": b""}
                self.close_connection = True
            if (error_type := trailers.get("lambda-runtime-function-error-type")):
                try:
                    raw = base64.b64decode(trailers.get(
                        "lambda-runtime-function-error-body", ""))
                except ValueError:
                    raw = b""
                error = _lambda_error(raw, {"Lambda-Runtime-Function-Error-Type":
                                            error_type}, error_type)
                runtime.answer(request_id, {"type": protocol.ERROR, "error": error})
            else:
                runtime.answer(request_id, {"type": protocol.RESULT}, out["kept"])
            self._reply(202, {"status": "OK"})

        def do_POST(self) -> None:  # noqa: N802
            path = self.path
            parts = path[len(prefix):].strip("/").split("/")
            if (len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response"
                    and "chunked" in self.headers.get("Transfer-Encoding", "").lower()):
                self._streamed(parts[1])
                return
            body = self._body()
            if path == f"{prefix}/init/error":
                runtime.failed = _lambda_error(body, self.headers, "Runtime.InitError")
                self._reply(202, {"status": "OK"})
                return
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response",
                                                                             "error"):
                request_id = parts[1]
                if parts[2] == "response":
                    ok = runtime.answer(request_id, {"type": protocol.RESULT}, body)
                else:
                    error = _lambda_error(body, self.headers, "Runtime.Unknown")
                    ok = runtime.answer(request_id, {"type": protocol.ERROR, "error": error})
                if ok:
                    self._reply(202, {"status": "OK"})
                else:
                    self._reply(400, {"errorMessage": f"no invocation {request_id} is running",
                                      "errorType": "InvalidRequestID"})
                return
            self._reply(404, {"errorMessage": f"no such API: POST {path}",
                              "errorType": "InvalidRequest"})

    return Handler


def _lambda_error(body: bytes, headers: Any, default: str) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = {"errorMessage": body.decode("utf-8", "replace")}
    if not isinstance(data, dict):
        data = {"errorMessage": str(data)}
    return {
        "errorMessage": str(data.get("errorMessage", "")),
        "errorType": str(data.get("errorType") or headers.get(
            "Lambda-Runtime-Function-Error-Type") or default),
        "stackTrace": [str(s) for s in data.get("stackTrace") or []],
    }
