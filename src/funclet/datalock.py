"""One platform per data folder: an exclusive ``flock`` on ``<data_dir>/funclet.lock``;
and, on PostgreSQL, one running funclet per node id (``NodeLock``).

Taken before anything else touches the folder, the instances' cgroups (named after the
folder) or the port, and held until the platform has stopped. The file holds the
holder's pid, so that a second ``funclet serve`` can say who has the folder. The lock
goes with the process (the kernel drops it on exit, even on ``kill -9``), so a stale
file never blocks a restart; it is never inherited by zygotes (close-on-exec).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy import Connection, NullPool, create_engine, text

from funclet.errors import DatabaseUnusable, DataFolderInUse
from funclet.store.migrate import where
from funclet.store.writer import sync_url

LOCK_FILE = "funclet.lock"


class DataFolderLock:
    """Held for the platform's whole run; ``acquire`` raises ``DataFolderInUse``."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> DataFolderLock:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir.resolve() / LOCK_FILE
        # No O_TRUNC: a second funclet must not change the first one's file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise DataFolderInUse(data_dir.resolve(), holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with the next holder)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1


class NodeLock:
    """One running funclet per node id on a PostgreSQL database (the nodes of one
    platform share it, each under its own id): a session advisory lock, keyed by the
    node id, on a connection held for the platform's whole run (the server drops it
    when the connection goes, even on ``kill -9``, so a restart under the same id is
    never blocked by its own past). The holder names itself in ``application_name``,
    so that a second funclet can say who has the id. SQLite needs none: its database is
    in the data folder, which has its own lock."""

    def __init__(self, conn: Connection | None) -> None:
        self._conn = conn

    @classmethod
    def acquire(cls, url: str, node_id: str) -> NodeLock:
        engine = create_engine(sync_url(url), poolclass=NullPool)
        if engine.dialect.name != "postgresql":
            engine.dispose()
            return cls(None)
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        me = f"funclet {node_id} pid {os.getpid()}"[:63]
        conn.execute(text("SELECT set_config('application_name', :me, false)"), {"me": me})
        key = {"key": f"funclet-node:{node_id}"}
        if not conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), key).scalar():
            holder = conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND "
                "l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.objid = (hashtext(:key)::bigint & 4294967295)::oid"), key).scalar()
            conn.close()
            engine.dispose()
            raise DatabaseUnusable(
                f"node id {node_id} is taken by a running funclet on {where(url)} "
                f"({holder or 'unknown'}): stop it, or give this one another --node-id")
        return cls(conn)

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
                self._conn.engine.dispose()
            self._conn = None
