"""A function's configuration: validated from FC 3.0's JSON, rendered back to it.

``FunctionConfig`` is what the user set; ``FunctionVersion`` is one immutable
revision of a function (config + code) that instances run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from funclet.errors import ApiError, FunctionNotFound, InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
# A function's name: a name, or (a function of FC 2.0's API) ``{service}${function}``.
FUNCTION_NAME_PATTERN = r"^(?=.{1,128}$)[A-Za-z_][A-Za-z0-9_-]*(\$[A-Za-z_][A-Za-z0-9_-]*)?$"
FUNCTION_NAME_RE = re.compile(FUNCTION_NAME_PATTERN)
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 86_400
DEFAULT_MEMORY = 512
MAX_ENV_BYTES = 4096
MAX_LAYERS = 5  # layer versions a function may name


@dataclass(frozen=True)
class Hook:
    """An instance lifecycle hook: ``initializer`` or ``preStop``."""

    handler: str
    timeout: int


@dataclass(frozen=True)
class CustomRuntimeConfig:
    """FC's ``customRuntimeConfig``: the server a custom runtime starts, and its port."""

    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    port: int = 9000

    def to_fc(self) -> dict[str, Any]:
        return {"command": list(self.command), "args": list(self.args), "port": self.port}


SHARE, REQUEST_EXCLUSIVE, SESSION_EXCLUSIVE = "SHARE", "REQUEST_EXCLUSIVE", "SESSION_EXCLUSIVE"
# How a function's handler is called: FC's way (the event as bytes, FC's context, the
# code at /code), or Lambda's (the event JSON-decoded, Lambda's context and environment,
# the result JSON-encoded, the code at /var/task): what it was created through.
FC_SEMANTICS, LAMBDA_SEMANTICS = "fc", "lambda"
# snapStart.applyOn (Lambda's SnapStart.ApplyOn, plus All: $LATEST too)
SNAP_NONE, SNAP_PUBLISHED, SNAP_ALL = "None", "PublishedVersions", "All"
SNAP_APPLY_ON = (SNAP_NONE, SNAP_PUBLISHED, SNAP_ALL)
HEADER_FIELD, GENERATED_COOKIE = "HEADER_FIELD", "GENERATED_COOKIE"
SESSION_COOKIE = "x-fc-cookie-session-id"  # FC's cookie for GENERATED_COOKIE affinity
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
# Headers a session header may not be: HTTP's own, and FC's.
_RESERVED_HEADERS = frozenset({
    "host", "cookie", "set-cookie", "authorization", "content-type", "content-length",
    "transfer-encoding", "connection", "date", "user-agent", "accept", "expect"})


@dataclass(frozen=True)
class Affinity:
    """FC's ``sessionAffinity`` with its ``sessionAffinityConfig``: how a request names
    its session (a header, or FC's cookie), and how long a session lives."""

    kind: str  # HEADER_FIELD or GENERATED_COOKIE
    header: str = ""  # affinityHeaderFieldName (HEADER_FIELD), lower case
    ttl_s: int = 21_600  # sessionTTLInSeconds: from its creation
    idle_s: int = 1_800  # sessionIdleTimeoutInSeconds: since its last request (0: none)
    per_instance: int = 1  # sessionConcurrencyPerInstance
    disable_reuse: bool = False  # disableSessionIdReuse: an ended session's id is refused

    def to_fc(self) -> str:
        """As FC returns it: a JSON string."""
        out: dict[str, Any] = {}
        if self.kind == HEADER_FIELD:
            out["affinityHeaderFieldName"] = self.header
        out.update(sessionTTLInSeconds=self.ttl_s, sessionIdleTimeoutInSeconds=self.idle_s,
                   sessionConcurrencyPerInstance=self.per_instance,
                   disableSessionIdReuse=self.disable_reuse)
        return json.dumps(out, separators=(",", ":"))


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    runtime: str
    handler: str
    timeout: int = DEFAULT_TIMEOUT
    memory_size: int = DEFAULT_MEMORY
    instance_concurrency: int = 1
    description: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    initializer: Hook | None = None
    pre_stop: Hook | None = None
    keep_alive_seconds: float | None = None
    internet_access: bool = True
    custom_runtime: CustomRuntimeConfig | None = None
    # FC's fields that need its cloud to mean anything (a RAM role, SLS logs, CPU and
    # disk sizes, tags): kept and returned as given, by their FC names.
    kept: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()  # layer version ARNs, in order (merged at /opt)
    affinity: Affinity | None = None  # sessionAffinity (None: NONE)
    isolation: str = SHARE  # instanceIsolationMode
    semantics: str = FC_SEMANTICS  # FC_SEMANTICS or LAMBDA_SEMANTICS
    snap_start: str = SNAP_NONE  # snapStart.applyOn: which versions start from a snapshot

    def snapshots(self, version_id: str) -> bool:
        """Whether instances of ``version_id`` are forked from a snapshot."""
        return self.snap_start == SNAP_ALL or (
            self.snap_start == SNAP_PUBLISHED and version_id != "LATEST")

    @property
    def sessions_per_instance(self) -> int:
        return self.affinity.per_instance if self.affinity is not None else 0

    def to_fc(self) -> dict[str, Any]:
        lifecycle: dict[str, Any] = {}
        if self.initializer:
            lifecycle["initializer"] = asdict(self.initializer)
        if self.pre_stop:
            lifecycle["preStop"] = asdict(self.pre_stop)
        out: dict[str, Any] = {
            "functionName": self.name,
            "runtime": self.runtime,
            "handler": self.handler,
            "timeout": self.timeout,
            "memorySize": self.memory_size,
            "instanceConcurrency": self.instance_concurrency,
            "description": self.description,
            "environmentVariables": dict(self.environment),
            "instanceLifecycleConfig": lifecycle,
        }
        out["internetAccess"] = self.internet_access
        if self.custom_runtime is not None:
            out["customRuntimeConfig"] = self.custom_runtime.to_fc()
        if self.keep_alive_seconds is not None:
            out["keepAliveSeconds"] = self.keep_alive_seconds
        out.update(self.kept)
        out["layers"] = list(self.layers)
        out["sessionAffinity"] = self.affinity.kind if self.affinity else "NONE"
        if self.affinity is not None:
            out["sessionAffinityConfig"] = self.affinity.to_fc()
        out["instanceIsolationMode"] = self.isolation
        if self.semantics != FC_SEMANTICS:
            out["semantics"] = self.semantics
        if self.snap_start != SNAP_NONE:
            out["snapStart"] = {"applyOn": self.snap_start}
        return out


@dataclass(frozen=True)
class FunctionVersion:
    """What instances run: one revision of a function's config and code."""

    config: FunctionConfig
    revision: int
    code_checksum: str
    version_id: str = "LATEST"  # or a published version's id
    code_crc64: str = ""  # FC's codeChecksum of the code (x-fc-code-checksum)

    @property
    def name(self) -> str:
        return self.config.name


def parse_config(body: dict[str, Any], base: FunctionConfig | None = None) -> FunctionConfig:
    """Validate CreateFunction's (or, with ``base``, UpdateFunction's) JSON body."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    if base is None:
        name = _required_str(body, "functionName")
        if not FUNCTION_NAME_RE.fullmatch(name):
            raise InvalidArgument(
                f"functionName '{name}' is invalid: 1-128 characters, letters, digits, '_' "
                "and '-', not starting with a digit or '-' (FC 2.0's functions: "
                "'{service}${function}')"
            )
        runtime = _required_str(body, "runtime")
        handler = _required_str(body, "handler")
        config = FunctionConfig(name=name, runtime=runtime, handler=handler)
    else:
        config = base
        changes: dict[str, Any] = {}
        for key, attr in (("runtime", "runtime"), ("handler", "handler")):
            if body.get(key) is not None:
                changes[attr] = _required_str(body, key)
        config = replace(config, **changes)
    changes = {}
    if body.get("timeout") is not None:
        changes["timeout"] = _int(body, "timeout", 1, MAX_TIMEOUT)
    if body.get("memorySize") is not None:
        changes["memory_size"] = _int(body, "memorySize", 128, 32768)
    if body.get("instanceConcurrency") is not None:
        changes["instance_concurrency"] = _int(body, "instanceConcurrency", 1, 200)
    if body.get("description") is not None:
        description = body["description"]
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidArgument("description must be a string of at most 256 characters")
        changes["description"] = description
    if body.get("environmentVariables") is not None:
        changes["environment"] = _environment(body["environmentVariables"])
    if body.get("instanceLifecycleConfig") is not None:
        lifecycle = body["instanceLifecycleConfig"]
        if not isinstance(lifecycle, dict):
            raise InvalidArgument("instanceLifecycleConfig must be an object")
        changes["initializer"] = _hook(lifecycle, "initializer", 600)
        changes["pre_stop"] = _hook(lifecycle, "preStop", 90)
    if body.get("internetAccess") is not None:
        if not isinstance(body["internetAccess"], bool):
            raise InvalidArgument("internetAccess must be true or false")
        changes["internet_access"] = body["internetAccess"]
    if body.get("customRuntimeConfig") is not None:
        changes["custom_runtime"] = _custom_runtime(body["customRuntimeConfig"])
    if body.get("semantics") is not None:
        if body["semantics"] not in (FC_SEMANTICS, LAMBDA_SEMANTICS):
            raise InvalidArgument("semantics must be 'fc' (FC's handler(event, context)) or "
                                  "'lambda' (Lambda's)")
        changes["semantics"] = body["semantics"]
    if body.get("keepAliveSeconds") is not None:
        changes["keep_alive_seconds"] = float(_int(body, "keepAliveSeconds", 1, 86_400))
    if body.get("snapStart") is not None:
        changes["snap_start"] = _snap_start(body["snapStart"])
    _refuse_cloud_only(body)
    if body.get("layers") is not None:
        changes["layers"] = _layers(body["layers"])
    kept = {key: _kept(key, body[key]) for key in KEPT if body.get(key) is not None}
    if kept:
        changes["kept"] = {**config.kept, **kept}
    config = _sessions(body, replace(config, **changes))
    if "memory_size" in changes and config.memory_size % 64 and (
            config.semantics == FC_SEMANTICS):  # (Lambda's: any MB from 128)
        raise InvalidArgument(
            f"memorySize must be a multiple of 64 MB, got {config.memory_size}")
    if not HANDLER_RE.fullmatch(config.handler):
        raise InvalidArgument(
            f"handler '{config.handler}' is malformed: expected 'module.function', "
            "e.g. 'index.handler'"
        )
    return config


def _snap_start(raw: Any) -> str:
    apply_on = raw.get("applyOn") if isinstance(raw, dict) else None
    if apply_on not in SNAP_APPLY_ON:
        raise InvalidArgument(
            "snapStart must be an object whose applyOn is one of " + ", ".join(SNAP_APPLY_ON)
            + f" (PublishedVersions: published versions start from a snapshot of their "
            f"initialised instance; All: $LATEST too), got {raw!r}")
    return str(apply_on)


# Kept as given (see FunctionConfig.kept), each with the JSON type FC gives it.
KEPT: dict[str, type | tuple[type, ...]] = {
    "role": str, "logConfig": dict, "tracingConfig": dict, "customDNS": dict,
    "cpu": (int, float), "diskSize": int, "resourceGroupId": str,
    "disableOndemand": bool, "enableLongLiving": bool, "disableInjectCredentials": str,
    "idleTimeout": int, "instanceType": str,
}
# What funclet cannot offer on one machine: refused (when not empty) with a 400 that
# names the field, rather than accepted and ignored.
CLOUD_ONLY = {
    "vpcConfig": "a VPC is Alibaba Cloud's network: instances here reach the host's "
                 "network (internetAccess)",
    "nasConfig": "NAS file systems are Alibaba Cloud's",
    "ossMountConfig": "OSS buckets are Alibaba Cloud's",
    "gpuConfig": "funclet runs no GPU instances",
    "customContainerConfig": "funclet runs code packages, not container images",
    "juiceFsConfig": "JuiceFS mounts are not offered",
    "polarFsConfig": "PolarFS mounts are not offered",
    "microSandboxConfig": "funclet's instances are its own sandbox",
}
_AFFINITIES = ("NONE", HEADER_FIELD, GENERATED_COOKIE)
_ISOLATIONS = (SHARE, REQUEST_EXCLUSIVE, SESSION_EXCLUSIVE)


def _sessions(body: dict[str, Any], config: FunctionConfig) -> FunctionConfig:
    """``sessionAffinity``, ``sessionAffinityConfig`` and ``instanceIsolationMode``,
    checked against each other and against ``instanceConcurrency`` (an update may
    change any of them)."""
    kind = body.get("sessionAffinity")
    raw = body.get("sessionAffinityConfig")
    affinity = config.affinity
    if kind is not None or raw is not None:
        kind = kind if kind is not None else (affinity.kind if affinity else "NONE")
        if kind not in _AFFINITIES:
            raise InvalidArgument(
                f"sessionAffinity {kind!r} is not supported: funclet offers "
                + ", ".join(_AFFINITIES) + " (MCP_SSE and MCP_STREAMABLE are not offered yet)")
        affinity = None if kind == "NONE" else _affinity(kind, raw, affinity, config)
    isolation = body.get("instanceIsolationMode", config.isolation) or SHARE
    if isolation not in _ISOLATIONS:
        raise InvalidArgument(f"instanceIsolationMode must be one of {', '.join(_ISOLATIONS)}, "
                              f"got {isolation!r}")
    concurrency = config.instance_concurrency
    if isolation == REQUEST_EXCLUSIVE and affinity is not None:
        raise InvalidArgument("instanceIsolationMode REQUEST_EXCLUSIVE gives every request an "
                              "instance of its own: sessionAffinity must be NONE")
    if isolation == SESSION_EXCLUSIVE:
        if affinity is None:
            raise InvalidArgument("instanceIsolationMode SESSION_EXCLUSIVE needs a "
                                  "sessionAffinity (HEADER_FIELD or GENERATED_COOKIE)")
        affinity = replace(affinity, per_instance=1)
    if isolation != SHARE:
        concurrency = 1  # an instance of its own: one request at a time (as FC sets it)
    if affinity is not None and affinity.per_instance > concurrency:
        raise InvalidArgument(
            f"sessionAffinityConfig.sessionConcurrencyPerInstance "
            f"({affinity.per_instance}) cannot exceed instanceConcurrency ({concurrency})")
    return replace(config, affinity=affinity, isolation=isolation,
                   instance_concurrency=concurrency)


def _affinity(kind: str, raw: Any, old: Affinity | None,
              config: FunctionConfig) -> Affinity:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise InvalidArgument("sessionAffinityConfig must be a JSON object (or a string "
                                  "holding one)") from None
    if raw is None:
        raw = {} if old is None or old.kind != kind else {
            "affinityHeaderFieldName": old.header, "sessionTTLInSeconds": old.ttl_s,
            "sessionIdleTimeoutInSeconds": old.idle_s,
            "sessionConcurrencyPerInstance": old.per_instance,
            "disableSessionIdReuse": old.disable_reuse}
    if not isinstance(raw, dict):
        raise InvalidArgument("sessionAffinityConfig must be a JSON object")
    where = "sessionAffinityConfig."
    header: Any = ""
    if kind == HEADER_FIELD:
        header = raw.get("affinityHeaderFieldName")
        if not isinstance(header, str) or not _HEADER_NAME_RE.fullmatch(header) or (
                header.lower() in _RESERVED_HEADERS or header.lower().startswith("x-fc-")):
            raise InvalidArgument(
                f"{where}affinityHeaderFieldName is required with HEADER_FIELD: a header "
                "name of letters, digits and '-' (at most 64), not an HTTP or x-fc- header")
        header = header.lower()
    ttl = _int(raw, "sessionTTLInSeconds", 1, 21_600) if raw.get(
        "sessionTTLInSeconds") is not None else 21_600
    idle = _int(raw, "sessionIdleTimeoutInSeconds", 0, ttl) if raw.get(
        "sessionIdleTimeoutInSeconds") is not None else min(1_800, ttl)
    per = _int(raw, "sessionConcurrencyPerInstance", 1, 200) if raw.get(
        "sessionConcurrencyPerInstance") is not None else min(20, config.instance_concurrency)
    reuse = raw.get("disableSessionIdReuse", False)
    if not isinstance(reuse, bool):
        raise InvalidArgument(f"{where}disableSessionIdReuse must be true or false")
    return Affinity(kind, header, ttl, idle, per, reuse)


def _layers(raw: Any) -> tuple[str, ...]:
    """Up to five layer version ARNs (``acs:fc:…:layers/{name}/versions/{n}``), in order;
    whether each exists is the deploy's check."""
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise InvalidArgument("layers must be a list of layer version ARNs")
    if len(raw) > MAX_LAYERS:
        raise InvalidArgument(f"layers: at most {MAX_LAYERS}, got {len(raw)}")
    if len(set(raw)) != len(raw):
        raise InvalidArgument("layers: the same layer version twice")
    return tuple(raw)


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_empty(v) for v in value)
    return not value


def _refuse_cloud_only(body: dict[str, Any]) -> None:
    for key, why in CLOUD_ONLY.items():
        if not _empty(body.get(key)):
            raise InvalidArgument(f"{key} is not supported by funclet: {why}")


def _kept(key: str, value: Any) -> Any:
    kind = KEPT[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidArgument(f"{key} must be {_TYPE_NAMES[kind]}")
    return value


_TYPE_NAMES: dict[Any, str] = {
    str: "a string", dict: "a JSON object", (int, float): "a number", int: "an integer",
    bool: "true or false"}


def parse_scaling(body: dict[str, Any], most: int) -> dict[str, Any]:
    """PutScalingConfig's body: ``minInstances`` (0 to the account's instances) is what
    funclet acts on; the other fields FC defines are kept as given."""
    known = ("minInstances", "horizontalScalingPolicies", "scheduledPolicies",
             "enableMixMode", "enableOnDemandScaling", "requestDispatchPolicy",
             "residentPoolId")
    out = {k: body[k] for k in known if body.get(k) is not None}
    low = out.get("minInstances", 0)
    if isinstance(low, bool) or not isinstance(low, int) or not 0 <= low <= most:
        raise InvalidArgument(f"minInstances must be an integer from 0 to {most}")
    kinds: dict[str, tuple[type, str]] = {
        "horizontalScalingPolicies": (list, "a list of policy objects"),
        "scheduledPolicies": (list, "a list of policy objects"),
        "enableMixMode": (bool, "true or false"), "enableOnDemandScaling": (bool, "true or false"),
        "requestDispatchPolicy": (str, "a string"), "residentPoolId": (str, "a string")}
    for key, (kind, what) in kinds.items():
        value = out.get(key)
        ok = value is None or isinstance(value, kind)
        if ok and isinstance(value, list):
            ok = all(isinstance(p, dict) for p in value)
        if not ok:
            raise InvalidArgument(f"{key} must be {what}")
    return out


def parse_tags(raw: Any, field: str = "tags") -> dict[str, str]:
    """FC's tags, ``[{"Key", "Value"}]`` (the SDK's spelling; ``key``/``value`` too)."""
    if not isinstance(raw, list):
        raise InvalidArgument(f'{field} must be a list of {{"Key", "Value"}} objects')
    out: dict[str, str] = {}
    for tag in raw:
        key = tag.get("Key", tag.get("key")) if isinstance(tag, dict) else None
        value = tag.get("Value", tag.get("value", "")) if isinstance(tag, dict) else None
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not isinstance(
                value, str) or len(value) > 256:
            raise InvalidArgument(f'{field} must be a list of {{"Key", "Value"}} objects, '
                                  "keys of 1-128 characters, values of at most 256")
        out[key] = value
    if len(out) > 20:
        raise InvalidArgument(f"{field}: at most 20 tags per resource")
    return out


def _custom_runtime(raw: Any) -> CustomRuntimeConfig:
    if not isinstance(raw, dict):
        raise InvalidArgument("customRuntimeConfig must be an object")
    parts: dict[str, tuple[str, ...]] = {}
    for key in ("command", "args"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(
                isinstance(v, str) and "\0" not in v for v in value):
            raise InvalidArgument(
                f"customRuntimeConfig.{key} must be a list of strings (without NUL)")
        parts[key] = tuple(value)
    port = raw.get("port", 9000)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgument("customRuntimeConfig.port must be a port number (1-65535)")
    return CustomRuntimeConfig(parts["command"], parts["args"], port)


def function_arn(region: str, account_id: str, name: str) -> str:
    """FC's ARN of a function: ``acs:fc:{region}:{accountId}:functions/{name}``."""
    return f"acs:fc:{region}:{account_id}:functions/{name}"


def function_not_found(name: str) -> ApiError:
    """404 for a well-formed name that is not deployed; 400 for a name that never could be."""
    if FUNCTION_NAME_RE.fullmatch(name):
        return FunctionNotFound(name)
    shown = name if len(name) <= 64 else name[:64] + "…"
    return InvalidArgument(
        f"function name '{shown}' is invalid: 1-128 characters, letters, digits, '_' and '-'"
    )


def handler_modules(config: FunctionConfig) -> list[tuple[str, str]]:
    """(what, handler) for the handler and each hook, to check against the package."""
    out = [("handler", config.handler)]
    if config.initializer:
        out.append(("instanceLifecycleConfig.initializer.handler", config.initializer.handler))
    if config.pre_stop:
        out.append(("instanceLifecycleConfig.preStop.handler", config.pre_stop.handler))
    return out


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{key} is required and must be a non-empty string")
    return value


def _int(body: dict[str, Any], key: str, low: int, high: int) -> int:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidArgument(f"{key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"{key} must be between {low} and {high}, got {value}")
    return int(value)


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidArgument("environmentVariables must be an object of strings")
    size = 0
    for key, val in value.items():
        if not ENV_NAME_RE.fullmatch(key) or not isinstance(val, str) or "\0" in val:
            raise InvalidArgument(
                f"environmentVariables: '{key}' must be a valid name with a string value "
                "(without NUL)"
            )
        size += len(key) + len(val)
    if size > MAX_ENV_BYTES:
        raise InvalidArgument(f"environmentVariables exceed {MAX_ENV_BYTES} bytes in total")
    return dict(value)


def _hook(lifecycle: dict[str, Any], key: str, max_timeout: int) -> Hook | None:
    hook = lifecycle.get(key)
    if hook is not None and not isinstance(hook, dict):
        raise InvalidArgument(f"instanceLifecycleConfig.{key} must be an object")
    if not hook or not hook.get("handler"):
        return None
    handler = hook["handler"]
    if not isinstance(handler, str) or not HANDLER_RE.fullmatch(handler):
        raise InvalidArgument(
            f"instanceLifecycleConfig.{key}.handler '{handler}' is malformed: "
            "expected 'module.function'"
        )
    timeout = _int(hook, "timeout", 1, max_timeout) if hook.get("timeout") is not None else 3
    return Hook(handler=handler, timeout=timeout)
