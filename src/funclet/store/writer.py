"""The database's one writer: a thread with its own connection runs every write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url

T = TypeVar("T")
# The writer's driver for the async engine's URL (psycopg, for PostgreSQL, is both).
_SYNC_DRIVERS = {"sqlite+aiosqlite": "sqlite"}


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Writer:
    """Runs write transactions one at a time on a thread of their own.

    SQLite has one writer at a time, so funclet has one: each transaction is a plain
    function of a (synchronous) SQLAlchemy connection, run whole in one hop from the
    event loop. Through the async driver each statement (and each cursor step) is a hop
    of its own, and every hop waits its turn behind the requests the loop is serving —
    under load that wait, not SQLite, was most of a transaction's time. On SQLite each
    transaction is ``BEGIN IMMEDIATE``: it holds the write lock from its first statement,
    so a read-then-write never fails on a snapshot another connection moved. Reads go
    through the async engine (WAL: readers never wait for the writer).
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        parsed = parsed.set(drivername=_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
        self.engine = create_engine(parsed, pool_size=1, max_overflow=0,
                                    json_serializer=json_dumps, json_deserializer=orjson.loads)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _begin_immediate)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="funclet-db-writer")
        self._conn: Connection | None = None  # the thread's own, kept across transactions

    async def run(self, transaction: Callable[[Connection], T]) -> T:
        """Run ``transaction`` in a transaction of its own; its result once committed.
        (Cancelling the caller does not cancel a transaction that has begun.)"""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._run, transaction)

    def _run(self, transaction: Callable[[Connection], T]) -> T:
        if self._conn is None:
            self._conn = self.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                return transaction(conn)
        except BaseException:
            if conn.invalidated:  # the database connection broke: a new one next time
                conn.close()
                self._conn = None
            raise

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Finish the transactions queued, then close the connection."""
        self._thread.submit(self._close_connection)
        self._thread.shutdown(wait=True)
        self.engine.dispose()


def _sqlite_connect(dbapi_conn: Any, record: Any) -> None:
    sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.isolation_level = None  # the driver's implicit BEGIN off: ours is below


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
