"""HTTP triggers: FC 3.0's HTTP event in, the handler's response out; methods, auth,
async, and the per-function host name."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, deploy, unique
from tests.test_cli import cli

ECHO_EVENT = """
def handler(event, context):
    return event
"""

MIRROR = """
import json

def handler(event, context):
    e = json.loads(event)
    return json.dumps({
        "statusCode": 201,
        "headers": {"Content-Type": e["headers"].get("Content-Type", "text/plain"),
                    "X-Path": e["rawPath"], "Set-Cookie": ["a=1", "b=2"]},
        "body": e["body"],
        "isBase64Encoded": e["isBase64Encoded"],
    })
"""


def _http_function(client: httpx.Client, code: str, **config: object) -> str:
    name = deploy(client, {"index.py": code})
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["GET", "POST"], **config}})
    assert r.status_code == 200, r.text
    return name


def test_the_event_is_fc_3s_http_event(client: httpx.Client) -> None:
    name = _http_function(client, ECHO_EVENT)
    r = client.get(f"/http/{name}/orders/42%2F7", params=[("a", "1"), ("a", "2"), ("b", "x")],
                   headers={"x-custom": "v", "user-agent": "probe/1"})
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["version"] == "v1"
    assert event["rawPath"] == "/orders/42%2F7"
    assert event["requestContext"]["http"]["path"] == "/orders/42/7"
    assert event["queryParameters"] == {"a": "1,2", "b": "x"}
    assert event["headers"]["X-Custom"] == "v" and event["headers"]["User-Agent"] == "probe/1"
    assert event["body"] == "" and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"]["method"] == "GET" and context["http"]["sourceIp"] == "127.0.0.1"
    assert context["http"]["userAgent"] == "probe/1"
    assert context["requestId"] == r.headers["x-fc-request-id"]
    assert context["timeEpoch"].isdigit() and context["time"].endswith("Z")
    assert context["domainPrefix"] == name
    root = client.get(f"/http/{name}").json()
    assert root["rawPath"] == "/"


def test_the_response_object_becomes_the_http_response(client: httpx.Client) -> None:
    name = _http_function(client, MIRROR)
    r = client.post(f"/http/{name}/echo", content=b'{"x": 1}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 201
    assert r.content == b'{"x": 1}' and r.headers["content-type"] == "application/json"
    assert r.headers["x-path"] == "/echo"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_binary_bodies_round_trip_through_base64(client: httpx.Client) -> None:
    name = _http_function(client, MIRROR)
    data = bytes(range(256)) * 4
    r = client.post(f"/http/{name}/bin", content=data,
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201 and r.content == data
    event = client.post(f"/http/{_http_function(client, ECHO_EVENT)}/", content=data,
                        headers={"content-type": "image/png"}).json()
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == data


def test_a_plain_return_value_is_a_200_body(client: httpx.Client) -> None:
    name = _http_function(client, "def handler(event, context):\n    return 'hello'\n")
    r = client.get(f"/http/{name}/")
    assert r.status_code == 200 and r.text == "hello"
    assert r.headers["content-type"].startswith("text/plain")


def test_methods_errors_and_unknowns(client: httpx.Client) -> None:
    name = _http_function(client, "def handler(event, context):\n    raise ValueError('no')\n")
    failed = client.get(f"/http/{name}/")
    assert failed.status_code == 502
    assert failed.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert failed.json()["errorType"] == "ValueError"
    refused = client.delete(f"/http/{name}/")
    assert refused.status_code == 405 and refused.json()["Code"] == "MethodNotAllowed"
    plain = deploy(client, {"index.py": ECHO_EVENT})
    none = client.get(f"/http/{plain}/")
    assert none.status_code == 404 and "no HTTP trigger" in none.json()["Message"]
    assert client.get(f"/http/{unique('ghost')}/").status_code == 404


def test_async_requests_are_queued(client: httpx.Client) -> None:
    name = _http_function(client, ECHO_EVENT)
    r = client.post(f"/http/{name}/later", content=b"payload",
                    headers={"x-fc-invocation-type": "Async", "content-type": "text/plain"})
    assert r.status_code == 202, r.text
    task_id = r.headers["x-fc-async-task-id"]
    task = client.get(f"{API}/functions/{name}/async-tasks/{task_id}").json()
    event = json.loads(task["taskPayload"])
    assert event["rawPath"] == "/later" and event["body"] == "payload"


TOKEN = "http-trigger-token"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("secured-http"), FUNCLET_REQUIRE_AUTH="true",
                          FUNCLET_API_TOKEN=TOKEN, FUNCLET_HTTP_DOMAIN="fn.localhost")
    yield server
    stop_server(server)


def test_auth_type_function_needs_the_apis_credentials(secured: Server) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=secured.url, headers=auth) as client:
        guarded = _http_function(client, ECHO_EVENT, authType="function")
        open_ = _http_function(client, ECHO_EVENT)
    assert httpx.get(f"{secured.url}/http/{guarded}/").status_code == 401
    wrong = httpx.get(f"{secured.url}/http/{guarded}/", headers={"authorization": "Bearer x"})
    assert wrong.status_code == 403
    assert httpx.get(f"{secured.url}/http/{guarded}/", headers=auth).status_code == 200
    # anonymous: no credentials needed, and the function's own Authorization gets through
    r = httpx.get(f"{secured.url}/http/{open_}/", headers={"authorization": "Bearer app-own"})
    assert r.status_code == 200 and r.json()["headers"]["Authorization"] == "Bearer app-own"
    # the management API itself stays closed
    assert httpx.get(f"{secured.url}{API}/functions").status_code == 401


def test_each_function_answers_at_its_own_host_name(secured: Server) -> None:
    with httpx.Client(base_url=secured.url,
                      headers={"authorization": f"Bearer {TOKEN}"}) as client:
        name = _http_function(client, ECHO_EVENT)
        trigger = client.get(f"{API}/functions/{name}/triggers/web").json()
    assert trigger["httpTrigger"]["urlInternet"] == \
        f"http://{name}.fn.localhost:{secured.port}/"
    r = httpx.get(f"{secured.url}/http/x/y", headers={"host": f"{name}.fn.localhost"})
    assert r.status_code == 200
    assert r.json()["rawPath"] == "/http/x/y"  # under its own host, the whole path is its
    # ... InvokeFunction's too (api/invoke.InvokeRoute leaves it to the trigger)
    path = f"{API}/functions/{name}/invocations"
    r = httpx.post(f"{secured.url}{path}", headers={"host": f"{name}.fn.localhost"})
    assert r.status_code == 200 and r.json()["rawPath"] == path, r.text


def test_a_trigger_answers_as_long_as_it_exists(tmp_path: Path, client: httpx.Client) -> None:
    name = _http_function(client, ECHO_EVENT)
    assert client.get(f"/http/{name}/").status_code == 200
    assert client.delete(f"{API}/functions/{name}/triggers/web").status_code == 204
    assert client.get(f"/http/{name}/").status_code == 404


WSGI_APP = """
def handler(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"]),
                              ("X-Query", environ["QUERY_STRING"]), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2")])
    yield b"got " + str(len(body)).encode() + b" bytes from " + environ["REMOTE_ADDR"].encode()
    yield b" via " + environ["REQUEST_METHOD"].encode()
"""

ASGI_APP = """
import asyncio

COUNT = 0

async def handler(scope, receive, send):
    global COUNT
    COUNT += 1
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"text/plain"), (b"x-count", str(COUNT).encode())]
    await send({"type": "http.response.start", "status": 207, "headers": headers})
    for i in range(3):
        await send({"type": "http.response.body", "body": f"part {i};".encode(),
                    "more_body": True})
        await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": f"{scope['path']} {size}".encode()})
"""


def test_a_wsgi_handler_is_served_as_a_web_app(client: httpx.Client) -> None:
    name = _http_function(client, WSGI_APP)
    data = b"x" * 300_000
    r = client.post(f"/http/{name}/up/load?q=1", content=data)
    assert r.status_code == 200, r.text
    assert r.text == "got 300000 bytes from 127.0.0.1 via POST"
    assert r.headers["x-path"] == "/up/load" and r.headers["x-query"] == "q=1"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert r.headers["x-fc-request-id"]


def test_an_asgi_app_streams_its_response_and_keeps_its_state(client: httpx.Client) -> None:
    name = _http_function(client, ASGI_APP)

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"y" * 10_000

    with client.stream("POST", f"/http/{name}/stream", content=chunks()) as r:
        assert r.status_code == 207
        parts = list(r.iter_raw())
    assert b"".join(parts) == b"part 0;part 1;part 2;/stream 40000"
    again = client.get(f"/http/{name}/")
    assert again.headers["x-count"] == "2"  # the same warm instance, its module state kept


def test_a_web_app_that_fails_is_a_502(client: httpx.Client) -> None:
    name = _http_function(client, "def handler(environ, start_response):\n"
                                  "    raise KeyError('boom')\n")
    r = client.get(f"/http/{name}/")
    assert r.status_code == 502 and r.json()["errorType"] == "KeyError"


# Answers with whatever response object the request's body holds.
AS_TOLD = """
import json

def handler(event, context):
    return json.loads(event)["body"]
"""


@pytest.fixture(scope="module")
def as_told(client: httpx.Client) -> str:
    return _http_function(client, AS_TOLD)


@pytest.mark.parametrize(("response", "says"), [
    ({"statusCode": 200, "headers": ["X-A", "1"]}, "headers must be an object"),
    ({"statusCode": 200, "headers": "X-A: 1"}, "headers must be an object"),
    ({"statusCode": 200, "headers": {"X-A": "1\r\nX-Injected: 1"}}, "CR, LF"),
    ({"statusCode": 200, "headers": {"X-A": "\n"}}, "CR, LF"),
    ({"statusCode": 200, "headers": {"X-A": "caf\u00e9 \u2603"}}, "outside Latin-1"),
    ({"statusCode": 200, "headers": {"": "1"}}, 'header name "" is not a valid'),
    ({"statusCode": 200, "headers": {"X A": "1"}}, "not a valid HTTP header name"),
    ({"statusCode": 200, "headers": {"X-\u00e9": "1"}}, "not a valid HTTP header name"),
    ({"statusCode": 200, "headers": {"X-A": {"b": 1}}}, "must be a string"),
    ({"statusCode": 200, "headers": {"X-A": [None]}}, "must be a string"),
    ({"statusCode": "200"}, "statusCode must be an HTTP status code"),
    ({"statusCode": 99}, "statusCode must be an HTTP status code"),
    ({"statusCode": 600}, "statusCode must be an HTTP status code"),
    ({"statusCode": 10 ** 30}, "statusCode must be an HTTP status code"),
    ({"statusCode": True}, "statusCode must be an HTTP status code"),
    ({"statusCode": 200.5}, "statusCode must be an HTTP status code"),
    ({"statusCode": 200, "body": "%%%", "isBase64Encoded": True}, "not valid base64"),
    ({"statusCode": 200, "body": "\u00e9", "isBase64Encoded": True}, "not valid base64"),
    ({"statusCode": 200, "body": [1], "isBase64Encoded": True}, "must be a base64 string"),
    ({"statusCode": 200, "body": "", "isBase64Encoded": "yes"}, "isBase64Encoded must be"),
])
def test_an_invalid_http_response_is_a_502_saying_why(
    client: httpx.Client, as_told: str, response: dict[str, object], says: str,
) -> None:
    r = client.post(f"/http/{as_told}/", json=response)
    assert r.status_code == 502, r.text
    assert r.headers["x-fc-error-type"] == "InvalidHTTPResponse"
    error = r.json()
    assert error["errorType"] == "InvalidHTTPResponse", error
    assert says in error["errorMessage"], error
    assert client.post(f"/http/{as_told}/", json={"statusCode": 204}).status_code == 204


def test_valid_odd_responses_still_pass(client: httpx.Client, as_told: str) -> None:
    r = client.post(f"/http/{as_told}/", json={
        "statusCode": 299, "headers": {"X-N": 7, "X-L": ["a", 1.5], "X-Latin": "caf\u00e9"},
        "body": {"a": 1}})
    assert r.status_code == 299 and r.json() == {"a": 1}
    assert r.headers["x-n"] == "7" and r.headers.get_list("x-l") == ["a", "1.5"]
    assert r.headers["x-latin"].encode("latin-1") == "caf\u00e9".encode("latin-1")


def test_a_web_app_with_an_invalid_header_is_a_502(client: httpx.Client) -> None:
    name = _http_function(client, "def handler(environ, start_response):\n"
                                  "    start_response('200 OK', [('X-A', 'a\\r\\nb')])\n"
                                  "    return [b'hi']\n")
    r = client.get(f"/http/{name}/")
    assert r.status_code == 502, r.text
    assert r.json()["errorType"] == "InvalidHTTPResponse" and "CR, LF" in r.json()[
        "errorMessage"]


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_flask_example_deploys_with_its_requirements(
    client: httpx.Client, server: Server,
) -> None:
    name = unique("flask")
    deployed = cli(server.url, "deploy", str(EXAMPLES / "flask-app"), "--name", name)
    assert deployed.returncode == 0, deployed.stderr
    assert client.get(f"/http/{name}/").json() == {"hello": "from Flask", "notes": 0}
    added = client.post(f"/http/{name}/notes", content=b"buy milk")
    assert added.status_code == 201 and added.json() == {"added": "buy milk", "count": 1}
    assert client.get(f"/http/{name}/notes").json() == {"notes": ["buy milk"]}
    assert client.get(f"/http/{name}/count/3").text == "0\n1\n2\n"
    assert client.get(f"/http/{name}/nope").status_code == 404  # Flask's own 404
    assert client.delete(f"/http/{name}/notes").status_code == 405  # Flask's own 405


def test_the_fastapi_example_deploys_with_its_requirements(
    client: httpx.Client, server: Server,
) -> None:
    name = unique("fastapi")
    deployed = cli(server.url, "deploy", str(EXAMPLES / "fastapi-app"), "--name", name)
    assert deployed.returncode == 0, deployed.stderr
    assert client.get(f"/http/{name}/items/3", params={"q": "hi"}).json() == {
        "item_id": 3, "q": "hi"}
    created = client.post(f"/http/{name}/items", json={"name": "pen", "price": 1.5})
    assert created.json() == {"created": {"name": "pen", "price": 1.5}, "with_tax": 1.8}
    invalid = client.post(f"/http/{name}/items", json={"name": "pen"})
    assert invalid.status_code == 422  # FastAPI's validation, untouched
    assert client.get(f"/http/{name}/ticks/2").text == "tick 0\ntick 1\n"
