"""Host slots: what several funclets on one host must not share, handed out by lock.

A running platform holds ``/run/funclet/slot-N.lock`` (``flock``, released by the kernel
when the process ends, however it ends). Slot N names its bridge and filter table
(``network.py``), picks its subnet and its block of instance uids, so two funclets on
one host never use each other's, and a funclet that takes a slot a killed one held
first removes what that one left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/run/funclet")
MAX_SLOTS = 16


class NoFreeSlot(RuntimeError):
    """Every slot is held: too many funclets on this host."""


class HostSlot:
    """One slot, held for as long as this object's lock file stays open."""

    def __init__(self, number: int, fd: int, root: Path) -> None:
        self.number = number
        self._fd = fd
        self.root = root

    @classmethod
    def take(cls, root: Path = ROOT) -> HostSlot:
        """The lowest free slot."""
        root.mkdir(parents=True, exist_ok=True)
        for number in range(MAX_SLOTS):
            fd = os.open(root / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return cls(number, fd, root)
        raise NoFreeSlot(f"all {MAX_SLOTS} funclet slots of this host are in use ({root})")

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @staticmethod
    @contextlib.contextmanager
    def global_lock(root: Path) -> Iterator[None]:
        """Host-wide changes (forwarding, its marker) by one funclet at a time."""
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / "host.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def others_running(root: Path, mine: HostSlot) -> bool:
        """Whether another funclet holds a slot now."""
        for number in range(MAX_SLOTS):
            if number == mine.number:
                continue
            path = root / f"slot-{number}.lock"
            if not path.exists():
                continue
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            finally:
                os.close(fd)
        return False
