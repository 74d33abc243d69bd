"""Authentication: bearer tokens, FC's ACS3-HMAC-SHA256 signatures, the generated token."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, b64, create_body, deploy, invoke, make_zip, unique

TOKEN = "s3cret-token"
KEYS = '{"test-ak": "test-sk"}'
HELLO = {"index.py": "def handler(event, context):\n    return b'hi ' + event\n"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("secured"), FUNCLET_REQUIRE_AUTH="true",
                          FUNCLET_API_TOKEN=TOKEN, FUNCLET_ACCESS_KEYS=KEYS)
    yield server
    stop_server(server)


def _sdk(server: Server, secret: str = "test-sk", ak: str = "test-ak") -> Client:
    return Client(openapi.Config(access_key_id=ak, access_key_secret=secret,
                                 endpoint=f"127.0.0.1:{server.port}", protocol="http"))


def test_anonymous_requests_are_refused_with_401(secured: Server) -> None:
    r = httpx.get(f"{secured.url}{API}/functions")
    assert r.status_code == 401
    assert r.json()["Code"] == "Unauthorized" and set(r.json()) == {"Code", "Message",
                                                                     "RequestId"}
    assert httpx.get(f"{secured.url}/healthz").status_code == 200


def test_the_openapi_document_needs_no_credentials(secured: Server) -> None:
    r = httpx.get(f"{secured.url}{API}/openapi.json")
    assert r.status_code == 200 and r.json()["openapi"] == "3.1.0"
    assert httpx.put(f"{secured.url}{API}/openapi.json").status_code == 405  # read-only


def test_a_bearer_token_is_checked(secured: Server) -> None:
    wrong = httpx.get(f"{secured.url}{API}/functions", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["Code"] == "AccessDenied"
    assert "nope" not in wrong.text
    right = httpx.get(f"{secured.url}{API}/functions", headers={"authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200


def test_a_code_url_is_its_own_credential(secured: Server) -> None:
    """GetFunctionCode's URL downloads without the token (it is signed with a key made
    from the server's secrets); without a valid signature the path is refused."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=secured.url, headers=auth, timeout=30) as client:
        name = deploy(client, HELLO)
        url = client.get(f"{API}/functions/{name}/code").json()["url"]
    assert httpx.get(url).status_code == 200
    unsigned = url.split("?")[0]
    assert httpx.get(unsigned).status_code == 403
    assert httpx.get(unsigned, headers=auth).status_code == 403  # the token is not one


def test_the_fc_sdk_authenticates_with_a_real_signature(secured: Server) -> None:
    sdk = _sdk(secured)
    name = unique("signed")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip(HELLO))))))
    out = sdk.invoke_function(name, fc.InvokeFunctionRequest(body=b"signed"))
    assert out.body.read() == b"hi signed"
    listed = sdk.list_functions(fc.ListFunctionsRequest(prefix=name, limit=5))
    assert [f.function_name for f in listed.body.functions] == [name]


@pytest.mark.parametrize(("ak", "secret"), [("test-ak", "wrong-sk"), ("other-ak", "test-sk")])
def test_a_wrong_signature_or_key_is_403(secured: Server, ak: str, secret: str) -> None:
    with pytest.raises(ClientException) as info:
        _sdk(secured, secret, ak).list_functions(fc.ListFunctionsRequest())
    assert info.value.status_code == 403 and info.value.code == "AccessDenied"


def _signed(server: Server, path: str, body: bytes, date: str | None = None) -> dict[str, str]:
    """Headers signed exactly as the FC SDK signs them (its own signing function)."""
    headers = {
        "host": f"127.0.0.1:{server.port}",
        "x-acs-date": date or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-acs-signature-nonce": uuid.uuid4().hex,
    }
    request = SimpleNamespace(method="POST", pathname=path, query={}, headers=headers)
    auth = Utils.get_authorization(request, "ACS3-HMAC-SHA256",
                                   headers["x-acs-content-sha256"], "test-ak", "test-sk")
    return {**headers, "authorization": auth}


def test_a_tampered_body_or_a_stale_date_fails_the_signature(secured: Server) -> None:
    path = f"{API}/functions/anything/invocations"
    url = f"{secured.url}{path}"
    headers = _signed(secured, path, b"original")
    # Authenticated: the function just does not exist.
    assert httpx.post(url, content=b"original", headers=headers).status_code == 404
    assert httpx.post(url, content=b"tampered", headers=headers).status_code == 403
    stale = _signed(secured, path, b"original", date="2020-01-01T00:00:00Z")
    assert httpx.post(url, content=b"original", headers=stale).status_code == 403


def test_a_signed_request_cannot_be_replayed(secured: Server) -> None:
    path = f"{API}/functions"
    headers = _signed(secured, path, b"")
    url = f"{secured.url}{path}"
    first = httpx.post(url, content=b"", headers=headers)
    assert first.status_code == 400  # authenticated (the empty body is not a function)
    assert httpx.post(url, content=b"", headers=headers).status_code == 403  # same nonce
    unsigned_date = {k: v for k, v in headers.items() if k != "authorization"}
    sig = headers["authorization"].replace("x-acs-date;", "")
    assert httpx.post(url, content=b"", headers={**unsigned_date, "authorization": sig}
                      ).status_code == 403


def test_the_cli_sends_its_token(secured: Server, tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(e, c):\n    return 'cli ok'\n")
    base = [sys.executable, "-m", "funclet"]
    refused = subprocess.run([*base, "ls", "--endpoint", secured.url],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: Unauthorized")
    name = unique("cli")
    for args in (["deploy", str(tmp_path), "--name", name], ["invoke", name]):
        r = subprocess.run([*base, "--token", TOKEN, *args, "--endpoint", secured.url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert r.stdout == "cli ok\n"


def test_off_loopback_a_token_is_generated_once_and_required(tmp_path: Path) -> None:
    server = start_server(tmp_path, FUNCLET_HOST="0.0.0.0")
    try:
        token_file = server.data_dir / "api-token"
        token = token_file.read_text().strip()
        assert token and oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert token in server.log()  # printed once, at first start
        assert httpx.get(f"{server.url}{API}/functions").status_code == 401
        r = httpx.post(f"{server.url}{API}/functions", json=create_body(unique(), HELLO),
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        stop_server(server)
    server = start_server(tmp_path, FUNCLET_HOST="0.0.0.0")
    try:
        assert token not in server.log().split("Finished server process")[-1]
        assert httpx.get(f"{server.url}{API}/functions",
                         headers={"authorization": f"Bearer {token}"}).status_code == 200
    finally:
        stop_server(server)


def test_loopback_is_open_by_default(client: httpx.Client) -> None:
    assert client.get(f"{API}/functions").status_code == 200


def test_another_sites_page_cannot_use_the_open_api_from_a_browser(
        client: httpx.Client) -> None:
    """On loopback the API is open to the operator, whose browser runs as the operator:
    a request another site's page makes from it (the browser says so: Origin,
    Sec-Fetch-Site) is refused (CSRF); the same request from the console, the CLI or an
    SDK (no Origin) passes, and HTTP triggers serve every site."""
    name = deploy(client, HELLO)
    path = f"{API}/functions/{name}/invocations"
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                    {"sec-fetch-site": "cross-site"}):
        r = client.post(path, content=b"x", headers=headers)
        assert r.status_code == 403 and "another site" in r.json()["Message"], headers
    assert client.post(path, content=b"x").text == "hi x"
    assert client.get(f"{API}/functions/{name}",  # a link followed: a read, let through
                      headers={"sec-fetch-site": "cross-site"}).status_code == 200
    own = str(client.base_url).rstrip("/")
    assert client.post(path, content=b"x", headers={"origin": own}).text == "hi x"
    client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["POST"]}})
    r = client.post(f"/http/{name}/", content=b"x", headers={"origin": "http://any.site"})
    assert r.status_code == 200


# Sends a request and drops the connection at once, so that the API sees no live peer:
# "reset" closes with SO_LINGER 0 (an RST, the socket gone), "close" closes normally
# (the socket is orphaned: no owner in the kernel's table any more). Instances reach the
# API only where the operator exposed its port to them (host.funclet.internal); on that
# path it needs credentials whatever the peer; the peer check behind it fails closed
# (tests/unit/test_peers.py).
RESET_ATTACK = {"index.py": """
    import json, socket, struct, time

    def attack(port, request, how):
        s = socket.create_connection(("host.funclet.internal", port))
        if how == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(request)
        s.close()

    def handler(event, context):
        e = json.loads(event)
        request = (f"{e['method']} {e['path']} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
                   "Content-Length: 0\\r\\n\\r\\n").encode()
        for i in range(10):
            attack(e["port"], request, "reset" if i % 2 == 0 else "close")
        time.sleep(0.5)  # let the API get to the requests
        return "sent"
"""}

# A web app gets the request as soon as it is placed, before its body is read.
WSGI_HELLO = {"index.py": """
    def handler(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]
"""}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A funclet whose API port is exposed to its functions."""
    from tests.conftest import free_port

    port = free_port()
    srv = start_server(tmp_path_factory.mktemp("exposed"), port=port,
                       FUNCLET_EXPOSE_HOST_PORTS=f"[{port}]")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def exposed_client(exposed: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=exposed.url, timeout=30) as c:
        yield c


def _attack(client: httpx.Client, server: Server, method: str, path: str) -> None:
    attacker = deploy(client, RESET_ATTACK)
    event = json.dumps({"port": server.port, "method": method, "path": path}).encode()
    r = invoke(client, attacker, event)
    assert r.status_code == 200 and r.text == "sent", r.text


def test_a_function_that_drops_its_connection_cannot_delete_a_function(
    exposed_client: httpx.Client, exposed: Server,
) -> None:
    client, server = exposed_client, exposed
    victim = deploy(client, HELLO)
    _attack(client, server, "DELETE", f"{API}/functions/{victim}")
    time.sleep(0.5)
    assert client.get(f"{API}/functions/{victim}").status_code == 200


def test_a_function_that_drops_its_connection_cannot_run_an_auth_type_function_trigger(
    exposed_client: httpx.Client, exposed: Server,
) -> None:
    client, server = exposed_client, exposed
    guarded = deploy(client, WSGI_HELLO)
    r = client.post(f"{API}/functions/{guarded}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "function", "methods": ["GET", "POST"]}})
    assert r.status_code == 200, r.text
    _attack(client, server, "POST", f"/http/{guarded}/")
    time.sleep(0.5)
    assert client.get(f"{API}/functions/{guarded}/invocations").json()["invocations"] == []
    assert client.post(f"/http/{guarded}/", content=b"operator").text == "hi"
