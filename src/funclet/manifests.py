"""Project manifests: Serverless Devs' ``s.yaml`` (the fc3 component) and AWS SAM's
``template.yaml``, read into what ``funclet deploy -f`` deploys, one ``Planned`` per
function.

Pure: reads the file and the folders it names, talks to no API. In ``s.yaml``, ``${…}``
references are resolved (``vars.*``, ``env('NAME')`` / ``env.NAME``,
``resources.R.props.*``, ``this.props.*``) and function fields pass to FC 3.0's
CreateFunction as they are (the API checks them: a field that needs Alibaba Cloud is a
400 that names it). In a SAM template, ``AWS::Serverless::Function`` resources (with
``Globals``) become functions run by AWS's own runtime client (``custom.lambda``), and
their ``Events`` funclet's triggers (``_sam_event``). Keys funclet does not use are named
in ``warnings``, never dropped in silence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# FC 3.0's CreateFunctionInput fields (alibabacloud_fc20230330 4.8).
FUNCTION_FIELDS = frozenset({
    "functionName", "runtime", "handler", "description", "timeout", "memorySize", "cpu",
    "diskSize", "instanceConcurrency", "environmentVariables", "internetAccess", "role",
    "logConfig", "vpcConfig", "nasConfig", "ossMountConfig", "gpuConfig", "layers",
    "customRuntimeConfig", "customContainerConfig", "customDNS", "instanceLifecycleConfig",
    "tracingConfig", "tags", "sessionAffinity", "sessionAffinityConfig",
    "instanceIsolationMode", "resourceGroupId", "disableOndemand", "enableLongLiving",
    "disableInjectCredentials", "idleTimeout", "keepAliveSeconds", "juiceFsConfig",
    "polarFsConfig", "microSandboxConfig",
    "snapStart"})  # (funclet's own: snapshots)
# The fc3 component's props beside the function's own.
_EXTRAS = frozenset({"code", "triggers", "asyncInvokeConfig", "customDomain",
                     "concurrencyConfig", "provisionConfig", "region"})
_TOP = frozenset({"edition", "name", "access", "vars", "resources", "template", "flow",
                  "actions", "extend"})
_REF = re.compile(r"\$\{([^}]*)\}")


class ManifestError(ValueError):
    """The manifest cannot be deployed; the message says where and why."""


@dataclass
class Planned:
    """One function of a manifest: what to deploy, and what goes beside it."""

    resource: str  # the manifest's name for it
    code: Path  # a folder (zipped, dependencies installed) or a zip
    body: dict[str, Any]  # CreateFunction's fields, without code
    triggers: list[dict[str, Any]] = field(default_factory=list)
    async_config: dict[str, Any] | None = None
    reserved_concurrency: int | None = None
    provision_target: int | None = None
    custom_domain: dict[str, Any] | None = None
    lambda_client: str | None = None  # a SAM function's language, "python" or "node":
    # AWS's runtime client for it goes with it

    @property
    def name(self) -> str:
        return str(self.body["functionName"])


def load(path: Path) -> tuple[list[Planned], list[str]]:
    """The functions of ``path`` (an ``s.yaml`` or a SAM template), and warnings for what
    funclet leaves."""
    try:
        doc = yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # noqa: S506
    except (OSError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # (one line)
        raise ManifestError(f"{path}: cannot read it as YAML: {detail}") from None
    if isinstance(doc, dict) and isinstance(doc.get("Resources"), dict):
        return _sam(doc, path)
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), dict):
        raise ManifestError(f"{path}: neither a Serverless Devs s.yaml (no 'resources' "
                            "map) nor a SAM template (no 'Resources')")
    warnings = [f"{path.name}: '{k}' is not used by funclet" for k in doc if k not in _TOP]
    refs = _Refs(doc, path)
    planned = []
    for resource, spec in doc["resources"].items():
        where = f"{path.name}: resources.{resource}"
        if not isinstance(spec, dict):
            raise ManifestError(f"{where} must be a map")
        component = str(spec.get("component", ""))
        if not component.startswith("fc3"):
            warnings.append(f"{where}: component '{component}' is not fc3: skipped")
            continue
        props = refs.resolve(spec.get("props") or {}, where, resource)
        if not isinstance(props, dict):
            raise ManifestError(f"{where}.props must be a map")
        planned.append(_function(props, path.parent, where, resource, warnings))
    return planned, warnings


def _function(props: dict[str, Any], base: Path, where: str, resource: str,
              warnings: list[str]) -> Planned:
    for key in props:
        if key not in FUNCTION_FIELDS and key not in _EXTRAS:
            warnings.append(f"{where}.props.{key} is not a function field funclet knows: "
                            "not deployed")
    body = {k: v for k, v in props.items() if k in FUNCTION_FIELDS}
    if not body.get("functionName"):
        raise ManifestError(f"{where}.props.functionName is required")
    code = props.get("code")
    if isinstance(code, dict):
        code = code.get("src") or code.get("path")
    if not isinstance(code, str) or not code:
        raise ManifestError(f"{where}.props.code must be a folder or a .zip (local)")
    folder = (base / code).resolve()
    if not folder.exists():
        raise ManifestError(f"{where}.props.code: {folder} does not exist")
    triggers = props.get("triggers") or []
    if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
        raise ManifestError(f"{where}.props.triggers must be a list of triggers")
    out = Planned(resource, folder, body, [dict(t) for t in triggers])
    config = props.get("asyncInvokeConfig")
    if config is not None:
        if not isinstance(config, dict):
            raise ManifestError(f"{where}.props.asyncInvokeConfig must be a map")
        out.async_config = dict(config)
    concurrency = props.get("concurrencyConfig")
    if isinstance(concurrency, dict) and concurrency.get("reservedConcurrency") is not None:
        out.reserved_concurrency = int(concurrency["reservedConcurrency"])
    provision = props.get("provisionConfig")
    if isinstance(provision, dict) and provision.get("target") is not None:
        out.provision_target = int(provision["target"])
    domain = props.get("customDomain")
    if domain is not None:
        out.custom_domain = _domain(domain, out.name, where, warnings)
    return out


def _domain(domain: Any, function: str, where: str,
            warnings: list[str]) -> dict[str, Any] | None:
    """The fc3 component's customDomain as CreateCustomDomain's body."""
    if not isinstance(domain, dict) or not isinstance(domain.get("domainName"), str):
        raise ManifestError(f"{where}.props.customDomain needs a domainName")
    name = domain["domainName"]
    if name.lower() == "auto":
        warnings.append(f"{where}.props.customDomain: domainName 'auto' asks FC for a "
                        "domain of its own; funclet has none to give: use the HTTP "
                        "trigger's URL, or name a domain")
        return None
    route = domain.get("route") or {}
    routes = [{"path": route.get("path", "/*"), "functionName": function,
               **({"qualifier": route["qualifier"]} if route.get("qualifier") else {})}]
    return {"domainName": name, "protocol": domain.get("protocol", "HTTP"),
            "routeConfig": {"routes": routes}}


class _Refs:
    """``${…}`` in strings: vars, environment variables, other resources' props."""

    def __init__(self, doc: dict[str, Any], path: Path) -> None:
        self._doc = doc
        self._path = path
        self._vars = doc.get("vars") or {}

    def resolve(self, value: Any, where: str, resource: str, depth: int = 0) -> Any:
        if depth > 20:
            raise ManifestError(f"{where}: references nest too deep (a cycle?)")
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}", resource, depth) for k, v in
                    value.items()}
        if isinstance(value, list):
            return [self.resolve(v, where, resource, depth) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _REF.fullmatch(value.strip())
        if whole:  # the whole string: keep the referenced value's type
            return self.resolve(self._lookup(whole.group(1).strip(), where, resource),
                                where, resource, depth + 1)
        return _REF.sub(lambda m: str(self.resolve(self._lookup(
            m.group(1).strip(), where, resource), where, resource, depth + 1)), value)

    def _lookup(self, expr: str, where: str, resource: str) -> Any:
        env = re.fullmatch(r"env\(\s*['\"]([^'\"]+)['\"]\s*(?:,\s*['\"]([^'\"]*)['\"]\s*)?\)",
                           expr)
        if env or expr.startswith("env."):
            key, default = (env.group(1), env.group(2)) if env else (expr[4:], None)
            if key in os.environ:
                return os.environ[key]
            if default is not None:
                return default
            raise ManifestError(f"{where}: ${{{expr}}}: environment variable {key} is not set")
        parts = expr.split(".")
        if parts[0] == "vars":
            node: Any = self._vars
        elif parts[0] == "resources" and len(parts) > 1:
            node = self._doc.get("resources") or {}
        elif parts[0] == "this":
            node, parts = (self._doc.get("resources") or {}).get(resource, {}), parts[1:]
            parts = ["this", *parts]
        else:
            raise ManifestError(f"{where}: ${{{expr}}} is not something funclet resolves "
                                "(vars.*, env('NAME'), resources.NAME.props.*, this.props.*)")
        for part in parts[1:]:
            if not isinstance(node, dict) or part not in node:
                raise ManifestError(f"{where}: ${{{expr}}}: '{part}' is not there")
            node = node[part]
        return node


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (``!Ref X``, ``!GetAtt A.B``, ``!Sub …``)
    read as their long forms (``{"Ref": "X"}``, ``{"Fn::GetAtt": …}``)."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _short_form)

# SAM's Lambda runtimes that funclet runs with AWS's runtime client (``custom.lambda``),
# and what the client needs beside the code.
_SAM_RUNTIMES = ((re.compile(r"^python3\.\d+$"), "python"),
                 (re.compile(r"^nodejs\d+\.x$"), "node"))
_SAM_FUNCTION_KEYS = frozenset({
    "FunctionName", "CodeUri", "Handler", "Runtime", "MemorySize", "Timeout", "Environment",
    "Description", "Layers", "ReservedConcurrentExecutions", "Events", "Architectures",
    "Tags", "Role", "Policies", "Tracing"})
_SAM_IGNORED = frozenset({"Architectures", "Role", "Policies", "Tracing"})  # AWS's IAM/X-Ray


def _sam(doc: dict[str, Any], path: Path) -> tuple[list[Planned], list[str]]:
    warnings: list[str] = []
    defaults = ((doc.get("Globals") or {}).get("Function") or {})
    planned = []
    for logical, resource in doc["Resources"].items():
        where = f"{path.name}: Resources.{logical}"
        if not isinstance(resource, dict):
            raise ManifestError(f"{where} must be a map")
        if resource.get("Type") != "AWS::Serverless::Function":
            warnings.append(f"{where}: {resource.get('Type')} is AWS's, not a function: "
                            "skipped")
            continue
        props = {**defaults, **(resource.get("Properties") or {})}
        for key in props:
            if key not in _SAM_FUNCTION_KEYS:
                warnings.append(f"{where}.Properties.{key} is not used by funclet")
            elif key in _SAM_IGNORED:
                warnings.append(f"{where}.Properties.{key} is AWS's (IAM, X-Ray, "
                                "architectures): not used by funclet")
        planned.append(_sam_function(logical, props, path.parent, where, warnings))
    return planned, warnings


def _sam_function(logical: str, props: dict[str, Any], base: Path, where: str,
                  warnings: list[str]) -> Planned:
    runtime = props.get("Runtime")
    language = next((lang for pattern, lang in _SAM_RUNTIMES
                     if isinstance(runtime, str) and pattern.fullmatch(runtime)), None)
    if language is None:
        raise ManifestError(f"{where}.Properties.Runtime {runtime!r}: funclet runs SAM's "
                            "Python (python3.x) and Node.js (nodejsNN.x) runtimes")
    handler, code = props.get("Handler"), props.get("CodeUri", ".")
    if not isinstance(handler, str) or not isinstance(code, str):
        raise ManifestError(f"{where}: Handler and CodeUri (a local folder) are required")
    folder = (base / code).resolve()
    if not folder.is_dir():
        raise ManifestError(f"{where}.Properties.CodeUri: {folder} is not a folder")
    name = props.get("FunctionName") or logical
    if not isinstance(name, str):
        raise ManifestError(f"{where}.Properties.FunctionName must be a plain string")
    body: dict[str, Any] = {"functionName": name, "runtime": "custom.lambda",
                            "handler": handler}
    for key, field_name in (("MemorySize", "memorySize"), ("Timeout", "timeout"),
                            ("Description", "description"), ("Layers", "layers")):
        if props.get(key) is not None:
            body[field_name] = props[key]
    env = (props.get("Environment") or {}).get("Variables")
    if env:
        body["environmentVariables"] = {k: str(v) for k, v in env.items()}
    out = Planned(logical, folder, body, lambda_client=language)
    if props.get("ReservedConcurrentExecutions") is not None:
        out.reserved_concurrency = int(props["ReservedConcurrentExecutions"])
    for event, spec in (props.get("Events") or {}).items():
        trigger = _sam_event(event, spec or {}, f"{where}.Properties.Events.{event}",
                             warnings)
        if trigger is not None:
            out.triggers.append(trigger)
    return out


def _sam_event(name: str, spec: dict[str, Any], where: str,
               warnings: list[str]) -> dict[str, Any] | None:
    """A SAM event as a funclet trigger: Schedule → timer, Api/HttpApi → HTTP, SQS with
    a broker URL as its Queue (``redis://host:6379/0#stream``) → a message trigger."""
    kind, props = spec.get("Type"), spec.get("Properties") or {}
    trigger_name = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:128]
    if kind == "Schedule":
        config: dict[str, Any] = {"cronExpression": _schedule(props.get("Schedule"), where),
                                  "enable": props.get("Enabled", True) is not False}
        if props.get("Input") is not None:
            config["payload"] = str(props["Input"])
        return {"triggerName": trigger_name, "triggerType": "timer", "triggerConfig": config}
    if kind in ("Api", "HttpApi"):
        method = str(props.get("Method", "ANY")).upper()
        methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"] if (
            method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD")) else [method]
        if props.get("Path") not in (None, "/", "/{proxy+}"):
            warnings.append(f"{where}: Path {props['Path']} is not routed: every path of "
                            "the function's HTTP trigger reaches it")
        warnings.append(f"{where}: the HTTP trigger's event is FC's HTTP event, not API "
                        "Gateway's")
        return {"triggerName": trigger_name, "triggerType": "http",
                "triggerConfig": {"authType": "anonymous", "methods": methods}}
    if kind == "SQS":
        queue = props.get("Queue")
        queue = queue if isinstance(queue, str) else ""
        scheme = queue.split("://", 1)[0]
        brokers = {"redis": "stream", "rediss": "stream", "amqp": "queue", "amqps": "queue",
                   "nats": "subject", "mqtt": "topic", "mqtts": "topic"}
        if scheme not in brokers or "#" not in queue:
            warnings.append(f"{where}: SQS is AWS's; give Queue as a broker URL with the "
                            "stream, queue, subject or topic after '#' (e.g. "
                            "redis://127.0.0.1:6379/0#orders) to map it: not mapped")
            return None
        url, _, source = queue.partition("#")
        trigger_type = {"rediss": "redis", "amqp": "rabbitmq", "amqps": "rabbitmq",
                        "mqtts": "mqtt"}.get(scheme, scheme)
        config = {"url": url, brokers[scheme]: source}
        if props.get("BatchSize") is not None:
            config["batchSize"] = int(props["BatchSize"])
        if props.get("MaximumBatchingWindowInSeconds") is not None:
            config["batchWindowInSeconds"] = int(props["MaximumBatchingWindowInSeconds"])
        return {"triggerName": trigger_name, "triggerType": trigger_type,
                "triggerConfig": config}
    warnings.append(f"{where}: event type {kind} is not mapped onto a funclet trigger")
    return None


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")


def _schedule(value: Any, where: str) -> str:
    """``rate(5 minutes)`` → ``@every 5m``; ``cron(m h dom mon dow year)`` → FC's
    seconds-first ``0 m h dom mon dow``."""
    text = str(value or "").strip()
    rate = _RATE.fullmatch(text)
    if rate:
        return f"@every {rate.group(1)}{rate.group(2)[0]}"
    cron = _CRON.fullmatch(text)
    if cron:
        fields = cron.group(1).split()
        if len(fields) == 6 and fields[5] in ("*", "?"):
            return "0 " + " ".join(fields[:5])
    raise ManifestError(f"{where}.Properties.Schedule {text!r}: expected rate(N minutes|"
                        "hours|days) or cron(min hour day month weekday *)")
