"""Schema migrations (alembic) on SQLite and PostgreSQL: an empty database is created, a
pre-migrations one adopted, a newer one refused and left alone, an unreachable one named."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import bindparam, create_engine, event, inspect, select, text

from funclet.errors import DatabaseUnusable
from funclet.store import migrate, schema
from tests import databases


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'funclet.db'}"
    else:
        plain = databases.create(f"funclet_test_migrate_{secrets.token_hex(4)}")
        yield plain.replace("postgresql://", "postgresql+psycopg://", 1)


def _tables(url: str) -> set[str]:
    engine = create_engine(migrate.sync_url(url))
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_engine(migrate.sync_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_an_empty_database_gets_the_whole_schema_once(url: str) -> None:
    assert migrate.upgrade(url) == (None, migrate.head())
    assert {t.name for t in schema.metadata.sorted_tables} | {"alembic_version"} == _tables(url)
    assert migrate.upgrade(url) == (migrate.head(), migrate.head())


def test_a_database_from_before_migrations_is_adopted(url: str) -> None:
    """Revision 0001's tables (as create_all made them), one nullable column missing
    (added later, as the old funclet did at start), no alembic_version."""
    engine = create_engine(migrate.sync_url(url))
    with engine.begin() as conn:
        command.upgrade(migrate._config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("ALTER TABLE triggers DROP COLUMN next_fire_ms"))
        conn.execute(text("INSERT INTO concurrency_configs VALUES ('kept', 3)"))
    engine.dispose()

    assert migrate.upgrade(url) == ("0001", migrate.head())
    assert _sql(url, "SELECT function_name, reserved_concurrency FROM concurrency_configs") \
        == [("kept", 3)]
    assert _sql(url, "SELECT next_fire_ms FROM triggers") == []  # the column is there
    assert "nodes" in _tables(url)  # and what came after 0001


def test_a_newer_schema_is_refused_and_left_as_it_is(url: str) -> None:
    migrate.upgrade(url)
    _sql(url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(DatabaseUnusable) as caught:
        migrate.upgrade(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "has schema revision 9999, newer than this funclet knows" in message
    assert _sql(url, "SELECT version_num FROM alembic_version") == [("9999",)]


def test_an_unreachable_database_is_one_line_naming_it() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseUnusable) as caught:
        migrate.upgrade(url)
    message = str(caught.value)
    assert message.startswith("the database nowhere at 127.0.0.1:1 cannot be used: ")
    assert "\n" not in message and "postgres@" not in message


def test_a_password_is_never_in_the_message() -> None:
    with pytest.raises(DatabaseUnusable) as caught:
        migrate.upgrade("postgresql+psycopg://user:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(caught.value)



def test_the_migrations_make_the_schema_the_code_declares(url: str) -> None:
    """Tables, columns and indexes (partial ones too) as ``schema`` has them."""
    migrate.upgrade(url)
    engine = create_engine(migrate.sync_url(url))
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            for table in schema.metadata.sorted_tables:
                assert {c["name"] for c in found.get_columns(table.name)} == {
                    c.name for c in table.columns}, table.name
                assert {i["name"] for i in found.get_indexes(table.name)} == {
                    i.name for i in table.indexes}, table.name
    finally:
        engine.dispose()


def test_the_async_queue_queries_read_the_partial_indexes(url: str) -> None:
    """A claim, the next due time and the orphan sweep each use their partial index (a
    bound status could not: the planner must see the values), and the indexes name the
    statuses the queue uses."""
    from funclet.asyncq.policy import WAITING, TaskStatus
    from funclet.store import tasks

    assert schema.TASKS_WAITING == tuple(s.value for s in WAITING)
    assert schema.TASKS_RUNNING == (TaskStatus.RUNNING.value, TaskStatus.STOPPING.value)
    migrate.upgrade(url)
    engine = create_engine(migrate.sync_url(url))
    t = schema.async_tasks
    queries = {
        "ix_async_tasks_waiting": (tasks._CLAIM, {"now": 1, "limit": 10, "node": "n1"}),
        "ix_async_tasks_running": (select(t.c.task_id).where(
            tasks._IS_RUNNING, t.c.node_id == bindparam("node")), {"node": "n1"}),
    }
    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith(("SELECT", "UPDATE")):
            statement = ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement
        return statement, parameters

    try:
        with engine.begin() as conn:
            if not sqlite:  # (an empty table is cheaper to scan: say it is not)
                conn.execute(text("SET LOCAL enable_seqscan = off"))
            for index, (query, params) in queries.items():
                plan = " ".join(str(r[-1]) for r in conn.execute(query, params))
                assert index in plan, plan
    finally:
        engine.dispose()
