"""schemathesis against a live funclet, driven by the funclet's own OpenAPI document.

Every operation gets the document's examples, schemathesis's coverage cases and a
bounded number of generated requests, positive and negative, all derandomized (the
same requests on every run). None may answer 5xx, and every answer must match the
document: status code, content type, headers and body schema.

The funclet is this module's own (not the session's), since schemathesis deletes what
it finds. It has a function ``hello`` (the document's example name) with an anonymous
HTTP trigger, put back whenever a case deleted them, so that invocations, triggers and
configs reach a real function; about half the cases name it. Its handler returns at
once, a queued invocation waits at most a few seconds, its instances have no network,
and URLs in bodies are pointed at loopback.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from funclet.api.openapi import document
from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, create_body

HELLO = {"index.py": "def handler(event, context):\n    return event\n"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Server]:
    tmp = Path(tempfile.mkdtemp(prefix="funclet-fuzz-", dir="/var/tmp"))
    tmp.chmod(0o755)
    try:
        srv = start_server(
            tmp,
            FUNCLET_MAX_INSTANCES="4",  # a provision target is at most this
            FUNCLET_MAX_QUEUE_WAIT_SECONDS="3",  # not the function's timeout, up to a day
            FUNCLET_KEEP_ALIVE_SECONDS="5",
            FUNCLET_PRESTARTED_INSTANCES="0",
            FUNCLET_SHUTDOWN_GRACE_SECONDS="2",
            FUNCLET_MAX_SYNC_PAYLOAD=str(1024 * 1024),
        )
        yield srv
        stop_server(srv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def fuzz_client(fuzz_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as c:
        yield c


def _ensure_hello(client: httpx.Client) -> None:
    """``hello`` and its anonymous HTTP trigger ``web``, put back if a case deleted them."""
    if client.get(f"{API}/functions/hello").status_code == 404:
        r = client.post(f"{API}/functions", json=create_body("hello", HELLO))
        assert r.status_code == 200, r.text
    if client.get(f"{API}/functions/hello/triggers/web").status_code == 404:
        r = client.post(f"{API}/functions/hello/triggers", json={
            "triggerName": "web", "triggerType": "http",
            "triggerConfig": {"authType": "anonymous"}})
        assert r.status_code in (200, 409), r.text  # 409: a case made another one


def _loopback_url(value: str) -> str:
    """A URL whose host is not loopback, sent to 127.0.0.1:9 (nothing listens) instead:
    triggers and destinations connect to what they are given, and this test sends
    traffic to loopback only."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return value  # malformed ('redis://[::1'): refused with a 400, never connected to
    if host is None or host in _LOOPBACK:
        return value
    return parts._replace(netloc="127.0.0.1:9").geturl()


def _to_loopback(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_loopback(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_loopback(v) for v in value]
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):  # triggerConfig: a JSON string
            try:
                return json.dumps(_to_loopback(json.loads(value)))
            except ValueError:
                return value
        if "://" in value:
            return _loopback_url(value)
    return value


def _tame(case: schemathesis.Case) -> None:
    """What the server would otherwise do outside this test's bounds."""
    body = case.body
    if isinstance(body, dict | list | str):
        case.body = _to_loopback(body)
    if isinstance(case.body, dict) and case.operation.label.split(" ", 1)[1] in (
            f"{API}/functions", f"{API}/functions/{{functionName}}"):
        case.body["internetAccess"] = False  # its instances reach nothing either


# The document as the package builds it (the one the server serves: checked below and
# in test_openapi.py); loaded at collection, when no server runs yet, since
# schemathesis's fixture-based loader does not work with this pytest.
schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict({
    "seed": 20230330,
    "request-timeout": 30,
    "generation": {"mode": "all", "deterministic": True},
})).exclude(path="/console/logs/stream").exclude(  # (a stream that never ends)
    # Lambda's Function URLs answer a made-up id with 404 whatever else the request holds
    # (test_lambda_api drives real ones); the two "…Slash" operations are the same as
    # the ones they stand beside.
    path_regex="^/lambda-url/").exclude(operation_id_regex="Slash$")


@schema.hook
def map_path_parameters(context: schemathesis.HookContext,
                        path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """About half the cases name ``hello`` (by the generated name's length, so the same
    ones on every run): a random name reaches little beyond a 404."""
    for key in ("functionName", "FunctionName"):  # (FC's, Lambda's)
        name = (path_parameters or {}).get(key)
        if isinstance(name, str) and len(name) % 2 == 0:
            return {**(path_parameters or {}), key: "hello"}
    return path_parameters


@schema.parametrize()
# 20 cases for each of the ~170 operations (FC 3.0's, 2.0's, Lambda's, the console's): the
# suite's time is bounded (15 min on 2 cores).
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_documented_and_never_with_a_server_error(
        case: schemathesis.Case, fuzz_server: Server, fuzz_client: httpx.Client) -> None:
    _ensure_hello(fuzz_client)
    _tame(case)
    case.call_and_validate(base_url=fuzz_server.url, checks=CHECKS)


def test_the_fuzzed_document_is_the_served_one(fuzz_client: httpx.Client) -> None:
    assert fuzz_client.get(f"{API}/openapi.json").json() == document()


def test_the_loopback_rewrite_catches_urls_in_json_strings() -> None:
    config = json.dumps({"url": "redis://example.com:6379", "stream": "s"})
    out = _to_loopback({"triggerConfig": config, "destinationConfig": {"onSuccess": {
        "destination": "https://user@example.com/hook"}}})
    assert json.loads(out["triggerConfig"])["url"] == "redis://127.0.0.1:9"
    assert out["destinationConfig"]["onSuccess"]["destination"] == "https://127.0.0.1:9/hook"
