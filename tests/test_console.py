"""The web console: functions, a function's page, the invoke form and its result, an
invocation's log; what a function's log or payload holds is escaped, never markup."""

from __future__ import annotations

import re

import httpx

from tests.helpers import deploy, unique, wait_for

CODE = {"index.py": """
def handler(event, context):
    print("<script>alert('log')</script>")
    return b"<b>" + event + b"</b>"
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
