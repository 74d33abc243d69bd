"""funclet's benchmark: cold start, warm latency and throughput, against a floor.

Runs, on this machine and in one go:
- cold start as the client sees it: the first invocation of each of N just-deployed
  hello functions (p50, p99), against a keep-alive request to the floor app;
- warm sync invocations over HTTP with wrk: p50/p99 latency and requests/s at 1
  connection, requests/s at 32 connections, D seconds each;
- the floor: a bare uvicorn (uvloop + httptools) hello world, measured the same way;
- cold starts back to back and after 0.2 s of quiet, with the full sandbox (instances
  started ahead, and none) and with the sandbox off (FUNCLET_SANDBOX=false);
- the platform's memory before and after a function sends 4 GB frames on its socket;
- limits: N invocations of a function that sleeps 100 ms, sent over 200 connections
  with the account limit at 100: how many succeed, the most instances seen running at
  once, and the queue wait p50/p99;
- the memory an idle warm instance costs (PSS of its processes, from /proc), against a
  bare isolated interpreter;
- async: durable accepts/s at 32 connections, against a bare app that commits each
  request to SQLite (bench/floor_durable.py); accepted -> succeeded tasks/s; the time
  from accept to handler start at idle;
- outbox: N async tasks with an onSuccess destination (a webhook, a Redis stream):
  tasks/s against records delivered/s, and each record's delivery after its task;
- triggers (timer lag, HTTP trigger, Redis stream) and runtimes (Python, Node.js,
  custom, awslambdaric);
- cluster: async accepts/s and accepted -> succeeded tasks/s on one node with SQLite,
  one node with PostgreSQL and three nodes with PostgreSQL (one machine: the nodes,
  PostgreSQL, moto's S3 and wrk share its cores); sync invocations through HAProxy
  (deploy/haproxy.cfg) against direct; the time from an update on one node to its use
  on another;
- versions: warm invocations through an alias with a 90/10 weight against LATEST (req/s
  and p50 at 32 connections), cold starts of a function with two layers against none;
- lambda: the Lambda API beside FC's (warm Invoke p50 @1 and req/s @32, cold starts, a
  Function URL against an HTTP trigger), and serverless-offline's Lambda Invoke API for
  the same Node.js hello (serverless 3 + serverless-offline from npm, cached in
  bench/.cache);
- console: the load time of the console's pages (functions, a function's page, the
  invocation lists, charts) with 1,000 functions and 100,000 invocation records (made
  by real invocations), against an API read of one function;
- keepalive: the adaptive keep-alive against fixed ones on a generated day of
  invocations (bench/keepalive_sim.py, which also takes a trace of your own);
- versus: one table, last: funclet (sandbox on) against the bare floor and against
  serverless-offline for the same Node.js hello (and funclet's Python hello): cold
  start, warm p50 @1, req/s @1 and @32, with the targets' ratios.

Usage: python bench/bench.py [--functions 60] [--duration 10] [--limit-invocations 1000]
       [--async-duration 5] [--timers 100] [--messages 5000] [--outbox-tasks 5000]
       [--only sync|cold|frames|limits|async|outbox|triggers|runtimes|cluster|versions|metrics|dev
               |console|lambda|keepalive|versus ...]
Needs wrk (Debian package 'wrk'); installs it with apt-get when run as root.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import io
import json
import os
import py_compile
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HELLO = b"def handler(event, context):\n    return b'hello, bench!'\n"
TARGETS = {"cold p50": "<= 10 ms", "warm p50 @1": "<= 0.4 ms", "req/s @32": ">= 5,000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {url}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    sys.exit(f"server did not start: {url}")


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       stdout=subprocess.DEVNULL)
        path = shutil.which("wrk")
        if path:
            return path
    sys.exit("bench needs wrk: apt-get install wrk")


def wrk(wrk_bin: str, url: str, connections: int, duration: int,
        headers: dict[str, str] | None = None) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text('wrk.method = "POST"\nwrk.body = "{\\"name\\": \\"bench\\"}"\n' + "".join(
        f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items()))
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [wrk_bin, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    script.unlink()
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
              "count": float(re.search(r"(\d+) requests in", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}"] = float(m.group(1)) * scale
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
        result["errors"] = 1.0
    return result


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def hello_zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", HELLO)
    return base64.b64encode(buf.getvalue()).decode()


def measure_cold(url: str, n: int, quiet: float = 0.0, tag: str = "",
                 layers: list[str] | None = None) -> list[float]:
    """The first invocation of each of ``n`` just-deployed functions; ``quiet`` seconds of
    nothing before each (the usual case: a cold start after the platform was idle)."""
    code = hello_zip()
    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(n):
            name = f"bench-cold{tag}-{i}-{os.getpid()}"
            r = client.post("/2023-03-30/functions", json={
                "functionName": name,
                "runtime": f"python{sys.version_info[0]}.{sys.version_info[1]}",
                "handler": "index.handler", "code": {"zipFile": code},
                **({"layers": layers} if layers else {})})
            r.raise_for_status()
            client.get("/healthz")  # keep the connection warm, as for the floor
            if quiet:
                time.sleep(quiet)
            t0 = time.perf_counter()
            r = client.post(f"/2023-03-30/functions/{name}/invocations", content=b"{}")
            times.append((time.perf_counter() - t0) * 1000)
            assert r.headers["x-funclet-start-kind"] == "cold", r.headers
            assert r.content == b"hello, bench!", r.content
    return times


def measure_floor_request(url: str, n: int, quiet: float = 0.0) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        client.post(url, content=b"{}")
        for _ in range(n):
            if quiet:
                time.sleep(quiet)
            t0 = time.perf_counter()
            client.post(url, content=b"{}")
            times.append((time.perf_counter() - t0) * 1000)
    return times


def start_funclet(env: dict[str, str], **extra: str) -> tuple[subprocess.Popen[bytes], str, str]:
    data = tempfile.mkdtemp(prefix="funclet-bench-", dir="/var/tmp")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "funclet", "serve"], cwd=data,
        env={**env, "FUNCLET_PORT": str(port), "FUNCLET_DATA_DIR": data,
             "FUNCLET_LOG_LEVEL": "warning", **extra})
    url = f"http://127.0.0.1:{port}"
    wait_up(f"{url}/healthz", proc)
    return proc, url, data


def stop_funclet(proc: subprocess.Popen[bytes], data: str) -> None:
    proc.terminate()
    proc.wait(60)
    shutil.rmtree(data, ignore_errors=True)


def deploy(client: httpx.Client, name: str, code: bytes, **config: object) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", code)
    r = client.post("/2023-03-30/functions", json={
        "functionName": name, "runtime": f"python{sys.version_info[0]}.{sys.version_info[1]}",
        "handler": "index.handler",
        "code": {"zipFile": base64.b64encode(buf.getvalue()).decode()}, **config})
    r.raise_for_status()


SLEEP_100MS = b"import time\ndef handler(event, context):\n    time.sleep(0.1)\n    return 'ok'\n"


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                path: str, extra: str = "") -> dict[str, str]:
    """One keep-alive HTTP/1.1 POST with an empty body; the status and headers back.

    A few lines of asyncio instead of an HTTP client library: at 200 connections the
    client must cost far less than the platform it measures (httpx's pool does not).
    """
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {"status": head[0].split()[1]}
    for line in head[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return headers


def measure_limits(url: str, count: int, connections: int) -> dict[str, float]:
    """``count`` invocations of a 100 ms function over ``connections`` connections."""
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, "bench-sleep", SLEEP_100MS)
    host = url.removeprefix("http://")
    path = "/2023-03-30/functions/bench-sleep/invocations"
    instances = f"{url}/2023-03-30/functions/bench-sleep/instances"

    async def run() -> dict[str, float]:
        left = count
        ok = 0
        waits: list[float] = []
        most = 0
        done = asyncio.Event()

        async def connection() -> None:
            nonlocal left, ok
            reader, writer = await asyncio.open_connection(*host.split(":"))
            while left > 0:
                left -= 1
                headers = await _post(reader, writer, host, path)
                ok += headers["status"] == "200" and "x-fc-error-type" not in headers
                waits.append(float(headers.get("x-funclet-queue-ms", "nan")))
            writer.close()

        async def sample() -> None:
            nonlocal most
            async with httpx.AsyncClient(timeout=30) as client:
                while not done.is_set():
                    r = await client.get(instances, params={"withAllActive": "true"})
                    most = max(most, len(r.json()["instances"]))
                    await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
        done.set()
        await sampler
        return {"ok": ok, "count": len(waits), "most": most, "wait_p50": pct(waits, 50),
                "wait_p99": pct(waits, 99), "seconds": elapsed}

    return asyncio.run(run())


NOW_MS = b"import time\ndef handler(event, context):\n    return str(time.time() * 1000)\n"


def measure_async(url: str, duration: int) -> dict[str, float]:
    """Durable accepts/s at 32 connections (wrk, ``duration`` seconds); accepted ->
    succeeded tasks/s for a no-op function; and, at idle, the time from accept to the
    handler's start."""
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, "bench-async", NOW_MS)
        client.post("/2023-03-30/functions/bench-async/invocations", content=b"")  # warm
    path = "/2023-03-30/functions/bench-async/invocations"
    tasks = f"{url}/2023-03-30/functions/bench-async/async-tasks"
    t0 = time.time() * 1000
    accepted = wrk(ensure_wrk(), f"{url}{path}", 32, duration,
                   {"x-fc-invocation-type": "Async"})
    assert "errors" not in accepted, "some accepts failed"
    count = int(accepted["count"])
    with httpx.Client(timeout=60) as client:
        rows = _tasks_when_done(client, tasks, count)
        assert all(r["status"] == "Succeeded" for r in rows), "some tasks did not succeed"
        end = max(int(r["endTime"]) for r in rows)  # type: ignore[call-overload]
        e2e = count / ((end - t0) / 1000)
        lags = []
        for _ in range(50):
            r = client.post(f"{url}{path}", headers={"x-fc-invocation-type": "Async"})
            task_id = r.headers["x-fc-async-task-id"]
            while (t := client.get(f"{tasks}/{task_id}").json())["status"] != "Succeeded":
                time.sleep(0.005)
            lags.append(float(t["returnPayload"]) - t["events"][0]["timestamp"])
    return {"count": count, "accepts": accepted["rps"], "e2e": e2e,
            "lag_p50": pct(lags, 50), "lag_p99": pct(lags, 99)}


def pss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def instance_pids(instance_id: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cgroup") as f:
                    if f"/{instance_id}\n" in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def measure_idle_memory(url: str) -> tuple[float, float]:
    """PSS (MB) of an idle warm hello instance, and of a bare isolated interpreter."""
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, "bench-mem", HELLO)
        r = client.post("/2023-03-30/functions/bench-mem/invocations", content=b"")
        pids = instance_pids(r.headers["x-funclet-instance-id"])
    time.sleep(0.5)
    instance = pss_kb(pids) / 1024
    bare = subprocess.Popen([sys.executable, "-I", "-S", "-c", "import time; time.sleep(30)"])
    time.sleep(0.5)
    floor = pss_kb([bare.pid]) / 1024
    bare.kill()
    bare.wait()
    return instance, floor


SECTIONS = ("sync", "cold", "frames", "limits", "async", "outbox", "triggers", "runtimes",
            "cluster", "versions", "metrics", "dev", "console", "lambda", "keepalive",
            "snapshot", "versus")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=60)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--limit-invocations", type=int, default=1000)
    parser.add_argument("--async-duration", type=int, default=5,
                        help="seconds of async accepts at 32 connections")
    parser.add_argument("--timers", type=int, default=100,
                        help="timer triggers firing every second, for about 11 s")
    parser.add_argument("--messages", type=int, default=5000,
                        help="messages through a Redis stream trigger")
    parser.add_argument("--outbox-tasks", type=int, default=5000,
                        help="async tasks with a destination, per destination kind")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this section (repeatable); all by default")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for section in args.only or SECTIONS:
        globals()[f"bench_{section}"](args, env)


def start_floor(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """The bare uvicorn hello app (bench/floor_app.py), up; its process and URL."""
    port = free_port()
    floor = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    wait_up(url, floor)
    return floor, url


def bench_sync(args: argparse.Namespace, env: dict[str, str]) -> None:
    wrk_bin = ensure_wrk()
    floor, floor_url = start_floor(env)
    try:
        proc, url, data = start_funclet(env)
        try:
            print(f"cold starts: {args.functions} fresh functions ...", file=sys.stderr)
            cold = measure_cold(url, args.functions)
            floor_req = measure_floor_request(floor_url, args.functions)
            invoke_url = f"{url}/2023-03-30/functions/bench-cold-0-{os.getpid()}/invocations"
            httpx.post(invoke_url, content=b"{}")
            results = {}
            for label, target in (("floor", floor_url), ("funclet", invoke_url)):
                for conns in (1, 32):
                    print(f"{label}: {conns} connection(s), {args.duration} s ...",
                          file=sys.stderr)
                    results[(label, conns)] = wrk(wrk_bin, target, conns, args.duration)
        finally:
            stop_funclet(proc, data)
    finally:
        floor.terminate()
        floor.wait(30)

    rows = [
        ("cold p50", pct(cold, 50), pct(floor_req, 50), "ms"),
        ("cold p99", pct(cold, 99), pct(floor_req, 99), "ms"),
        ("warm p50 @1", results[("funclet", 1)]["p50"], results[("floor", 1)]["p50"], "ms"),
        ("warm p99 @1", results[("funclet", 1)]["p99"], results[("floor", 1)]["p99"], "ms"),
        ("req/s @1", results[("funclet", 1)]["rps"], results[("floor", 1)]["rps"], "req/s"),
        ("req/s @32", results[("funclet", 32)]["rps"], results[("floor", 32)]["rps"], "req/s"),
    ]
    print(f"\nfunclet bench: {args.functions} cold starts, wrk {args.duration} s per run, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print(f"| {'figure':<12} | {'funclet':>10} | {'floor':>10} | {'ratio':>6} | {'target':<9} |")
    print(f"|{'-' * 14}|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 11}|")
    for label, value, base, unit in rows:
        fmt = "{:,.0f}" if unit == "req/s" else "{:.3f}"
        print(f"| {label:<12} | {fmt.format(value):>10} | {fmt.format(base):>10} | "
              f"{value / base:>6.2f} | {TARGETS.get(label, ''):<9} |")
    print("\nms for latencies (cold: client-side time of the first invocation; floor: one "
          "keep-alive request to bare uvicorn). The cold-start mean is "
          f"{statistics.mean(cold):.2f} ms.")



COLD_MODES = (
    ("full sandbox, instances started ahead", {}),
    ("full sandbox, none started ahead", {"FUNCLET_PRESTARTED_INSTANCES": "0"}),
    ("sandbox off", {"FUNCLET_SANDBOX": "false"}),
)


def bench_cold(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Cold starts back to back and after 0.2 s of quiet, with the full sandbox (network
    namespace included) with and without instances started ahead, and with it off."""
    results: dict[tuple[str, float], list[float]] = {}
    for label, extra in COLD_MODES:
        proc, url, data = start_funclet(env, **extra)
        try:
            for quiet in (0.0, 0.2):
                print(f"cold starts: {label}, {quiet:g} s quiet ...", file=sys.stderr)
                results[(label, quiet)] = measure_cold(url, args.functions, quiet,
                                                       tag=f"{int(quiet * 10)}")
        finally:
            stop_funclet(proc, data)
    floor, floor_url = start_floor(env)
    try:  # what the machine itself costs: a keep-alive request after the same quiet
        for quiet in (0.0, 0.2):
            results[("floor: a request to bare uvicorn", quiet)] = measure_floor_request(
                floor_url, args.functions, quiet)
    finally:
        floor.terminate()
        floor.wait(10)
    off = {q: results[("sandbox off", q)] for q in (0.0, 0.2)}
    bare = {q: results[("floor: a request to bare uvicorn", q)] for q in (0.0, 0.2)}
    print(f"\ncold starts: {args.functions} fresh functions per row, client-side ms "
          "(p50 - floor: the platform's own share, the floor's p50 at the same quiet taken "
          "off; target: full sandbox, started ahead, p50 <= 3 ms, p99 <= 8 ms)\n")
    print(f"| {'sandbox':<38} | {'quiet':>5} | {'p50':>7} | {'p99':>7} | {'p50 / off':>9} "
          f"| {'p50 - floor':>11} |")
    print(f"|{'-' * 40}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 13}|")
    for (label, quiet), times in results.items():
        ratio = pct(times, 50) / pct(off[quiet], 50)
        print(f"| {label:<38} | {quiet:>5.1f} | {pct(times, 50):>7.2f} | "
              f"{pct(times, 99):>7.2f} | {ratio:>9.2f} "
              f"| {pct(times, 50) - pct(bare[quiet], 50):>11.2f} |")


FRAME_ATTACK = b"""
import json, os, socket, struct

def channel():
    # The instance's socket to the platform: the one stream Unix socket it was given.
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM:
            return s
        s.close()

def handler(event, context):
    s = channel()
    header = b'{"type":"x"}'
    s.sendall(struct.pack("!II", len(header), 4 * 1024 ** 3 - 1) + header)
    chunk = b"x" * (1 << 20)
    for _ in range(int(event or b"200")):  # MB announced as a 4 GB frame body
        s.sendall(chunk)
    return "sent"
"""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench_frames(args: argparse.Namespace, env: dict[str, str]) -> None:
    """A function announces a 4 GB frame on its socket and sends 200 MB of it, three
    times: the platform's memory before and after (it ends the instance at the header)."""
    proc, url, data = start_funclet(env)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            deploy(client, "bench-frames", FRAME_ATTACK, memorySize=1024)
            deploy(client, "bench-hello", HELLO)
            for _ in range(20):
                client.post("/2023-03-30/functions/bench-hello/invocations", content=b"")
            before = rss_mb(proc.pid)
            outcomes = []
            for _ in range(3):
                r = client.post("/2023-03-30/functions/bench-frames/invocations", content=b"200")
                outcomes.append(r.json().get("errorType", "none") if r.headers.get(
                    "x-fc-error-type") else "none")
            time.sleep(1)
            after = rss_mb(proc.pid)
            healthy = client.post("/2023-03-30/functions/bench-hello/invocations").status_code
    finally:
        stop_funclet(proc, data)
    print("\nframe attack: 3 x (a 4 GB frame announced, 200 MB sent)\n")
    print("| platform RSS before | after    | growth   | invocation errors       | hello after |")
    print("|---------------------|----------|----------|-------------------------|-------------|")
    print(f"| {before:>16.1f} MB | {after:>5.1f} MB | {after - before:>+5.1f} MB | "
          f"{', '.join(sorted(set(outcomes))):<23} | {healthy:<11} |")


def bench_limits(args: argparse.Namespace, env: dict[str, str]) -> None:
    print(f"limits: {args.limit_invocations} invocations of 100 ms at 200 connections ...",
          file=sys.stderr)
    proc, url, data = start_funclet(env, FUNCLET_MAX_INSTANCES="100")
    try:
        limits = measure_limits(url, args.limit_invocations, 200)
        memory, memory_floor = measure_idle_memory(url)
    finally:
        stop_funclet(proc, data)

    print(f"\nlimits: {limits['count']:.0f} invocations of a 100 ms function, 200 connections, "
          f"account limit 100, {limits['seconds']:.1f} s\n")
    print("| figure                      | value     | target        |")
    print("|-----------------------------|-----------|---------------|")
    print(f"| succeeded                   | {limits['ok']:>9.0f} | all           |")
    print(f"| most instances at once      | {limits['most']:>9.0f} | <= 100        |")
    print(f"| queue wait p50 (ms)         | {limits['wait_p50']:>9.1f} |               |")
    print(f"| queue wait p99 (ms)         | {limits['wait_p99']:>9.1f} |               |")
    print(f"| idle warm instance PSS (MB) | {memory:>9.2f} | <= 8          |")
    print(f"| bare interpreter PSS (MB)   | {memory_floor:>9.2f} | (floor)       |")


def measure_durable_floor(env: dict[str, str], duration: int) -> float:
    """Requests/s at 32 connections of ``bench/floor_durable.py``: one SQLite insert and
    commit per request, nothing else."""
    folder = tempfile.mkdtemp(prefix="funclet-bench-floor-")
    port = free_port()
    floor = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.floor_durable:app", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env={**env, "FLOOR_DB": f"{folder}/floor.db"})
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_up(url, floor)
        return wrk(ensure_wrk(), url, 32, duration)["rps"]
    finally:
        floor.terminate()
        floor.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def bench_async(args: argparse.Namespace, env: dict[str, str]) -> None:
    print(f"async: {args.async_duration} s of accepts at 32 connections, then run ...",
          file=sys.stderr)
    proc, url, data = start_funclet(env)
    try:
        asy = measure_async(url, args.async_duration)
    finally:
        stop_funclet(proc, data)
    print("async floor: one SQLite commit per request ...", file=sys.stderr)
    floor = measure_durable_floor(env, args.async_duration)

    print(f"\nasync: {asy['count']:,.0f} tasks of a no-op function, accepted over "
          f"{args.async_duration} s by wrk at 32 connections\n")
    print("| figure                          |   funclet |     floor |  ratio | target   |")
    print("|---------------------------------|-----------|-----------|--------|----------|")
    print(f"| durable accepts/s @32           | {asy['accepts']:>9,.0f} | {floor:>9,.0f} | "
          f"{asy['accepts'] / floor:>6.2f} | >= 2,000 |")
    print(f"| accepted -> succeeded tasks/s   | {asy['e2e']:>9,.0f} |           |        "
          f"| >= 1,000 |")
    print(f"| accept -> handler start p50 ms  | {asy['lag_p50']:>9.2f} |           |        "
          f"| <= 5     |")
    print(f"| accept -> handler start p99 ms  | {asy['lag_p99']:>9.2f} |           |        "
          f"|          |")
    print("\nfloor: a bare uvicorn app that commits each request's body to SQLite (WAL,\n"
          "synchronous=NORMAL) before it answers 202. funclet's accepts are measured while\n"
          "it runs the tasks on the same two cores.")


class _Webhook:
    """A local webhook destination: answers 200 to each POST and keeps when each record
    (by its request id) came in."""

    def __init__(self) -> None:
        import http.server

        arrived = self.arrived = {}  # type: dict[str, float]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                record = json.loads(self.rfile.read(int(self.headers["content-length"])))
                arrived[record["requestContext"]["requestId"]] = time.time() * 1000
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/records"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _accept_async(url: str, path: str, count: int, connections: int = 32) -> None:
    """``count`` async invocations over ``connections`` keep-alive connections."""
    host = url.removeprefix("http://")

    async def run() -> None:
        left = count

        async def connection() -> None:
            nonlocal left
            reader, writer = await asyncio.open_connection(*host.split(":"))
            while left > 0:
                left -= 1
                headers = await _post(reader, writer, host, path,
                                      "x-fc-invocation-type: Async\r\n")
                assert headers["status"] == "202", headers
            writer.close()

        await asyncio.gather(*(connection() for _ in range(connections)))

    asyncio.run(run())


def measure_outbox(url: str, kind: str, count: int) -> dict[str, float]:
    """``count`` async tasks of a no-op function whose onSuccess destination is a webhook
    or a Redis stream: tasks/s (first accept to last end), records delivered/s (first
    accept to last delivery) and each record's delivery after its task ended."""
    import redis

    name = f"bench-outbox-{kind}"
    webhook = _Webhook() if kind == "webhook" else None
    stream = f"funclet-bench-outbox-{os.getpid()}"
    broker = redis.Redis(port=6379)
    destination = webhook.url if webhook else f"redis://127.0.0.1:6379/0?stream={stream}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deploy(client, name, HELLO)
            client.put(f"/2023-03-30/functions/{name}/async-invoke-config", json={
                "destinationConfig": {"onSuccess": {"destination": destination}}},
            ).raise_for_status()
            client.post(f"/2023-03-30/functions/{name}/invocations").raise_for_status()
        t0 = time.time() * 1000
        _accept_async(url, f"/2023-03-30/functions/{name}/invocations", count)
        with httpx.Client(timeout=60) as client:
            rows = _tasks_when_done(client, f"{url}/2023-03-30/functions/{name}/async-tasks",
                                    count)
        ended = {str(r["requestId"]): float(r["endTime"]) for r in rows  # type: ignore[arg-type]
                 if r["status"] == "Succeeded"}
        assert len(ended) == count, f"{len(ended)} of {count} tasks succeeded"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if webhook is not None:
                arrived = dict(webhook.arrived)
            else:
                arrived = {json.loads(fields[b"record"])["requestContext"]["requestId"]:
                           float(entry.split(b"-")[0])
                           for entry, fields in broker.xrange(stream)}
            if len(arrived) >= count:
                break
            time.sleep(0.25)
        assert set(arrived) >= set(ended), f"{len(arrived)} of {count} records delivered"
    finally:
        if webhook is not None:
            webhook.close()
        broker.delete(stream)
    lags = [arrived[rid] - end for rid, end in ended.items()]
    return {"tasks": count / ((max(ended.values()) - t0) / 1000),
            "delivered": count / ((max(arrived.values()) - t0) / 1000),
            "lag_p50": pct(lags, 50), "lag_p99": pct(lags, 99)}


def bench_outbox(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Destination records against the tasks they come from (webhook, Redis stream)."""
    results = {}
    for kind in ("webhook", "redis"):
        print(f"outbox: {args.outbox_tasks} async tasks with a {kind} destination ...",
              file=sys.stderr)
        proc, url, data = start_funclet(env)
        try:
            results[kind] = measure_outbox(url, kind, args.outbox_tasks)
        finally:
            stop_funclet(proc, data)
    print(f"\noutbox: {args.outbox_tasks} async tasks of a hello function accepted over 32 "
          "connections, each with an onSuccess destination\n")
    print("| destination | tasks/s | records delivered/s | ratio | delivery after task end "
          "p50 / p99 ms | target |")
    print("|---|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['tasks']:,.0f} | {r['delivered']:,.0f} | "
              f"{r['delivered'] / r['tasks']:.2f} | {r['lag_p50']:.1f} / {r['lag_p99']:.1f} "
              "| ratio >= 0.95 (the backlog does not grow) |")
    print("\nrates from the first accept: to the last task's end, and to the last record's "
          "arrival (webhook: a local http.server; Redis: the stream entry's id).")


def _all_tasks(client: httpx.Client, url: str) -> list[dict[str, object]]:
    rows, token = [], None
    while True:
        params = {"limit": 100, "includePayload": "true", **({"nextToken": token} if token else {})}
        page = client.get(url, params=params).json()
        rows += page["tasks"]
        token = page.get("nextToken")
        if not token:
            return rows


def _tasks_when_done(client: httpx.Client, url: str, count: int,
                     timeout: float = 300) -> list[dict[str, object]]:
    """Every task of ``url``, once none waits or runs and ``count`` are there. (Polled
    with one-row queries: reading every task each time would load the node it measures.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.get(url, params={"status": status, "limit": 1}).json()["tasks"]
                   for status in ("Enqueued", "Retrying", "Running")):
            rows = _all_tasks(client, url)
            if len(rows) >= count:
                return rows
        time.sleep(0.25)
    return _all_tasks(client, url)


def _fc_epoch_ms(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) * 1000.0


def measure_timers(url: str, timers: int) -> dict[str, float]:
    """Scheduled -> stored lag of timer fires: ``timers`` triggers every second, ~11 s."""
    api = "/2023-03-30/functions"
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, "bench-timer", NOW_MS)
        for i in range(timers):
            client.post(f"{api}/bench-timer/triggers", json={
                "triggerName": f"t{i}", "triggerType": "timer",
                "triggerConfig": {"cronExpression": "@every 1s"}}).raise_for_status()
        time.sleep(11)
        for i in range(timers):
            client.delete(f"{api}/bench-timer/triggers/t{i}")
        rows = _all_tasks(client, f"{url}{api}/bench-timer/async-tasks")
    lags = []
    for row in rows:
        scheduled = _fc_epoch_ms(json.loads(str(row["taskPayload"]))["triggerTime"])
        lags.append(row["events"][0]["timestamp"] - scheduled)  # type: ignore[index]
    return {"fires": len(lags), "p50": pct(lags, 50), "p99": pct(lags, 99),
            "max": max(lags)}


HTTP_HELLO = b"def handler(event, context):\n    return 'hello, http!'\n"


def measure_http_trigger(url: str, duration: int) -> dict[tuple[str, int], dict[str, float]]:
    """wrk against a hello function's HTTP trigger and, beside it, its invoke API."""
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, "bench-http", HTTP_HELLO)
        client.post("/2023-03-30/functions/bench-http/triggers", json={
            "triggerName": "web", "triggerType": "http",
            "triggerConfig": {"authType": "anonymous", "methods": ["POST"]}}).raise_for_status()
        client.post("/http/bench-http/").raise_for_status()
    out = {}
    for label, target in (("invoke API", f"{url}/2023-03-30/functions/bench-http/invocations"),
                          ("HTTP trigger", f"{url}/http/bench-http/")):
        for conns in (1, 32):
            print(f"{label}: {conns} connection(s), {duration} s ...", file=sys.stderr)
            out[(label, conns)] = wrk(ensure_wrk(), target, conns, duration)
    return out


def measure_redis_trigger(url: str, messages: int, batch: int) -> dict[str, float]:
    """Messages/s from a Redis stream into succeeded invocations (``batch`` a batch)."""
    import redis

    name = f"bench-redis-{batch}"
    stream = f"funclet-bench-{os.getpid()}-{batch}"
    broker = redis.Redis(port=6379)
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, name, NOW_MS)
        pipe = broker.pipeline()
        for i in range(messages):
            pipe.xadd(stream, {"n": str(i)})
        pipe.execute()
        t0 = time.time() * 1000
        client.post(f"/2023-03-30/functions/{name}/triggers", json={
            "triggerName": "stream", "triggerType": "redis",
            "triggerConfig": {"url": "redis://127.0.0.1:6379/0", "stream": stream,
                              "batchSize": batch}}).raise_for_status()
        tasks = f"/2023-03-30/functions/{name}/async-tasks"
        expected = -(-messages // batch)
        while True:
            rows = _all_tasks(client, f"{url}{tasks}")
            done = [r for r in rows if r["status"] == "Succeeded"]
            if len(done) >= expected:
                break
            time.sleep(0.5)
        end = max(int(r["endTime"]) for r in done)  # type: ignore[call-overload]
        client.delete(f"/2023-03-30/functions/{name}/triggers/stream")
    broker.delete(stream)
    return {"rate": messages / ((end - t0) / 1000), "invocations": len(done)}


def bench_triggers(args: argparse.Namespace, env: dict[str, str]) -> None:
    print(f"triggers: {args.timers} timers every second for 11 s ...", file=sys.stderr)
    proc, url, data = start_funclet(env)
    try:
        timers = measure_timers(url, args.timers)
        http = measure_http_trigger(url, args.duration)
        print(f"triggers: {args.messages} messages through a Redis stream ...", file=sys.stderr)
        redis_1 = measure_redis_trigger(url, args.messages, 1)
        redis_10 = measure_redis_trigger(url, args.messages, 10)
    finally:
        stop_funclet(proc, data)

    print(f"\ntimers: {args.timers} timer triggers @every 1s, {timers['fires']:.0f} fires; "
          "lag from the scheduled time to the stored task\n")
    print("| figure                 | value     | target   |")
    print("|------------------------|-----------|----------|")
    print(f"| timer lag p50 (ms)     | {timers['p50']:>9.1f} |          |")
    print(f"| timer lag p99 (ms)     | {timers['p99']:>9.1f} | <= 100   |")
    print(f"| timer lag max (ms)     | {timers['max']:>9.1f} |          |")
    print(f"\nHTTP trigger vs the invoke API, same hello function, wrk {args.duration} s\n")
    print("| path          | p50 @1 ms | req/s @1  | req/s @32 |")
    print("|---------------|-----------|-----------|-----------|")
    for label in ("invoke API", "HTTP trigger"):
        one, many = http[(label, 1)], http[(label, 32)]
        print(f"| {label:<13} | {one['p50']:>9.3f} | {one['rps']:>9,.0f} | "
              f"{many['rps']:>9,.0f} |")
    print(f"\nRedis stream trigger: {args.messages} messages -> succeeded invocations\n")
    print("| batchSize | invocations | messages/s |")
    print("|-----------|-------------|------------|")
    for size, result in ((1, redis_1), (10, redis_10)):
        print(f"| {size:>9} | {result['invocations']:>11,.0f} | {result['rate']:>10,.0f} |")


NODE_HELLO = b"exports.handler = async () => 'hello, bench!';\n"
CUSTOM_HELLO = b"""import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body in one write: no Nagle stall on a kept-alive connection
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"hello, bench!")

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), H).serve_forever()
"""
RIC_HELLO = b"def handler(event, context):\n    return 'hello, bench!'\n"
RIC_BOOTSTRAP = b'#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec python3 -m awslambdaric "$_HANDLER"\n'


def _package(files: dict[str, bytes], vendored: Path | None = None) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            zf.writestr(info, data)
        if vendored is not None:
            for path in vendored.rglob("*"):
                rel = path.relative_to(vendored).as_posix()
                if path.is_file() and not rel.startswith("bin/") and "__pycache__" not in rel:
                    zf.write(path, rel)
    return base64.b64encode(buf.getvalue()).decode()


def _kinds() -> dict[str, dict[str, object]]:
    """The hello function of each kind of runtime, as CreateFunction bodies."""
    from funclet.packaging import vendor_requirements

    ric = Path(tempfile.mkdtemp(prefix="bench-ric-"))
    (ric / "requirements.txt").write_text("awslambdaric\n")
    vendored = vendor_requirements(ric, "custom.lambda", Path.home() / ".cache/funclet/deps")
    python = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return {
        "python": {"runtime": python, "handler": "index.handler",
                   "code": {"zipFile": _package({"index.py": HELLO})}},
        "nodejs20": {"runtime": "nodejs20", "handler": "index.handler",
                     "code": {"zipFile": _package({"index.js": NODE_HELLO})}},
        "custom (http.server)": {
            "runtime": "custom.debian12", "handler": "index.handler",
            "customRuntimeConfig": {"command": ["python3", "server.py"]},
            "code": {"zipFile": _package({"server.py": CUSTOM_HELLO})}},
        "awslambdaric": {"runtime": "custom.lambda", "handler": "app.handler",
                         "code": {"zipFile": _package({"app.py": RIC_HELLO,
                                                       "bootstrap": RIC_BOOTSTRAP}, vendored)}},
    }


def measure_runtime(url: str, kind: str, body: dict[str, object], n: int,
                    duration: int) -> dict[str, float]:
    """Cold starts of ``n`` fresh functions (a pause between them: a runtime that starts
    instances ahead refills), then wrk on the last one at 1 and 32 connections."""
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(n):
            name = f"bench-rt-{kind.split()[0]}-{i}-{os.getpid()}"
            client.post("/2023-03-30/functions",
                        json={"functionName": name, **body}).raise_for_status()
            time.sleep(0.3)
            client.get("/healthz")
            t0 = time.perf_counter()
            r = client.post(f"/2023-03-30/functions/{name}/invocations", content=b"{}")
            times.append((time.perf_counter() - t0) * 1000)
            assert r.content.strip(b'"') == b"hello, bench!" and r.headers[
                "x-funclet-start-kind"] == \
                "cold", (kind, r.content)
        target = f"{url}/2023-03-30/functions/{name}/invocations"
        print(f"{kind}: wrk at 1 and 32 connections ...", file=sys.stderr)
        one = wrk(ensure_wrk(), target, 1, duration)
        many = wrk(ensure_wrk(), target, 32, duration)
    return {"cold_p50": pct(times, 50), "cold_p99": pct(times, 99), "warm_p50": one["p50"],
            "rps_1": one["rps"], "rps_32": many["rps"]}


def bench_runtimes(args: argparse.Namespace, env: dict[str, str]) -> None:
    n = max(5, args.functions // 3)
    kinds = _kinds()
    results = {}
    proc, url, data = start_funclet(env)
    try:
        for kind, body in kinds.items():
            print(f"runtimes: {kind}, {n} cold starts ...", file=sys.stderr)
            results[kind] = measure_runtime(url, kind, body, n, args.duration)
    finally:
        stop_funclet(proc, data)
    print("runtimes: nodejs20 without instances started ahead ...", file=sys.stderr)
    proc, url, data = start_funclet(env, FUNCLET_PRESTARTED_INSTANCES="0")
    try:
        bare = measure_runtime(url, "nodejs20", kinds["nodejs20"], n, 2)
    finally:
        stop_funclet(proc, data)

    print(f"\nruntimes: a hello function each, {n} cold starts, wrk {args.duration} s\n")
    print("| runtime              | cold p50 | cold p99 | warm p50 | req/s @1 | req/s @32 |")
    print("|----------------------|----------|----------|----------|----------|-----------|")
    rows = [*results.items(), ("nodejs20, none ahead", bare)]
    for kind, r in rows:
        print(f"| {kind:<20} | {r['cold_p50']:>8.1f} | {r['cold_p99']:>8.1f} | "
              f"{r['warm_p50']:>8.3f} | {r['rps_1']:>8,.0f} | {r['rps_32']:>9,.0f} |")
    print("\nms; nodejs20 cold starts take an instance started ahead (target p50 <= 20 ms); "
          "the last row is without one.")



# -- cluster ------------------------------------------------------------------------------

def _postgres_database(name: str) -> str:
    import psycopg

    server = os.environ.get("FUNCLET_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def _moto() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """moto's S3 server on a free port, with a bucket: the environment that uses it."""
    import boto3

    port = free_port()
    server = shutil.which("moto_server", path=f"{sys.prefix}/bin") or "moto_server"
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
             "AWS_REGION": "us-east-1"}
    for _ in range(100):
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                 aws_secret_access_key="bench", region_name="us-east-1").create_bucket(
        Bucket="bench")
    return proc, {"AWS_ENDPOINT_URL": endpoint, "FUNCLET_CODE_STORE": "s3://bench/code",
                  **creds}


def measure_async_nodes(urls: list[str], duration: int) -> dict[str, float]:
    """Async accepts/s with wrk against every node at once (32 connections in all), and
    accepted -> succeeded tasks/s, the tasks read through the first node."""
    path = "/2023-03-30/functions/bench-async/invocations"
    with httpx.Client(base_url=urls[0], timeout=60) as client:
        deploy(client, "bench-async", NOW_MS)
    for url in urls:  # known, and warm, on every node
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(50):
                if client.post(path, content=b"").status_code == 200:
                    break
                time.sleep(0.1)
    t0 = time.time() * 1000
    wrk_bin = ensure_wrk()
    per = max(1, 32 // len(urls))
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, url in enumerate(urls):
            script = Path(tmp, f"{i}.lua")
            script.write_text('wrk.method = "POST"\nwrk.headers["x-fc-invocation-type"] = '
                              '"Async"\n')
            procs.append(subprocess.Popen(
                [wrk_bin, "-t1", f"-c{per}", f"-d{duration}s", "-s", str(script),
                 f"{url}{path}"], stdout=subprocess.PIPE, text=True))
        outs = [proc.communicate()[0] for proc in procs]
    count = sum(int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
                for out in outs)
    rps = sum(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
              for out in outs)
    if any("Non-2xx" in out for out in outs):
        print("\n".join(outs), file=sys.stderr)
    tasks = f"{urls[0]}/2023-03-30/functions/bench-async/async-tasks"
    with httpx.Client(timeout=60) as client:
        done = [r for r in _tasks_when_done(client, tasks, count) if r["status"] == "Succeeded"]
    end = max(int(r["endTime"]) for r in done)  # type: ignore[call-overload]
    return {"count": count, "accepts": rps, "e2e": len(done) / ((end - t0) / 1000),
            "done": len(done)}


def _start_node(env: dict[str, str], **extra: str) -> tuple[subprocess.Popen[bytes], str, str]:
    return start_funclet(env, FUNCLET_MAX_INSTANCES="100", **extra)


def bench_cluster(args: argparse.Namespace, env: dict[str, str]) -> None:
    results: dict[str, dict[str, float]] = {}
    print("cluster: async on one node, SQLite ...", file=sys.stderr)
    proc, url, data = _start_node(env)
    try:
        results["1 node, SQLite"] = measure_async_nodes([url], args.async_duration)
    finally:
        stop_funclet(proc, data)
    moto, s3_env = _moto()
    nodes: list[tuple[subprocess.Popen[bytes], str, str]] = []
    try:
        print("cluster: async on one node, PostgreSQL ...", file=sys.stderr)
        database = _postgres_database("funclet_bench_one")
        proc, url, data = _start_node(env, FUNCLET_DATABASE_URL=database, **s3_env)
        try:
            results["1 node, PostgreSQL"] = measure_async_nodes([url], args.async_duration)
        finally:
            stop_funclet(proc, data)
        print("cluster: three nodes, PostgreSQL ...", file=sys.stderr)
        database = _postgres_database("funclet_bench_three")
        for i in range(1, 4):
            nodes.append(_start_node(env, FUNCLET_DATABASE_URL=database,
                                     FUNCLET_NODE_ID=f"bench{i}", **s3_env))
        urls = [u for _, u, _ in nodes]
        results["3 nodes, PostgreSQL"] = measure_async_nodes(urls, args.async_duration)
        sync = _sync_through_haproxy(urls, args.duration)
        spread = _update_spread(urls)
    finally:
        for proc, _, data in nodes:
            stop_funclet(proc, data)
        moto.kill()
        moto.wait()
    print(f"\ncluster: async tasks of a no-op function, wrk {args.async_duration} s at 32 "
          f"connections in all (spread over the nodes); one machine, {os.cpu_count()} cores, "
          "shared by the nodes, PostgreSQL, moto and wrk\n")
    print(f"| {'setup':<22} | {'accepts/s':>9} | {'tasks/s':>8} | {'tasks':>6} | target |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 10}|{'-' * 8}|--------|")
    for label, r in results.items():
        print(f"| {label:<22} | {r['accepts']:>9,.0f} | {r['e2e']:>8,.0f} | "
              f"{r['done']:>6,.0f} | {'>= 2,000 / 1,000' if 'PostgreSQL' in label else ''} |")
    print(f"\n| sync @32, 1 function    | {'req/s':>8} | {'p50 ms':>7} |")
    print(f"|{'-' * 25}|{'-' * 10}|{'-' * 9}|")
    for label, r in sync.items():
        print(f"| {label:<23} | {r['rps']:>8,.0f} | {r.get('p50', 0):>7.2f} |")
    print(f"\nupdate on node 1 -> used by node 2: p50 {pct(spread, 50):.1f} ms, "
          f"p99 {pct(spread, 99):.1f} ms ({len(spread)} updates)")


def _sync_through_haproxy(urls: list[str], duration: int) -> dict[str, dict[str, float]]:
    binary = shutil.which("haproxy")
    with httpx.Client(base_url=urls[0], timeout=60) as client:
        deploy(client, "bench-sync", HELLO)
    out = {"direct (node 1)": wrk(ensure_wrk(), f"{urls[0]}/2023-03-30/functions/bench-sync/"
                                  "invocations", 32, duration)}
    if binary is None:
        print("haproxy is not installed: no HAProxy row", file=sys.stderr)
        return out
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    port = free_port()
    config = config.replace("bind 127.0.0.1:8080", f"bind 127.0.0.1:{port}")
    for i, url in enumerate(urls, start=1):
        config = config.replace(f"127.0.0.1:900{i}", url.removeprefix("http://"))
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as cfg:
        cfg.write(config)
        cfg.flush()
        proc = subprocess.Popen([binary, "-db", "-f", cfg.name], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_up(f"http://127.0.0.1:{port}/healthz", proc)  # type: ignore[arg-type]
            out["through HAProxy"] = wrk(ensure_wrk(), f"http://127.0.0.1:{port}/2023-03-30/"
                                         "functions/bench-sync/invocations", 32, duration)
        finally:
            proc.terminate()
            proc.wait(10)
    return out


def _update_spread(urls: list[str], count: int = 20) -> list[float]:
    """ms from an UpdateFunction answered by node 1 to node 2 answering with the new code."""
    times = []
    with httpx.Client(base_url=urls[0], timeout=60) as one, \
            httpx.Client(base_url=urls[1], timeout=60) as two:
        deploy(one, "bench-spread", b"def handler(event, context):\n    return '0'\n")
        path = "/2023-03-30/functions/bench-spread"
        for i in range(1, count + 1):
            code = f"def handler(event, context):\n    return '{i}'\n".encode()
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr("index.py", code)
            one.put(path, json={"code": {"zipFile": base64.b64encode(buf.getvalue()).decode()}}
                    ).raise_for_status()
            t0 = time.perf_counter()
            while two.post(f"{path}/invocations", content=b"").text != str(i):
                time.sleep(0.001)
            times.append((time.perf_counter() - t0) * 1000)
    return times


# -- versions, aliases, layers ------------------------------------------------------------

def _layer(client: httpx.Client, name: str, files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    r = client.post(f"/2023-03-30/layers/{name}/versions", json={
        "code": {"zipFile": base64.b64encode(buf.getvalue()).decode()}})
    r.raise_for_status()
    return str(r.json()["layerVersionArn"])


SESSION_HELLO = (b"import os\ndef handler(event, context):\n"
                 b"    return os.environ['FC_INSTANCE_ID']\n")


def _session_hits(url: str, count: int, each: int = 25) -> dict[str, float]:
    """``count`` sessions (at least 16) of ``each`` requests, 8 sessions at once: the
    share of requests that ran on the instance their session's first one ran on."""
    count = max(16, count)
    with httpx.Client(base_url=url, timeout=60) as client:
        deploy(client, "bench-session", SESSION_HELLO, instanceConcurrency=2,
               sessionAffinity="HEADER_FIELD",
               sessionAffinityConfig={"affinityHeaderFieldName": "x-session",
                                      "sessionConcurrencyPerInstance": 2})
    path = "/2023-03-30/functions/bench-session/invocations"

    async def run() -> tuple[int, set[str], list[float]]:
        hits, seen, times = 0, set(), []
        gate = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def session(n: int) -> None:
                nonlocal hits
                async with gate:
                    home = ""
                    for _ in range(each):
                        started = time.perf_counter()
                        r = await client.post(path, headers={"x-session": f"s{n}"})
                        times.append((time.perf_counter() - started) * 1000)
                        r.raise_for_status()
                        home = home or r.text
                        seen.add(r.text)
                        hits += r.text == home
            await asyncio.gather(*(session(n) for n in range(count)))
        return hits, seen, times

    hits, seen, times = asyncio.run(run())
    return {"sessions": count, "each": each, "hits": hits / (count * each),
            "instances": len(seen), "p50": pct(times, 50)}


def bench_versions(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Warm invocations through an alias that sends 10 % to a second version, against
    LATEST (wrk, 32 connections); how many requests of a session run on its instance;
    cold starts of a function with two layers against one with none."""
    proc, url, data = start_funclet(env, FUNCLET_MAX_INSTANCES="100")
    try:
        api = "/2023-03-30/functions"
        with httpx.Client(base_url=url, timeout=60) as client:
            deploy(client, "bench-alias", HELLO)
            client.post(f"{api}/bench-alias/versions", json={}).raise_for_status()
            client.put(f"{api}/bench-alias", json={"description": "two"}).raise_for_status()
            client.post(f"{api}/bench-alias/versions", json={}).raise_for_status()
            client.post(f"{api}/bench-alias/aliases", json={
                "aliasName": "prod", "versionId": "1",
                "additionalVersionWeight": {"2": 0.1}}).raise_for_status()
            for qualifier in ("LATEST", "prod", "prod", "prod"):  # warm every version
                client.post(f"{api}/bench-alias/invocations", params={"qualifier": qualifier})
            arns = [_layer(client, f"bench-layer{i}", {f"python/lib{i}.py": "X = 1\n"})
                    for i in (1, 2)]
        wrk_bin = ensure_wrk()
        for query in ("", "?qualifier=prod"):  # every pool scaled to 32 first
            wrk(wrk_bin, f"{url}{api}/bench-alias/invocations{query}", 32, 2)
        rows: dict[str, dict[str, float]] = {}
        for label, query in (("alias prod, 90/10", "?qualifier=prod"), ("LATEST", ""),
                             ("alias again", "?qualifier=prod"), ("LATEST again", "")):
            print(f"versions: {label} ...", file=sys.stderr)
            rows[label] = wrk(wrk_bin, f"{url}{api}/bench-alias/invocations{query}", 32,
                              args.duration)
        print("versions: session affinity ...", file=sys.stderr)
        sessions = _session_hits(url, args.functions)
        print("versions: cold starts with and without layers ...", file=sys.stderr)
        n = max(10, args.functions // 2)
        cold = {"no layers": measure_cold(url, n, tag="nolayer"),
                "two layers": measure_cold(url, n, tag="layers", layers=arns)}
    finally:
        stop_funclet(proc, data)
    base = (rows["LATEST"]["rps"] + rows["LATEST again"]["rps"]) / 2
    print(f"\nversions: warm invocations @32 for {args.duration} s each, alternating\n")
    print(f"| {'qualifier':<20} | {'req/s':>8} | {'p50 ms':>7} | {'/ LATEST':>8} |")
    print(f"|{'-' * 22}|{'-' * 10}|{'-' * 9}|{'-' * 10}|")
    for label, r in rows.items():
        print(f"| {label:<20} | {r['rps']:>8,.0f} | {r.get('p50', 0):>7.2f} | "
              f"{r['rps'] / base:>8.2f} |")
    print(f"\nsession affinity: {sessions['sessions']:.0f} sessions x "
          f"{sessions['each']:.0f} requests, 8 at once (HEADER_FIELD, 2 sessions per "
          "instance)\n")
    print(f"| {'served by the session instance':<32} | {'instances':>9} | {'p50 ms':>7} |")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 9}|")
    print(f"| {sessions['hits'] * 100:>31.1f}% | {sessions['instances']:>9.0f} | "
          f"{sessions['p50']:>7.2f} |")
    print(f"\ncold starts, {n} fresh functions each, client-side ms\n")
    print(f"| {'function':<12} | {'p50':>7} | {'p99':>7} |")
    print(f"|{'-' * 14}|{'-' * 9}|{'-' * 9}|")
    for label, times in cold.items():
        print(f"| {label:<12} | {pct(times, 50):>7.2f} | {pct(times, 99):>7.2f} |")


def bench_metrics(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Warm invocations @32 while /metrics is scraped every second, against none
    (alternating, twice each): what counting every invocation costs the hot path."""
    proc, url, data = start_funclet(env)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deploy(client, "bench-metrics", HELLO)
            client.post("/2023-03-30/functions/bench-metrics/invocations").raise_for_status()
        wrk_bin = ensure_wrk()
        target = f"{url}/2023-03-30/functions/bench-metrics/invocations"
        wrk(wrk_bin, target, 32, 2)  # instances up first
        rows: dict[str, dict[str, float]] = {}
        scrapes: list[float] = []
        for label in ("none", "scraped", "none again", "scraped again"):
            print(f"metrics: {label} ...", file=sys.stderr)
            stop = threading.Event()
            scraper = threading.Thread(target=_scrape, args=(url, stop, scrapes))
            if label.startswith("scraped"):
                scraper.start()
            rows[label] = wrk(wrk_bin, target, 32, args.duration)
            stop.set()
            if scraper.is_alive():
                scraper.join()
    finally:
        stop_funclet(proc, data)
    base = (rows["none"]["rps"] + rows["none again"]["rps"]) / 2
    print(f"\nmetrics: warm invocations @32 for {args.duration} s each, /metrics scraped "
          f"every second or not ({len(scrapes)} scrapes, p50 {pct(scrapes, 50):.1f} ms)\n")
    print(f"| {'scrapes':<14} | {'req/s':>8} | {'p50 ms':>7} | {'/ none':>7} |")
    print(f"|{'-' * 16}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    for label, r in rows.items():
        print(f"| {label:<14} | {r['rps']:>8,.0f} | {r.get('p50', 0):>7.2f} | "
              f"{r['rps'] / base:>7.2f} |")


def bench_dev(args: argparse.Namespace, env: dict[str, str]) -> None:
    """funclet dev: from a save of the function's file to the first invocation that runs
    the new code (polled every 10 ms), ten saves."""
    proc, url, data = start_funclet(env)
    folder = Path(tempfile.mkdtemp(prefix="bench-dev-"))
    (folder / "index.py").write_text("def handler(event, context):\n    return '0'\n")
    dev = subprocess.Popen([sys.executable, "-m", "funclet", "dev", str(folder), "--name",
                            "bench-dev", "--endpoint", url], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    times: list[float] = []
    try:
        assert dev.stderr is not None
        for line in iter(dev.stderr.readline, ""):
            if line.startswith("Watching"):
                break
        target = f"{url}/2023-03-30/functions/bench-dev/invocations"
        with httpx.Client(timeout=30) as client:
            for i in range(1, 11):
                time.sleep(0.3)
                (folder / "index.py").write_text(
                    f"def handler(event, context):\n    return '{i}'\n")
                saved = time.perf_counter()
                while client.post(target).text != str(i):
                    time.sleep(0.01)
                times.append((time.perf_counter() - saved) * 1000)
    finally:
        dev.terminate()
        dev.wait(10)
        stop_funclet(proc, data)
        shutil.rmtree(folder, ignore_errors=True)
    print("\nfunclet dev: a save to the first invocation of the new code, 10 saves\n")
    print(f"| {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | {'target':<8} |")
    print(f"|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 10}|")
    print(f"| {pct(times, 50):>7.0f} | {pct(times, 99):>7.0f} | {max(times):>7.0f} | "
          f"{'<= 1000':<8} |")


def _scrape(url: str, stop: threading.Event, times: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.wait(1.0):
            started = time.perf_counter()
            client.get("/metrics").raise_for_status()
            times.append((time.perf_counter() - started) * 1000)


FAIL_1_IN_100 = (b"import itertools\ncalls = itertools.count()\n"
                 b"def handler(event, context):\n"
                 b"    if next(calls) % 100 == 99:\n        raise ValueError('one in 100')\n"
                 b"    return 'ok'\n")


def bench_console(args: argparse.Namespace, env: dict[str, str]) -> None:
    """The console's pages with 1,000 functions and 100,000 invocation records: load
    time (as the client on loopback sees it: the server's time and one round trip),
    30 loads each, against an API read of one function."""
    proc, url, data = start_funclet(env)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            print("console: deploying 1,000 functions ...", file=sys.stderr)
            for i in range(1000):
                deploy(client, f"bench-console-{i:04d}", HELLO)
            deploy(client, "bench-console-busy", FAIL_1_IN_100)
            wrk_bin = ensure_wrk()
            target = f"{url}/2023-03-30/functions/bench-console-busy/invocations"
            made = 0.0
            while made < 100_000:
                print(f"console: {made:,.0f} invocation records ...", file=sys.stderr)
                made += wrk(wrk_bin, target, 32, 5)["count"]
            for i in range(0, 1000, 10):  # and a few records of other functions
                client.post(f"/2023-03-30/functions/bench-console-{i:04d}/invocations")
            pages = {
                "API: GetFunction (floor)": "/2023-03-30/functions/bench-console-busy",
                "functions (first 50)": "/console/",
                "functions, a later page": "/console/?after=bench-console-0500",
                "function page": "/console/functions/bench-console-busy",
                "invocations, every function": "/console/invocations",
                "invocations, one function": "/console/invocations?function=bench-console-busy",
                "invocations, failed": "/console/invocations?status=failed",
                "invocations, failed, older": "/console/invocations?status=failed&before="
                                              f"{int(time.time() * 1000) - 5000}:z",
                "charts, the function, 1 h": "/console/charts?function=bench-console-busy",
                "charts, every function, 1 h": "/console/charts",
            }
            rows = {}
            for label, path in pages.items():
                client.get(path).raise_for_status()
                times = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                rows[label] = times
    finally:
        stop_funclet(proc, data)
    print(f"\nconsole: page loads with 1,001 functions and {made:,.0f} invocation records "
          "of one function (30 loads each; target <= 200 ms)\n")
    print(f"| {'page':<30} | {'p50 ms':>7} | {'p99 ms':>7} |")
    print(f"|{'-' * 32}|{'-' * 9}|{'-' * 9}|")
    for label, times in rows.items():
        print(f"| {label:<30} | {pct(times, 50):>7.1f} | {pct(times, 99):>7.1f} |")


LAMBDA_NODE_HELLO = b"exports.handler = async (event) => ({ hello: event.name || 'bench' });\n"
# Lambda's semantics encode the result as JSON: a str (bytes are not JSON).
LAMBDA_HELLO = b"def handler(event, context):\n    return 'hello, bench!'\n"
LAMBDA = "/2015-03-31/functions"


def _lambda_function(client: httpx.Client, name: str, runtime: str, handler: str,
                     files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    client.post(LAMBDA, json={"FunctionName": name, "Runtime": runtime, "Handler": handler,
                              "Role": "arn:aws:iam::1:role/bench", "Code": {
                                  "ZipFile": base64.b64encode(buf.getvalue()).decode()}},
                ).raise_for_status()


def _lambda_cold(url: str, n: int, runtime: str = "", handler: str = "index.handler",
                 files: dict[str, bytes] | None = None, tag: str = "") -> list[float]:
    """The first Invoke of each of ``n`` hello functions just created through the Lambda
    API (Python unless ``runtime`` says), as the client sees it."""
    runtime = runtime or f"python{sys.version_info[0]}.{sys.version_info[1]}"
    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(n):
            name = f"bench-lcold{tag}-{i}-{os.getpid()}"
            _lambda_function(client, name, runtime, handler,
                             files or {"index.py": LAMBDA_HELLO})
            client.get("/healthz")
            t0 = time.perf_counter()
            r = client.post(f"{LAMBDA}/{name}/invocations", content=b"{}")
            times.append((time.perf_counter() - t0) * 1000)
            assert r.headers["x-funclet-start-kind"] == "cold", r.headers
    return times


def _serverless_offline(env: dict[str, str], cold: int = 0
                        ) -> tuple[subprocess.Popen[bytes], str] | None:
    """serverless 3 with serverless-offline (npm, installed once into bench/.cache) serving
    the Node.js hello (and ``cold`` more of it, ``cold0``..., never invoked yet); its
    Lambda Invoke API's URL for the hello (None without Node.js or npm)."""
    if not shutil.which("node") or not shutil.which("npm"):
        return None
    cache = ROOT / "bench" / ".cache" / "serverless-offline"
    if not (cache / "node_modules" / ".bin" / "serverless").exists():
        cache.mkdir(parents=True, exist_ok=True)
        print("lambda: installing serverless@3 and serverless-offline@13 (once) ...",
              file=sys.stderr)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund",
                        "serverless@3", "serverless-offline@13"], cwd=cache, check=True,
                       timeout=900, capture_output=True)
    service = Path(tempfile.mkdtemp(prefix="bench-sls-"))
    (service / "handler.js").write_bytes(LAMBDA_NODE_HELLO)
    (service / "serverless.yml").write_text(
        "service: bench\nframeworkVersion: '3'\nprovider:\n  name: aws\n"
        "  runtime: nodejs20.x\nplugins:\n  - serverless-offline\nfunctions:\n"
        "  hello:\n    handler: handler.handler\n"
        + "".join(f"  cold{i}:\n    handler: handler.handler\n" for i in range(cold)))
    port, lambda_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(cache / "node_modules" / ".bin" / "serverless"), "offline", "start",
         "--httpPort", str(port), "--lambdaPort", str(lambda_port), "--noPrependStageInUrl"],
        cwd=service, env={**env, "SLS_TELEMETRY_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = f"http://127.0.0.1:{lambda_port}{LAMBDA}/bench-dev-hello/invocations"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.post(target, content=b"{}", timeout=5).status_code == 200:
                return proc, target
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("serverless-offline did not answer its Lambda Invoke API in 60 s")


def bench_lambda(args: argparse.Namespace, env: dict[str, str]) -> None:
    """The Lambda API beside FC's, on the same funclet: warm Invoke p50 @1 and req/s @32,
    cold starts, a Function URL against an HTTP trigger; and serverless-offline's Lambda
    Invoke API for the same Node.js hello, in the same run."""
    wrk_bin = ensure_wrk()
    proc, url, data = start_funclet(env)
    rows: dict[str, dict[str, float]] = {}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deploy(client, "bench-fc", HELLO)
            _lambda_function(client, "bench-lambda", f"python{sys.version_info[0]}."
                             f"{sys.version_info[1]}", "index.handler",
                             {"index.py": LAMBDA_HELLO})
            _lambda_function(client, "bench-lambda-node", "nodejs20.x", "handler.handler",
                             {"handler.js": LAMBDA_NODE_HELLO})
            deploy(client, "bench-trigger", HTTP_HELLO)
            client.post("/2023-03-30/functions/bench-trigger/triggers", json={
                "triggerName": "web", "triggerType": "http", "triggerConfig": {
                    "authType": "anonymous", "methods": ["POST"]}}).raise_for_status()
            _lambda_function(client, "bench-url", f"python{sys.version_info[0]}."
                             f"{sys.version_info[1]}", "index.handler",
                             {"index.py": LAMBDA_HELLO})
            function_url = client.post("/2021-10-31/functions/bench-url/url", json={
                "AuthType": "NONE"}).json()["FunctionUrl"]
        targets = {
            "FC InvokeFunction (Python)": f"{url}/2023-03-30/functions/bench-fc/invocations",
            "Lambda Invoke (Python)": f"{url}{LAMBDA}/bench-lambda/invocations",
            "Lambda Invoke (Node.js)": f"{url}{LAMBDA}/bench-lambda-node/invocations",
            "FC HTTP trigger": f"{url}/http/bench-trigger/",
            "Lambda Function URL": function_url,
        }
        for label, target in targets.items():
            first = httpx.post(target, content=b"{}")
            first.raise_for_status()
            assert "x-amz-function-error" not in first.headers, (label, first.text)
            for conns in (1, 32):
                print(f"lambda: {label} @{conns} ...", file=sys.stderr)
                rows[f"{label} @{conns}"] = wrk(wrk_bin, target, conns, args.duration)
        print("lambda: cold starts ...", file=sys.stderr)
        lambda_cold = _lambda_cold(url, args.functions)
        fc_cold = measure_cold(url, args.functions, tag="-fc")
    finally:
        stop_funclet(proc, data)
    offline = _serverless_offline(env)
    if offline is not None:
        sls, target = offline
        try:
            for conns in (1, 32):
                print(f"lambda: serverless-offline @{conns} ...", file=sys.stderr)
                rows[f"serverless-offline Invoke (Node.js) @{conns}"] = wrk(
                    wrk_bin, target, conns, args.duration)
        finally:
            sls.terminate()
            sls.wait(30)
    print(f"\nlambda: wrk {args.duration} s per row, the same hello functions; cold starts "
          f"of {args.functions} just-created functions\n")
    print(f"| {'path':<44} | {'p50 ms @1':>9} | {'req/s @32':>9} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 11}|")
    for label in dict.fromkeys(k.rsplit(" @", 1)[0] for k in rows):
        print(f"| {label:<44} | {rows[label + ' @1'].get('p50', 0):>9.3f} | "
              f"{rows[label + ' @32']['rps']:>9,.0f} |")
    print(f"\n| cold start | p50 ms | p99 ms |\n|---|---|---|\n"
          f"| Lambda CreateFunction + first Invoke (Python) | {pct(lambda_cold, 50):.2f} | "
          f"{pct(lambda_cold, 99):.2f} |\n"
          f"| FC CreateFunction + first InvokeFunction (Python) | {pct(fc_cold, 50):.2f} | "
          f"{pct(fc_cold, 99):.2f} |")
    sls_row = rows.get("serverless-offline Invoke (Node.js) @32")
    if sls_row:
        ratio = rows["Lambda Invoke (Node.js) @32"]["rps"] / sls_row["rps"]
        print(f"\nfunclet's Lambda Invoke (Node.js, sandbox on) / serverless-offline's, "
              f"req/s @32: {ratio:.2f} (target >= 1.5)")


def _first_invokes(urls: list[str]) -> list[float]:
    """One invocation of each URL (a function never invoked before), client-side ms."""
    times = []
    with httpx.Client(timeout=60) as client:
        for target in urls:
            t0 = time.perf_counter()
            r = client.post(target, content=b"{}")
            times.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    return times


def bench_versus(args: argparse.Namespace, env: dict[str, str]) -> None:
    """One table: funclet (sandbox on) against the bare floor and against
    serverless-offline, for the same Node.js hello (and funclet's Python hello): cold
    start p50, warm p50 @1, req/s @1 and @32, in this run."""
    wrk_bin = ensure_wrk()
    rows: dict[str, dict[str, Any]] = {}

    def warm(label: str, target: str) -> None:
        for conns in (1, 32):
            print(f"versus: {label} @{conns} ...", file=sys.stderr)
            rows[label][f"@{conns}"] = wrk(wrk_bin, target, conns, args.duration)

    floor, floor_url = start_floor(env)
    try:
        rows["floor: bare uvicorn hello"] = {
            "cold": pct(measure_floor_request(floor_url, args.functions), 50)}
        warm("floor: bare uvicorn hello", floor_url)
    finally:
        floor.terminate()
        floor.wait(10)
    proc, url, data = start_funclet(env)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            _lambda_function(client, "bench-node", "nodejs20.x", "handler.handler",
                             {"handler.js": LAMBDA_NODE_HELLO})
            deploy(client, "bench-py", HELLO)
        for label, target, cold in (
            ("funclet: Lambda Invoke, Node.js hello", f"{url}{LAMBDA}/bench-node/invocations",
             lambda: _lambda_cold(url, args.functions, "nodejs20.x", "handler.handler",
                                  {"handler.js": LAMBDA_NODE_HELLO}, tag="-node")),
            ("funclet: FC InvokeFunction, Python hello",
             f"{url}/2023-03-30/functions/bench-py/invocations",
             lambda: measure_cold(url, args.functions, tag="-versus")),
        ):
            print(f"versus: {label}, cold starts ...", file=sys.stderr)
            rows[label] = {"cold": pct(cold(), 50)}
            httpx.post(target, content=b"{}").raise_for_status()
            warm(label, target)
    finally:
        stop_funclet(proc, data)
    offline = _serverless_offline(env, cold=args.functions)
    sls_label = "serverless-offline: Lambda Invoke, Node.js hello"
    if offline is not None:
        sls, target = offline
        try:
            print(f"versus: {sls_label}, cold starts ...", file=sys.stderr)
            base = target.rsplit("/bench-dev-hello/", 1)[0]
            rows[sls_label] = {"cold": pct(_first_invokes(
                [f"{base}/bench-dev-cold{i}/invocations" for i in range(args.functions)]), 50)}
            warm(sls_label, target)
        finally:
            sls.terminate()
            sls.wait(30)
    print(f"\nversus: the same hello, side by side in this run (wrk {args.duration} s per "
          f"cell; cold start: p50 of {args.functions} first invocations of never-invoked "
          "functions, the floor's a keep-alive request); funclet with its full sandbox\n")
    print(f"| {'':<50} | {'cold p50 ms':>11} | {'warm p50 @1':>11} | {'req/s @1':>9} "
          f"| {'req/s @32':>9} |")
    print(f"|{'-' * 52}|{'-' * 13}|{'-' * 13}|{'-' * 11}|{'-' * 11}|")
    for label, row in rows.items():
        one, many = row["@1"], row["@32"]
        print(f"| {label:<50} | {row['cold']:>11.2f} | {one.get('p50', 0):>11.3f} "
              f"| {one['rps']:>9,.0f} | {many['rps']:>9,.0f} |")
    node = rows["funclet: Lambda Invoke, Node.js hello"]
    py = rows["funclet: FC InvokeFunction, Python hello"]
    base_row = rows["floor: bare uvicorn hello"]
    print(f"\nfunclet (Python) / floor: req/s @32 "
          f"{py['@32']['rps'] / base_row['@32']['rps']:.2f} (target >= 0.35), "
          f"p50 @1 {py['@1']['p50'] / base_row['@1']['p50']:.2f}x (target <= 2.5)")
    if sls_label in rows:
        sls_row = rows[sls_label]
        print(f"funclet (Node.js) / serverless-offline: req/s @32 "
              f"{node['@32']['rps'] / sls_row['@32']['rps']:.2f}x (target >= 2), "
              f"cold start {sls_row['cold'] / node['cold']:.1f}x faster (target >= 10)")
    else:
        print("serverless-offline: not run (needs node and npm)")


HEAVY = b"""import json, time
import sympy

def handler(event, context):
    until = json.loads(event or b"{}").get("until")  # a hold: busy until then
    if until:
        time.sleep(max(0, until - time.time()))
    return str(sympy.sqrt(8))
"""


def _heavy_package() -> str:
    """A function that vendors SymPy (and mpmath), compiled (unchecked-hash .pyc: valid
    wherever the zip is unpacked): its imports take some 200 ms here."""
    import compileall

    from funclet.packaging import vendor_requirements

    folder = Path(tempfile.mkdtemp(prefix="bench-heavy-"))
    (folder / "requirements.txt").write_text("sympy\n")
    python = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    vendored = vendor_requirements(folder, python, Path.home() / ".cache/funclet/deps")
    assert vendored is not None
    compileall.compile_dir(vendored, quiet=1, workers=2,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("index.py", HEAVY)
        for path in vendored.rglob("*"):
            rel = path.relative_to(vendored).as_posix()
            if path.is_file() and not rel.startswith("bin/"):
                zf.write(path, rel)
    shutil.rmtree(folder, ignore_errors=True)
    return base64.b64encode(buf.getvalue()).decode()


def measure_fresh_instances(url: str, name: str, n: int,
                            durations: list[float] | None = None) -> list[float]:
    """``n`` cold starts of one function version: each measured invocation finds every
    instance busy (the one before is held by a sleeping invocation), so it gets a new
    instance; the first instance (and a snapshot's template) is made before measuring.
    ``durations``: the handler's own time of each (x-funclet-duration-ms)."""
    times: list[float] = []
    holds: list[threading.Thread] = []
    path = f"/2023-03-30/functions/{name}/invocations"
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post(path, content=b"{}").raise_for_status()  # code unpacked, template made
        hold_until = time.time() + 5 + n * 0.6

        def hold() -> None:
            with httpx.Client(base_url=url, timeout=120) as own:
                own.post(path, content=json.dumps({"until": hold_until}).encode())

        for i in range(n + 1):
            if i:  # (the first: the instance made before measuring, to be held)
                t0 = time.perf_counter()
                r = client.post(path, content=b"{}")
                times.append((time.perf_counter() - t0) * 1000)
                assert r.headers["x-funclet-start-kind"] == "cold", r.headers
                assert r.content == b"2*sqrt(2)", r.content
                if durations is not None:
                    durations.append(float(r.headers["x-funclet-duration-ms"]))
            holds.append(threading.Thread(target=hold))
            holds[-1].start()
            time.sleep(0.2)  # the hold has taken the instance
    for thread in holds:
        thread.join()
    return times


def bench_snapshot(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Cold starts of a function whose imports are heavy (SymPy), each a new instance of
    the same version, with and without a snapshot (snapStart)."""
    print("snapshots: vendoring SymPy ...", file=sys.stderr)
    code = _heavy_package()
    n = min(args.functions, 20)
    results: dict[str, list[float]] = {}
    durations: dict[str, list[float]] = {}
    proc, url, data = start_funclet(env)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for label, extra in (("without a snapshot", {}),
                                 ("from its snapshot", {"snapStart": {"applyOn": "All"}})):
                name = f"bench-heavy-{len(results)}-{os.getpid()}"
                r = client.post("/2023-03-30/functions", json={
                    "functionName": name, "handler": "index.handler", "timeout": 120,
                    "runtime": f"python{sys.version_info[0]}.{sys.version_info[1]}",
                    "code": {"zipFile": code}, **extra})
                r.raise_for_status()
                print(f"snapshots: {n} new instances {label} ...", file=sys.stderr)
                durations[label] = []
                results[label] = measure_fresh_instances(url, name, n, durations[label])
    finally:
        stop_funclet(proc, data)
    print(f"\nsnapshots: a function importing SymPy, {n} new instances of one version, "
          "client-side ms (target: <= 10 ms p50 from its snapshot)\n")
    print(f"| {'cold start':<20} | {'p50':>8} | {'p99':>8} | {'handler p50':>11} | "
          f"{'p50 - handler':>13} |")
    print(f"|{'-' * 22}|{'-' * 10}|{'-' * 10}|{'-' * 13}|{'-' * 15}|")
    for label, times in results.items():
        spent = [t - d for t, d in zip(times, durations[label], strict=True)]
        print(f"| {label:<20} | {pct(times, 50):>8.2f} | {pct(times, 99):>8.2f} | "
              f"{pct(durations[label], 50):>11.2f} | {pct(spent, 50):>13.2f} |")
    print("\n(handler: its first run in the new instance, SymPy's own first-call work; "
          "p50 - handler: the cold start itself)")


def bench_keepalive(args: argparse.Namespace, env: dict[str, str]) -> None:
    """The keep-alive policies on a generated trace (a simulation of funclet's own
    policy code: no platform runs)."""
    subprocess.run([sys.executable, str(ROOT / "bench" / "keepalive_sim.py")], env=env,
                   check=True)


if __name__ == "__main__":
    main()
