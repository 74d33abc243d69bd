"""JSON Schemas of the API's bodies, in FC 3.0's camelCase, for the OpenAPI document.

Each schema says what funclet accepts and answers (the checks live in ``models.py``,
``triggers/config.py`` and ``asyncq/policy.py``; the ranges here are theirs). Request
objects allow other fields: FC's SDKs send fields funclet does not use, and they are
ignored.
"""

from __future__ import annotations

from typing import Any

from funclet.asyncq.policy import MAX_AGE, MAX_RETRIES, TaskStatus
from funclet.instances.state import FC_STATUS, InstanceState, StartKind, StopReason
from funclet.models import DEFAULT_MEMORY, DEFAULT_TIMEOUT, MAX_TIMEOUT
from funclet.triggers.config import BROKERS, HTTP_METHODS, TYPES

Schema = dict[str, Any]

NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]{0,127}$"
# (at most 128 in all; FC 2.0's functions are '{service}${function}')
FUNCTION_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}(\$[A-Za-z_][A-Za-z0-9_-]{0,126})?$"
HANDLER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
TASK_ID_PATTERN = "^[A-Za-z0-9_-]{1,128}$"
VERSION_PATTERN = "^[1-9][0-9]{0,9}$"
QUALIFIER_PATTERN = "^(LATEST|[1-9][0-9]{0,9}|[A-Za-z_][A-Za-z0-9_-]{0,127})$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str = "", **more: Any) -> Schema:
    return {"type": "string", **({"description": description} if description else {}), **more}


def integer(low: int | None = None, high: int | None = None, description: str = "",
            **more: Any) -> Schema:
    out: Schema = {"type": "integer", **more}
    if low is not None:
        out["minimum"] = low
    if high is not None:
        out["maximum"] = high
    if description:
        out["description"] = description
    return out


def boolean(description: str = "") -> Schema:
    return {"type": "boolean", **({"description": description} if description else {})}


def nullable(schema: Schema) -> Schema:
    """The same type, or null (OpenAPI 3.1: a list of types)."""
    return {**schema, "type": [schema["type"], "null"]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), description: str = "",
        **more: Any) -> Schema:
    out: Schema = {"type": "object", "properties": properties, **more}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def _time(description: str) -> Schema:
    return nullable(string(f"{description} (ISO 8601, UTC, e.g. 2023-04-01T08:15:27Z)"))


# An alias's second version and its share of the invocations (a canary).
_WEIGHTS: Schema = {
    "type": "object", "maxProperties": 1,
    "propertyNames": {"pattern": VERSION_PATTERN},
    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
    "description": "at most one other version id, with the share (0 to 1) of the calls "
                   "it gets"}

_HOOK = obj({
    "handler": string("module.function of the hook", pattern=HANDLER_PATTERN),
    "timeout": integer(1, description="seconds; 3 by default (initializer ≤ 600, preStop ≤ 90)"),
})

# The fields CreateFunction and UpdateFunction share, with their ranges.
_FUNCTION_FIELDS: dict[str, Schema] = {
    "semantics": string(
        "funclet's: how the handler is called: 'fc' (FC's, the default) or 'lambda' "
        "(Lambda's: the event JSON-decoded, Lambda's context, the code at /var/task; what "
        "a function created through the Lambda API has)", enum=["fc", "lambda"]),
    "runtime": string(
        "python3.9 … python3.13 and nodejs20 as found on the machine; custom, "
        "custom.debian10/11/12 (an HTTP server); custom.lambda, provided, provided.al2, "
        "provided.al2023 (the Lambda Runtime API)", minLength=1,
        examples=["python3.11", "nodejs20", "custom.debian12"]),
    "handler": string("module.function, e.g. index.handler", pattern=HANDLER_PATTERN),
    "code": ref("InputCodeLocation"),
    "timeout": integer(1, MAX_TIMEOUT, f"seconds; {DEFAULT_TIMEOUT} by default"),
    "memorySize": integer(128, 32768, f"MB, a multiple of 64; {DEFAULT_MEMORY} by default",
                          multipleOf=64),
    "instanceConcurrency": integer(1, 200, "invocations one instance may run at once"),
    "description": string(maxLength=256),
    "environmentVariables": {
        "type": "object", "additionalProperties": {"type": "string"},
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "description": "at most 4 KB of names and values in all"},
    "instanceLifecycleConfig": obj({"initializer": _HOOK, "preStop": _HOOK}),
    "internetAccess": boolean("network access for its instances; true by default"),
    "snapStart": obj({"applyOn": string(
        "funclet's: which versions start their instances from a snapshot (their imports "
        "and initializer run once, in a template; new instances are forked from it): "
        "PublishedVersions (as Lambda's SnapStart), All ($LATEST too), or None",
        enum=["None", "PublishedVersions", "All"])}),
    "keepAliveSeconds": integer(1, 86_400, "funclet's own: how long an idle instance stays "
                                "warm (the server's setting by default)"),
    "customRuntimeConfig": ref("CustomRuntimeConfig"),
    "tags": array(ref("Tag")),
    "layers": {**array(string("a layer version's ARN")), "maxItems": 5,
               "description": "merged in order at /opt"},
    "sessionAffinity": string("how a request names its session: a header, FC's cookie "
                              "x-fc-cookie-session-id, or none",
                              enum=["NONE", "HEADER_FIELD", "GENERATED_COOKIE"]),
    "sessionAffinityConfig": {
        "description": "a JSON object (or a string holding one): affinityHeaderFieldName "
                       "(HEADER_FIELD), sessionTTLInSeconds (1-21600), "
                       "sessionIdleTimeoutInSeconds (0-TTL), sessionConcurrencyPerInstance "
                       "(1-200, at most instanceConcurrency), disableSessionIdReuse",
        "anyOf": [{"type": "string"}, {"type": "object"}]},
    "instanceIsolationMode": string(
        "SHARE (the default), REQUEST_EXCLUSIVE (a fresh instance per request) or "
        "SESSION_EXCLUSIVE (an instance per session, stopped with it)",
        enum=["SHARE", "REQUEST_EXCLUSIVE", "SESSION_EXCLUSIVE"]),
    # Kept and returned as given (they need Alibaba Cloud to mean anything).
    "role": string("kept as given"), "logConfig": {"type": "object",
                                                   "description": "kept as given"},
    "tracingConfig": {"type": "object"}, "customDNS": {"type": "object"},
    "cpu": {"type": "number", "description": "kept as given"},
    "diskSize": integer(description="MB, kept as given"), "resourceGroupId": string(),
    "disableOndemand": boolean(), "enableLongLiving": boolean(),
    "disableInjectCredentials": string(), "idleTimeout": integer(),
}

_OUT_HOOK = obj({"handler": string(), "timeout": integer()})
SESSION_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"
_SESSION_IN: dict[str, Schema] = {
    "sessionTTLInSeconds": integer(1, 21_600, "from its creation"),
    "sessionIdleTimeoutInSeconds": integer(0, 21_600, "since its last request (0: none)"),
    "disableSessionIdReuse": boolean("an ended session's id starts no new one"),
    "enableAutoPause": boolean("pause instead of ending when idle (SESSION_EXCLUSIVE)"),
    "enableAutoResume": boolean("a request resumes the paused session"),
    "allowInternetAccess": boolean("kept as given"),
}

SCHEMAS: dict[str, Schema] = {
    "Error": obj({
        "Code": string("FC's error code, e.g. InvalidArgument, FunctionNotFound"),
        "Message": string("what went wrong, naming the field or the limit"),
        "RequestId": string(),
    }, ("Code", "Message", "RequestId"), "An API call that was refused."),
    "LambdaError": obj({
        "Type": string("User or Service"),
        "message": string("what went wrong"),
    }, ("message",), "A Lambda API call that was refused (its type in x-amzn-ErrorType)."),
    "Error2": obj({
        "ErrorCode": string("FC's error code, e.g. InvalidArgument, ServiceNotFound"),
        "ErrorMessage": string("what went wrong"),
        "RequestId": string(),
    }, ("ErrorCode", "ErrorMessage", "RequestId"), "A 2.0 API call that was refused."),
    "Service": obj({
        "serviceName": string(), "serviceId": string(), "description": string(),
        "role": string(), "logConfig": {"type": "object"}, "internetAccess": boolean(),
        "tracingConfig": {"type": "object"}, "vpcConfig": {"type": "object"},
        "nasConfig": {"type": "object"}, "createdTime": _time("created"),
        "lastModifiedTime": _time("last changed")}, ("serviceName", "serviceId")),
    "ServiceInput": obj({
        "serviceName": string(pattern=NAME_PATTERN), "description": string(maxLength=256),
        "role": string(), "logConfig": {"type": "object"}, "internetAccess": boolean(),
        "tracingConfig": {"type": "object"}}),
    "ListServicesOutput": obj({"services": array(ref("Service")), "nextToken": string()},
                              ("services",)),
    "Function2": {"type": "object", "required": ["functionName"], "description":
                  "FC 2.0's Function: 3.0's fields, the short functionName, initializer "
                  "and initializationTimeout at the top, layers as ARNs"},
    "Function2Input": {"type": "object", "description":
                       "FC 2.0's CreateFunction/UpdateFunction body (code.zipFile, "
                       "initializer, initializationTimeout, caPort, 3.0's fields)"},
    "ListFunctions2Output": obj({"functions": array(ref("Function2")),
                                 "nextToken": string()}, ("functions",)),
    "Trigger2": {"type": "object", "required": ["triggerName", "triggerType"],
                 "description": "3.0's Trigger, triggerConfig as an object; HTTP triggers "
                                "give urlInternet (the /proxy/ URL)"},
    "ListTriggers2Output": obj({"triggers": array(ref("Trigger2")), "nextToken": string()},
                               ("triggers",)),
    "FunctionError": obj({
        "errorMessage": string(),
        "errorType": string("the exception's class, or FunctionTimeoutError, "
                            "Runtime.ImportModuleError, InitializationTimeout, …"),
        "stackTrace": array(string()),
    }, ("errorMessage", "errorType"), "A function that ran (or tried to) and failed."),
    "InputCodeLocation": obj({
        "zipFile": string("the code package: a zip archive, base64", minLength=1,
                          contentEncoding="base64"),
    }),
    "CustomRuntimeConfig": obj({
        "command": array(string()),
        "args": array(string()),
        "port": integer(1, 65535, "the port the server listens on; 9000 by default"),
    }),
    "CreateFunctionInput": obj({
        "functionName": string("letters, digits, '_', '-'; not starting with a digit or '-' "
                               "(FC 2.0's functions: '{service}${function}')",
                               pattern=FUNCTION_NAME_PATTERN, maxLength=128),
        **_FUNCTION_FIELDS,
    }, ("functionName", "runtime", "handler", "code")),
    "UpdateFunctionInput": obj(
        _FUNCTION_FIELDS,
        description="Any field of CreateFunctionInput but functionName; what is left out "
                    "stays as it was."),
    "Function": obj({
        "functionName": string(), "runtime": string(), "handler": string(),
        "timeout": integer(), "memorySize": integer(), "instanceConcurrency": integer(),
        "description": string(),
        "environmentVariables": {"type": "object", "additionalProperties": {"type": "string"}},
        "instanceLifecycleConfig": obj({"initializer": _OUT_HOOK, "preStop": _OUT_HOOK}),
        "internetAccess": boolean(),
        "keepAliveSeconds": {"type": "number"},
        "customRuntimeConfig": ref("CustomRuntimeConfig"),
        "functionArn": string("acs:fc:{region}:{accountId}:functions/{name}"),
        "functionId": string(),
        "codeChecksum": string("FC's: the code package's CRC-64/ECMA-182, decimal, as OSS "
                               "and deploy tools compute it", pattern="^[0-9]{1,20}$"),
        "codeSha256": string("funclet's: the package's sha256 (its key in the code store)"),
        "codeSize": integer(0, description="bytes, zipped"),
        "createdTime": _time("created"),
        "lastModifiedTime": _time("last updated"),
        "state": string(enum=["Active"]),
        "stateReason": string(), "stateReasonCode": string(),
        "lastUpdateStatus": string(enum=["Successful"]),
        "lastUpdateStatusReason": string(), "lastUpdateStatusReasonCode": string(),
        "tags": array(ref("Tag")),
        "layers": array(obj({"arn": string(), "size": integer(0)})),
        "sessionAffinity": string(enum=["NONE", "HEADER_FIELD", "GENERATED_COOKIE"]),
        "sessionAffinityConfig": string("a JSON object, as a string"),
        "instanceIsolationMode": string(enum=["SHARE", "REQUEST_EXCLUSIVE",
                                              "SESSION_EXCLUSIVE"]),
        "semantics": _FUNCTION_FIELDS["semantics"],
        "snapStart": _FUNCTION_FIELDS["snapStart"],
        "invocationRestriction": obj({"disable": boolean(), "reason": string(),
                                      "lastModifiedTime": _time("disabled")},
                                     description="while DisableFunctionInvocation holds"),
        **{k: _FUNCTION_FIELDS[k] for k in (
            "role", "logConfig", "tracingConfig", "customDNS", "cpu", "diskSize",
            "resourceGroupId", "disableOndemand", "enableLongLiving",
            "disableInjectCredentials", "idleTimeout")},
    }, ("functionName", "runtime", "handler", "functionArn", "codeChecksum")),
    "ListFunctionsOutput": obj({"functions": array(ref("Function")),
                                "nextToken": string("the next page, when there is one")},
                               ("functions",)),
    "InstanceInfo": obj({
        "instanceId": string(), "versionId": string(), "qualifier": string(),
        "status": string("FC's", enum=sorted(set(FC_STATUS.values()))),
        "createdTimeMs": nullable(integer()),
        "destroyedTimeMs": nullable(integer()),
        "state": string("funclet's", enum=[s.value for s in InstanceState]),
        "stopReason": nullable(string(enum=[r.value for r in StopReason])),
        "nodeId": string("the node it runs (or ran) on"),
    }, ("instanceId", "status", "state")),
    "ListInstancesOutput": obj({"instances": array(ref("InstanceInfo")),
                                "requestId": string()}, ("instances",)),
    "Invocation": obj({
        "requestId": string(), "functionName": string(),
        "mode": string(enum=["sync", "async"]),
        "status": string(enum=["succeeded", "failed"]),
        "startKind": nullable(string(enum=[k.value for k in StartKind])),
        "instanceId": nullable(string()),
        "initDurationMs": nullable({"type": "number"}),
        "durationMs": nullable({"type": "number"}),
        "queueMs": nullable({"type": "number"}),
        "errorType": nullable(string()),
        "errorMessage": nullable(string()),
        "startedTime": _time("started"),
        "startedTimeMs": nullable(integer()),
        "nodeId": string("the node that ran it"),
        "versionId": string("the version that ran (LATEST, or a published one's id)"),
        "log": nullable(string("the invocation's log (GetInvocation only)")),
    }, ("requestId", "functionName", "status"), "funclet's record of one invocation."),
    "ListInvocationsOutput": obj({"invocations": array(ref("Invocation")),
                                  "nextToken": string()}, ("invocations",)),
    "PutConcurrencyInput": obj({"reservedConcurrency": integer(
        0, description="instance slots reserved for (and capping) this function")},
        ("reservedConcurrency",)),
    "ConcurrencyConfig": obj({"functionArn": string(), "reservedConcurrency": integer(0)},
                             ("functionArn",)),
    "PutProvisionConfigInput": obj({"target": integer(
        0, description="instances to keep started; at most the account's max instances")},
        ("target",)),
    "ProvisionConfig": obj({
        "functionArn": string(), "target": integer(0), "defaultTarget": integer(0),
        "current": integer(0, description="provisioned instances started now"),
        "currentError": nullable(string("why the last start failed")),
        "alwaysAllocateCPU": boolean(),
        "scheduledActions": array({}), "targetTrackingPolicies": array({}),
    }, ("functionArn", "target", "current")),
    "AsyncTaskEvent": obj({"eventId": integer(), "status": string(),
                           "timestamp": integer(), "eventDetail": string()}),
    "AsyncTask": obj({
        "taskId": string(), "requestId": string(), "functionArn": string(),
        "qualifier": string(),
        "status": string(enum=[s.value for s in TaskStatus]),
        "alreadyRetriedTimes": integer(0),
        "startedTime": nullable(integer(description="ms since the epoch")),
        "endTime": nullable(integer(description="ms since the epoch")),
        "durationMs": nullable(integer()),
        "instanceId": nullable(string()),
        "taskErrorMessage": nullable(string()),
        "returnPayload": nullable(string()),
        "destinationStatus": nullable(string()),
        "events": array(ref("AsyncTaskEvent")),
        "taskPayload": string("the event (GetAsyncTask, or ListAsyncTasks with "
                              "includePayload=true)"),
    }, ("taskId", "status", "functionArn")),
    "ListAsyncTaskOutput": obj({"tasks": array(ref("AsyncTask")), "nextToken": string()},
                               ("tasks",)),
    "Destination": obj({"destination": string(
        "a function ARN, http(s)://…, redis://host:port/db?stream=S, "
        "amqp://…?exchange=X&routingKey=K, nats://host:port?subject=S or "
        "mqtt://host:port?topic=T&qos=1")}, ("destination",)),
    "DestinationConfig": obj({"onSuccess": ref("Destination"),
                              "onFailure": ref("Destination")}),
    "PutAsyncInvokeConfigInput": obj({
        "maxAsyncRetryAttempts": integer(0, MAX_RETRIES, "3 by default"),
        "maxAsyncEventAgeInSeconds": integer(1, MAX_AGE, "86400 by default"),
        "destinationConfig": ref("DestinationConfig"),
        "asyncTask": boolean(),
    }),
    "AsyncConfig": obj({
        "functionArn": string(),
        "maxAsyncRetryAttempts": integer(0, MAX_RETRIES),
        "maxAsyncEventAgeInSeconds": integer(1, MAX_AGE),
        "destinationConfig": ref("DestinationConfig"),
        "asyncTask": boolean(),
        "createdTime": _time("created"), "lastModifiedTime": _time("last updated"),
    }, ("functionArn", "maxAsyncRetryAttempts", "maxAsyncEventAgeInSeconds")),
    "ListAsyncInvokeConfigOutput": obj({"configs": array(ref("AsyncConfig")),
                                        "nextToken": string()}, ("configs",)),
    "TimerTriggerConfig": obj({
        "cronExpression": string("seconds first ('0 0 4 * * *'), CRON_TZ=… allowed, or "
                                 "'@every 5m'"),
        "payload": string(), "enable": boolean(),
    }, ("cronExpression",)),
    "HTTPTriggerConfig": obj({
        "authType": string(enum=["anonymous", "function"]),
        "methods": {**array(string(enum=list(HTTP_METHODS))), "minItems": 1},
        "disableURLInternet": boolean(),
    }),
    "BrokerTriggerConfig": obj({
        "url": string(" or ".join(f"{s}://" for _, schemes in BROKERS.values()
                                  for s in schemes) + " URL with a host"),
        **{field: string(f"what a {kind} trigger consumes") for kind, (field, _) in
           BROKERS.items()},
        "batchSize": integer(1, 100),
        "batchWindowInSeconds": {"type": "number", "minimum": 0, "maximum": 15},
    }, ("url",), "redis (stream), rabbitmq (queue), nats (subject), mqtt (topic)"),
    "TriggerConfig": {
        "description": "By triggerType; FC sends it as a JSON string holding the object.",
        "anyOf": [string("the object below as JSON"), ref("TimerTriggerConfig"),
                  ref("HTTPTriggerConfig"), ref("BrokerTriggerConfig")],
    },
    "CreateTriggerInput": obj({
        "triggerName": string(pattern=NAME_PATTERN),
        "triggerType": string(enum=list(TYPES)),
        "triggerConfig": ref("TriggerConfig"),
        "description": string(), "qualifier": string(), "invocationRole": string(),
        "sourceArn": string(),
    }, ("triggerName", "triggerType")),
    "UpdateTriggerInput": obj({
        "triggerConfig": ref("TriggerConfig"),
        "description": string(), "qualifier": string(), "invocationRole": string(),
        "sourceArn": string(),
    }),
    "Trigger": obj({
        "triggerId": string(), "triggerName": string(),
        "triggerType": string(enum=list(TYPES)),
        "triggerConfig": string("as FC sends it: a JSON string"),
        "description": string(), "qualifier": string(), "invocationRole": string(),
        "sourceArn": string(), "targetArn": string(),
        "createdTime": _time("created"), "lastModifiedTime": _time("last updated"),
        "status": string("OK, or a message-queue trigger's Connecting, Connected, Error"),
        "lastError": string("funclet's: why a message-queue trigger is not connected"),
        "httpTrigger": obj({"urlInternet": string(), "urlIntranet": string()}),
        "nextFireTime": _time("funclet's: a timer's next fire"),
    }, ("triggerId", "triggerName", "triggerType", "triggerConfig")),
    "ListTriggersOutput": obj({"triggers": array(ref("Trigger")), "nextToken": string()},
                              ("triggers",)),
    "Node": obj({
        "nodeId": string(), "address": string("host:port of its API"), "version": string(),
        "state": string("dead: no heartbeat for deadAfterSeconds",
                        enum=["alive", "stopped", "dead"]),
        "startedTimeMs": integer(), "lastHeartbeatTimeMs": integer(),
        "stoppedTimeMs": nullable(integer()),
        "instances": {**integer(), "description": "live instances at its last heartbeat"},
        "self": {"type": "boolean", "description": "the node that answered"},
    }, ("nodeId", "state")),
    "ListNodesOutput": obj({"nodes": array(ref("Node")), "deadAfterSeconds": {"type": "number"},
                            "requestId": string()}, ("nodes",)),
    "Tag": obj({"Key": string(minLength=1, maxLength=128), "Value": string(maxLength=256)},
               ("Key",)),
    "ListConcurrencyConfigsOutput": obj({"configs": array(ref("ConcurrencyConfig")),
                                         "nextToken": string()}, ("configs",)),
    "ListProvisionConfigsOutput": obj({"provisionConfigs": array(ref("ProvisionConfig")),
                                       "nextToken": string()}, ("provisionConfigs",)),
    "DisableFunctionInvocationInput": obj({
        "reason": string(maxLength=256),
        "abortOngoingRequest": boolean("end the invocations running now too")}),
    "Success": obj({"success": boolean()}, ("success",)),
    "DescribeRegionsOutput": obj({"Regions": obj({"Region": array(obj({
        "RegionId": string(), "LocalName": string()}))})}),
    "TagResourcesInput": obj({
        "ResourceType": string(examples=["function"]),
        "ResourceId": array(string("a function's name or ARN")),
        "Tag": array(ref("Tag"))}, ("ResourceType", "ResourceId", "Tag")),
    "ListTagResourcesOutput": obj({"TagResources": array(obj({
        "ResourceId": string(), "ResourceType": string(), "TagKey": string(),
        "TagValue": string()})), "NextToken": string(), "RequestId": string()},
        ("TagResources",)),
    "PutScalingConfigInput": obj({
        "minInstances": integer(0, description="instances kept started (as provisioned "
                                               "ones)"),
        "horizontalScalingPolicies": array({"type": "object"}),
        "scheduledPolicies": array({"type": "object"}),
        "enableMixMode": boolean(), "enableOnDemandScaling": boolean(),
        "requestDispatchPolicy": string(), "residentPoolId": string()},
        description="minInstances acts; the rest is kept as given"),
    "ScalingConfigStatus": obj({
        "functionArn": string(), "minInstances": integer(0),
        "targetInstances": integer(0, description="kept started across the cluster: "
                                                  "the provisioned target or minInstances"),
        "currentInstances": integer(0, description="started on the answering node"),
        "currentError": string(),
        "horizontalScalingPolicies": array({"type": "object"}),
        "scheduledPolicies": array({"type": "object"}),
        "enableMixMode": boolean(), "enableOnDemandScaling": boolean(),
        "requestDispatchPolicy": string(), "residentPoolId": string()},
        ("functionArn", "minInstances")),
    "ListScalingConfigsOutput": obj({"scalingConfigs": array(ref("ScalingConfigStatus")),
                                     "nextToken": string()}, ("scalingConfigs",)),
    "ListSnapshotsOutput": obj({"snapshots": array({"type": "object"}),
                                "nextToken": string()}, ("snapshots",)),
    "ListVpcBindingsOutput": obj({"vpcIds": array(string())}, ("vpcIds",)),
    "ChangeResourceGroupInput": obj({
        "NewResourceGroupId": string(minLength=1, maxLength=128),
        "ResourceId": string("a function's name or ARN"),
        "ResourceType": string(examples=["function"])}, ("NewResourceGroupId", "ResourceId")),
    "ChangeResourceGroupOutput": obj({
        "ResourceId": string(), "OldResourceGroupId": string(),
        "NewResourceGroupId": string()}),
    "PathConfig": obj({
        "path": string("exact (/login) or a prefix ending in * (/api/*)", pattern="^/"),
        "functionName": string(pattern=NAME_PATTERN),
        "qualifier": string(pattern=QUALIFIER_PATTERN),
        "methods": array(string(enum=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH",
                                      "OPTIONS"])),
        "rewriteConfig": obj({k: array(obj({"match": string(), "replacement": string()},
                                           ("match", "replacement")))
                              for k in ("equalRules", "wildcardRules", "regexRules")}),
    }, ("path", "functionName")),
    "RouteConfig": obj({"routes": {**array(ref("PathConfig")), "maxItems": 100}}),
    "CreateCustomDomainInput": obj({
        "domainName": string("a host name with a dot, not an IP address"),
        "protocol": string(enum=["HTTP", "HTTPS", "HTTP,HTTPS"]),
        "routeConfig": ref("RouteConfig"),
        "authConfig": obj({"authType": string(enum=["anonymous", "function"])}),
        **{k: {"type": "object", "description": "kept as given"} for k in (
            "certConfig", "tlsConfig", "wafConfig", "corsConfig")}}, ("domainName",)),
    "UpdateCustomDomainInput": obj({
        "protocol": string(enum=["HTTP", "HTTPS", "HTTP,HTTPS"]),
        "routeConfig": ref("RouteConfig"),
        "authConfig": obj({"authType": string(enum=["anonymous", "function"])}),
        **{k: {"type": "object"} for k in ("certConfig", "tlsConfig", "wafConfig",
                                           "corsConfig")}}),
    "CustomDomain": obj({
        "domainName": string(), "accountId": string(), "apiVersion": string(),
        "protocol": string(), "routeConfig": ref("RouteConfig"),
        "authConfig": {"type": "object"}, "subdomainCount": string(),
        "createdTime": _time("created"), "lastModifiedTime": _time("last changed"),
        **{k: {"type": "object"} for k in ("certConfig", "tlsConfig", "wafConfig",
                                           "corsConfig")}}, ("domainName",)),
    "ListCustomDomainOutput": obj({"customDomains": array(ref("CustomDomain")),
                                   "nextToken": string()}, ("customDomains",)),
    "OutputFuncCode": obj({"url": string("a signed URL, valid 10 minutes"),
                           "checksum": string("the package's sha256")}, ("url", "checksum")),
    "CreateLayerVersionInput": obj({
        "code": ref("InputCodeLocation"),
        "compatibleRuntime": array(string()), "description": string(maxLength=256),
        "license": string(maxLength=256)}, ("code",)),
    "Layer": obj({
        "layerName": string(), "version": integer(1), "layerVersionArn": string(
            "acs:fc:{region}:{accountId}:layers/{name}/versions/{version}"),
        "description": string(), "compatibleRuntime": array(string()), "license": string(),
        "codeChecksum": string(), "codeSize": integer(0), "createTime": _time("published"),
        "acl": string("1: public, 0: private", enum=["0", "1"]),
        "code": obj({"repositoryType": string(), "location": string(
            "where the package downloads from (a signed URL, valid 10 minutes)")}),
    }, ("layerName", "version", "layerVersionArn")),
    "ListLayersOutput": obj({"layers": array(ref("Layer")), "nextToken": string()},
                            ("layers",)),
    "ListLayerVersionOutput": obj({"layers": array(ref("Layer")),
                                   "nextVersion": integer(1)}, ("layers",)),
    "PublishVersionInput": obj({"description": string(maxLength=256)}),
    "Version": obj({"versionId": string(pattern=VERSION_PATTERN), "description": string(),
                    "createdTime": _time("published"), "lastModifiedTime": _time("published")},
                   ("versionId",)),
    "ListVersionsOutput": obj({"versions": array(ref("Version")),
                               "direction": string(enum=["BACKWARD", "FORWARD"]),
                               "nextToken": string()}, ("versions",)),
    "CreateAliasInput": obj({
        "aliasName": string(pattern=NAME_PATTERN), "versionId": string(pattern=VERSION_PATTERN),
        "description": string(maxLength=256),
        "additionalVersionWeight": _WEIGHTS}, ("aliasName", "versionId")),
    "UpdateAliasInput": obj({
        "versionId": string(pattern=VERSION_PATTERN), "description": string(maxLength=256),
        "additionalVersionWeight": _WEIGHTS}),
    "Alias": obj({
        "aliasName": string(), "versionId": string(), "description": string(),
        "additionalVersionWeight": _WEIGHTS,
        "createdTime": _time("created"), "lastModifiedTime": _time("last changed")},
        ("aliasName", "versionId")),
    "ListAliasesOutput": obj({"aliases": array(ref("Alias")), "nextToken": string()},
                             ("aliases",)),
    "CreateSessionInput": obj({"sessionId": string(pattern=SESSION_PATTERN), **_SESSION_IN}),
    "UpdateSessionInput": obj(_SESSION_IN),
    "Session": obj({
        "sessionId": string(), "functionName": string(), "qualifier": string(),
        "sessionAffinityType": string(enum=["HEADER_FIELD", "GENERATED_COOKIE"]),
        "sessionStatus": string(enum=["Active", "Paused", "Expired"]),
        "containerId": string("the instance it is bound to (empty: none now)"),
        "createdTime": _time("created"), "lastModifiedTime": _time("last changed"),
        **_SESSION_IN}, ("sessionId", "functionName", "sessionStatus")),
    "ListSessionsOutput": obj({"sessions": array(ref("Session")), "nextToken": string()},
                              ("sessions",)),
    "Health": obj({
        "status": string("unavailable (503): the database or the code store does not answer",
                         enum=["ok", "unavailable"]),
        "nodeId": string(),
        "database": obj({"backend": string(enum=["sqlite", "postgresql"]),
                         "ok": {"type": "boolean"}, "error": string()}, ("ok",)),
        "codeStore": obj({"location": string(), "ok": {"type": "boolean"},
                          "error": string()}, ("ok",)),
        "sandbox": {"type": "object", "additionalProperties": {"type": "boolean"},
                    "description": "which protections are on: namespaces, memoryLimit, "
                                   "cpuWeight, processLimit, unprivilegedUser"},
    }, ("status", "sandbox")),
}
