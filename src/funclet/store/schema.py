"""The metadata tables (SQLAlchemy Core): functions, their configs, triggers, invocations,
instances, async tasks and the outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# async_tasks' partial indexes (SQLite and PostgreSQL) hold only the rows a hot query
# looks for: the waiting ones by due time (a claim reads them in order and stops at its
# limit, where an index on (status, due time) made it read and sort the whole backlog
# for two statuses), the running ones by node (the sweep for orphans). A finished task
# is in neither. Queries must spell these conditions with the values inline (a bound
# parameter cannot prove a partial index's condition).
TASKS_WAITING = ("Enqueued", "Retrying")
TASKS_RUNNING = ("Running", "Stopping")


def _status_in(values: tuple[str, ...]) -> Any:
    return text("status IN ({})".format(", ".join(f"'{v}'" for v in values)))

functions = Table(
    "functions",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("function_id", String(36), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("config", JSON, nullable=False),
    Column("code_checksum", String(64), nullable=False),
    Column("code_size", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("code_crc64", String(20)),  # FC's codeChecksum (NULL: made before it was kept)
)

# Published versions: immutable copies of a function's config and code (FC's
# PublishFunctionVersion); ids count up per function and are not reused while it exists
# (``function_counters``): a deleted version's id does not come back (a function deleted
# and made again starts from 1).
function_versions = Table(
    "function_versions",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("config", JSON, nullable=False),
    Column("code_checksum", String(64), nullable=False),
    Column("code_size", BigInteger, nullable=False),
    Column("code_crc64", String(20)),
    Column("created_ms", BigInteger, nullable=False),
)

function_counters = Table(
    "function_counters",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("last_version", Integer, nullable=False),
)

# Aliases: a name for a version, and optionally a second version with a share of the
# invocations (``additional_weight``: {version id: 0..1}, a canary).
aliases = Table(
    "aliases",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("alias_name", String(128), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("additional_weight", JSON, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
)

# DisableFunctionInvocation: a row while the function's invocations are refused.
function_restrictions = Table(
    "function_restrictions",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
)

# TagResources: tags of a resource (a function, by name), one row per key.
tags = Table(
    "tags",
    metadata,
    Column("resource_type", String(32), primary_key=True),
    Column("resource_id", String(128), primary_key=True),
    Column("tag_key", String(128), primary_key=True),
    Column("tag_value", Text, nullable=False),
)

# Layers (CreateLayerVersion): the version counter and ACL per layer, and each version,
# its package stored like a function's (by sha256). A deleted version keeps its row
# (``deleted_ms``): functions that use it go on running it, as on FC and Lambda.
layers = Table(
    "layers",
    metadata,
    Column("layer_name", String(128), primary_key=True),
    Column("last_version", Integer, nullable=False),
    Column("public", Integer, nullable=False),  # PutLayerACL: 1 public, 0 private
)

layer_versions = Table(
    "layer_versions",
    metadata,
    Column("layer_name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("compatible_runtimes", JSON, nullable=False),
    Column("license", Text, nullable=False),
    Column("code_checksum", String(64), nullable=False),
    Column("code_size", BigInteger, nullable=False),
    Column("code_crc64", String(20)),
    Column("created_ms", BigInteger, nullable=False),
    Column("deleted_ms", BigInteger),
)

# PutScalingConfig: ``minInstances`` are kept started (like provisioned instances); the
# other fields are stored and returned as given.
scaling_configs = Table(
    "scaling_configs",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("config", JSON, nullable=False),
)

# Custom domains: a host name whose requests go to functions by path (``config``: FC's
# protocol, routeConfig, authConfig, certConfig, tlsConfig, wafConfig, corsConfig).
custom_domains = Table(
    "custom_domains",
    metadata,
    Column("domain_name", String(256), primary_key=True),
    Column("config", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
)

# Lambda's Function URLs (api/function_urls.py): ``config`` holds AuthType, InvokeMode
# and Cors as Lambda names them.
function_urls = Table(
    "function_urls",
    metadata,
    Column("url_id", String(40), primary_key=True),
    Column("function_name", String(128), nullable=False),
    Column("qualifier", String(128), nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Index("uq_function_urls_target", "function_name", "qualifier", unique=True),
)

# FC 2.0's services (its API groups functions under them; their functions are the
# functions named ``{service}${function}``): ``config`` holds the service's own fields
# (description, role, logConfig, internetAccess, tracingConfig).
services = Table(
    "services",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("service_id", String(36), nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
)

# The platform's own secrets, made once (random) and shared by every node: e.g. the key
# that signs code download URLs.
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

invocations = Table(
    "invocations",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("function_name", String(128), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("start_kind", String(16)),
    Column("instance_id", String(64)),
    Column("init_ms", Float),
    Column("duration_ms", Float),
    Column("queue_ms", Float),
    Column("status", String(16), nullable=False),
    Column("error_type", String(128)),
    Column("error_message", Text),
    Column("log", Text),
    Column("started_ms", BigInteger, nullable=False),
    Column("node_id", String(128)),  # the node that ran it
    Column("version_id", String(16)),  # the version that ran (NULL: LATEST)
    Index("ix_invocations_function_started", "function_name", "started_ms"),
    Index("ix_invocations_started", "started_ms", "request_id"),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("function_name", String(128), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("stop_reason", String(16)),
    Column("created_ms", BigInteger, nullable=False),
    Column("destroyed_ms", BigInteger),
    Column("node_id", String(128)),  # the node it ran on
    Column("version_id", String(16)),  # the version it ran (NULL: LATEST)
    Index("ix_instances_function_created", "function_name", "created_ms"),
)

# The platform's nodes: each registers at start and heartbeats; one that stops
# heartbeating is dead (``funclet.nodes``).
nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(128), primary_key=True),
    Column("address", String(256), nullable=False),  # host:port of its API
    Column("version", String(32), nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("heartbeat_ms", BigInteger, nullable=False),
    Column("stopped_ms", BigInteger),  # set when it stopped cleanly
    Column("instances", Integer, nullable=False),  # live instances at the last heartbeat
)

# FC's per-function configs, one row each when set.
concurrency_configs = Table(
    "concurrency_configs",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("reserved_concurrency", Integer, nullable=False),
)

# PutProvisionConfig: instances kept started, per function and qualifier (LATEST, a
# version, an alias: the version it points at).
provision_targets = Table(
    "provision_targets",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("target", Integer, nullable=False),
)

# FC's async invoke configs, per function and qualifier (LATEST, a version, an alias).
async_invoke_configs = Table(
    "async_invoke_configs",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("config", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
)

# Durable async invocations: one row per task, written before the 202 goes out.
async_tasks = Table(
    "async_tasks",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("request_id", String(64), nullable=False),
    Column("function_name", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("run_after_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_ms", BigInteger),
    Column("end_ms", BigInteger),
    Column("duration_ms", Float),
    Column("instance_id", String(64)),
    Column("return_payload", Text),
    Column("error_message", Text),
    Column("events", JSON, nullable=False),
    Column("destination_status", String(256)),
    Column("node_id", String(128)),  # the node running its attempt (while Running)
    Column("qualifier", String(128)),  # a version or an alias; NULL: LATEST
    Index("ix_async_tasks_waiting", "run_after_ms", sqlite_where=_status_in(TASKS_WAITING),
          postgresql_where=_status_in(TASKS_WAITING)),
    Index("ix_async_tasks_running", "node_id", sqlite_where=_status_in(TASKS_RUNNING),
          postgresql_where=_status_in(TASKS_RUNNING)),
    Index("ix_async_tasks_function_created", "function_name", "created_ms"),
    Index("ix_async_tasks_created", "created_ms"),  # (pruning past the retention)
)

# Destination records to deliver, written in the same transaction as the task's final
# state; delivered at least once, retried while the target is down.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(128), nullable=False),
    Column("function_name", String(128), nullable=False),
    Column("destination", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    Index("ix_outbox_due", "status", "next_attempt_ms"),
)

# Triggers; ``config`` is the normalised triggerConfig. ``next_fire_ms`` is a timer's next
# scheduled fire (NULL while disabled), kept so that a restart neither skips nor repeats.
triggers = Table(
    "triggers",
    metadata,
    Column("function_name", String(128), primary_key=True),
    Column("trigger_name", String(128), primary_key=True),
    Column("trigger_id", String(36), nullable=False),
    Column("trigger_type", String(16), nullable=False),
    Column("config", JSON, nullable=False),
    Column("description", Text, nullable=False),
    Column("qualifier", String(128), nullable=False),
    Column("invocation_role", Text, nullable=False),
    Column("source_arn", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("next_fire_ms", BigInteger),
)

# Instance slots each node holds, per pool ("" the shared one, else a function with a
# reservation), when nodes share a database (``funclet.slots``): the account's limit and
# the reservations are the cluster's. A dead node's rows no longer count.
slot_leases = Table(
    "slot_leases",
    metadata,
    Column("node_id", String(128), primary_key=True),
    Column("pool", String(128), primary_key=True),
    Column("held", Integer, nullable=False),
)
