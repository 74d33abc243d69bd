"""funclet's configuration: typed, frozen, built once.

Values come, highest priority first, from the arguments the CLI passes in, then
``FUNCLET_*`` environment variables, then a TOML file (``FUNCLET_CONFIG``, or
``funclet.toml`` in the working directory when present), then the defaults below.
No other module of the platform reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MB = 1024 * 1024


class Settings(BaseSettings):
    """Everything an operator can set. Paths left empty derive from ``data_dir``."""

    model_config = SettingsConfigDict(env_prefix="FUNCLET_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)
    data_dir: Path = Path(".funclet")
    database_url: str = ""  # postgresql://user@host:5432/db; empty: SQLite in data_dir
    code_dir: Path | None = None  # this node's unpacked code (and packages, by default)
    # Where code packages are kept: s3://bucket/prefix (shared by a cluster's nodes; the
    # standard AWS_* variables give its endpoint and credentials), or "": code_dir.
    code_store: str = ""

    # This node's name among a platform's nodes; empty: "<host name>:<port>".
    node_id: str = Field("", max_length=128)

    region: str = "local"
    # HTTP triggers also answer at http://{function}.{http_domain}/ (e.g. "fn.localhost").
    http_domain: str | None = None
    account_id: str = "1000000000000000"

    max_code_size: int = 100 * MB
    max_unpacked_size: int = 500 * MB
    max_compression_ratio: int = 200
    max_sync_payload: int = 32 * MB
    max_async_payload: int = 128 * 1024

    max_instances: int = Field(100, ge=1)
    max_queue_length: int = Field(10_000, ge=0)
    max_queue_wait_seconds: float | None = Field(None, ge=0)  # None: the function's timeout
    keep_alive_seconds: float = Field(180.0, gt=0)
    # Per-function keep-alive from each function's idle times, with pre-warming (the
    # hybrid histogram policy: instances/keepalive.py; on since the simulator showed it
    # beats the fixed 180 s on both counts); off: keep_alive_seconds for all.
    adaptive_keep_alive: bool = True
    adaptive_keep_alive_bin_seconds: float = Field(60.0, gt=0)  # its histogram's bins
    # Instances started ahead (isolated, no function yet), per runtime: at least this
    # many, up to the max as the rate of cold starts needs (sandbox/ahead.py); 0: none.
    prestarted_instances: int = Field(2, ge=0, le=64)
    prestarted_instances_max: int = Field(16, ge=0, le=256)
    prestarted_idle_seconds: float = Field(60.0, gt=0)  # then the surplus over the least goes
    sandbox: bool = True  # isolate instances (namespaces, cgroups, uid) where the host can
    tmp_size_mb: int = Field(512, ge=1)  # each instance's private /tmp
    # Instances' network: a /22 of this range per platform on the host (bridge + NAT).
    network_cidr: str = "10.213.0.0/16"
    # Host ports that instances may reach, at host.funclet.internal:PORT (default none).
    expose_host_ports: list[int] = Field(default_factory=list)
    # The resolver instances use, "host[:port]", when the host's is not reachable as is.
    dns_server: str | None = None
    # Instances' uids: one per function, from this platform's share of the range.
    uid_range_start: int = Field(100_000, ge=1000)
    uid_range_size: int = Field(160_000, ge=16)
    reclaim_interval_seconds: float = Field(1.0, gt=0)
    # Invocation and instance records (and their logs): kept this many days, and at most
    # this many invocation records (the newest; each log is at most 1 MiB), pruned every
    # records_prune_interval_seconds.
    records_retention_days: float = Field(7.0, gt=0)
    max_invocation_records: int = Field(1_000_000, ge=1)
    records_prune_interval_seconds: float = Field(60.0, gt=0)
    # Finished async tasks (and their delivered destination records): kept this many
    # days, and at most this many tasks (past it the oldest finished ones go; a waiting
    # task, or one whose destination record is undelivered, always stays). Pruned with
    # the records. A task id can be used again once its task is gone.
    async_task_retention_days: float = Field(7.0, gt=0)
    max_async_tasks: int = Field(1_000_000, ge=1)
    shutdown_grace_seconds: int = Field(30, ge=0)
    # HTTP connections (api/connections.py): an idle one (no request under way) closes
    # after http_idle_timeout_seconds; a request's headers must be in within
    # http_header_timeout_seconds of its first byte; past max_connections open at once,
    # new ones get 503 (and fewer when the open-files limit leaves less room).
    http_idle_timeout_seconds: int = Field(5, ge=1)
    http_header_timeout_seconds: float = Field(10.0, gt=0)
    max_connections: int = Field(20_000, ge=1)
    python_interpreters: dict[str, str] = Field(default_factory=dict)
    log_level: str = "info"

    # Authentication: required unless the API listens on loopback only (or forced on).
    require_auth: bool | None = None
    api_token: str | None = None  # generated (and printed once) when auth is on and unset
    access_keys: dict[str, str] = Field(default_factory=dict)  # FC access key id -> secret

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if url and not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://",
                                       "sqlite://", "sqlite+aiosqlite://")):
            raise ValueError("must be a PostgreSQL URL "
                             "(postgresql://user@host:5432/database) or a SQLite one "
                             "(sqlite:////path/to/funclet.db)")
        if url.startswith("sqlite://"):
            url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("FUNCLET_CONFIG", "funclet.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    @property
    def resolved_database_url(self) -> str:
        """SQLAlchemy's URL: SQLite under the data folder by default; ``postgresql://`` (or
        ``postgres://``, as libpq and most hosts write it) through psycopg 3."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'funclet.db'}"
        for scheme in ("postgresql://", "postgres://"):
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url[len(scheme):]
        return url

    @property
    def resolved_node_id(self) -> str:
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def resolved_code_dir(self) -> Path:
        return (self.code_dir or self.data_dir / "code").resolve()

    @property
    def max_request_body(self) -> int:
        """The largest body an API call may send: a sync event, or a code package's
        base64 with its fields."""
        return max(self.max_sync_payload, self.max_code_size * 4 // 3 + 65536)

    @property
    def auth_required(self) -> bool:
        if self.require_auth is not None:
            return self.require_auth
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"

    @property
    def run_dir(self) -> Path:
        """Sockets and other per-run files."""
        return (self.data_dir / "run").resolve()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; ``None`` overrides (CLI flags not given) are left out."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
