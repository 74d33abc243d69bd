"""The database a test's funclet uses: SQLite in its data folder (the default), or, with
``FUNCLET_TEST_DATABASE=postgresql``, a database of its own on the machine's PostgreSQL
(``FUNCLET_TEST_POSTGRES``, default postgresql://postgres@127.0.0.1:5432), created for
the data folder (a funclet restarted on the same folder finds its data again) and
dropped when the test session ends."""

from __future__ import annotations

import atexit
import hashlib
import os
from pathlib import Path

import psycopg

BACKEND = os.environ.get("FUNCLET_TEST_DATABASE", "sqlite")
SERVER = os.environ.get("FUNCLET_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
_created: list[str] = []


def admin() -> psycopg.Connection:
    """A connection to the server's maintenance database, for CREATE and DROP."""
    return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)


def create(name: str) -> str:
    """A new, empty database ``name`` (dropped at the end of the session): its URL."""
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    if not _created:
        atexit.register(_drop_all)
    _created.append(name)
    return f"{SERVER}/{name}"


def for_folder(folder: Path) -> str:
    """The URL of the database of the funclet whose data lives in ``folder``."""
    name = "funclet_test_" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    if name in _created:
        return f"{SERVER}/{name}"
    return create(name)


def server_env(folder: Path) -> dict[str, str]:
    """The environment that points a funclet at the session's backend."""
    if BACKEND == "postgresql":
        return {"FUNCLET_DATABASE_URL": for_folder(folder)}
    return {}


def _drop_all() -> None:
    with admin() as conn:
        for name in _created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
