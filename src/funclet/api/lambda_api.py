"""AWS Lambda's API beside FC's, on the same port and over the same functions, so that
boto3, the AWS CLI and the JS SDK work unchanged (paths and shapes as botocore's
``lambda`` model has them).

A function created here has Lambda's semantics (``FunctionConfig.semantics``): its
handler gets the event JSON-decoded and Lambda's context, its result is JSON-encoded,
its code is at ``/var/task`` with Lambda's environment variables. Every function is
visible through both APIs, each keeping the semantics it was created with; this module
maps the fields (docs/lambda.md has the table). Errors are Lambda's
(``responses.lambda_error``), for every request under Lambda's date prefixes
(``LambdaRequests``).
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from funclet.api.code import code_url
from funclet.api.functions import platform_of, row_at
from funclet.api.invoke import accept_async, read_event
from funclet.api.responses import (
    ERROR_SHAPE,
    LAMBDA,
    StreamedResponse,
    json_body,
    lambda_error,
    new_request_id,
)
from funclet.errors import ApiError, InvalidArgument, ShuttingDown
from funclet.instances.exchange import STREAM_LIMIT, ResponseStream
from funclet.instances.state import StartKind
from funclet.invoker.invoker import Invocation
from funclet.layers import ARN_RE
from funclet.logs import TAIL_BYTES, clip_lines
from funclet.models import LAMBDA_SEMANTICS, SNAP_NONE, SNAP_PUBLISHED, parse_tags
from funclet.platform import Platform
from funclet.store import FunctionRow
from funclet.store.versions import AliasRow
from funclet.versions import LATEST, parse_qualifier

V = "/2015-03-31"
# Lambda's date prefixes (botocore's model): its errors are Lambda's under them.
PREFIXES = ("/2015-03-31/", "/2016-08-19/", "/2017-03-31/", "/2017-10-31/", "/2018-10-31/",
            "/2019-09-25/", "/2019-09-30/", "/2021-10-31/", "/2021-11-15/")
_ARN = re.compile(r"^(?:arn:aws[a-z-]*:lambda:[a-z0-9-]*:)?(?:\d{1,20}:)?(?:function:)?"
                  r"([A-Za-z0-9_$-]{1,140})(?::([A-Za-z0-9_$-]{1,128}))?$")
_LAMBDA_DEFAULTS = {"Timeout": 3, "MemorySize": 128}  # Lambda's, where a create omits them
# Lambda's bounds (botocore's model), narrower than FC's: 900 s, not 86,400.
_LAMBDA_RANGES = {"Timeout": (1, 900), "MemorySize": (128, 10240)}
# Lambda's ids for funclet's runtimes that have another name in FC (the rest are the same).
_TO_LAMBDA = {"custom.lambda": "provided.al2023", "custom": "provided.al2023",
              "custom.debian10": "provided.al2", "custom.debian11": "provided.al2023",
              "custom.debian12": "provided.al2023"}


class LambdaRequests:
    """Requests under Lambda's date prefixes get Lambda's errors (a 404 route, a 405,
    an authentication failure too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        token = ERROR_SHAPE.set(LAMBDA)
        try:
            await self.app(scope, receive, send)
        finally:
            ERROR_SHAPE.reset(token)


def lambda_arn(platform: Platform, name: str, qualifier: str | None = None) -> str:
    s = platform.settings
    arn = f"arn:aws:lambda:{s.region}:{s.account_id}:function:{name}"
    return arn if not qualifier or qualifier == LATEST else f"{arn}:{qualifier}"


def function_target(request: Request) -> tuple[str, str]:
    """The function (a name, a partial or a full ARN, maybe with ``:qualifier``) and the
    qualifier (the ARN's, or ``Qualifier``) of the request."""
    raw = unquote(request.path_params["name"])
    m = _ARN.fullmatch(raw)
    if m is None:
        raise InvalidArgument(f"1 validation error detected: Value '{raw}' at "
                              "'functionName' failed to satisfy constraint: Member must "
                              "satisfy regular expression pattern: (arn:aws:lambda:)?...")
    name, in_arn = m.group(1), m.group(2)
    given = request.query_params.get("Qualifier")
    if in_arn and given and in_arn != given:
        raise InvalidArgument("The derived qualifier from the function name does not match "
                              "the specified qualifier.")
    qualifier = in_arn or given
    return name, parse_qualifier(None if qualifier in (None, "$LATEST") else qualifier)


def lambda_response(data: Any, status: int = 200, request_id: str | None = None) -> Response:
    return Response(orjson.dumps(data), status, {
        "x-amzn-RequestId": request_id or new_request_id()}, "application/json")


def configuration(platform: Platform, row: FunctionRow, version: str = "$LATEST",
                  ) -> dict[str, Any]:
    """Lambda's FunctionConfiguration of a function (whichever API created it)."""
    cfg = row.config
    kept = cfg.kept
    out: dict[str, Any] = {
        "FunctionName": row.name,
        "FunctionArn": lambda_arn(platform, row.name,
                                  None if version == "$LATEST" else version),
        "Runtime": _runtime_id(cfg.runtime),
        "Role": kept.get("role") or f"arn:aws:iam::{platform.settings.account_id}:role/funclet",
        "Handler": cfg.handler,
        "CodeSize": row.code_size,
        "Description": cfg.description,
        "Timeout": cfg.timeout,
        "MemorySize": cfg.memory_size,
        "LastModified": lambda_time(row.modified_ms),
        "CodeSha256": base64.b64encode(bytes.fromhex(row.code_checksum)).decode(),
        "Version": version,
        "Environment": {"Variables": dict(cfg.environment)},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": f"{row.function_id[:24]}{row.revision:012d}",
        "Layers": [{"Arn": _lambda_layer(platform, arn)} for arn in cfg.layers],
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{row.name}"},
        "SnapStart": {
            "ApplyOn": SNAP_NONE if cfg.snap_start == SNAP_NONE else SNAP_PUBLISHED,
            "OptimizationStatus": "On" if cfg.snapshots(
                "LATEST" if version == "$LATEST" else version) else "Off"},
    }
    return out


def _lambda_layer(platform: Platform, arn: str) -> str:
    """funclet's layer version ARN as Lambda's."""
    m = ARN_RE.fullmatch(arn)
    return lambda_layer_arn(platform, m.group(3), int(m.group(4))) if m else arn


def _runtime_id(runtime: str) -> str:
    """funclet's runtime as Lambda names it (FC's ``nodejs20`` is ``nodejs20.x``)."""
    if re.fullmatch(r"nodejs\d+", runtime):
        return f"{runtime}.x"
    return _TO_LAMBDA.get(runtime, runtime)


def lambda_time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + \
        f".{ms % 1000:03d}+0000"


def _fc_body(platform: Platform, body: dict[str, Any], create: bool) -> dict[str, Any]:
    """A Lambda CreateFunction / UpdateFunctionConfiguration body as FC's fields."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    out: dict[str, Any] = {}
    if create:
        out["functionName"] = body.get("FunctionName")
        out["semantics"] = LAMBDA_SEMANTICS
        body = {**_LAMBDA_DEFAULTS, **body}
    for key, (low, high) in _LAMBDA_RANGES.items():
        value = body.get(key)
        if value is not None and (isinstance(value, int) and not isinstance(value, bool)
                                  ) and not low <= value <= high:
            side = f"greater than or equal to {low}" if value < low else \
                f"less than or equal to {high}"
            raise InvalidArgument(f"1 validation error detected: Value '{value}' at "
                                  f"'{key[0].lower() + key[1:]}' failed to satisfy "
                                  f"constraint: Member must have value {side}")
    for key, fc in (("Runtime", "runtime"), ("Handler", "handler"), ("Timeout", "timeout"),
                    ("MemorySize", "memorySize"), ("Description", "description"),
                    ("Layers", "layers"), ("Role", "role")):
        if body.get(key) is not None:
            out[fc] = body[key]
    if body.get("Environment") is not None:
        env = body["Environment"]
        if not isinstance(env, dict):
            raise InvalidArgument("Environment must be an object with Variables")
        out["environmentVariables"] = env.get("Variables") or {}
    if body.get("SnapStart") is not None:
        snap = body["SnapStart"]
        apply_on = snap.get("ApplyOn") if isinstance(snap, dict) else None
        if apply_on not in (SNAP_NONE, SNAP_PUBLISHED):
            raise InvalidArgument(f"1 validation error detected: Value '{apply_on}' at "
                                  "'snapStart.applyOn' failed to satisfy constraint: Member "
                                  "must satisfy enum value set: [PublishedVersions, None]")
        out["snapStart"] = {"applyOn": apply_on}
    if isinstance(out.get("runtime"), str):
        out["runtime"] = _from_lambda(out["runtime"])
    if "layers" in out:
        out["layers"] = _fc_layers(platform, out["layers"])
    if body.get("Tags") is not None and create:
        tags = body["Tags"]
        if not isinstance(tags, dict):
            raise InvalidArgument("Tags must be an object of strings")
        out["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    return out


def _from_lambda(runtime: str) -> str:
    """Lambda's runtime id as funclet's: ``nodejs20.x`` is ``nodejs20``; ``provided.*``
    and ``python3.N`` are the same."""
    if re.fullmatch(r"nodejs\d+\.x", runtime):
        return runtime.removesuffix(".x")
    return runtime


def _code(body: dict[str, Any], required: bool) -> dict[str, Any]:
    code = body.get("Code") if "Code" in body else body
    if not isinstance(code, dict):
        raise InvalidArgument("Code must be an object")
    if code.get("ZipFile"):
        return {"code": {"zipFile": code["ZipFile"]}}
    for key in ("S3Bucket", "ImageUri"):
        if code.get(key):
            raise InvalidArgument(f"Code.{key}: funclet takes the package itself "
                                  "(Code.ZipFile), not a reference to AWS's S3 or ECR")
    if required:
        raise InvalidArgument("Code.ZipFile (the package, base64) is required")
    return {}


# -- functions ------------------------------------------------------------------------


async def create_function(request: Request) -> Response:
    platform = platform_of(request)
    body = await json_body(request)
    if body.get("PackageType", "Zip") != "Zip":
        raise InvalidArgument("PackageType Image: funclet runs code packages (Zip)")
    row = await platform.functions.create({**_fc_body(platform, body, True), **_code(body, True)})
    out = configuration(platform, row)
    if body.get("Publish"):
        version = await platform.versions.publish(row.name, {})
        out = configuration(platform, row, str(version.version_id))
    return lambda_response(out, 201)


async def get_function(request: Request) -> Response:
    platform = platform_of(request)
    name, qualifier = function_target(request)
    row = await row_at(platform, name, qualifier)
    tags = (await platform.store.tags_of("function", [name])).get(name, {})
    reserved = (await platform.store.reserved_concurrency()).get(name)
    out: dict[str, Any] = {
        "Configuration": configuration(platform, row, await _version_of(
            platform, name, qualifier)),
        "Code": {"RepositoryType": "S3", "Location": code_url(request, row.code_checksum)},
        "Tags": tags,
    }
    if reserved is not None:
        out["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
    return lambda_response(out)


async def get_configuration(request: Request) -> Response:
    platform = platform_of(request)
    name, qualifier = function_target(request)
    row = await row_at(platform, name, qualifier)
    version = await _version_of(platform, name, qualifier)
    return lambda_response(configuration(platform, row, version))


async def _version_of(platform: Platform, name: str, qualifier: str) -> str:
    """What Lambda calls the version a qualifier names: ``$LATEST``, or its number."""
    if qualifier == LATEST:
        return "$LATEST"
    return str((await platform.versions.resolve_row(name, qualifier)).version_id)


async def update_code(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    body = await json_body(request)
    row = await platform.functions.update(name, _code(body, True))
    out = configuration(platform, row)
    if body.get("Publish"):
        version = await platform.versions.publish(name, {})
        out = configuration(platform, row, str(version.version_id))
    return lambda_response(out)


async def update_configuration(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    row = await platform.functions.update(name, _fc_body(platform, await json_body(request), False))
    return lambda_response(configuration(platform, row))


async def delete_function(request: Request) -> Response:
    platform = platform_of(request)
    name, qualifier = function_target(request)
    if qualifier != LATEST:
        await platform.versions.delete(name, qualifier)
    else:
        await platform.functions.delete(name)
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def list_functions(request: Request) -> Response:
    """Every function, whichever API created it; ``Marker`` is the last name seen."""
    platform = platform_of(request)
    q = request.query_params
    limit = _max_items(request)
    rows = await platform.functions.page("", limit + 1, q.get("Marker") or "")
    out: dict[str, Any] = {"Functions": [configuration(platform, r) for r in rows[:limit]]}
    if len(rows) > limit:
        out["NextMarker"] = rows[limit - 1].name
    return lambda_response(out)


async def account_settings(request: Request) -> Response:
    platform = platform_of(request)
    s = platform.settings
    reserved = sum((await platform.store.reserved_concurrency()).values())
    count, total = await platform.store.code_usage()
    return lambda_response({
        "AccountLimit": {"TotalCodeStorage": 75 * 1024 ** 3,
                         "CodeSizeUnzipped": s.max_unpacked_size,
                         "CodeSizeZipped": s.max_code_size,
                         "ConcurrentExecutions": s.max_instances,
                         "UnreservedConcurrentExecutions": max(0, s.max_instances - reserved)},
        "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
    })


# -- versions and aliases -------------------------------------------------------------


async def publish_version(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    body = await json_body(request)
    version = await platform.versions.publish(name, {"description": body.get("Description")
                                                     or ""})
    row = await row_at(platform, name, str(version.version_id))
    return lambda_response(configuration(platform, row, str(version.version_id)), 201)


async def list_versions(request: Request) -> Response:
    """$LATEST, then the versions oldest first, as Lambda lists them."""
    platform = platform_of(request)
    name, _ = function_target(request)
    limit = _max_items(request)
    marker = request.query_params.get("Marker") or ""
    out: list[dict[str, Any]] = []
    if not marker:
        out.append(configuration(platform, await platform.functions.get(name)))
    after = marker if marker.isdigit() else ""
    if len(out) == limit:  # (MaxItems=1: $LATEST alone on the first page)
        return lambda_response({"Versions": out, "NextMarker": "$LATEST"})
    rows, more = await platform.versions.page(name, limit - len(out), "FORWARD", after)
    for version in rows:
        row = await row_at(platform, name, str(version.version_id))
        out.append(configuration(platform, row, str(version.version_id)))
    answer: dict[str, Any] = {"Versions": out}
    if more:
        answer["NextMarker"] = more
    return lambda_response(answer)


def _max_items(request: Request, most: int = 50) -> int:
    raw = request.query_params.get("MaxItems") or str(most)
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise InvalidArgument("MaxItems must be a number from 1 to 10000")
    return min(most, int(raw))


def alias_json(platform: Platform, alias: AliasRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AliasArn": lambda_arn(platform, alias.function_name, alias.alias_name),
        "Name": alias.alias_name, "FunctionVersion": str(alias.version_id),
        "Description": alias.description,
        "RevisionId": f"{alias.modified_ms:x}-{alias.version_id}",
    }
    if alias.additional_weight:
        out["RoutingConfig"] = {"AdditionalVersionWeights": alias.additional_weight}
    return out


def _alias_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Lambda alias body as FC's."""
    out: dict[str, Any] = {}
    if body.get("Name") is not None:
        out["aliasName"] = body["Name"]
    if body.get("FunctionVersion") is not None:
        version = body["FunctionVersion"]
        if version == "$LATEST":
            raise InvalidArgument("an alias points at a published version, not $LATEST")
        out["versionId"] = version
    if body.get("Description") is not None:
        out["description"] = body["Description"]
    if body.get("RoutingConfig") is not None:
        routing = body["RoutingConfig"]
        if not isinstance(routing, dict):
            raise InvalidArgument("RoutingConfig must be an object")
        out["additionalVersionWeight"] = routing.get("AdditionalVersionWeights") or {}
    return out


async def create_alias(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    alias = await platform.versions.create_alias(name, _alias_body(await json_body(request)))
    return lambda_response(alias_json(platform, alias), 201)


async def get_alias(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    alias = await platform.versions.get_alias(name, request.path_params["alias"])
    return lambda_response(alias_json(platform, alias))


async def update_alias(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    alias = await platform.versions.update_alias(name, request.path_params["alias"],
                                                 _alias_body(await json_body(request)))
    return lambda_response(alias_json(platform, alias))


async def delete_alias(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    await platform.versions.delete_alias(name, request.path_params["alias"])
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def list_aliases(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    version = request.query_params.get("FunctionVersion")
    rows, more = await platform.versions.list_aliases(
        name, "", _max_items(request), request.query_params.get("Marker") or "")
    out: dict[str, Any] = {"Aliases": [alias_json(platform, a) for a in rows
                                       if version is None or str(a.version_id) == version]}
    if more:
        out["NextMarker"] = more
    return lambda_response(out)


# -- concurrency, provisioned concurrency, event invoke configs, tags ----------------


async def put_concurrency(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    value = (await json_body(request)).get("ReservedConcurrentExecutions")
    reserved = await platform.functions.set_reserved_concurrency(
        name, {"reservedConcurrency": value})
    return lambda_response({"ReservedConcurrentExecutions": reserved})


async def get_concurrency(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    reserved = await platform.functions.reserved_concurrency(name)
    return lambda_response({} if reserved is None else {"ReservedConcurrentExecutions": reserved})


async def delete_concurrency(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    await platform.functions.clear_reserved_concurrency(name)
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def _published_target(request: Request) -> tuple[Platform, str, str]:
    """Provisioned concurrency's target: a version or an alias (Lambda's rule)."""
    platform = platform_of(request)
    name, qualifier = function_target(request)
    if qualifier == LATEST:
        raise InvalidArgument("Provisioned concurrency is configured on a published "
                              "version or an alias (Qualifier), not $LATEST")
    await platform.versions.version_ids(name, qualifier)  # 404 for an unknown one
    return platform, name, qualifier


def _provisioned_json(platform: Platform, name: str, qualifier: str) -> dict[str, Any]:
    target = platform.versions.provisioned.get((name, qualifier), 0)
    version_id = platform.versions.provision_version(name, qualifier)
    pool = platform.registry.published(name, version_id) if version_id else None
    current = pool.provisioned_current if pool is not None else 0
    return {"RequestedProvisionedConcurrentExecutions": target,
            "AvailableProvisionedConcurrentExecutions": current,
            "AllocatedProvisionedConcurrentExecutions": current,
            "Status": "READY" if current >= target else "IN_PROGRESS",
            **({"StatusReason": pool.provision_error} if pool and pool.provision_error
               else {}),
            "LastModified": lambda_time(int(time.time() * 1000))}


async def put_provisioned(request: Request) -> Response:
    platform, name, qualifier = await _published_target(request)
    value = (await json_body(request)).get("ProvisionedConcurrentExecutions")
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise InvalidArgument("ProvisionedConcurrentExecutions must be at least 1")
    await platform.versions.set_provision(name, qualifier, platform.functions.target_of(
        {"target": value}))
    return lambda_response(_provisioned_json(platform, name, qualifier), 202)


async def get_provisioned(request: Request) -> Response:
    platform, name, qualifier = await _published_target(request)
    if not platform.versions.provisioned.get((name, qualifier)):
        raise ProvisionedNotFound("No Provisioned Concurrency Config found for this "
                                  "function")
    return lambda_response(_provisioned_json(platform, name, qualifier))


async def delete_provisioned(request: Request) -> Response:
    platform, name, qualifier = await _published_target(request)
    await platform.versions.set_provision(name, qualifier, 0)
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


def _fc_destination(platform: Platform, arn: Any) -> Any:
    """Lambda's destination ARN of a function as funclet's; a broker URL or webhook as
    it is."""
    m = _ARN.fullmatch(arn) if isinstance(arn, str) and arn.startswith("arn:") else None
    return platform.function_arn(m.group(1)) if m else arn


def _event_config_json(platform: Platform, name: str, qualifier: str, entry: Any
                       ) -> dict[str, Any]:
    config, _created, modified = entry
    fc = config.to_fc(platform.function_arn(name))
    destinations: dict[str, Any] = {}
    for fc_key, key in (("onSuccess", "OnSuccess"), ("onFailure", "OnFailure")):
        target = (fc["destinationConfig"].get(fc_key) or {}).get("destination")
        if target:
            prefix = platform.function_arn("")
            destinations[key] = {"Destination": lambda_arn(platform, target[len(prefix):])
                                 if target.startswith(prefix) else target}
    return {"LastModified": modified / 1000,
            "FunctionArn": lambda_arn(platform, name, qualifier),
            "MaximumRetryAttempts": fc["maxAsyncRetryAttempts"],
            "MaximumEventAgeInSeconds": fc["maxAsyncEventAgeInSeconds"],
            "DestinationConfig": destinations}


async def _put_event_config(request: Request, merge: bool) -> Response:
    """Put (the whole config: what is left out is Lambda's default) or Update (merge
    into the current one)."""
    platform = platform_of(request)
    name, qualifier = function_target(request)
    await platform.functions.get(name)
    body = await json_body(request)
    current = platform.async_configs.get(name, qualifier) if merge else None
    fc: dict[str, Any] = current[0].to_fc(platform.function_arn(name)) if current else {
        "maxAsyncRetryAttempts": 2, "maxAsyncEventAgeInSeconds": 21_600,
        "destinationConfig": {}}
    retries = body.get("MaximumRetryAttempts")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 2:
            raise InvalidArgument("MaximumRetryAttempts must be 0, 1 or 2")
        fc["maxAsyncRetryAttempts"] = retries
    age = body.get("MaximumEventAgeInSeconds")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, int) or not 60 <= age <= 21_600:
            raise InvalidArgument("MaximumEventAgeInSeconds must be from 60 to 21600")
        fc["maxAsyncEventAgeInSeconds"] = age
    if body.get("DestinationConfig") is not None:
        given = body["DestinationConfig"]
        if not isinstance(given, dict):
            raise InvalidArgument("DestinationConfig must be an object")
        for key, fc_key in (("OnSuccess", "onSuccess"), ("OnFailure", "onFailure")):
            target = given.get(key)
            if isinstance(target, dict) and target.get("Destination"):
                fc["destinationConfig"][fc_key] = {
                    "destination": _fc_destination(platform, target["Destination"])}
            elif key in given:
                fc["destinationConfig"].pop(fc_key, None)
    entry = await platform.async_configs.put(name, fc, qualifier)
    return lambda_response(_event_config_json(platform, name, qualifier, entry))


async def put_event_config(request: Request) -> Response:
    return await _put_event_config(request, merge=False)


async def update_event_config(request: Request) -> Response:
    return await _put_event_config(request, merge=True)


async def get_event_config(request: Request) -> Response:
    platform = platform_of(request)
    name, qualifier = function_target(request)
    await platform.functions.get(name)
    entry = platform.async_configs.get(name, qualifier)
    if entry is None:
        raise EventConfigNotFound(f"The function {lambda_arn(platform, name, qualifier)} "
                                  "doesn't have an EventInvokeConfig")
    return lambda_response(_event_config_json(platform, name, qualifier, entry))


async def delete_event_config(request: Request) -> Response:
    platform = platform_of(request)
    name, qualifier = function_target(request)
    await platform.functions.get(name)
    if not await platform.async_configs.delete(name, qualifier):
        raise EventConfigNotFound(f"The function {lambda_arn(platform, name, qualifier)} "
                                  "doesn't have an EventInvokeConfig")
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def list_event_configs(request: Request) -> Response:
    platform = platform_of(request)
    name, _ = function_target(request)
    await platform.functions.get(name)
    configs = [_event_config_json(platform, name, qualifier, entry)
               for fn, qualifier in sorted(platform.async_configs.keys()) if fn == name
               if (entry := platform.async_configs.get(name, qualifier)) is not None]
    return lambda_response({"FunctionEventInvokeConfigs": configs[:_max_items(request)]})


def _tagged(request: Request) -> str:
    """The function a tag call's ARN names."""
    m = _ARN.fullmatch(unquote(request.path_params["arn"]))
    if m is None:
        raise InvalidArgument("Resource must be a function's ARN")
    return m.group(1)


async def tag_resource(request: Request) -> Response:
    platform = platform_of(request)
    name = _tagged(request)
    await platform.functions.get(name)
    tags = (await json_body(request)).get("Tags")
    parsed = parse_tags([{"Key": k, "Value": v} for k, v in tags.items()]
                        if isinstance(tags, dict) else tags)
    await platform.store.set_tags("function", name, parsed, [])
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def untag_resource(request: Request) -> Response:
    platform = platform_of(request)
    name = _tagged(request)
    await platform.functions.get(name)
    await platform.store.set_tags("function", name, {},
                                  request.query_params.getlist("tagKeys"))
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def list_tags(request: Request) -> Response:
    platform = platform_of(request)
    name = _tagged(request)
    await platform.functions.get(name)
    return lambda_response({"Tags": (await platform.store.tags_of("function", [name])).get(
        name, {})})


class ProvisionedNotFound(ApiError):
    code = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404


class EventConfigNotFound(ApiError):
    code = "ResourceNotFoundException"
    status = 404


# -- layers ---------------------------------------------------------------------------

_LAYER_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]*:\d{1,20}:layer:"
                        r"([A-Za-z0-9_-]{1,64}):([1-9][0-9]{0,9})$")


def lambda_layer_arn(platform: Platform, name: str, version: int | None = None) -> str:
    s = platform.settings
    arn = f"arn:aws:lambda:{s.region}:{s.account_id}:layer:{name}"
    return arn if version is None else f"{arn}:{version}"


def _fc_layers(platform: Platform, arns: Any) -> Any:
    """A function's ``Layers``: Lambda's layer version ARNs as funclet's (FC's ARNs pass
    as they are)."""
    if not isinstance(arns, list):
        return arns  # (FC's check says what is wrong)
    out = []
    for arn in arns:
        m = _LAYER_ARN.fullmatch(arn) if isinstance(arn, str) else None
        out.append(platform.layers.arn(m.group(1), int(m.group(2))) if m else arn)
    return out


def _layer_json(platform: Platform, request: Request, row: Any) -> dict[str, Any]:
    return {
        "Content": {"Location": code_url(request, row.code_checksum),
                    "CodeSha256": base64.b64encode(bytes.fromhex(row.code_checksum)).decode(),
                    "CodeSize": row.code_size},
        "LayerArn": lambda_layer_arn(platform, row.layer_name),
        "LayerVersionArn": lambda_layer_arn(platform, row.layer_name, row.version),
        "Description": row.description,
        "CreatedDate": lambda_time(row.created_ms),
        "Version": row.version,
        "CompatibleRuntimes": row.compatible_runtimes,
        "LicenseInfo": row.license,
    }


async def publish_layer_version(request: Request) -> Response:
    platform = platform_of(request)
    body = await json_body(request)
    content = body.get("Content")
    if not isinstance(content, dict) or not content.get("ZipFile"):
        raise InvalidArgument("Content.ZipFile (the layer's zip, base64) is required")
    row = await platform.layers.create_version(request.path_params["layer"], {
        "code": {"zipFile": content["ZipFile"]}, "description": body.get("Description"),
        "license": body.get("LicenseInfo"),
        "compatibleRuntime": [_from_lambda(r) if isinstance(r, str) else r
                              for r in body.get("CompatibleRuntimes") or []]})
    return lambda_response(_layer_json(platform, request, row), 201)


async def get_layer_version(request: Request) -> Response:
    platform = platform_of(request)
    row = await platform.layers.get(request.path_params["layer"],
                                    request.path_params["version"])
    return lambda_response(_layer_json(platform, request, row))


async def delete_layer_version(request: Request) -> Response:
    platform = platform_of(request)
    try:
        await platform.layers.delete(request.path_params["layer"],
                                     request.path_params["version"])
    except ApiError as exc:
        if exc.status != 404:  # (Lambda: deleting what is not there is no error)
            raise
    return Response(status_code=204, headers={"x-amzn-RequestId": new_request_id()})


async def list_layer_versions(request: Request) -> Response:
    """Newest first, as Lambda lists them; ``Marker`` is the last version seen."""
    platform = platform_of(request)
    limit = _max_items(request)
    marker = request.query_params.get("Marker") or ""
    try:
        rows = await platform.layers.versions(request.path_params["layer"], 1, 10_000)
    except ApiError as exc:
        if exc.status != 404:
            raise
        rows = []
    rows = sorted(rows, key=lambda r: -r.version)
    if marker.isdigit():
        rows = [r for r in rows if r.version < int(marker)]
    out: dict[str, Any] = {"LayerVersions": [
        {k: v for k, v in _layer_json(platform, request, r).items() if k != "Content"}
        for r in rows[:limit]]}
    if len(rows) > limit:
        out["NextMarker"] = str(rows[limit - 1].version)
    return lambda_response(out)


async def list_layers(request: Request) -> Response:
    platform = platform_of(request)
    limit = _max_items(request)
    rows = await platform.layers.page("", request.query_params.get("Marker") or "",
                                      limit + 1, False)
    out: dict[str, Any] = {"Layers": [{
        "LayerName": r.layer_name, "LayerArn": lambda_layer_arn(platform, r.layer_name),
        "LatestMatchingVersion": {k: v for k, v in _layer_json(platform, request, r).items()
                                  if k not in ("Content", "LayerArn")},
    } for r in rows[:limit]]}
    if len(rows) > limit:
        out["NextMarker"] = rows[limit - 1].layer_name
    return lambda_response(out)


# -- invoke ---------------------------------------------------------------------------


@dataclass
class _Call:
    """A RequestResponse call, checked: what to invoke, with what."""

    name: str
    qualifier: str
    payload: bytes
    client_context: str


async def _call(request: Request, request_id: str, streaming: bool) -> Response | _Call:
    """What Invoke and InvokeWithResponseStream share: the target, the payload (JSON,
    within the limit), the client context; ``DryRun`` (204) and ``Event`` (202, Invoke
    only) answered here; else the call to make."""
    platform = platform_of(request)
    kinds = ("RequestResponse", "DryRun") if streaming else (
        "RequestResponse", "Event", "DryRun")
    try:
        name, qualifier = function_target(request)
        kind = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind not in kinds:
            raise InvalidArgument(f"1 validation error detected: Value '{kind}' at "
                                  "'invocationType' failed to satisfy constraint: Member "
                                  f"must satisfy enum value set: [{', '.join(kinds)}]")
        limit = platform.settings.max_async_payload if kind == "Event" else \
            platform.settings.max_sync_payload
        payload = await read_event(request, limit, f"{kind} ")
        if payload.strip():
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                return lambda_error(InvalidArgument(
                    f"Could not parse request body into json: {exc}"), request_id,
                    "InvalidRequestContentException")
        client_context = _client_context(request.headers.get("x-amz-client-context", ""))
        if kind != "RequestResponse":  # (invoke finds the pool, or says 404, itself)
            await platform.invoker.pool(name, qualifier)  # 404 for a function not there
        if kind == "DryRun":
            return Response(status_code=204, headers={"x-amzn-RequestId": request_id})
        if kind == "Event":
            await accept_async(platform, name, payload, request_id, {}, qualifier)
            return Response(status_code=202, headers={"x-amzn-RequestId": request_id})
    except ApiError as exc:
        return lambda_error(exc, request_id)
    except asyncio.CancelledError:
        return lambda_error(ShuttingDown(), request_id)
    return _Call(name, qualifier, payload, client_context)


async def _log_tail(request: Request, out: Invocation) -> str | None:
    """With ``LogType: Tail``, the log's tail (of the version that ran)."""
    if request.headers.get("x-amz-log-type") != "Tail":
        return None
    pool = await platform_of(request).invoker.pool(out.function_name,
                                                   out.version_id or LATEST)
    return _tail(out, pool.version.config.memory_size, pool.memory_peak(out.instance_id))


def _executed(version_id: str) -> str:
    return "$LATEST" if version_id in ("", LATEST) else version_id


async def invoke(request: Request) -> Response:
    """Invoke: ``RequestResponse`` (the result, or the function's error with
    ``X-Amz-Function-Error: Unhandled``), ``Event`` (202: into the durable async queue),
    ``DryRun`` (204); ``X-Amz-Log-Type: Tail`` gives the log's last 4 KB with Lambda's
    REPORT line. A handler that streams answers here with its whole stream."""
    request_id = new_request_id()
    call = await _call(request, request_id, streaming=False)
    if isinstance(call, Response):
        return call
    try:
        out = await platform_of(request).invoker.invoke(
            call.name, call.payload, request_id, qualifier=call.qualifier,
            client_context=call.client_context)
        tail = await _log_tail(request, out)
    except ApiError as exc:
        return lambda_error(exc, request_id)
    except asyncio.CancelledError:
        return lambda_error(ShuttingDown(), request_id)
    headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": _executed(
        out.version_id), "x-funclet-start-kind": out.start_kind.value if out.start_kind else ""}
    if tail is not None:
        headers["X-Amz-Log-Result"] = tail
    if out.error is not None:
        headers["X-Amz-Function-Error"] = "Unhandled"
        return Response(orjson.dumps(_function_error(out.error.body(), request_id)), 200,
                        headers, "application/json")
    return Response(out.body, 200, headers, "application/json")


async def invoke_streaming(request: Request) -> Response:
    """InvokeWithResponseStream: the result as AWS's event stream, ``PayloadChunk``
    events as a streaming handler writes (``awslambda.streamifyResponse``; past 20 MiB
    the stream is cut, as Lambda's), then ``InvokeComplete`` with the error, if any, and
    the log tail. A handler that does not stream sends its whole result as one chunk, as
    Lambda does for such handlers."""
    request_id = new_request_id()
    call = await _call(request, request_id, streaming=True)
    if isinstance(call, Response):
        return call
    stream = ResponseStream(limit=STREAM_LIMIT)
    invocation = asyncio.ensure_future(platform_of(request).invoker.invoke(
        call.name, call.payload, request_id, qualifier=call.qualifier,
        client_context=call.client_context, stream=stream))
    try:
        waits: set[asyncio.Future[Any]] = {invocation, stream.started}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        streamed = stream.started.done()
        if not streamed:  # it ended without streaming
            stream.started.cancel()
            invocation.result()  # (an ApiError: no function, too many requests)
    except ApiError as exc:
        return lambda_error(exc, request_id)
    except asyncio.CancelledError:
        stream.abandon()  # (nobody will read what it streams)
        return lambda_error(ShuttingDown(), request_id)

    async def events() -> AsyncIterator[bytes]:
        if streamed:
            async for chunk in stream.response_body():
                yield event_message("PayloadChunk", chunk, "application/octet-stream")
        try:
            out = await invocation
            complete: dict[str, Any] = {}
            if (tail := await _log_tail(request, out)) is not None:
                complete["LogResult"] = tail
        except ApiError as exc:  # (the version went while it ran)
            complete = {"ErrorCode": exc.code, "ErrorDetails": exc.message}
        else:
            if stream.overflowed:
                complete["ErrorCode"] = "Function.ResponseSizeTooLarge"
                complete["ErrorDetails"] = ("Response payload size exceeded maximum allowed "
                                            f"payload size ({STREAM_LIMIT} bytes).")
            elif out.error is not None:
                complete["ErrorCode"] = "Unhandled"
                complete["ErrorDetails"] = orjson.dumps(_function_error(
                    out.error.body(), request_id)).decode()
            elif not streamed and out.body:
                yield event_message("PayloadChunk", out.body, "application/octet-stream")
        yield event_message("InvokeComplete", orjson.dumps(complete), "application/json")

    response = StreamedResponse(events(), 200, {
        "x-amzn-RequestId": request_id, "X-Amz-Executed-Version": _executed(
            stream.version_id if streamed else invocation.result().version_id),
        "Content-Type": "application/vnd.amazon.eventstream"})
    response.on_end = stream.abandon
    return response


def event_message(event_type: str, payload: bytes, content_type: str) -> bytes:
    """One message of AWS's event stream encoding: a prelude (total and headers'
    lengths, their CRC-32), string headers, the payload, the message's CRC-32."""
    headers = b""
    for key, value in ((":event-type", event_type), (":content-type", content_type),
                       (":message-type", "event")):
        k, v = key.encode(), value.encode()
        headers += bytes([len(k)]) + k + b"\x07" + struct.pack(">H", len(v)) + v
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _client_context(raw: str) -> str:
    """``X-Amz-Client-Context``: base64 of a JSON object (3,583 bytes at most), given to
    the handler as its context's ``client_context``; as JSON text, or ""."""
    if not raw:
        return ""
    if len(raw) > 3583:
        raise InvalidArgument("Client context must be at most 3583 bytes")
    try:
        value = orjson.loads(base64.b64decode(raw, validate=True))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidArgument("Client context must be a base64-encoded JSON object") from None
    if not isinstance(value, dict):
        raise InvalidArgument("Client context must be a base64-encoded JSON object")
    return orjson.dumps(value).decode()


def _function_error(error: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The function's error as Lambda's Python runtime gives it."""
    out = {"errorMessage": error.get("errorMessage", ""),
           "errorType": error.get("errorType", ""), "requestId": request_id}
    if error.get("stackTrace"):
        out["stackTrace"] = error["stackTrace"]
    return out


def _tail(out: Invocation, memory_mb: int, peak: int | None) -> str:
    """The log's last 4 KB, base64, ending with Lambda's REPORT line (``Max Memory
    Used``: the instance's peak, as its memory cgroup counts it, when it is known)."""
    report = (f"REPORT RequestId: {out.request_id}\tDuration: {out.duration_ms:.2f} ms\t"
              f"Billed Duration: {max(1, math.ceil(out.duration_ms))} ms\t"
              f"Memory Size: {memory_mb} MB\t")
    if peak is not None:
        report += f"Max Memory Used: {math.ceil(peak / 2**20)} MB\t"
    if out.start_kind is StartKind.COLD:
        report += f"Init Duration: {out.init_ms:.2f} ms\t"
    text = clip_lines(out.log) + report + "\n"
    return base64.b64encode(text.encode("utf-8", "replace")[-TAIL_BYTES:]).decode("ascii")


routes = [
    Route(f"{V}/functions/{{name}}/invocations", invoke, methods=["POST"]),  # (tried first)
    Route(f"{V}/functions", create_function, methods=["POST"]),
    # (botocore's model says /functions/; what it sends is /functions)
    Route(f"{V}/functions", list_functions, methods=["GET"]),
    Route(f"{V}/functions/", list_functions, methods=["GET"]),
    Route(f"{V}/functions/{{name}}", get_function, methods=["GET"]),
    Route(f"{V}/functions/{{name}}", delete_function, methods=["DELETE"]),
    Route(f"{V}/functions/{{name}}/configuration", get_configuration, methods=["GET"]),
    Route(f"{V}/functions/{{name}}/configuration", update_configuration, methods=["PUT"]),
    Route(f"{V}/functions/{{name}}/code", update_code, methods=["PUT"]),
    Route("/2021-11-15/functions/{name}/response-streaming-invocations", invoke_streaming,
          methods=["POST"]),
    Route(f"{V}/functions/{{name}}/versions", publish_version, methods=["POST"]),
    Route(f"{V}/functions/{{name}}/versions", list_versions, methods=["GET"]),
    Route(f"{V}/functions/{{name}}/aliases", create_alias, methods=["POST"]),
    Route(f"{V}/functions/{{name}}/aliases", list_aliases, methods=["GET"]),
    Route(f"{V}/functions/{{name}}/aliases/{{alias}}", get_alias, methods=["GET"]),
    Route(f"{V}/functions/{{name}}/aliases/{{alias}}", update_alias, methods=["PUT"]),
    Route(f"{V}/functions/{{name}}/aliases/{{alias}}", delete_alias, methods=["DELETE"]),
    Route("/2017-10-31/functions/{name}/concurrency", put_concurrency, methods=["PUT"]),
    Route("/2017-10-31/functions/{name}/concurrency", delete_concurrency,
          methods=["DELETE"]),
    Route("/2019-09-30/functions/{name}/concurrency", get_concurrency, methods=["GET"]),
    *(Route("/2019-09-30/functions/{name}/provisioned-concurrency", handler,
            methods=[method]) for method, handler in (
        ("PUT", put_provisioned), ("GET", get_provisioned), ("DELETE", delete_provisioned))),
    *(Route("/2019-09-25/functions/{name}/event-invoke-config", handler, methods=[method])
      for method, handler in (("PUT", put_event_config), ("POST", update_event_config),
                              ("GET", get_event_config), ("DELETE", delete_event_config))),
    Route("/2019-09-25/functions/{name}/event-invoke-config/list", list_event_configs,
          methods=["GET"]),
    Route("/2017-03-31/tags/{arn}", tag_resource, methods=["POST"]),
    Route("/2017-03-31/tags/{arn}", untag_resource, methods=["DELETE"]),
    Route("/2017-03-31/tags/{arn}", list_tags, methods=["GET"]),
    Route("/2018-10-31/layers", list_layers, methods=["GET"]),
    Route("/2018-10-31/layers/{layer}/versions", publish_layer_version, methods=["POST"]),
    Route("/2018-10-31/layers/{layer}/versions", list_layer_versions, methods=["GET"]),
    Route("/2018-10-31/layers/{layer}/versions/{version}", get_layer_version,
          methods=["GET"]),
    Route("/2018-10-31/layers/{layer}/versions/{version}", delete_layer_version,
          methods=["DELETE"]),
    Route("/2016-08-19/account-settings", account_settings, methods=["GET"]),
    Route("/2016-08-19/account-settings/", account_settings, methods=["GET"]),
]
