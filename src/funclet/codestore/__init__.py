"""Code packages: stored by sha256 in a local folder, unpacked once per hash."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from funclet.codestore.archive import Inspected, Limits, inspect, unpack
from funclet.errors import DiskFull, InvalidCodePackage, PayloadTooLarge, is_disk_full

__all__ = ["CodeMissing", "CodeStore", "Package"]
log = logging.getLogger(__name__)
# What unpacking a package's own names and structure can make the OS refuse: the
# client's doing (any other OSError is the host's).
_PACKAGE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.ELOOP,
                             errno.EEXIST, errno.ENOTDIR, errno.EISDIR})


class CodeMissing(FileNotFoundError):
    """A deployed function's package is not in the code store (deleted by hand?)."""


@dataclass(frozen=True)
class Package:
    checksum: str
    size: int
    files: frozenset[str]


class CodeStore:
    """``packages/<sha256>.zip`` is the stored object; ``unpacked/<sha256>/`` its files.

    A write that fails (a damaged zip, a full disk) leaves nothing behind: no staging
    folder, no partial file.
    """

    def __init__(self, root: Path, max_zipped: int, limits: Limits) -> None:
        self._root = root
        self._packages = root / "packages"
        self._unpacked = root / "unpacked"
        self._packages.mkdir(parents=True, exist_ok=True)
        self._unpacked.mkdir(parents=True, exist_ok=True)
        self._max_zipped = max_zipped
        self._limits = limits

    def check(self, data: bytes) -> Package:
        """Validate a package; raises ``InvalidCodePackage``. Stores nothing."""
        if len(data) > self._max_zipped:
            raise PayloadTooLarge(
                f"code package is {len(data)} bytes zipped, over the limit of "
                f"{self._max_zipped} bytes"
            )
        inspected: Inspected = inspect(data, self._limits)
        return Package(hashlib.sha256(data).hexdigest(), len(data), inspected.files)

    async def put(self, data: bytes, package: Package) -> bool:
        """Store and unpack a checked package (once per hash); ``True`` if this call
        stored it (it was not there before)."""
        return await asyncio.to_thread(self._put, data, package)

    async def discard(self, checksum: str) -> None:
        """Remove a package that ``put`` just stored for a deploy that then failed."""
        def remove() -> None:
            (self._packages / f"{checksum}.zip").unlink(missing_ok=True)
            shutil.rmtree(self._unpacked / checksum, ignore_errors=True)

        await asyncio.to_thread(remove)

    async def fetch(self, checksum: str) -> str:
        """The package's unpacked folder, unpacking the stored zip first if it is missing.

        The first step of a cold start; a folder that exists costs one ``stat``.
        """
        dest = self._unpacked / checksum
        if dest.is_dir():
            return str(dest)
        zipped = self._packages / f"{checksum}.zip"
        try:
            data = await asyncio.to_thread(zipped.read_bytes)
        except FileNotFoundError:
            raise CodeMissing(f"code package {checksum} is missing from the code store") from None
        unpacked, _ = await asyncio.to_thread(self._unpack, data, checksum)
        return unpacked

    def _put(self, data: bytes, package: Package) -> bool:
        # Unpack first: a package that cannot be unpacked is not stored at all.
        zipped = self._packages / f"{package.checksum}.zip"
        if zipped.exists():
            self._unpack(data, package.checksum)
            return False
        dest, unpacked = self._unpack(data, package.checksum)
        try:
            fd, tmp = tempfile.mkstemp(dir=self._packages, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, zipped)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except BaseException as exc:
            if unpacked:
                shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise self._disk_full(exc, package.checksum) from exc
            raise
        return True

    def _disk_full(self, exc: OSError, checksum: str) -> DiskFull:
        log.error("The disk holding %s is full: code package %s was not stored (%s).",
                  self._root, checksum, exc)
        return DiskFull(str(self._root))

    def _unpack(self, data: bytes, checksum: str) -> tuple[str, bool]:
        """Unpack into a staging folder, then rename it into place (atomic, once per
        hash); the folder, and whether this call unpacked it."""
        dest = self._unpacked / checksum
        if dest.exists():
            return str(dest), False
        staging = ""
        try:
            staging = tempfile.mkdtemp(dir=self._unpacked, prefix=".unpack-")
            unpack(data, staging)
            os.chmod(staging, 0o755)
            os.rename(staging, dest)
        except BaseException as exc:
            if staging:
                shutil.rmtree(staging, ignore_errors=True)
            if not isinstance(exc, OSError):
                raise  # InvalidCodePackage: a damaged entry
            if dest.exists():  # another deploy of the same hash won the race
                return str(dest), False
            if is_disk_full(exc):
                raise self._disk_full(exc, checksum) from exc
            if exc.errno in _PACKAGE_ERRNOS:
                raise InvalidCodePackage(f"code package could not be unpacked: {exc}") from exc
            raise
        return str(dest), True
