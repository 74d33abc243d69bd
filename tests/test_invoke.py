"""Sync invocation end to end: events, results, headers, logs, errors, warm reuse."""

from __future__ import annotations

import base64
import json
import socket
import time

import httpx

from tests.conftest import Server
from tests.helpers import API, deploy, invoke, kill_instance, wait_for

ECHO = {
    "index.py": """
        import json

        def handler(event, context):
            return event

        def as_str(event, context):
            return "héllo"

        def as_json(event, context):
            return {"got": len(event), "request_id": context.request_id}

        def as_none(event, context):
            return None
    """
}


def test_event_bytes_reach_the_handler_unchanged_and_come_back(client: httpx.Client) -> None:
    name = deploy(client, ECHO)
    event = bytes(range(256)) * 3
    r = invoke(client, name, event)
    assert r.status_code == 200
    assert r.content == event
    assert "x-fc-error-type" not in r.headers


def test_return_values_become_the_body(client: httpx.Client) -> None:
    for handler, check in (
        ("index.as_str", lambda r: r.content == "héllo".encode()),
        ("index.as_json", lambda r: r.json()["got"] == 3
         and r.json()["request_id"] == r.headers["x-fc-request-id"]),
        ("index.as_none", lambda r: r.content == b""),
    ):
        name = deploy(client, ECHO, handler=handler)
        r = invoke(client, name, b"abc")
        assert r.status_code == 200 and check(r), (handler, r.content)


def test_first_invocation_is_cold_and_the_next_is_warm_on_the_same_instance(
    client: httpx.Client,
) -> None:
    name = deploy(client, ECHO)
    first = invoke(client, name, b"1")
    second = invoke(client, name, b"2")
    assert first.headers["x-funclet-start-kind"] == "cold"
    assert float(first.headers["x-funclet-init-duration-ms"]) > 0
    assert second.headers["x-funclet-start-kind"] == "warm"
    assert "x-funclet-init-duration-ms" not in second.headers
    assert first.headers["x-funclet-instance-id"] == second.headers["x-funclet-instance-id"]
    for r in (first, second):
        assert r.headers["x-fc-request-id"].startswith("1-")
        assert r.headers["x-fc-code-checksum"].isdigit()  # FC's CRC-64
        assert float(r.headers["x-funclet-duration-ms"]) >= 0


def test_module_level_state_persists_across_warm_invocations(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        count = 0

        def handler(event, context):
            global count
            count += 1
            return str(count)
    """})
    assert [invoke(client, name).text for _ in range(3)] == ["1", "2", "3"]


def test_tail_log_returns_the_invocation_log_in_fc_format(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        import sys

        def handler(event, context):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            context.logger.info("via logger")
            return "ok"
    """})
    r = invoke(client, name, **{"x-fc-log-type": "Tail"})
    log = base64.b64decode(r.headers["x-fc-log-result"]).decode()
    rid = r.headers["x-fc-request-id"]
    assert f"FC Invoke Start RequestId: {rid}" in log
    assert log.rstrip().endswith(f"FC Invoke End RequestId: {rid}")
    assert "to stdout\n" in log and "to stderr\n" in log
    assert f"Z {rid} [INFO] via logger" in log
    assert "x-fc-log-result" not in invoke(client, name).headers


def test_tail_log_is_at_most_4_kb(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        def handler(event, context):
            for i in range(2000):
                print("line", i)
            return "ok"
    """})
    r = invoke(client, name, **{"x-fc-log-type": "Tail"})
    log = base64.b64decode(r.headers["x-fc-log-result"])
    assert len(log) == 4096
    assert log.rstrip().endswith(r.headers["x-fc-request-id"].encode())


def test_handler_exception_gives_fc_error_with_user_frames_only(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        def helper():
            raise ValueError("bad input")

        def handler(event, context):
            helper()
    """})
    r = invoke(client, name)
    assert r.status_code == 200
    assert r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    body = r.json()
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad input"
    trace = "".join(body["stackTrace"])
    assert "in handler" in trace and "in helper" in trace
    files = [line.split('"')[1] for line in body["stackTrace"]]
    assert files and all(f.endswith("/index.py") for f in files), files
    # The instance survives a handler error.
    again = invoke(client, name)
    assert again.headers["x-funclet-start-kind"] == "warm"


def test_unknown_function_is_404_function_not_found(client: httpx.Client) -> None:
    r = invoke(client, "no-such-function")
    assert r.status_code == 404
    body = r.json()
    assert body["Code"] == "FunctionNotFound"
    assert "no-such-function" in body["Message"]
    assert body["RequestId"] == r.headers["x-fc-request-id"]


def test_timeout_kills_the_instance_and_the_next_invocation_is_cold(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        import time

        def handler(event, context):
            if event == b"slow":
                time.sleep(30)
            return "fast"
    """}, timeout=1)
    warm = invoke(client, name, b"fast")
    r = invoke(client, name, b"slow")
    assert r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert r.json()["errorMessage"] == "Task timed out after 1 seconds"
    assert 900 <= float(r.headers["x-funclet-duration-ms"]) < 5000
    after = invoke(client, name, b"fast")
    assert after.text == "fast"
    assert after.headers["x-funclet-start-kind"] == "cold"
    assert after.headers["x-funclet-instance-id"] != warm.headers["x-funclet-instance-id"]


def test_a_crashing_handler_fails_clearly_and_the_next_gets_a_new_instance(
    client: httpx.Client,
) -> None:
    name = deploy(client, {"index.py": """
        import os

        def handler(event, context):
            if event == b"crash":
                os._exit(3)
            return "alive"
    """})
    first = invoke(client, name, b"ok")
    r = invoke(client, name, b"crash")
    assert r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert "exited unexpectedly" in r.json()["errorMessage"]
    after = invoke(client, name, b"ok")
    assert after.text == "alive"
    assert after.headers["x-funclet-instance-id"] != first.headers["x-funclet-instance-id"]


def test_import_errors_are_clear_and_carry_the_users_traceback(client: httpx.Client) -> None:
    cases = {
        "Runtime.ImportModuleError": {"index.py": "import not_a_module\n"},
        "Runtime.UserCodeSyntaxError": {"index.py": "def handler(:\n"},
        "Runtime.HandlerNotFound": {"index.py": "def other(event, context):\n    pass\n"},
    }
    for error_type, files in cases.items():
        name = deploy(client, files)
        r = invoke(client, name, **{"x-fc-log-type": "Tail"})
        body = r.json()
        assert r.headers["x-fc-error-type"] == "UnhandledInvocationError", body
        assert body["errorType"] == error_type, body
        assert r.headers["x-funclet-start-kind"] == "cold"
    name = deploy(client, {"index.py": "import not_a_module\n"})
    body = invoke(client, name).json()
    assert "No module named 'not_a_module'" in body["errorMessage"]
    assert any("index.py" in line for line in body["stackTrace"])
    syntax = invoke(client, deploy(client, cases["Runtime.UserCodeSyntaxError"])).json()
    assert any("index.py" in line for line in syntax["stackTrace"])
    for trace in (body["stackTrace"], syntax["stackTrace"]):  # the user's frames only
        assert not any("bootstrap" in line or "importlib" in line for line in trace), trace


def test_context_carries_fc_fields(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        import json

        def handler(event, context):
            f = context.function
            return json.dumps({
                "request_id": context.request_id, "name": f.name, "handler": f.handler,
                "memory": f.memory, "timeout": f.timeout, "region": context.region,
                "account_id": context.account_id,
                "ak": context.credentials.access_key_id,
                "remaining": context.get_remaining_time_in_millis(),
            })
    """}, timeout=30, memorySize=256)
    r = invoke(client, name)
    ctx = r.json()
    assert ctx["request_id"] == r.headers["x-fc-request-id"]
    assert (ctx["name"], ctx["handler"], ctx["memory"], ctx["timeout"]) == (
        name, "index.handler", 256, 30)
    assert ctx["region"] and ctx["account_id"]
    assert ctx["ak"] == ""
    assert 25_000 < ctx["remaining"] <= 30_000


def test_the_invocation_that_starts_an_instance_gets_its_whole_timeout_after_its_imports(
    client: httpx.Client,
) -> None:
    # It is sent to the instance with its spec (no round trip once the instance is
    # ready), yet its deadline counts from when it starts, not from when it was sent:
    # slow imports (1.5 s) take nothing of its 3 s; an initializer neither. A handler
    # that outlives the timeout is still stopped at it.
    name = deploy(client, {"index.py": """
        import time
        time.sleep(1.5)

        def init(context):
            time.sleep(0.5)

        def handler(event, context):
            if event == b"slow":
                time.sleep(5)
            return str(context.get_remaining_time_in_millis())
    """}, timeout=3, instanceLifecycleConfig={"initializer": {"handler": "index.init",
                                                             "timeout": 3}})
    r = invoke(client, name)
    assert r.headers["x-funclet-start-kind"] == "cold"
    assert 2_500 < int(r.text) <= 3_000
    slow = deploy(client, {"index.py": """
        import time
        time.sleep(1.5)

        def handler(event, context):
            time.sleep(5)
    """}, timeout=2)
    started = time.monotonic()
    r = invoke(client, slow)
    assert r.json()["errorType"] == "FunctionTimeoutError", r.text
    assert 3.4 < time.monotonic() - started < 5  # imports, then the 2 s of its timeout


def test_environment_has_fc_variables_and_the_functions_own_but_not_the_platforms(
    client: httpx.Client,
) -> None:
    name = deploy(client, {"index.py": """
        import json, os

        def handler(event, context):
            return json.dumps(dict(os.environ))
    """}, environmentVariables={"GREETING": "hi"}, memorySize=1024)
    env = invoke(client, name).json()
    assert env["GREETING"] == "hi"
    assert env["FC_FUNCTION_NAME"] == name
    assert env["FC_FUNCTION_HANDLER"] == "index.handler"
    assert env["FC_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["FC_INSTANCE_ID"].startswith("c-")
    assert env["FC_REGION"] and env["FC_ACCOUNT_ID"]
    assert not any(k.startswith("FUNCLET_") for k in env)


def test_function_sees_its_code_and_the_stdlib_but_not_the_platforms_packages(
    client: httpx.Client,
) -> None:
    name = deploy(client, {
        "index.py": """
            import importlib.util, json, sys
            import vendored

            def handler(event, context):
                found = {m: importlib.util.find_spec(m) is not None
                         for m in ("funclet", "starlette", "httpx", "json", "vendored")}
                return json.dumps({"found": found, "path": sys.path, "v": vendored.VALUE})
        """,
        "vendored/__init__.py": "VALUE = 42\n",
    })
    out = invoke(client, name).json()
    assert out["found"] == {"funclet": False, "starlette": False, "httpx": False,
                            "json": True, "vendored": True}
    assert out["v"] == 42
    assert not any("site-packages" in p for p in out["path"])


def test_oversized_event_is_413_and_nothing_runs(client: httpx.Client) -> None:
    name = deploy(client, ECHO)
    r = invoke(client, name, b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413
    assert r.json()["Code"] == "EntityTooLarge"
    records = client.get(f"{API}/functions/{name}/invocations").json()["invocations"]
    assert records == []


def test_json_error_body_is_parseable_for_non_ascii_messages(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        def handler(event, context):
            raise RuntimeError("échec")
    """})
    body = json.loads(invoke(client, name).content)
    assert body["errorMessage"] == "échec"


def test_instance_concurrency_runs_invocations_side_by_side_on_one_instance(
    client: httpx.Client,
) -> None:
    import concurrent.futures

    name = deploy(client, {"index.py": """
        import threading, time

        barrier = threading.Barrier(3, timeout=10)

        def handler(event, context):
            if event == b"warm-up":
                return "ready"
            print("in", context.request_id)
            barrier.wait()  # only passes when three invocations run at once
            return context.request_id
    """}, instanceConcurrency=3)
    assert invoke(client, name, b"warm-up").text == "ready"  # a cold start, then three at once
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: invoke(
            client, name, **{"x-fc-log-type": "Tail"}), range(3)))
    assert all("x-fc-error-type" not in r.headers for r in responses), responses[0].text
    assert {r.headers["x-funclet-instance-id"] for r in responses} == {
        responses[0].headers["x-funclet-instance-id"]}
    for r in responses:
        rid = r.headers["x-fc-request-id"]
        assert r.text == rid
        log = base64.b64decode(r.headers["x-fc-log-result"]).decode()
        assert f"in {rid}" in log
        assert log.count("\nin ") == 1  # each invocation's log holds only its own output


def test_an_instance_killed_while_idle_is_never_handed_out_warm(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": "def handler(event, context):\n    return 'ok'\n"})
    first = invoke(client, name)
    kill_instance(first.headers["x-funclet-instance-id"])

    def stopped() -> bool:
        items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
        return any(i["instanceId"] == first.headers["x-funclet-instance-id"]
                   and i["stopReason"] == "crashed" for i in items)

    wait_for(stopped)
    after = invoke(client, name)
    assert "x-fc-error-type" not in after.headers, after.text
    assert after.headers["x-funclet-start-kind"] == "cold"


def test_output_of_threads_the_handler_starts_lands_in_its_log(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        import threading

        def handler(event, context):
            t = threading.Thread(target=lambda: print("from a thread"))
            t.start()
            t.join()
            return "ok"
    """})
    r = invoke(client, name, **{"x-fc-log-type": "Tail"})
    assert r.text == "ok", r.text
    assert "from a thread" in base64.b64decode(r.headers["x-fc-log-result"]).decode()


def test_undecodable_output_does_not_break_the_instance(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        def handler(event, context):
            print("bad \\udcff bytes")
            return "still fine"
    """})
    first = invoke(client, name, **{"x-fc-log-type": "Tail"})
    assert first.text == "still fine"
    assert "bad ? bytes" in base64.b64decode(first.headers["x-fc-log-result"]).decode()
    assert invoke(client, name).headers["x-funclet-start-kind"] == "warm"


def test_a_client_gone_before_its_event_is_in_runs_nothing_and_logs_no_error(
        server: Server, client: httpx.Client) -> None:
    """The event announced but cut short (the client closed): nothing is invoked, no
    answer is owed, and the platform's log has no internal error for it."""
    name = deploy(client, {"index.py": "def handler(event, context):\n    return 'ran'\n"})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST {API}/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: 1000\r\n\r\n{'x' * 10}".encode())
        time.sleep(0.2)
    assert invoke(client, name).content == b"ran"  # (the platform serves on)
    records = client.get(f"{API}/functions/{name}/invocations").json()["invocations"]
    assert len(records) == 1
    assert "failed inside funclet" not in server.log()
