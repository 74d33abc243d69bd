"""The web console: functions, a function's page, the invoke form and its result, an
invocation's log; what a function's log or payload holds is escaped, never markup."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, unique, wait_for

CODE = {"index.py": """
def handler(event, context):
    print("<script>alert('log')</script>")
    return b"<b>" + event + b"</b>"
"""}
FAILING = {"index.py": """
def handler(event, context):
    if event == b"fail":
        raise ValueError("asked to fail")
    return event
"""}


def test_functions_a_function_and_the_invoke_form(client: httpx.Client) -> None:
    name = deploy(client, CODE, description="<img src=x onerror=alert(1)>")
    page = client.get("/console/", params={"q": name})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'href="/console/functions/{name}"' in page.text and "none yet" in page.text

    r = client.post(f"/console/functions/{name}/invoke",
                    data={"payload": "<i>hi</i>", "mode": "sync"})
    assert r.status_code == 200, r.text
    body = re.search(r'<pre id="body">(.*?)</pre>', r.text, re.S)
    log = re.search(r'<pre id="log">(.*?)</pre>', r.text, re.S)
    assert body and body.group(1) == "&lt;b&gt;&lt;i&gt;hi&lt;/i&gt;&lt;/b&gt;"
    assert log and "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;" in log.group(1)
    assert "<script>" not in r.text and "<img src=x" not in r.text  # escaped everywhere
    assert "cold start" in r.text and "succeeded" in r.text
    request_id = re.search(r'invocations/([^"]+)">\1</a></p>', r.text)
    assert request_id

    again = client.get(f"/console/functions/{name}")
    assert request_id.group(1) in again.text  # in the recent invocations
    record = client.get(f"/console/functions/{name}/invocations/{request_id.group(1)}")
    assert record.status_code == 200 and "&lt;script&gt;" in record.text

    listed = client.get("/console/", params={"q": name})
    assert "succeeded" in listed.text  # its last invocation

    queued = client.post(f"/console/functions/{name}/invoke",
                         data={"payload": "later", "mode": "async"})
    assert "Accepted async task" in queued.text
    task_id = re.search(r"Accepted async task <code>([^<]+)</code>", queued.text)
    assert task_id
    wait_for(lambda: client.get(f"/2023-03-30/functions/{name}/async-tasks/"
                                f"{task_id.group(1)}").json()["status"] == "Succeeded")


def test_unknown_things_and_bad_input_are_pages_with_the_error(client: httpx.Client) -> None:
    missing = client.get(f"/console/functions/{unique('nope')}")
    assert missing.status_code == 404 and "FunctionNotFound" in missing.text
    name = deploy(client, CODE)
    bad = client.post(f"/console/functions/{name}/invoke", data={"qualifier": "no such"})
    assert bad.status_code == 400 and "qualifier" in bad.text
    gone = client.get(f"/console/functions/{name}/invocations/1-nothing")
    assert gone.status_code == 404
    assert client.get("/console", follow_redirects=False).status_code == 307
    # Another site's page cannot post the form from the operator's browser (CSRF).
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}):
        forged = client.post(f"/console/functions/{name}/invoke", data={"payload": "x"},
                             headers=headers)
        assert forged.status_code == 403, headers
    same = client.post(f"/console/functions/{name}/invoke", data={"payload": "x"},
                       headers={"origin": str(client.base_url).rstrip("/")})
    assert same.status_code == 200


def test_invocations_filtered_tasks_with_their_events_and_charts(client: httpx.Client) -> None:
    name = deploy(client, FAILING)
    target = deploy(client, FAILING)
    arn = client.get(f"{API}/functions/{target}").json()["functionArn"]
    r = client.put(f"{API}/functions/{name}/async-invoke-config", json={
        "maxAsyncRetryAttempts": 0, "destinationConfig": {"onSuccess": {"destination": arn}}})
    assert r.status_code == 200, r.text
    for payload in (b"ok", b"ok", b"fail"):
        client.post(f"{API}/functions/{name}/invocations", content=payload)
    task_id = client.post(f"{API}/functions/{name}/invocations", content=b"<later>",
                          headers={"x-fc-invocation-type": "Async"}
                          ).headers["x-fc-async-task-id"]
    wait_for(lambda: client.get(f"{API}/functions/{name}/async-tasks/{task_id}"
                                ).json()["destinationStatus"] == "Succeeded", timeout=30)

    every = client.get("/console/invocations", params={"function": name})
    assert every.status_code == 200
    assert every.text.count(f'href="/console/functions/{name}/invocations/') == 4
    failed = client.get("/console/invocations", params={"function": name, "status": "failed"})
    assert failed.text.count(f'href="/console/functions/{name}/invocations/') == 1
    assert "ValueError" in failed.text
    cold = client.get("/console/invocations", params={"function": name, "start": "cold"})
    assert cold.text.count(f'href="/console/functions/{name}/invocations/') == 1
    # Every function's, newest first: more than one function's (this server runs other
    # tests' functions too, which may have pushed these two off the first page).
    anyone = client.get("/console/invocations")
    assert len(set(re.findall(r'href="/console/functions/([^/"]+)/invocations/',
                              anyone.text))) > 1
    # The destination's record is written off its invocation's path: soon, not at once.
    wait_for(lambda: f"/console/functions/{target}/invocations/" in client.get(
        "/console/invocations", params={"function": target}).text, timeout=10)
    assert client.get("/console/invocations", params={"status": "nope"}).status_code == 400
    for before in ("x", "9" * 5000 + ":x"):
        assert client.get("/console/invocations", params={"before": before}).status_code == 400

    tasks = client.get(f"/console/functions/{name}/tasks")
    assert f"/console/functions/{name}/tasks/{task_id}" in tasks.text
    task = client.get(f"/console/functions/{name}/tasks/{task_id}")
    assert task.status_code == 200
    assert re.search(r'<td id="destination">Succeeded</td>', task.text)
    assert "Enqueued" in task.text and "attempt 1 succeeded" in task.text
    assert '<pre id="payload">&lt;later&gt;</pre>' in task.text
    assert client.get(f"/console/functions/{name}/tasks/nope").status_code == 404
    assert client.get(f"/console/functions/{name}/tasks",
                      params={"status": "Bogus"}).status_code == 400

    page = client.get(f"/console/functions/{name}")
    assert '&#34;LATEST&#34;: {' in page.text and "maxAsyncRetryAttempts" in page.text
    assert client.post(f"{API}/functions/{name}/versions", json={}).status_code == 200
    listed = client.get("/console/", params={"q": name})
    assert "1 (newest 1)" in listed.text  # its versions

    charts = client.get("/console/charts", params={"function": name, "window": "15m"})
    assert charts.status_code == 200, charts.text
    assert "4 invocations, 1 failed." in charts.text
    assert charts.text.count("<svg") == 5 and "<script" not in charts.text
    assert "account limit" in client.get("/console/charts").text  # (the account's view)
    assert client.get("/console/charts", params={"window": "1y"}).status_code == 400
    assert client.get("/console/charts", params={"function": unique("no")}).status_code == 404


def test_live_logs_stream_each_invocation_as_it_ends(client: httpx.Client) -> None:
    name = deploy(client, CODE)
    other = deploy(client, CODE)
    with client.stream("GET", "/console/logs/stream", params={"function": name},
                       timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        client.post(f"{API}/functions/{other}/invocations", content=b"not followed")
        client.post(f"{API}/functions/{name}/invocations", content=b"<followed>")
        lines = stream.iter_lines()
        data = next(line for line in lines if line.startswith("data:"))
    record = json.loads(data.removeprefix("data:"))
    assert record["functionName"] == name and record["status"] == "succeeded"
    assert "<script>alert('log')</script>" in record["log"]  # text: the page escapes it
    assert record["startKind"] == "cold"
    page = client.get("/console/logs", params={"function": name})
    assert page.status_code == 200 and "EventSource" in page.text


def test_live_logs_followers_are_bounded(server: Server) -> None:
    """A client cannot open followers without bound: past the limit, 429."""
    with httpx.Client(base_url=server.url, timeout=30) as c, contextlib.ExitStack() as open_:
        answers = [open_.enter_context(c.stream("GET", "/console/logs/stream")).status_code
                   for _ in range(65)]
    assert answers[:64] == [200] * 64 and answers[64] == 429

    def all_freed() -> bool:  # a closed stream frees its place
        with httpx.Client(base_url=server.url, timeout=30) as c, contextlib.ExitStack() as o:
            return all(o.enter_context(c.stream("GET", "/console/logs/stream")).status_code
                       == 200 for _ in range(64))
    wait_for(all_freed)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("console-auth"), FUNCLET_REQUIRE_AUTH="true",
                          FUNCLET_API_TOKEN="console-token",
                          FUNCLET_ACCESS_KEYS='{"ak-1": "sk-1"}')
    yield server
    stop_server(server)


def test_with_auth_on_the_console_asks_for_the_token(secured: Server) -> None:
    with httpx.Client(base_url=secured.url, timeout=30) as c:
        r = c.get("/console/invocations?status=failed")
        assert r.status_code == 303
        assert r.headers["location"] == (
            "/console/login?next=%2Fconsole%2Finvocations%3Fstatus%3Dfailed")
        assert "Sign in" in c.get("/console/login").text
        assert c.post("/console/login", data={"token": "wrong"}).status_code == 403
        assert c.post("/console/login", data={"token": "ak-1:wrong"}).status_code == 403
        assert c.get("/console/").status_code == 303  # (still not signed in)
        for token in ("console-token", "ak-1:sk-1"):
            c.cookies.clear()
            signed = c.post("/console/login?next=/console/invocations", data={"token": token})
            assert signed.status_code == 303
            assert signed.headers["location"] == "/console/invocations"
            cookie = signed.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert "console-token" not in cookie and "sk-1" not in cookie
            assert c.get("/console/invocations").status_code == 200
            assert c.get(f"{API}/functions").status_code == 401  # the console's pages only
        away = c.post("/console/login?next=//evil.example/", data={"token": "console-token"})
        assert away.headers["location"] == "/console/"  # never off the console
        forged = c.post("/console/login", data={"token": "console-token"},
                        headers={"origin": "http://evil.example"})
        assert forged.status_code == 403
        assert c.post("/console/logout").status_code == 303
        c.cookies.clear()
        c.cookies.set("funclet_console", "0" * 64)
        assert c.get("/console/").status_code == 303
