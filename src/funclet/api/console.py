"""The web console at ``/console/``: server-rendered pages (Jinja2, autoescaped: a
function's log or payload can hold HTML), no JavaScript needed.

Functions (search by prefix, runtime, state, aliases, last invocation), a function's
page (an invoke form with its result, log and start kind; recent invocations; config,
versions and aliases, triggers, async config, layers, instances) and one invocation's
log. The pages read the platform directly (the same objects the API uses) and sit
behind the API's middleware: open on loopback as the API is, refused to functions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from funclet.api.auth import CONSOLE_COOKIE, console_sign_in, cross_site
from funclet.api.charts import WINDOWS, charts
from funclet.api.functions import extras_of, function_json, invocation_json, platform_of
from funclet.api.invoke import accept_async
from funclet.api.responses import fc_time, new_request_id
from funclet.api.tasks import task_json
from funclet.asyncq.policy import TaskStatus
from funclet.errors import (
    AccessDenied,
    ApiError,
    AsyncTaskNotFound,
    InvalidArgument,
    InvocationNotFound,
    PayloadTooLarge,
    Throttled,
)
from funclet.instances.state import InstanceState
from funclet.logs import TooManyFollowers, clip_lines
from funclet.versions import LATEST, parse_qualifier

_PAGE = 50  # functions per page
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]), auto_reload=False)


def _render(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    platform = platform_of(request)
    values.setdefault("signed_in", platform.settings.auth_required)
    html = _templates.get_template(f"console/{template}").render(
        node_id=platform.node_id, **values)
    return HTMLResponse(html, status)


def _error_page(request: Request, exc: ApiError) -> Response:
    return _render(request, "error.html", exc.status, code=exc.code, message=exc.message)


async def functions_page(request: Request) -> Response:
    platform = platform_of(request)
    q = request.query_params.get("q", "")[:128]
    after = request.query_params.get("after", "")[:128]
    rows = await platform.functions.page(q, _PAGE + 1, after)
    shown = []
    names = [row.name for row in rows[:_PAGE]]
    newest = await platform.store.last_invocations(names)
    versions = await platform.versions.counts(names)
    for row in rows[:_PAGE]:
        last = newest.get(row.name)
        shown.append({
            "name": row.name, "runtime": row.config.runtime,
            "state": "disabled" if row.name in platform.functions.disabled else "active",
            "aliases": sorted(platform.versions.alias_names(row.name)),
            "versions": versions.get(row.name),
            "last": {"status": last["status"],
                     "when": time.strftime("%Y-%m-%d %H:%M:%S",
                                           time.localtime(last["started_ms"] / 1000))}
            if last else None,
        })
    next_after = rows[_PAGE - 1].name if len(rows) > _PAGE else ""
    return _render(request, "functions.html", functions=shown, q=q, next=next_after)


async def function_page(request: Request, result: dict[str, Any] | None = None,
                        form: dict[str, str] | None = None) -> Response:
    platform = platform_of(request)
    name = request.path_params["name"]
    try:
        row = await platform.functions.get(name)
    except ApiError as exc:
        return _error_page(request, exc)
    await platform.recorder.flush()
    config = function_json(platform, row, (await extras_of(platform, [row]))[name])
    versions = [str(v.version_id) for v in await platform.versions.page_all(name)]
    aliases = [{"aliasName": a.alias_name, "versionId": str(a.version_id),
                "additionalVersionWeight": a.additional_weight}
               for a in platform.versions.aliases_of(name)]
    triggers = [{"triggerName": t.trigger_name, "triggerType": t.trigger_type,
                 "triggerConfig": orjson.dumps(t.config).decode()}
                for t in platform.triggers.list(name, "", 100, "")]
    configs = {qualifier: entry[0].to_fc(config["functionArn"])
               for fn, qualifier in platform.async_configs.keys() if fn == name
               if (entry := platform.async_configs.get(name, qualifier)) is not None}
    async_config = orjson.dumps(configs or "none set: FC's defaults",
                                option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    invocations = [invocation_json(r, False) for r in
                   await platform.store.list_invocations(name, limit=20)]
    live = [i for i in platform.registry.instances(name)
            if i.state is not InstanceState.STOPPED]
    form = form or {}
    return _render(request, "function.html", name=name, config=config,
                   config_json=orjson.dumps(config, option=orjson.OPT_INDENT_2).decode(),
                   versions=versions, aliases=aliases, triggers=triggers,
                   async_config=async_config, invocations=invocations, instances=live,
                   result=result, payload=form.get("payload", ""),
                   mode=form.get("mode", "sync"), qualifier=form.get("qualifier", ""))


async def invoke_form(request: Request) -> Response:
    """The invoke form: run it (sync) or queue it (async), then the function's page with
    the result."""
    platform = platform_of(request)
    name = request.path_params["name"]
    limit = platform.settings.max_sync_payload
    try:
        if cross_site(request.scope):  # (CSRF through the operator's browser)
            raise AccessDenied("the console's forms are posted from the console only")
        fields = await _read_form(request, limit * 2)  # (the encoding grows a payload)
        qualifier = parse_qualifier(fields.get("qualifier") or LATEST)
        payload = fields.get("payload", "").encode()
        if len(payload) > limit:
            raise PayloadTooLarge(f"the payload is over {limit} bytes")
        request_id = new_request_id()
        if fields.get("mode") == "async":
            accepted = await accept_async(platform, name, payload, request_id, {}, qualifier)
            result: dict[str, Any] = {"accepted": True, "request_id": request_id,
                                      "task_id": accepted.headers["x-fc-async-task-id"]}
        elif fields.get("mode", "sync") == "sync":
            out = await platform.invoker.invoke(name, payload, request_id,
                                                qualifier=qualifier)
            error = out.error
            result = {
                "accepted": False, "request_id": request_id,
                "error": f"{error.error_type}: {error.message}" if error else "",
                "start_kind": out.start_kind.value if out.start_kind else "no",
                "version": out.version_id, "duration_ms": out.duration_ms,
                "body": out.body.decode("utf-8", "replace") if not error else
                orjson.dumps(error.body(), option=orjson.OPT_INDENT_2).decode(),
                "log": out.log}
        else:
            raise InvalidArgument("mode must be sync or async")
    except ApiError as exc:
        return _error_page(request, exc)
    return await function_page(request, result, fields)


async def _read_form(request: Request, limit: int) -> dict[str, str]:
    """A posted form (``application/x-www-form-urlencoded``) of at most ``limit`` bytes."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"the form is over {limit} bytes")
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"),
                                         keep_blank_values=True).items()}


async def invocation_page(request: Request) -> Response:
    platform = platform_of(request)
    name, request_id = request.path_params["name"], request.path_params["request_id"]
    await platform.recorder.flush()
    rec = await platform.store.get_invocation(request_id[:128])
    if rec is None or rec["function_name"] != name:
        return _error_page(request, InvocationNotFound(request_id[:128]))
    return _render(request, "invocation.html", name=name, record=invocation_json(rec, True))


async def invocations_page(request: Request) -> Response:
    """Every function's invocations, newest first, filtered by function, status and
    start kind; paged by the last row's (time, request id)."""
    platform = platform_of(request)
    q = request.query_params
    function = q.get("function", "")[:128] or None
    status = q.get("status") or None
    start = q.get("start") or None
    if status not in (None, "succeeded", "failed") or start not in (
            None, "cold", "warm", "provisioned"):
        return _error_page(request, InvalidArgument(
            "status is succeeded or failed; start is cold, warm or provisioned"))
    before = None
    if q.get("before"):
        ms, _, request_id = q["before"].partition(":")
        if not ms.isdigit() or len(ms) > 18:
            return _error_page(request, InvalidArgument("before is started_ms:request_id"))
        before = (int(ms), request_id[:128])
    await platform.recorder.flush()
    rows = await platform.store.list_invocations(function, status, _PAGE + 1, before, start)
    more = rows[_PAGE - 1] if len(rows) > _PAGE else None
    return _render(request, "invocations.html",
                   invocations=[invocation_json(r, False) for r in rows[:_PAGE]],
                   function=function or "", wanted=status or "", start=start or "",
                   next=f"{more['started_ms']}:{more['request_id']}" if more else "")


async def logs_page(request: Request) -> Response:
    function = request.query_params.get("function", "")[:128]
    return _render(request, "logs.html", function=function)


async def logs_stream(request: Request) -> Response:
    """Server-sent events: each invocation this node records (of ``function``, or of
    every function), as it ends: its status, start kind, duration and log."""
    platform = platform_of(request)
    function = request.query_params.get("function", "")[:128] or None
    try:
        follower = platform.live_logs.follow(function)
    except TooManyFollowers as exc:
        return _error_page(request, Throttled(str(exc)))

    async def events() -> AsyncIterator[dict[str, str]]:
        dropped = 0
        try:
            while True:
                record = await follower.next(15.0)
                if follower.dropped != dropped:
                    yield {"event": "dropped", "data": str(follower.dropped - dropped)}
                    dropped = follower.dropped
                if record is not None:
                    yield {"event": "invocation", "data": orjson.dumps(
                        {**invocation_json(record, True), "log": clip_lines(record["log"])}
                    ).decode()}
        finally:
            follower.close()

    return EventSourceResponse(events(), ping=15)


async def tasks_page(request: Request) -> Response:
    platform = platform_of(request)
    name = request.path_params["name"]
    status = request.query_params.get("status") or None
    if status is not None and status not in {s.value for s in TaskStatus}:
        return _error_page(request, InvalidArgument(
            f"status must be one of {', '.join(s.value for s in TaskStatus)}"))
    try:
        await platform.functions.get(name)
    except ApiError as exc:
        return _error_page(request, exc)
    rows = await platform.tasks.list(name, status, None, None, "", _PAGE, None,
                                     newest_first=True)
    return _render(request, "tasks.html", name=name, wanted=status or "",
                   statuses=[s.value for s in TaskStatus],
                   tasks=[task_json(platform, r, False) for r in rows])


async def task_page(request: Request) -> Response:
    platform = platform_of(request)
    name, task_id = request.path_params["name"], request.path_params["task_id"][:128]
    row = await platform.tasks.get(name, task_id)
    if row is None:
        return _error_page(request, AsyncTaskNotFound(task_id))
    task = task_json(platform, row, True)
    return _render(request, "task.html", name=name, task=task,
                   events=[{**e, "when": fc_time(e["timestamp"])} for e in task["events"] or []])


async def charts_page(request: Request) -> Response:
    platform = platform_of(request)
    function = request.query_params.get("function", "")[:128] or None
    window = request.query_params.get("window", "1h")
    if window not in WINDOWS:
        return _error_page(request, InvalidArgument(
            f"window is one of {', '.join(WINDOWS)}"))
    if function is not None:
        try:
            await platform.functions.get(function)
        except ApiError as exc:
            return _error_page(request, exc)
    return _render(request, "charts.html", function=function or "", windows=list(WINDOWS),
                   **await charts(platform, function, window))


async def login_page(request: Request) -> Response:
    """The console's sign-in (when the API needs credentials): the API token, or an
    access key as ``ID:SECRET``; a cookie derived from it (HttpOnly, SameSite=Strict)
    then signs in the console's pages, and only them."""
    platform = platform_of(request)
    target = request.query_params.get("next", "/console/")
    if not target.startswith("/console/") or target.startswith("/console//"):
        target = "/console/"  # (never a redirect off the console)
    if not platform.settings.auth_required:
        return RedirectResponse(target, 303)
    if request.method == "GET":
        return _render(request, "login.html", next=target, failed=False, signed_in=False)
    if cross_site(request.scope):
        return _error_page(request, AccessDenied("sign in from the console's own page"))
    try:
        token = (await _read_form(request, 8192)).get("token", "")
    except ApiError as exc:
        return _error_page(request, exc)
    cookie = console_sign_in(token, platform.api_token, platform.settings.access_keys)
    if cookie is None:
        return _render(request, "login.html", 403, next=target, failed=True,
                       signed_in=False)
    response = RedirectResponse(target, 303)
    response.set_cookie(CONSOLE_COOKIE, cookie, httponly=True, samesite="strict",
                        path="/console", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/console/login", 303)
    response.delete_cookie(CONSOLE_COOKIE, path="/console")
    return response


async def _home(request: Request) -> Response:
    return RedirectResponse("/console/", 307)


routes = [
    Route("/console", _home, methods=["GET"]),
    Route("/console/", functions_page, methods=["GET"]),
    Route("/console/functions/{name}", function_page, methods=["GET"]),
    Route("/console/functions/{name}/invoke", invoke_form, methods=["POST"]),
    Route("/console/functions/{name}/invocations/{request_id}", invocation_page,
          methods=["GET"]),
    Route("/console/functions/{name}/tasks", tasks_page, methods=["GET"]),
    Route("/console/functions/{name}/tasks/{task_id}", task_page, methods=["GET"]),
    Route("/console/invocations", invocations_page, methods=["GET"]),
    Route("/console/logs", logs_page, methods=["GET"]),
    Route("/console/logs/stream", logs_stream, methods=["GET"]),
    Route("/console/charts", charts_page, methods=["GET"]),
    Route("/console/login", login_page, methods=["GET", "POST"]),
    Route("/console/logout", logout, methods=["POST"]),
]
