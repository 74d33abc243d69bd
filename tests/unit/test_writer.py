"""The store's writer thread against a real SQLite file: commit, rollback, order, close."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from funclet.store.writer import Writer


def insert(conn: Connection, n: int) -> int:
    conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    return n


def _rows(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:  # another connection: only committed rows show
        return [r[0] for r in conn.execute("SELECT n FROM t ORDER BY rowid")]


async def test_transactions_commit_roll_back_and_keep_their_order(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = Writer(f"sqlite+aiosqlite:///{db}")
    try:
        await writer.run(lambda conn: conn.execute(text("CREATE TABLE t (n INTEGER)")))

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
        assert _rows(db) == [1, *range(3, 23)]  # one thread: in the order they were asked
        mode = await writer.run(lambda conn: conn.exec_driver_sql(
            "PRAGMA journal_mode").scalar())
        assert mode == "wal"
    finally:
        await asyncio.to_thread(writer.close)


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = Writer(f"sqlite+aiosqlite:///{db}")
    await writer.run(lambda conn: conn.execute(text("CREATE TABLE t (n INTEGER)")))
    queued = [asyncio.ensure_future(writer.run(functools.partial(insert, n=n)))
              for n in range(50)]
    await asyncio.sleep(0)  # all handed to the thread
    await asyncio.to_thread(writer.close)
    await asyncio.gather(*queued)
    assert _rows(db) == list(range(50))
