"""Sessions through the official FC 3.0 SDK and HTTP: the requests of a session (named by
a header, or by FC's cookie) run on the instance it is bound to, up to
sessionConcurrencyPerInstance sessions per instance; sessions end past their TTL or on
DeleteSession; session isolation gives each session an instance of its own that goes
with it, and can be paused and resumed; request isolation gives each request a fresh
instance."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Server, start_server, stop_server
from tests.helpers import API, b64, deploy, instance_pids, invoke, make_zip, unique, wait_for

# Which instance ran, and how many requests its module has seen (state that a session
# keeps; a fresh instance starts at 1).
CODE = {"index.py": """
import json, os, time
seen = 0

def handler(event, context):
    global seen
    seen += 1
    wait = json.loads(event or b"{}").get("sleep", 0) if event[:1] == b"{" else 0
    time.sleep(wait)
    return json.dumps({"instance": os.environ["FC_INSTANCE_ID"], "seen": seen})
"""}


@pytest.fixture(scope="module")
def sdk(server: Server) -> Client:
    return Client(openapi.Config(
        access_key_id="test-ak", access_key_secret="test-sk",
        endpoint=f"127.0.0.1:{server.port}", protocol="http", region_id="local",
    ))


def _header_function(client: httpx.Client, **extra: object) -> str:
    config = {"affinityHeaderFieldName": "x-chat-id", "sessionConcurrencyPerInstance": 2,
              **extra.pop("config", {})}  # type: ignore[dict-item]
    return deploy(client, CODE, instanceConcurrency=4, sessionAffinity="HEADER_FIELD",
                  sessionAffinityConfig=json.dumps(config), **extra)


def _run(client: httpx.Client, name: str, session: str | None = None,
         event: bytes = b"") -> tuple[dict[str, object], httpx.Response]:
    headers = {"x-chat-id": session} if session else {}
    r = invoke(client, name, event, **headers)
    assert r.status_code == 200, r.text
    return json.loads(r.content), r


def _error(call: object) -> ClientException:
    with pytest.raises(ClientException) as info:
        call()  # type: ignore[operator]
    return info.value


def test_a_sessions_requests_run_on_its_instance_up_to_the_sessions_per_instance(
        client: httpx.Client) -> None:
    name = _header_function(client)
    first, r = _run(client, name, "alice")
    assert r.headers["x-chat-id"] == "alice"
    for n in range(2, 6):
        got, _ = _run(client, name, "alice")
        assert got == {"instance": first["instance"], "seen": n}  # its instance, its state
    bob, _ = _run(client, name, "bob")  # a second session fits on the same instance
    assert bob["instance"] == first["instance"]
    carol, _ = _run(client, name, "carol")  # a third does not (2 per instance)
    assert carol["instance"] != first["instance"]
    assert _run(client, name, "bob")[0]["instance"] == first["instance"]
    assert _run(client, name, "carol")[0]["instance"] == carol["instance"]

    # Without the header, funclet makes a session and says its id in the same header.
    made, r = _run(client, name)
    again, _ = _run(client, name, r.headers["x-chat-id"])
    assert len(r.headers["x-chat-id"]) == 32 and again["instance"] == made["instance"]

    r = invoke(client, name, **{"x-chat-id": "-bad id"})
    assert r.status_code == 400 and "session id" in r.json()["Message"]


def test_requests_of_one_session_wait_for_room_on_its_instance(client: httpx.Client) -> None:
    """instanceConcurrency 1: a second request of the session waits for the first
    rather than going to another instance."""
    name = deploy(client, CODE, sessionAffinity="HEADER_FIELD",
                  sessionAffinityConfig={"affinityHeaderFieldName": "x-chat-id"})
    _run(client, name, "s1")
    out: list[dict[str, object]] = []
    threads = [threading.Thread(target=lambda: out.append(_run(
        client, name, "s1", b'{"sleep": 0.3}')[0])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({o["instance"] for o in out}) == 1
    assert sorted(o["seen"] for o in out) == [2, 3, 4]


def test_generated_cookie_sessions_through_an_http_trigger(client: httpx.Client) -> None:
    name = deploy(client, CODE, instanceConcurrency=2, sessionAffinity="GENERATED_COOKIE",
                  sessionAffinityConfig={"sessionConcurrencyPerInstance": 1,
                                         "sessionTTLInSeconds": 600})
    r = client.post(f"{API}/functions/{name}/triggers", json={
        "triggerName": "web", "triggerType": "http",
        "triggerConfig": {"authType": "anonymous", "methods": ["GET", "POST"]}})
    assert r.status_code == 200, r.text
    base = str(client.base_url)
    with httpx.Client(base_url=base) as browser, httpx.Client(base_url=base) as other:
        r = browser.get(f"/http/{name}/")
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("x-fc-cookie-session-id=") and "Max-Age=600" in cookie
        mine = r.json()["instance"]
        for n in (2, 3):
            r = browser.get(f"/http/{name}/")  # the client sends the cookie back
            assert r.json() == {"instance": mine, "seen": n}
            assert "set-cookie" not in r.headers
        theirs = other.get(f"/http/{name}/").json()["instance"]
        assert theirs != mine  # one session per instance


def test_create_session_starts_an_instance_for_it_and_the_api_manages_it(
        sdk: Client, client: httpx.Client) -> None:
    name = _header_function(client, config={"sessionTTLInSeconds": 3600})
    created = sdk.create_session(name, fc.CreateSessionRequest(
        body=fc.CreateSessionInput(session_id="chat-1", session_idle_timeout_in_seconds=600)))
    s = created.body
    assert (s.session_id, s.function_name, s.session_status, s.qualifier) == (
        "chat-1", name, "Active", "LATEST")
    assert (s.session_affinity_type, s.session_ttlin_seconds,
            s.session_idle_timeout_in_seconds) == ("HEADER_FIELD", 3600, 600)
    assert _live_instances(sdk, name) == {s.container_id}  # started ahead
    got, r = _run(client, name, "chat-1")
    assert got == {"instance": s.container_id, "seen": 1}

    made = sdk.create_session(name, fc.CreateSessionRequest(
        body=fc.CreateSessionInput())).body
    assert len(made.session_id) == 32
    assert _error(lambda: sdk.create_session(name, fc.CreateSessionRequest(
        body=fc.CreateSessionInput(session_id="chat-1")))).status_code == 409

    updated = sdk.update_session(name, "chat-1", fc.UpdateSessionRequest(
        body=fc.UpdateSessionInput(session_ttlin_seconds=1800))).body
    assert updated.session_ttlin_seconds == 1800
    assert sdk.get_session(name, "chat-1", fc.GetSessionRequest()).body.session_ttlin_seconds \
        == 1800
    listed = sdk.list_sessions(name, fc.ListSessionsRequest(limit=1)).body
    assert [x.session_id for x in listed.sessions] == ["chat-1"] and listed.next_token
    rest = sdk.list_sessions(name, fc.ListSessionsRequest(
        limit=1, next_token=listed.next_token)).body
    assert [x.session_id for x in rest.sessions] == [made.session_id] and not rest.next_token

    sdk.delete_session(name, "chat-1", fc.DeleteSessionRequest())
    assert _error(lambda: sdk.get_session(name, "chat-1", fc.GetSessionRequest())
                  ).status_code == 404
    assert _error(lambda: sdk.get_session(name, "nope", fc.GetSessionRequest())
                  ).status_code == 404
    assert _error(lambda: sdk.list_sessions("no-such-fn", fc.ListSessionsRequest())
                  ).status_code == 404
    plain = deploy(client, CODE)
    assert _error(lambda: sdk.create_session(plain, fc.CreateSessionRequest(
        body=fc.CreateSessionInput()))).status_code == 409  # no affinity: no sessions


def test_a_session_ends_past_its_ttl_and_its_id_may_be_refused(
        sdk: Client, client: httpx.Client) -> None:
    name = _header_function(client, config={"sessionTTLInSeconds": 2,
                                            "sessionIdleTimeoutInSeconds": 2,
                                            "disableSessionIdReuse": True})
    _run(client, name, "short")
    wait_for(lambda: sdk.get_session(name, "short", fc.GetSessionRequest())
             .body.session_status == "Expired", timeout=10)
    expired = sdk.list_sessions(name, fc.ListSessionsRequest(session_status="Expired"))
    assert [s.session_id for s in expired.body.sessions] == ["short"]
    r = invoke(client, name, **{"x-chat-id": "short"})
    assert r.status_code == 409 and r.json()["Code"] == "SessionUnavailable"
    assert _run(client, name, "other")[0]["seen"]  # other ids still start sessions


def _isolated(client: httpx.Client) -> str:
    return deploy(client, CODE, instanceIsolationMode="SESSION_EXCLUSIVE",
                  sessionAffinity="HEADER_FIELD",
                  sessionAffinityConfig={"affinityHeaderFieldName": "x-chat-id"})


def _live_instances(sdk: Client, name: str) -> set[str]:
    return {i.instance_id for i in sdk.list_instances(name, fc.ListInstancesRequest())
            .body.instances if i.status != "Stopped"}


def test_session_isolation_gives_each_session_an_instance_that_goes_with_it(
        sdk: Client, client: httpx.Client) -> None:
    name = _isolated(client)
    one, _ = _run(client, name, "one")
    two, _ = _run(client, name, "two")
    assert one["instance"] != two["instance"]
    assert _run(client, name, "one")[0] == {"instance": one["instance"], "seen": 2}
    got = sdk.get_function(name, fc.GetFunctionRequest()).body
    assert (got.instance_isolation_mode, got.instance_concurrency) == ("SESSION_EXCLUSIVE", 1)
    # A request without a session of its own (async, timers) gets a fresh instance too.
    r = client.post(f"{API}/functions/{name}/invocations",
                    headers={"x-fc-invocation-type": "Async"})
    assert r.status_code == 202
    sdk.delete_session(name, "one", fc.DeleteSessionRequest())
    wait_for(lambda: one["instance"] not in _live_instances(sdk, name))
    assert two["instance"] in _live_instances(sdk, name)


def test_pause_stops_the_sessions_processes_and_resume_lets_them_go_on(
        sdk: Client, client: httpx.Client) -> None:
    name = _isolated(client)
    s = sdk.create_session(name, fc.CreateSessionRequest(
        body=fc.CreateSessionInput(session_id="p1"))).body
    assert _run(client, name, "p1")[0] == {"instance": s.container_id, "seen": 1}
    paused = sdk.pause_session(name, "p1", fc.PauseSessionRequest()).body
    assert paused.session_status == "Paused"
    pids = instance_pids(s.container_id)
    # Stopped, every one: SIGSTOP is sent to each before PauseSession answers; the kernel
    # stops a process when it next runs (a sleeping one is woken for it), a moment later.
    assert pids and wait_for(lambda: all(_state(pid) == "T" for pid in pids), timeout=5)
    r = invoke(client, name, **{"x-chat-id": "p1"})
    assert r.status_code == 409 and "paused" in r.json()["Message"]
    assert sdk.resume_session(name, "p1", fc.ResumeSessionRequest()).body.session_status \
        == "Active"
    assert wait_for(lambda: all(_state(pid) != "T" for pid in instance_pids(
        s.container_id)), timeout=5)
    assert _run(client, name, "p1")[0] == {"instance": s.container_id, "seen": 2}

    sdk.pause_session(name, "p1", fc.PauseSessionRequest())
    sdk.update_session(name, "p1", fc.UpdateSessionRequest(
        body=fc.UpdateSessionInput(enable_auto_resume=True)))
    assert _run(client, name, "p1")[0] == {"instance": s.container_id, "seen": 3}

    shared = _header_function(client)
    _run(client, shared, "x")
    err = _error(lambda: sdk.pause_session(shared, "x", fc.PauseSessionRequest()))
    assert err.status_code == 409 and "SESSION_EXCLUSIVE" in err.message


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_request_isolation_gives_every_request_a_fresh_instance(
        sdk: Client, client: httpx.Client) -> None:
    name = deploy(client, CODE, instanceIsolationMode="REQUEST_EXCLUSIVE",
                  instanceConcurrency=5)
    seen = [_run(client, name)[0] for _ in range(3)]
    assert [s["seen"] for s in seen] == [1, 1, 1]
    assert len({s["instance"] for s in seen}) == 3
    wait_for(lambda: not _live_instances(sdk, name))
    assert sdk.get_function(name, fc.GetFunctionRequest()).body.instance_concurrency == 1


@pytest.mark.parametrize(("config", "words"), [
    ({"instanceIsolationMode": "SESSION_EXCLUSIVE"}, "needs a sessionAffinity"),
    ({"instanceIsolationMode": "REQUEST_EXCLUSIVE", "sessionAffinity": "GENERATED_COOKIE"},
     "sessionAffinity must be NONE"),
    ({"instanceIsolationMode": "ALONE"}, "instanceIsolationMode must be one of"),
    ({"sessionAffinity": "MCP_SSE"}, "not offered yet"),
    ({"sessionAffinity": "HEADER_FIELD"}, "affinityHeaderFieldName is required"),
    ({"sessionAffinity": "HEADER_FIELD", "sessionAffinityConfig":
      '{"affinityHeaderFieldName": "x-fc-request-id"}'}, "not an HTTP or x-fc- header"),
    ({"sessionAffinity": "GENERATED_COOKIE", "sessionAffinityConfig":
      {"sessionConcurrencyPerInstance": 5}}, "cannot exceed instanceConcurrency"),
    ({"sessionAffinity": "GENERATED_COOKIE", "sessionAffinityConfig": "{not json"},
     "must be a JSON object"),
])
def test_bad_session_settings_are_refused_with_the_field_named(
        client: httpx.Client, config: dict[str, object], words: str) -> None:
    r = client.post(f"{API}/functions", json={
        "functionName": unique(), "runtime": "python3.11", "handler": "index.handler",
        "code": {"zipFile": b64(make_zip(CODE))}, **config})
    assert r.status_code == 400 and words in r.json()["Message"], r.text


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One instance for the account, and a short wait: new sessions find no room."""
    srv = start_server(tmp_path_factory.mktemp("sessions-small"),
                       FUNCLET_MAX_INSTANCES="1", FUNCLET_MAX_QUEUE_WAIT_SECONDS="0.3")
    yield srv
    stop_server(srv)


def test_sessions_that_find_no_instance_are_not_kept(small: Server) -> None:
    """A client making up session ids cannot grow the platform's memory: a session
    that got no instance (throttled) was never started and is not remembered."""
    with httpx.Client(base_url=small.url, timeout=30) as c:
        name = _header_function(c, config={"sessionConcurrencyPerInstance": 1})
        _run(c, name, "holder")
        for n in range(20):
            r = invoke(c, name, **{"x-chat-id": f"spam-{n}"})
            assert r.status_code == 429, r.text
        listed = c.get(f"{API}/functions/{name}/sessions").json()["sessions"]
        assert [s["sessionId"] for s in listed] == ["holder"]
