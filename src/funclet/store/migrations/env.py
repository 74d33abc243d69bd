"""Alembic's environment for funclet's schema: run by ``funclet.store.migrate`` on a
connection it gives (``config.attributes["connection"]``), or, for a developer writing
a migration, on ``sqlalchemy.url``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from funclet.store import schema

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        _migrate(conn)
        conn.commit()


def _migrate(connection: Connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, which batch mode does.
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
