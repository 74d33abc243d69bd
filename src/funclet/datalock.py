"""One platform per data folder: an exclusive ``flock`` on ``<data_dir>/funclet.lock``.

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

from funclet.errors import DataFolderInUse

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
