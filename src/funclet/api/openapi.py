"""The OpenAPI 3.1 document of the whole API, served at ``GET /2023-03-30/openapi.json``.

Built once from the operations below and the bodies in ``api/schemas.py``. Every route
of ``api/app.py`` is here and nothing else is (``tests/test_openapi.py`` walks the
routes); a new route gets its operation in the same commit.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet import __version__
from funclet.api.functions import PREFIX
from funclet.api.responses import new_request_id
from funclet.api.schemas import (
    FUNCTION_NAME_PATTERN,
    NAME_PATTERN,
    QUALIFIER_PATTERN,
    SCHEMAS,
    SESSION_PATTERN,
    TASK_ID_PATTERN,
    Schema,
    integer,
    obj,
    ref,
    string,
)
from funclet.asyncq.policy import TaskStatus

Operation = dict[str, Any]

_F = f"{PREFIX}/functions/{{functionName}}"
_HTTP_METHODS = ("get", "post", "put", "delete", "head", "patch", "options")
_REQUEST_ID = {"$ref": "#/components/headers/RequestId"}
_DURATION = string("milliseconds, three decimals", pattern=r"^[0-9]+\.[0-9]{3}$")


def _param(name: str, where: str, schema: Schema, description: str = "",
           required: bool = False, **more: Any) -> Schema:
    out = {"name": name, "in": where, "schema": schema, **more}
    if description:
        out["description"] = description
    if required or where == "path":
        out["required"] = True
    return out


def _p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _json(schema: Schema, description: str = "OK", status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "headers": {"x-fc-request-id": _REQUEST_ID},
                     "content": {"application/json": {"schema": schema}}}}


_DELETED = {"204": {"description": "Deleted."}}
_HTML = {"200": {"description": "An HTML page",
                 "content": {"text/html": {"schema": {"type": "string"}}}}}


def _op(op_id: str, summary: str, tag: str, responses: dict[str, Any], *,
        params: list[Schema] | None = None, body: Schema | None = None,
        body_required: bool = True, **more: Any) -> Operation:
    """One operation; every error is FC's Error body (the ``default`` response)."""
    out: Operation = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": {
        **responses, "default": {"$ref": "#/components/responses/Error"}}, **more}
    if params:
        out["parameters"] = params
    if body is not None:
        # An empty body is read as {}: required where {} is not a valid call.
        out["requestBody"] = {"required": body_required,
                              "content": {"application/json": {"schema": body}}}
    return out


_PAGE = [_p("limit"), _p("nextToken")]
_SESSION_ID = _param("sessionId", "path", string(pattern=SESSION_PATTERN))


def _or_empty(schema: Schema) -> Schema:
    """A query parameter that is ignored when empty (``?limit=``)."""
    return {"anyOf": [schema, {"const": ""}]}

_INVOKE_HEADERS = [
    _param("x-fc-invocation-type", "header", string(enum=["Sync", "Async"]),
           "Sync (the default) or Async (202, run later); either case"),
    _param("x-fc-log-type", "header", string(examples=["Tail", "None"]),
           "Tail (either case): return the last 4 KB of the invocation's log in "
           "x-fc-log-result; anything else: no log"),
    _param("x-fc-async-delay", "header", string(pattern="^[0-9]{1,4}$"),
           "with Async: seconds (0-3600) before the first attempt"),
    _param("x-fc-async-task-id", "header", string(pattern=TASK_ID_PATTERN),
           "with Async: the task's id; the same id again runs once"),
]

_NODE_ID = {"schema": string(), "required": True, "description": "the node that served it"}

_ACCEPTED = {"202": {
    "description": "Accepted: the async task is stored and runs later.",
    "headers": {
        "x-fc-request-id": _REQUEST_ID,
        "x-fc-async-task-id": {"schema": string(), "required": True},
        "x-funclet-node-id": _NODE_ID,
        "x-funclet-async-task-duplicate": {
            "schema": string(enum=["true"]),
            "description": "the task id was seen before: the event runs once"},
    }}}

_INVOKED = {"200": {
    "description": "The function ran. The body is its return value, as bytes "
                   "(application/octet-stream); when it failed, x-fc-error-type is set and "
                   "the body is a FunctionError (application/json).",
    "headers": {
        "x-fc-request-id": _REQUEST_ID,
        "x-fc-code-checksum": {"schema": string("FC's CRC-64 (decimal) of the code package "
                                                "that ran"),
                               "required": True},
        "x-fc-invocation-service-version": {
            "schema": string("the version that ran: LATEST or a published one's id (an "
                             "alias's pick)"), "required": True},
        "x-fc-error-type": {"schema": string(
            enum=["UnhandledInvocationError", "HandledInvocationError"])},
        "x-fc-log-result": {"schema": string("with x-fc-log-type: Tail: the log's last "
                                             "4 KB, base64")},
        "x-funclet-start-kind": {"schema": string(enum=["cold", "warm", "provisioned", ""]),
                                 "required": True},
        "x-funclet-instance-id": {"schema": string(), "required": True},
        "x-funclet-node-id": _NODE_ID,
        "x-funclet-duration-ms": {"schema": _DURATION, "required": True,
                                  "description": "the handler's run time"},
        "x-funclet-queue-ms": {"schema": _DURATION, "required": True,
                               "description": "time spent waiting for admission"},
        "x-funclet-init-duration-ms": {"schema": _DURATION,
                                       "description": "on a cold start: the instance's "
                                                      "start-up"},
    },
    "content": {"application/octet-stream": {"schema": {}},
                "application/json": {"schema": ref("FunctionError")}},
}}


def _http_trigger(method: str, with_path: bool) -> Operation:
    params = [_p("functionName")]
    if with_path:
        params.append(_param("path", "path", string(), "the rest of the path, passed on"))
    params.append(_param("x-fc-invocation-type", "header", string(examples=["Async"]),
                         "Async (either case): queue the event (202); else it runs now"))
    op = _op(f"HttpTrigger{method.capitalize()}{'Path' if with_path else ''}",
             f"{method.upper()} through the function's HTTP trigger", "http-triggers", {
                 "200": {"description": "The function's answer: any status, headers and "
                                        "body it chose.",
                         "content": {"*/*": {"schema": {}}}},
                 **_ACCEPTED,
                 "502": {"description": "The function failed, or answered in a shape that "
                                        "is not an HTTP response (InvalidHTTPResponse).",
                         "headers": {"x-fc-error-type": {"schema": string(), "required": True}},
                         "content": {"application/json": {"schema": ref("FunctionError")}}},
             }, params=params, security=[{}, {"bearer": []}, {"acs3": []}])
    if method not in ("get", "head", "delete", "options"):
        op["requestBody"] = {"content": {"*/*": {"schema": {}}}}
    return op


def _function_url(method: str, with_path: bool) -> Operation:
    """A Lambda Function URL: the request goes to the function as Lambda's payload 2.0
    event (api/function_urls.py)."""
    params = [_param("urlId", "path", string(minLength=1))]
    if with_path:
        params.append(_param("path", "path", string(), "the rest of the path, passed on"))
    plain = {"application/json": {"schema": obj({"Message": string()})}}
    op = _op(f"FunctionUrl{method.capitalize()}{'Path' if with_path else ''}",
             f"{method.upper()} through a Function URL", "lambda", {
                 "200": {"description": "The function's answer: any status, headers and "
                                        "body it chose", "content": {"*/*": {"schema": {}}}},
                 "403": {"description": "AWS_IAM: not signed with SigV4 by a funclet key",
                         "content": plain},
                 "404": {"description": "No such URL", "content": plain},
                 "502": {"description": "The function failed", "content": plain},
             }, params=params, security=[{}])
    op["responses"]["default"] = {"$ref": "#/components/responses/LambdaError"}
    if method not in ("get", "head", "delete", "options"):
        op["requestBody"] = {"content": {"*/*": {"schema": {}}}}
    return op


def _trigger_examples(op: Operation) -> Operation:
    op["requestBody"]["content"]["application/json"]["examples"] = {
        "timer": {"value": {"triggerName": "nightly", "triggerType": "timer",
                            "triggerConfig": '{"cronExpression": "0 0 4 * * *", '
                                             '"payload": "{}", "enable": true}'}},
        "every": {"value": {"triggerName": "often", "triggerType": "timer",
                            "triggerConfig": {"cronExpression": "@every 5m"}}},
        "http": {"value": {"triggerName": "web", "triggerType": "http",
                           "triggerConfig": {"authType": "anonymous",
                                             "methods": ["GET", "POST"]}}},
        "redis": {"value": {"triggerName": "orders", "triggerType": "redis",
                            "triggerConfig": {"url": "redis://127.0.0.1:6379/0",
                                              "stream": "orders", "batchSize": 10}}},
    }
    return op


def _paths() -> dict[str, dict[str, Operation]]:
    fn = [_p("functionName")]
    fnq = [*fn, _p("qualifier")]
    return {
        f"{PREFIX}/functions": {
            "post": _op("CreateFunction", "Deploy a function", "functions",
                        _json(ref("Function")), body=ref("CreateFunctionInput")),
            "get": _op("ListFunctions", "List functions by name", "functions",
                       _json(ref("ListFunctionsOutput")), params=[_p("prefix"), *_PAGE]),
        },
        _F: {
            "get": _op("GetFunction", "A function's config (a version's, an alias's)",
                       "functions", _json(ref("Function")), params=fnq),
            "put": _op("UpdateFunction", "New config or code: a new version", "functions",
                       _json(ref("Function")), params=fn, body=ref("UpdateFunctionInput"),
                       body_required=False),
            "delete": _op("DeleteFunction", "Delete a function, its triggers and configs",
                          "functions", _DELETED, params=fn),
        },
        f"{_F}/instances": {
            "get": _op("ListInstances", "Live instances, then recently stopped ones",
                       "functions", _json(ref("ListInstancesOutput")), params=[
                           *fnq, _param("limit", "query", _or_empty(integer(1, 1000))),
                           _param("withAllActive", "query", string(),
                                  "true: live instances only")]),
        },
        f"{_F}/invocations": {
            "post": _op("InvokeFunction", "Invoke a function (sync, or async with "
                        "x-fc-invocation-type: Async)", "invocations", {**_INVOKED, **_ACCEPTED},
                        params=[*fnq, *_INVOKE_HEADERS],
                        requestBody={"description": "the event, as bytes",
                                     "content": {"application/octet-stream": {"schema": {}},
                                                 "application/json": {"schema": {}}}}),
            "get": _op("ListInvocations", "funclet's: invocation records, newest first",
                       "invocations", _json(ref("ListInvocationsOutput")), params=[
                           *fn, _param("status", "query",
                                       _or_empty(string(enum=["succeeded", "failed"]))), *_PAGE]),
        },
        f"{_F}/invocations/{{requestId}}": {
            "get": _op("GetInvocation", "funclet's: one invocation record with its log",
                       "invocations", _json(ref("Invocation")),
                       params=[*fn, _param("requestId", "path", string())]),
        },
        f"{_F}/concurrency": {
            "put": _op("PutConcurrencyConfig", "Reserve (and cap) instance slots",
                       "functions", _json(ref("ConcurrencyConfig")), params=fn,
                       body=ref("PutConcurrencyInput")),
            "get": _op("GetConcurrencyConfig", "The reservation", "functions",
                       _json(ref("ConcurrencyConfig")), params=fn),
            "delete": _op("DeleteConcurrencyConfig", "Drop the reservation", "functions",
                          _DELETED, params=fn),
        },
        f"{_F}/provision-config": {
            "put": _op("PutProvisionConfig", "Keep instances started ahead", "functions",
                       _json(ref("ProvisionConfig")), params=fn,
                       body=ref("PutProvisionConfigInput")),
            "get": _op("GetProvisionConfig", "Provisioned target and current", "functions",
                       _json(ref("ProvisionConfig")), params=fn),
            "delete": _op("DeleteProvisionConfig", "Target 0", "functions", _DELETED,
                          params=fn),
        },
        f"{PREFIX}/async-invoke-configs": {
            "get": _op("ListAsyncInvokeConfigs", "Every function's async invoke config",
                       "async", _json(ref("ListAsyncInvokeConfigOutput")), params=[
                           _param("functionName", "query", string(),
                                  "only functions whose name starts with this"), *_PAGE]),
        },
        f"{_F}/async-invoke-config": {
            "put": _op("PutAsyncInvokeConfig", "Retries, event age, destinations", "async",
                       _json(ref("AsyncConfig")), params=fn,
                       body=ref("PutAsyncInvokeConfigInput"), body_required=False),
            "get": _op("GetAsyncInvokeConfig", "The function's async invoke config", "async",
                       _json(ref("AsyncConfig")), params=fn),
            "delete": _op("DeleteAsyncInvokeConfig", "Back to the defaults", "async",
                          _DELETED, params=fn),
        },
        f"{_F}/async-tasks": {
            "get": _op("ListAsyncTasks", "Async tasks, newest first by default", "async",
                       _json(ref("ListAsyncTaskOutput")), params=[
                           *fnq, _p("prefix"),
                           _param("status", "query",
                                  _or_empty(string(enum=[s.value for s in TaskStatus]))),
                           _param("startedTimeBegin", "query", _or_empty(integer(0, 2**62)),
                                  "ms since the epoch"),
                           _param("startedTimeEnd", "query", _or_empty(integer(0, 2**62)),
                                  "ms since the epoch"),
                           _param("sortOrderByTime", "query",
                                  _or_empty(string(enum=["asc", "desc", "ASC", "DESC"]))),
                           _param("includePayload", "query", string(),
                                  "true: each task's taskPayload too"),
                           *_PAGE]),
        },
        f"{_F}/async-tasks/{{taskId}}": {
            "get": _op("GetAsyncTask", "One async task with its events", "async",
                       _json(ref("AsyncTask")), params=[*fn, _p("taskId")]),
        },
        f"{_F}/async-tasks/{{taskId}}/stop": {
            "put": _op("StopAsyncTask", "Stop a waiting or running task", "async",
                       _json({"type": "object"}), params=[*fn, _p("taskId")]),
        },
        f"{_F}/scaling-config": {
            "put": _op("PutScalingConfig", "Instances kept started (minInstances)",
                       "functions", _json(ref("ScalingConfigStatus")), params=fnq,
                       body=ref("PutScalingConfigInput"), body_required=False),
            "get": _op("GetScalingConfig", "The scaling config and its status", "functions",
                       _json(ref("ScalingConfigStatus")), params=fnq),
            "delete": _op("DeleteScalingConfig", "No instances kept started for it",
                          "functions", _DELETED, params=fnq),
        },
        f"{PREFIX}/scaling-configs": {
            "get": _op("ListScalingConfigs", "The functions with a scaling config",
                       "functions", _json(ref("ListScalingConfigsOutput")), params=[
                           _param("functionName", "query", string(),
                                  "only functions whose name starts with this"), *_PAGE]),
        },
        f"{_F}/snapshots": {
            "post": _op("CreateSnapshot", "Refused: funclet does not offer snapshots",
                        "functions", _json({"type": "object"}), params=fn,
                        body={"type": "object"}, body_required=False),
        },
        f"{_F}/snapshots/{{snapshotName}}": {
            "get": _op("GetSnapshot", "None exist (404)", "functions",
                       _json({"type": "object"}), params=[
                           *fn, _param("snapshotName", "path", string())]),
            "delete": _op("DeleteSnapshot", "None exist (404)", "functions", _DELETED,
                          params=[*fn, _param("snapshotName", "path", string())]),
        },
        f"{PREFIX}/snapshots": {
            "get": _op("ListSnapshots", "None exist: an empty list", "functions",
                       _json(ref("ListSnapshotsOutput")), params=[
                           _param("functionName", "query", string()), *_PAGE]),
        },
        f"{_F}/vpc-bindings": {
            "post": _op("CreateVpcBinding", "Refused: funclet does not offer VPC bindings",
                        "functions", _json({"type": "object"}), params=fn,
                        body={"type": "object"}, body_required=False),
            "get": _op("ListVpcBindings", "None exist: an empty list", "functions",
                       _json(ref("ListVpcBindingsOutput")), params=fn),
        },
        f"{_F}/vpc-bindings/{{vpcId}}": {
            "delete": _op("DeleteVpcBinding", "None exist (404)", "functions", _DELETED,
                          params=[*fn, _param("vpcId", "path", string())]),
        },
        f"{_F}/code": {
            "get": _op("GetFunctionCode", "Where the code package downloads from",
                       "functions", _json(ref("OutputFuncCode")), params=fnq),
        },
        f"{PREFIX}/code-packages/{{checksum}}.zip": {
            "get": _op("DownloadCodePackage", "funclet's: a package, by a signed URL from "
                       "GetFunctionCode (or a layer's code.location); valid 10 minutes",
                       "functions", {"200": {"description": "The zip.", "content": {
                           "application/zip": {"schema": {}}}}}, params=[
                           _param("checksum", "path", string(pattern="^[0-9a-f]{64}$")),
                           _param("expires", "query", string(), required=True),
                           _param("signature", "query", string(), required=True)],
                       security=[{}]),
        },
        f"{_F}/invoke/disable": {
            "post": _op("DisableFunctionInvocation", "Refuse every invocation (async tasks "
                        "wait), stop its provisioned instances", "functions",
                        _json(ref("Success")), params=fn,
                        body=ref("DisableFunctionInvocationInput"), body_required=False),
        },
        f"{_F}/invoke/enable": {
            "post": _op("EnableFunctionInvocation", "Invocations again", "functions",
                        _json(ref("Success")), params=fn),
        },
        f"{PREFIX}/concurrency-configs": {
            "get": _op("ListConcurrencyConfigs", "The functions with a reservation",
                       "functions", _json(ref("ListConcurrencyConfigsOutput")), params=[
                           _param("functionName", "query", string(),
                                  "only functions whose name starts with this"), *_PAGE]),
        },
        f"{PREFIX}/provision-configs": {
            "get": _op("ListProvisionConfigs", "The functions with a provisioned target",
                       "functions", _json(ref("ListProvisionConfigsOutput")), params=[
                           _param("functionName", "query", string(),
                                  "only functions whose name starts with this"), *_PAGE]),
        },
        f"{PREFIX}/resource-groups": {
            "put": _op("ChangeResourceGroup", "A function's resource group (kept as given)",
                       "platform", _json(ref("ChangeResourceGroupOutput")),
                       body=ref("ChangeResourceGroupInput")),
        },
        f"{PREFIX}/custom-domains": {
            "post": _op("CreateCustomDomain", "Route a host name's requests to functions",
                        "http-triggers", _json(ref("CustomDomain")),
                        body=ref("CreateCustomDomainInput")),
            "get": _op("ListCustomDomains", "Custom domains by name", "http-triggers",
                       _json(ref("ListCustomDomainOutput")), params=[_p("prefix"), *_PAGE]),
        },
        f"{PREFIX}/custom-domains/{{domainName}}": {
            "get": _op("GetCustomDomain", "One custom domain", "http-triggers",
                       _json(ref("CustomDomain")), params=[
                           _param("domainName", "path", string())]),
            "put": _op("UpdateCustomDomain", "Change its routes (what is left out stays)",
                       "http-triggers", _json(ref("CustomDomain")), params=[
                           _param("domainName", "path", string())],
                       body=ref("UpdateCustomDomainInput"), body_required=False),
            "delete": _op("DeleteCustomDomain", "Delete a custom domain", "http-triggers",
                          _DELETED, params=[_param("domainName", "path", string())]),
        },
        f"{PREFIX}/regions": {
            "get": _op("DescribeRegions", "The region this funclet is", "platform",
                       _json(ref("DescribeRegionsOutput"))),
        },
        f"{PREFIX}/tags-v2": {
            "post": _op("TagResources", "Tag functions", "platform",
                        {"204": {"description": "Tagged."}}, body=ref("TagResourcesInput")),
            "delete": _op("UntagResources", "Remove tags from functions", "platform",
                          {"204": {"description": "Untagged."}}, params=[
                              _param("ResourceType", "query", string(), required=True),
                              _param("ResourceId", "query", string(),
                                     'a JSON list of names or ARNs: ["hello"]', required=True),
                              _param("TagKey", "query", string(), 'a JSON list: ["team"]'),
                              _param("All", "query", string(), "true: every tag")]),
            "get": _op("ListTagResources", "Tags of functions", "platform",
                       _json(ref("ListTagResourcesOutput")), params=[
                           _param("ResourceType", "query", string()),
                           _param("ResourceId", "query", string(), "a JSON list"),
                           _param("Tag", "query", string(),
                                  'a JSON list: [{"Key": "team", "Value": "a"}]'),
                           _param("Limit", "query", _or_empty(integer(1, 1000))),
                           _param("NextToken", "query", string())]),
        },
        f"{PREFIX}/layers": {
            "get": _op("ListLayers", "Each layer's newest version", "layers",
                       _json(ref("ListLayersOutput")), params=[
                           _p("prefix"), _param("public", "query", string(),
                                                "true: public layers only"), *_PAGE]),
        },
        f"{PREFIX}/layers/{{layerName}}/versions": {
            "post": _op("CreateLayerVersion", "Publish a new version of a layer", "layers",
                        _json(ref("Layer")), params=[_p("layerName")],
                        body=ref("CreateLayerVersionInput")),
            "get": _op("ListLayerVersions", "A layer's versions from startVersion up",
                       "layers", _json(ref("ListLayerVersionOutput")), params=[
                           _p("layerName"), _param("startVersion", "query", _or_empty(
                               integer(1, 2**31))), _p("limit")]),
        },
        f"{PREFIX}/layers/{{layerName}}/versions/{{version}}": {
            "get": _op("GetLayerVersion", "One layer version", "layers", _json(ref("Layer")),
                       params=[_p("layerName"), _param("version", "path", string())]),
            "delete": _op("DeleteLayerVersion", "Delete a layer version (functions that use "
                          "it keep it)", "layers", _DELETED,
                          params=[_p("layerName"), _param("version", "path", string())]),
        },
        f"{PREFIX}/layers/{{layerName}}/acl": {
            "put": _op("PutLayerACL", "Make a layer public or private", "layers",
                       {"200": {"description": "Set."}}, params=[
                           _p("layerName"), _param("public", "query", string(
                               enum=["true", "false"])),
                           _param("acl", "query", string(enum=["0", "1"]))]),
        },
        f"{PREFIX}/layerarn/{{arn}}": {
            "get": _op("GetLayerVersionByArn", "A layer version by its ARN (URL-encoded)",
                       "layers", _json(ref("Layer")), params=[
                           _param("arn", "path", string())]),
        },
        f"{_F}/versions": {
            "post": _op("PublishFunctionVersion", "Publish LATEST as an immutable version",
                        "versions", _json(ref("Version")), params=fn,
                        body=ref("PublishVersionInput"), body_required=False),
            "get": _op("ListFunctionVersions", "The function's versions", "versions",
                       _json(ref("ListVersionsOutput")), params=[
                           *fn, _param("direction", "query", _or_empty(string(
                               enum=["BACKWARD", "FORWARD"])), "BACKWARD (newest first, "
                               "the default) or FORWARD"), *_PAGE]),
        },
        f"{_F}/versions/{{versionId}}": {
            "delete": _op("DeleteFunctionVersion", "Delete a version no alias uses",
                          "versions", _DELETED, params=[
                              *fn, _param("versionId", "path", string())]),
        },
        f"{_F}/aliases": {
            "post": _op("CreateAlias", "Name a version (and a canary share of a second)",
                        "versions", _json(ref("Alias")), params=fn,
                        body=ref("CreateAliasInput")),
            "get": _op("ListAliases", "The function's aliases by name", "versions",
                       _json(ref("ListAliasesOutput")), params=[*fn, _p("prefix"), *_PAGE]),
        },
        f"{_F}/aliases/{{aliasName}}": {
            "get": _op("GetAlias", "One alias", "versions", _json(ref("Alias")),
                       params=[*fn, _p("aliasName")]),
            "put": _op("UpdateAlias", "Point an alias elsewhere, change its canary",
                       "versions", _json(ref("Alias")), params=[*fn, _p("aliasName")],
                       body=ref("UpdateAliasInput"), body_required=False),
            "delete": _op("DeleteAlias", "Delete an alias", "versions", _DELETED,
                          params=[*fn, _p("aliasName")]),
        },
        f"{_F}/sessions": {
            "post": _op("CreateSession", "A session, bound to an instance started for it",
                        "sessions", _json(ref("Session")), params=[*fn, _p("qualifier")],
                        body=ref("CreateSessionInput"), body_required=False),
            "get": _op("ListSessions", "The function's sessions, oldest first", "sessions",
                       _json(ref("ListSessionsOutput")), params=[
                           *fn, _p("qualifier"), _param("sessionId", "query", string()),
                           _param("sessionStatus", "query", _or_empty(string(
                               enum=["Active", "Paused", "Expired"]))), *_PAGE]),
        },
        f"{_F}/sessions/{{sessionId}}": {
            "get": _op("GetSession", "One session", "sessions", _json(ref("Session")),
                       params=[*fn, _SESSION_ID, _p("qualifier")]),
            "put": _op("UpdateSession", "Change a session's TTL, idle timeout, flags",
                       "sessions", _json(ref("Session")),
                       params=[*fn, _SESSION_ID, _p("qualifier")],
                       body=ref("UpdateSessionInput"), body_required=False),
            "delete": _op("DeleteSession", "End a session (an isolated one's instance stops)",
                          "sessions", _DELETED, params=[*fn, _SESSION_ID, _p("qualifier")]),
        },
        f"{_F}/sessions/{{sessionId}}/pause": {
            "put": _op("PauseSession", "Stop the processes of a session's own instance",
                       "sessions", _json(ref("Session")),
                       params=[*fn, _SESSION_ID, _p("qualifier")]),
        },
        f"{_F}/sessions/{{sessionId}}/resume": {
            "put": _op("ResumeSession", "Let a paused session's processes go on",
                       "sessions", _json(ref("Session")),
                       params=[*fn, _SESSION_ID, _p("qualifier")]),
        },
        f"{_F}/triggers": {
            "post": _trigger_examples(_op(
                "CreateTrigger", "Add a timer, HTTP or message-queue trigger", "triggers",
                _json(ref("Trigger")), params=fn, body=ref("CreateTriggerInput"))),
            "get": _op("ListTriggers", "The function's triggers by name", "triggers",
                       _json(ref("ListTriggersOutput")), params=[*fn, _p("prefix"), *_PAGE]),
        },
        f"{_F}/triggers/{{triggerName}}": {
            "get": _op("GetTrigger", "One trigger", "triggers", _json(ref("Trigger")),
                       params=[*fn, _p("triggerName")]),
            "put": _op("UpdateTrigger", "Change a trigger (not its type)", "triggers",
                       _json(ref("Trigger")), params=[*fn, _p("triggerName")],
                       body=ref("UpdateTriggerInput"), body_required=False),
            "delete": _op("DeleteTrigger", "Delete a trigger", "triggers", _DELETED,
                          params=[*fn, _p("triggerName")]),
        },
        **_fc2_paths(),
        **_lambda_paths(),
        "/http/{functionName}": {m: _http_trigger(m, False) for m in _HTTP_METHODS},
        "/http/{functionName}/{path}": {m: _http_trigger(m, True) for m in _HTTP_METHODS},
        "/healthz": {
            "get": _op("Health", "Up, able to serve, and which sandbox protections are on",
                       "platform", {**_json(ref("Health")), **_json(
                           ref("Health"), "the database or the code store does not answer",
                           "503")}, security=[]),
        },
        **{path: {"get": _console(op, summary, params)}
           for path, op, summary, params in (
               ("/console", "ConsoleHome", "Redirects to /console/ (307)", []),
               ("/console/", "ConsoleFunctions", "The console: functions",
                [_param("q", "query", string()), _param("after", "query", string())]),
               ("/console/functions/{functionName}", "ConsoleFunction",
                "The console: one function", [_p("functionName")]),
               ("/console/functions/{functionName}/invocations/{requestId}",
                "ConsoleInvocation", "The console: one invocation's log",
                [_p("functionName"), _param("requestId", "path", string())]),
               ("/console/functions/{functionName}/tasks", "ConsoleTasks",
                "The console: a function's async tasks",
                [_p("functionName"), _param("status", "query", string())]),
               ("/console/functions/{functionName}/tasks/{taskId}", "ConsoleTask",
                "The console: one async task, its events and destination",
                [_p("functionName"), _param("taskId", "path", string())]),
               ("/console/invocations", "ConsoleInvocations",
                "The console: invocations (filter by function, status, start kind)",
                [_param(k, "query", string()) for k in ("function", "status", "start",
                                                        "before")]),
               ("/console/logs", "ConsoleLiveLogs", "The console: live logs",
                [_param("function", "query", string())]),
               ("/console/charts", "ConsoleCharts", "The console: charts",
                [_param("function", "query", string()), _param("window", "query", string(
                    enum=["15m", "1h", "6h", "24h"]))]),
           )},
        "/console/logs/stream": {"get": _console(
            "ConsoleLiveLogStream", "Server-sent events: each invocation as it ends "
            "(never ends itself; 429 past 64 followers on a node)",
            [_param("function", "query", string())],
            responses_more={"200": {"description": "The stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}}})},
        "/console/login": {
            "get": _console("ConsoleSignInPage", "The console's sign-in (auth on)",
                            [_param("next", "query", string())], security=[]),
            "post": _console(
                "ConsoleSignIn", "Sign in with the API token or ID:SECRET of an access key",
                [_param("next", "query", string())], security=[], requestBody={
                    "required": False, "content": {"application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": {
                            "token": {"type": "string"}}}}}}),
        },
        "/console/logout": {"post": _console("ConsoleSignOut", "Sign out of the console",
                                             [])},
        "/console/functions/{functionName}/invoke": {"post": _console(
            "ConsoleInvoke", "The console's invoke form: the page with the result",
            [_p("functionName")], requestBody={"required": False, "content": {
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "properties": {
                        "payload": {"type": "string"}, "qualifier": {"type": "string"},
                        "mode": {"type": "string", "enum": ["sync", "async"]}}}}}})},
        "/metrics": {
            "get": _op("GetMetrics", "Prometheus metrics (text format)", "platform",
                       {"200": {"description": "The metrics", "content": {
                           "text/plain": {"schema": {"type": "string"}}}}}),
        },
        f"{PREFIX}/openapi.json": {
            "get": _op("GetOpenApiDocument", "This document", "platform",
                       _json({"type": "object"}), security=[]),
        },
        f"{PREFIX}/nodes": {
            "get": _op("ListNodes", "The platform's nodes and their state", "platform",
                       _json(ref("ListNodesOutput"))),
        },
    }


def _console(op_id: str, summary: str, params: list[Schema],
             responses_more: dict[str, Any] | None = None, **more: Any) -> Operation:
    """A console page: HTML, its errors too (a page saying what went wrong)."""
    out = _op(op_id, summary, "console", {**_HTML, "303": {"description": "See other"},
                                          "307": {"description": "Moved"},
                                          **(responses_more or {})},
              params=params, **more)
    out["responses"]["default"] = {"description": "A page with the error",
                                   "content": {"text/html": {"schema": {"type": "string"}}}}
    return out


def _op2(op_id: str, summary: str, responses: dict[str, Any], **more: Any) -> Operation:
    """An FC 2.0 operation: its errors are 2.0's Error2 body."""
    out = _op(f"FC2{op_id}", summary, "fc2", responses, **more)
    out["responses"]["default"] = {"$ref": "#/components/responses/Error2"}
    return out


def _opl(op_id: str, summary: str, responses: dict[str, Any], **more: Any) -> Operation:
    """A Lambda operation: its errors are Lambda's (x-amzn-ErrorType, LambdaError)."""
    out = _op(f"Lambda{op_id}", summary, "lambda", responses, **more)
    out["responses"]["default"] = {"$ref": "#/components/responses/LambdaError"}
    return out


def _lambda_paths() -> dict[str, Any]:
    """AWS Lambda's API (api/lambda_api.py), as botocore's model names it; the bodies
    are Lambda's (docs/lambda.md maps them), described here as objects."""
    fn = [_param("FunctionName", "path", string(
        "a name, a partial or full ARN, maybe with :qualifier", minLength=1,
        maxLength=256), example="hello"), _param("Qualifier", "query", string())]
    any_object = {"type": "object"}

    def _lj(description: str = "OK", status: str = "200") -> dict[str, Any]:
        return {status: {"description": description, "headers": {
            "x-amzn-RequestId": {"schema": string(), "required": True}},
            "content": {"application/json": {"schema": any_object}}}}

    listing = [_param("Marker", "query", string()), _param("MaxItems", "query", string())]
    alias = _param("Name", "path", string(minLength=1, maxLength=128))
    resource = _param("ARN", "path", string("a function's ARN", minLength=1))
    layer = _param("LayerName", "path", string(minLength=1, maxLength=140))
    layer_version = _param("VersionNumber", "path", string(minLength=1))
    v = "/2015-03-31"
    return {
        f"{v}/functions": {
            "post": _opl("CreateFunction", "A function with Lambda's semantics",
                         _lj("Created", "201"), body=any_object),
            "get": _opl("ListFunctions", "Every function (both APIs'), by name",
                        _lj(), params=listing)},
        f"{v}/functions/": {"get": _opl(
            "ListFunctionsSlash", "ListFunctions as botocore's model writes its path",
            _lj(), params=listing)},
        f"{v}/functions/{{FunctionName}}": {
            "get": _opl("GetFunction", "Its configuration, code location, tags",
                        _lj(), params=fn),
            "delete": _opl("DeleteFunction", "Delete it (or, with Qualifier, a version)",
                           {"204": {"description": "Deleted"}}, params=fn)},
        f"{v}/functions/{{FunctionName}}/configuration": {
            "get": _opl("GetFunctionConfiguration", "Its configuration", _lj(),
                        params=fn),
            "put": _opl("UpdateFunctionConfiguration", "Change its configuration",
                        _lj(), params=fn, body=any_object)},
        f"{v}/functions/{{FunctionName}}/code": {"put": _opl(
            "UpdateFunctionCode", "New code (ZipFile)", _lj(), params=fn,
            body=any_object)},
        f"{v}/functions/{{FunctionName}}/versions": {
            "post": _opl("PublishVersion", "A version: the function as it is now",
                         _lj("Created", "201"), params=fn, body=any_object,
                         body_required=False),
            "get": _opl("ListVersionsByFunction", "$LATEST, then the versions",
                        _lj(), params=[*fn, *listing])},
        f"{v}/functions/{{FunctionName}}/aliases": {
            "post": _opl("CreateAlias", "An alias of a version (RoutingConfig: a canary)",
                         _lj("Created", "201"), params=fn, body=any_object),
            "get": _opl("ListAliases", "The function's aliases", _lj(),
                        params=[*fn, _param("FunctionVersion", "query", string()),
                                *listing])},
        f"{v}/functions/{{FunctionName}}/aliases/{{Name}}": {
            **{method: _opl(op, summary, responses, params=[*fn, alias], **more)
               for method, op, summary, responses, more in (
                   ("get", "GetAlias", "One alias", _lj(), {}),
                   ("put", "UpdateAlias", "Change an alias", _lj(),
                    {"body": any_object, "body_required": False}),
                   ("delete", "DeleteAlias", "Delete an alias",
                    {"204": {"description": "Deleted"}}, {}))}},
        f"{v}/functions/{{FunctionName}}/invocations": {"post": _opl(
            "Invoke", "Run it: X-Amz-Invocation-Type RequestResponse, Event or DryRun",
            {"200": {"description": "The result (or the function's error, with "
                                    "X-Amz-Function-Error)"},
             "202": {"description": "Queued (Event)"},
             "204": {"description": "DryRun: it could run"}}, params=fn,
            requestBody={"required": False, "content": {"application/json": {
                "schema": {}}}})},
        "/2017-10-31/functions/{FunctionName}/concurrency": {
            "put": _opl("PutFunctionConcurrency", "Reserve (and cap) its instances", _lj(),
                        params=fn, body=any_object),
            "delete": _opl("DeleteFunctionConcurrency", "Release its reservation",
                           {"204": {"description": "Deleted"}}, params=fn)},
        "/2019-09-30/functions/{FunctionName}/concurrency": {"get": _opl(
            "GetFunctionConcurrency", "Its reservation", _lj(), params=fn)},
        "/2019-09-30/functions/{FunctionName}/provisioned-concurrency": {
            "put": _opl("PutProvisionedConcurrencyConfig", "Instances kept started for a "
                        "version or an alias", _lj("Accepted", "202"), params=fn,
                        body=any_object),
            "get": _opl("GetProvisionedConcurrencyConfig", "Its provisioned instances",
                        _lj(), params=fn),
            "delete": _opl("DeleteProvisionedConcurrencyConfig", "No more",
                           {"204": {"description": "Deleted"}}, params=fn)},
        "/2019-09-25/functions/{FunctionName}/event-invoke-config": {
            "put": _opl("PutFunctionEventInvokeConfig", "Retries, event age, destinations",
                        _lj(), params=fn, body=any_object),
            "post": _opl("UpdateFunctionEventInvokeConfig", "Change some of them", _lj(),
                         params=fn, body=any_object),
            "get": _opl("GetFunctionEventInvokeConfig", "Its config", _lj(), params=fn),
            "delete": _opl("DeleteFunctionEventInvokeConfig", "Back to the defaults",
                           {"204": {"description": "Deleted"}}, params=fn)},
        "/2019-09-25/functions/{FunctionName}/event-invoke-config/list": {"get": _opl(
            "ListFunctionEventInvokeConfigs", "Its configs, by qualifier", _lj(),
            params=[*fn, *listing])},
        "/2017-03-31/tags/{ARN}": {
            "post": _opl("TagResource", "Add tags", {"204": {"description": "Tagged"}},
                         params=[resource], body=any_object),
            "delete": _opl("UntagResource", "Remove tags",
                           {"204": {"description": "Untagged"}},
                           params=[resource, _param("tagKeys", "query", string())]),
            "get": _opl("ListTags", "A function's tags", _lj(), params=[resource])},
        "/2021-11-15/functions/{FunctionName}/response-streaming-invocations": {
            "post": _opl("InvokeWithResponseStream", "Run it; the result as AWS's event "
                         "stream (PayloadChunk, InvokeComplete)",
                         {"200": {"description": "The event stream", "content": {
                             "application/vnd.amazon.eventstream": {"schema": {}}}},
                          "204": {"description": "DryRun: it could run"}}, params=fn,
                         requestBody={"required": False, "content": {
                             "application/json": {"schema": {}}}})},
        "/2018-10-31/layers": {"get": _opl(
            "ListLayers", "Each layer's newest version", _lj(), params=listing)},
        "/2018-10-31/layers/{LayerName}/versions": {
            "post": _opl("PublishLayerVersion", "A layer version (Content.ZipFile)",
                         _lj("Created", "201"), params=[layer], body=any_object),
            "get": _opl("ListLayerVersions", "A layer's versions, newest first", _lj(),
                        params=[layer, *listing])},
        "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}": {
            "get": _opl("GetLayerVersion", "One layer version", _lj(),
                        params=[layer, layer_version]),
            "delete": _opl("DeleteLayerVersion", "Delete it (functions using it go on)",
                           {"204": {"description": "Deleted"}},
                           params=[layer, layer_version])},
        "/2021-10-31/functions/{FunctionName}/url": {
            "post": _opl("CreateFunctionUrlConfig", "A URL for the function (or an alias)",
                         _lj("Created", "201"), params=fn, body=any_object),
            "get": _opl("GetFunctionUrlConfig", "Its URL", _lj(), params=fn),
            "put": _opl("UpdateFunctionUrlConfig", "Change its AuthType, InvokeMode, Cors",
                        _lj(), params=fn, body=any_object, body_required=False),
            "delete": _opl("DeleteFunctionUrlConfig", "No more URL",
                           {"204": {"description": "Deleted"}}, params=fn)},
        "/2021-10-31/functions/{FunctionName}/urls": {"get": _opl(
            "ListFunctionUrlConfigs", "Its URLs (one per qualifier)", _lj(),
            params=[*fn, *listing])},
        **{path: {method: _function_url(method, path.endswith("{path}"))
                  for method in _HTTP_METHODS}
           for path in ("/lambda-url/{urlId}", "/lambda-url/{urlId}/{path}")},
        **{path: {"get": _opl(op, "The account's limits and usage", _lj())}
           for path, op in (("/2016-08-19/account-settings", "GetAccountSettings"),
                            ("/2016-08-19/account-settings/", "GetAccountSettingsSlash"))},
    }


def _fc2_paths() -> dict[str, Any]:
    """FC 2.0's API (api/fc2.py): ``{service}`` may be ``{service}.{qualifier}``."""
    svc = _param("service", "path", string(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,127}"
                                                   r"(\.[A-Za-z0-9_-]{1,128})?$"))
    fn = [svc, _param("function", "path", string(pattern=NAME_PATTERN))]
    trig = [*fn, _param("trigger", "path", string(pattern=NAME_PATTERN))]
    page = [_p("limit"), _p("nextToken"), _p("prefix"), _param("startKey", "query", string())]
    v2, fns = "/2016-08-15", "/2016-08-15/services/{service}/functions"
    return {
        f"{v2}/account-settings": {"get": _op2(
            "GetAccountSettings", "The region and its zones", _json({"type": "object"}))},
        f"{v2}/services": {
            "post": _op2("CreateService", "A service: a group of 2.0 functions",
                         _json(ref("Service")), body=ref("ServiceInput")),
            "get": _op2("ListServices", "The services by name",
                        _json(ref("ListServicesOutput")), params=page)},
        f"{v2}/services/{{service}}": {
            "get": _op2("GetService", "One service", _json(ref("Service")), params=[svc]),
            "put": _op2("UpdateService", "Change a service (its functions follow)",
                        _json(ref("Service")), params=[svc], body=ref("ServiceInput"),
                        body_required=False),
            "delete": _op2("DeleteService", "Delete a service without functions", _DELETED,
                           params=[svc])},
        fns: {
            "post": _op2("CreateFunction", "A function of the service (3.0's "
                         "'{service}${function}')", _json(ref("Function2")), params=[svc],
                         body=ref("Function2Input")),
            "get": _op2("ListFunctions", "The service's functions",
                        _json(ref("ListFunctions2Output")), params=[svc, *page])},
        f"{fns}/{{function}}": {
            "get": _op2("GetFunction", "One function", _json(ref("Function2")), params=fn),
            "put": _op2("UpdateFunction", "Change a function", _json(ref("Function2")),
                        params=fn, body=ref("Function2Input"), body_required=False),
            "delete": _op2("DeleteFunction", "Delete a function", _DELETED, params=fn)},
        f"{fns}/{{function}}/code": {"get": _op2(
            "GetFunctionCode", "Where the package downloads from",
            _json({"type": "object"}), params=fn)},
        f"{fns}/{{function}}/invocations": {"post": _op2(
            "InvokeFunction", "Run it (x-fc-invocation-type: Sync or Async)",
            {"200": {"description": "The handler's result"},
             "202": {"description": "Accepted (async)"}}, params=fn,
            requestBody={"required": False, "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}})},
        f"{fns}/{{function}}/triggers": {
            "post": _op2("CreateTrigger", "Add a trigger", _json(ref("Trigger2")), params=fn,
                         body={"type": "object"}),
            "get": _op2("ListTriggers", "The function's triggers",
                        _json(ref("ListTriggers2Output")), params=[*fn, *page])},
        f"{fns}/{{function}}/triggers/{{trigger}}": {
            "get": _op2("GetTrigger", "One trigger", _json(ref("Trigger2")), params=trig),
            "put": _op2("UpdateTrigger", "Change a trigger", _json(ref("Trigger2")),
                        params=trig, body={"type": "object"}, body_required=False),
            "delete": _op2("DeleteTrigger", "Delete a trigger", _DELETED, params=trig)},
    }


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "funclet",
            "version": __version__,
            "summary": "Function Compute 3.0's API, self-hosted.",
            "description": (
                "FC 3.0's control and invoke API under /2023-03-30/ (FC's field names and "
                "headers; funclet's additions are marked and use the x-funclet- prefix), "
                "HTTP triggers under /http/{functionName}/ (and on {functionName}.{domain} "
                "when a base domain is configured), and /healthz. API errors are FC's "
                "Error body; a function's own failure is a FunctionError body."),
        },
        "tags": [{"name": t} for t in ("functions", "versions", "sessions", "layers",
                                       "invocations", "fc2", "lambda", "console",
                                       "async",
                                       "triggers",
                                       "http-triggers", "platform")],
        "security": [{}, {"bearer": []}, {"acs3": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "parameters": {
                "functionName": _param("functionName", "path", string(
                    pattern=FUNCTION_NAME_PATTERN, maxLength=128),
                                       example="hello"),
                "triggerName": _param("triggerName", "path", string(pattern=NAME_PATTERN)),
                "taskId": _param("taskId", "path", string(pattern=TASK_ID_PATTERN)),
                "aliasName": _param("aliasName", "path", string(pattern=NAME_PATTERN)),
                "layerName": _param("layerName", "path", string(
                    pattern="^[A-Za-z0-9_-]{1,64}$")),
                "qualifier": _param("qualifier", "query", _or_empty(string(
                    pattern=QUALIFIER_PATTERN)), "LATEST (the default), a version's id or "
                    "an alias"),
                "prefix": _param("prefix", "query", string(), "names starting with this"),
                "limit": _param("limit", "query", _or_empty(integer(1, 100)),
                                "20 by default"),
                "nextToken": _param("nextToken", "query", string(),
                                    "the previous page's nextToken"),
            },
            "headers": {"RequestId": {"schema": string(), "required": True,
                                      "description": "the call's (or invocation's) id"}},
            "responses": {"LambdaError": {
                "description": "A Lambda call that was refused: x-amzn-ErrorType names "
                               "Lambda's error (ResourceNotFoundException, …)",
                "content": {"application/json": {"schema": ref("LambdaError")}},
            }, "Error2": {
                "description": "A 2.0 call that was refused (the same codes, 2.0's shape)",
                "headers": {"x-fc-request-id": _REQUEST_ID},
                "content": {"application/json": {"schema": ref("Error2")}},
            }, "Error": {
                "description": "The call was refused: 400 InvalidArgument, 401 Unauthorized, "
                               "403 AccessDenied, 404 …NotFound, 405 MethodNotAllowed, "
                               "409 …AlreadyExists or VersionInUse, 413 EntityTooLarge, "
                               "429 ResourceExhausted, 503 ServiceUnavailable, "
                               "500 InternalError.",
                "headers": {"x-fc-request-id": _REQUEST_ID},
                "content": {"application/json": {"schema": ref("Error")}},
            }},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the server's API token"},
                "acs3": {"type": "apiKey", "in": "header", "name": "Authorization",
                         "description": "FC's ACS3-HMAC-SHA256 signature with an access "
                                        "key, as FC's SDKs sign"},
            },
        },
    }


@functools.cache
def _document_json() -> bytes:
    return orjson.dumps(document())


async def openapi_json(request: Request) -> Response:
    return Response(_document_json(), media_type="application/json",
                    headers={"x-fc-request-id": new_request_id()})


routes = [Route(f"{PREFIX}/openapi.json", openapi_json, methods=["GET"])]
