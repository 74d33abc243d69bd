"""The store's writer against a real SQLite file, inline (SQLite's way) and on a thread
(other databases'): commit, rollback, order, close, and the WAL checkpoint."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from funclet.store import writer as writer_module
from funclet.store.writer import Writer


def insert(conn: Connection, n: int) -> int:
    conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    return n


def _rows(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:  # another connection: only committed rows show
        return [r[0] for r in conn.execute("SELECT n FROM t ORDER BY rowid")]


@pytest.fixture(params=[True, False], ids=["inline", "thread"])
async def writer(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    w = Writer(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}", inline=request.param)
    await w.run(lambda conn: conn.execute(text("CREATE TABLE t (n INTEGER)")))
    yield w
    await asyncio.to_thread(w.close)


async def test_transactions_commit_roll_back_and_keep_their_order(
    writer: Writer, tmp_path: Path,
) -> None:
    db = tmp_path / "w.db"
    assert await writer.run(functools.partial(insert, n=1)) == 1
    assert _rows(db) == [1]

    def half_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("the transaction fails half way")

    with pytest.raises(RuntimeError):
        await writer.run(half_then_fail)
    assert _rows(db) == [1]  # rolled back, and the writer goes on

    asked = [writer.run(functools.partial(insert, n=n)) for n in range(3, 23)]
    assert await asyncio.gather(*asked) == list(range(3, 23))
    assert _rows(db) == [1, *range(3, 23)]  # one writer: in the order they were asked
    mode = await writer.run(lambda conn: conn.exec_driver_sql("PRAGMA journal_mode").scalar())
    assert mode == "wal"


async def test_close_commits_what_is_queued(writer: Writer, tmp_path: Path) -> None:
    queued = [asyncio.ensure_future(writer.run(functools.partial(insert, n=n)))
              for n in range(50)]
    await asyncio.sleep(0)  # all handed over
    await asyncio.to_thread(writer.close)
    await asyncio.gather(*queued)
    assert _rows(tmp_path / "w.db") == list(range(50))


async def test_the_wal_is_checkpointed_by_its_task_not_by_the_writer(
    writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "w.db"
    autocheckpoint = await writer.run(
        lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())
    assert autocheckpoint == 0  # a commit never copies the WAL (nor fsyncs) on the loop
    for n in range(20):
        await writer.run(functools.partial(insert, n=n))
    assert _in_database_file(db) == 0 and _rows(db) == list(range(20))  # all in the WAL
    monkeypatch.setattr(writer_module, "_CHECKPOINT_EVERY_S", 0.05)
    checkpoints = asyncio.ensure_future(writer.checkpoints())
    try:
        await asyncio.sleep(0.3)
    finally:
        checkpoints.cancel()
    assert _in_database_file(db) == 20


def _in_database_file(db: Path) -> int:
    """Rows in the database file itself, the WAL ignored (``immutable``: read as is)."""
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # not even the table has been copied yet
            return 0


async def test_a_wal_grown_by_a_burst_shrinks_back_to_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of writes with no checkpoint grows the WAL past the limit; once a
    checkpoint has copied it and writing restarts it, the file is cut back."""
    monkeypatch.setattr(writer_module, "WAL_SIZE_LIMIT", 256 * 1024)
    writer = Writer(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await writer.run(lambda conn: conn.execute(text("CREATE TABLE t (n)")))
    wal = tmp_path / "w.db-wal"
    blob = "x" * 4000
    for _ in range(600):  # ~2.4 MB of pages, no checkpoint
        await writer.run(lambda conn: conn.execute(text("INSERT INTO t VALUES (:b)"),
                                                   {"b": blob}))
    assert wal.stat().st_size > 2_000_000
    monkeypatch.setattr(writer_module, "_CHECKPOINT_EVERY_S", 0.05)
    checkpoints = asyncio.ensure_future(writer.checkpoints())
    try:
        await asyncio.sleep(0.3)
    finally:
        checkpoints.cancel()
    await writer.run(functools.partial(insert, n=1))  # restarts the WAL from its start
    assert wal.stat().st_size <= 256 * 1024
    await asyncio.to_thread(writer.close)
