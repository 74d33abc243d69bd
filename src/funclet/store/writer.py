"""The database's one writer: one connection runs every write transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, NullPool, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from funclet.errors import DiskFull

T = TypeVar("T")
log = logging.getLogger(__name__)
# The writer's driver for the async engine's URL (psycopg, for PostgreSQL, is both).
_SYNC_DRIVERS = {"sqlite+aiosqlite": "sqlite"}
_CHECKPOINT_EVERY_S = 1.0
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def sync_url(url: str) -> str:
    """The synchronous driver's URL for a store URL (aiosqlite's is sqlite3's)."""
    parsed = make_url(url)
    return parsed.set(
        drivername=_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    ).render_as_string(hide_password=False)


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # A WAL that grew under a burst (a checkpoint cannot restart it while writes keep
    # coming) goes back to this size once it restarts, not kept at its largest.
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.close()


class Writer:
    """Runs write transactions one at a time, each a plain function of a (synchronous)
    SQLAlchemy connection, run whole.

    SQLite (``inline``): on the event loop's own thread. A SQLite write in WAL mode with
    ``synchronous=NORMAL`` is CPU work on pages in memory (a commit appends to the WAL
    without fsync), so it costs the loop no more than handing it over would: through
    aiosqlite each statement and cursor step was a hop back to the loop, waiting behind
    the requests it served; on a thread of its own, the writer and the loop traded the
    GIL at every ``sqlite3_step`` (8 % of the loop's time in futex wake-ups alone).
    Inline, under async load, accepts went up by a fifth and accepted → succeeded by
    half. The one slow part, the checkpoint that copies the WAL into the database and
    fsyncs both, is taken off the loop: the writer's connection never checkpoints
    (``wal_autocheckpoint=0``); ``checkpoints`` does, every second, on a thread with a
    connection of its own (``PASSIVE``: writers never wait for it). One writer means no
    lock is ever waited for; every transaction is ``BEGIN IMMEDIATE``, so a
    read-then-write never fails on a snapshot another connection moved. Reads go
    through the async engine (WAL: readers never wait for the writer).

    Other databases (a network round trip per statement): on a thread of their own.
    """

    def __init__(self, url: str, inline: bool | None = None) -> None:
        parsed = make_url(sync_url(url))
        options: dict[str, Any] = {"json_serializer": json_dumps,
                                   "json_deserializer": orjson.loads}
        self.engine = create_engine(parsed, pool_size=1, max_overflow=0, **options)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._inline = self._sqlite if inline is None else inline
        self._checkpointer = create_engine(parsed, poolclass=NullPool) if self._sqlite else None
        if self._sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _begin_immediate)
        self._thread = None if self._inline else ThreadPoolExecutor(
            1, thread_name_prefix="funclet-db-writer")
        self._conn: Connection | None = None  # kept across transactions
        # Named when the disk is full: the database file's folder (or its server).
        self._where = (os.path.dirname(os.path.abspath(parsed.database))
                       if self._sqlite and parsed.database else
                       f"the database at {parsed.host or 'localhost'}")
        self._dirty = False  # committed since the last checkpoint

    async def run(self, transaction: Callable[[Connection], T]) -> T:
        """Run ``transaction`` in a transaction of its own; its result once committed.
        (On a thread, cancelling the caller does not cancel a transaction begun.)"""
        if self._thread is None:
            return self._run(transaction)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._run, transaction)

    def _run(self, transaction: Callable[[Connection], T]) -> T:
        if self._conn is None:
            self._conn = self.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                result = transaction(conn)
        except BaseException as exc:
            if conn.invalidated:  # the database connection broke: a new one next time
                conn.close()
                self._conn = None
            if _is_disk_full(exc):  # rolled back whole: nothing of it was stored
                log.error("The disk holding %s is full: a write transaction was refused "
                          "(%s).", self._where, exc.orig if isinstance(exc, DBAPIError) else exc)
                raise DiskFull(self._where) from exc
            raise
        self._dirty = True
        return result

    async def checkpoints(self) -> None:
        """Run forever (cancel to stop): copy the WAL into the database file every
        second when something was written, on a thread."""
        if self._checkpointer is None:
            return
        while True:
            await asyncio.sleep(_CHECKPOINT_EVERY_S)
            if self._dirty:
                self._dirty = False
                try:
                    await asyncio.to_thread(self._checkpoint)
                except Exception as exc:  # the next one catches up
                    log.warning("Checkpointing the database's WAL failed: %s", exc)

    def _checkpoint(self) -> None:
        assert self._checkpointer is not None
        with self._checkpointer.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """After the transactions queued: close the connection (SQLite checkpoints as
        its last connection closes)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self.engine.dispose()
        if self._checkpointer is not None:
            self._checkpointer.dispose()


def _is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's disk_full."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
            "database or disk is full" in str(orig))
    return getattr(orig, "sqlstate", None) == "53100"


def _sqlite_connect(dbapi_conn: Any, record: Any) -> None:
    sqlite_pragmas(dbapi_conn, record)
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")  # see Writer: a thread does it
    dbapi_conn.isolation_level = None  # the driver's implicit BEGIN off: ours is below


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
