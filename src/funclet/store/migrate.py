"""The database's schema, kept by alembic (``migrations/``), SQLite and PostgreSQL alike.

``upgrade(url)`` brings a database to the newest revision this funclet knows: an empty
one is created, an older one migrated, one made by a funclet from before migrations
(tables, no ``alembic_version``) adopted as revision ``0001`` once the nullable columns
it lacks are added, as that funclet did at each start. A database at a revision
this funclet does not know (a newer funclet migrated it) is refused, with
``DatabaseUnusable``, and left as it is. On PostgreSQL the nodes of a cluster may start
together: an advisory lock lets one migrate while the others wait.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from funclet.errors import DatabaseUnusable
from funclet.store.writer import sync_url

MIGRATIONS = Path(__file__).with_name("migrations")
_FIRST = "0001"  # the schema as it was before migrations
_LOCK = 0x66756E636C6574  # "funclet": PostgreSQL's advisory lock for migrations


def where(url: str) -> str:
    """The database, as a message names it (no password)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"the database {parsed.database}"
    return f"the database {parsed.database} at {parsed.host or 'localhost'}:{parsed.port or 5432}"


def head() -> str:
    """The newest revision this funclet knows."""
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def upgrade(url: str) -> tuple[str | None, str]:
    """Bring the database at ``url`` to ``head()``: (the revision it was at, the one it is
    at now). ``DatabaseUnusable`` if it cannot be reached or is newer than this funclet."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
            before = _current(conn)
            known = ScriptDirectory.from_config(_config())
            if before is not None and before not in {r.revision for r in known.walk_revisions()}:
                raise DatabaseUnusable(
                    f"{where(url)} has schema revision {before}, newer than this funclet "
                    f"knows (up to {head()}): run a newer funclet, or give this one "
                    "another database")
            if before is None and inspect(conn).has_table("functions"):
                _add_missing_columns(conn)  # made before migrations, by create_all
                before = _FIRST
                command.stamp(_config(conn), _FIRST)
            command.upgrade(_config(conn), "head")
            return before, _current(conn) or ""
    except DatabaseUnusable:
        raise
    except (SQLAlchemyError, CommandError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise DatabaseUnusable(
            f"{where(url)} cannot be used: {str(reason).strip().splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _add_missing_columns(conn: Connection) -> None:
    """Columns a pre-migrations funclet added to its tables as it grew (all nullable),
    up to revision 0001's shape (read from 0001 run on an in-memory SQLite)."""
    shape = MetaData()
    memory = create_engine("sqlite://")
    try:
        with memory.begin() as scratch:
            command.upgrade(_config(scratch), _FIRST)
            shape.reflect(scratch)
    finally:
        memory.dispose()
    inspector = inspect(conn)
    for table in shape.sorted_tables:
        if table.name == "alembic_version" or not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
