"""Code packages: stored by sha256 (a local folder or an S3 bucket), unpacked once per
hash into each node's local cache."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import crcmod

from funclet.codestore.archive import Inspected, Limits, inspect, unpack
from funclet.codestore.blobs import Blobs, CodeStoreUnusable, LocalBlobs, open_blobs
from funclet.errors import (
    CodeStoreUnavailable,
    DiskFull,
    InvalidCodePackage,
    PayloadTooLarge,
    is_disk_full,
)

__all__ = ["CodeMissing", "CodeStore", "CodeStoreUnusable", "Package", "open_blobs"]
T = TypeVar("T")
log = logging.getLogger(__name__)
# What unpacking a package's own names and structure can make the OS refuse: the
# client's doing (any other OSError is the host's).
_PACKAGE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.ELOOP,
                             errno.EEXIST, errno.ENOTDIR, errno.EISDIR})


class CodeMissing(FileNotFoundError):
    """A deployed function's package is not in the code store (deleted by hand?)."""


@dataclass(frozen=True)
class Package:
    checksum: str  # sha256, hex: the store's key
    size: int
    files: frozenset[str]
    crc64: str = ""  # FC's codeChecksum (``crc64``)


_CRC64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True)


def crc64(data: bytes) -> str:
    """FC's ``codeChecksum``: CRC-64/ECMA-182 of the zip, as OSS computes it (its
    ``x-oss-hash-crc64ecma``), in decimal; deploy tools compare it with their own."""
    return str(_CRC64(data))


class CodeStore:
    """``packages/<sha256>.zip`` is the stored object, in ``blobs`` (this folder, or a
    bucket the nodes share); ``unpacked/<sha256>/`` its files, in this node's cache
    (under ``root``), made once per hash: at deploy on the node that takes it, at the
    first cold start on any other.

    A write that fails (a damaged zip, a full disk, an unreachable bucket) leaves
    nothing behind: no staging folder, no partial file, no object.
    """

    def __init__(self, root: Path, max_zipped: int, limits: Limits,
                 blobs: Blobs | None = None) -> None:
        self._root = root
        self._unpacked = root / "unpacked"
        self._unpacked.mkdir(parents=True, exist_ok=True)
        self.blobs: Blobs = blobs or LocalBlobs(root)
        self._max_zipped = max_zipped
        self._limits = limits

    async def open(self) -> None:
        """Reach the store (``CodeStoreUnusable`` if it cannot be used)."""
        await self.blobs.open()

    async def close(self) -> None:
        await self.blobs.close()

    async def health(self) -> str | None:
        """None when the store answers (within 2 s); else why not."""
        try:
            async with asyncio.timeout(2):
                return await self.blobs.health()
        except TimeoutError:
            return f"the code store {self.blobs.where} does not answer"

    def check(self, data: bytes) -> Package:
        """Validate a package; raises ``InvalidCodePackage``. Stores nothing."""
        if len(data) > self._max_zipped:
            raise PayloadTooLarge(
                f"code package is {len(data)} bytes zipped, over the limit of "
                f"{self._max_zipped} bytes"
            )
        inspected: Inspected = inspect(data, self._limits)
        return Package(hashlib.sha256(data).hexdigest(), len(data), inspected.files,
                       crc64(data))

    async def put(self, data: bytes, package: Package) -> bool:
        """Store and unpack a checked package (once per hash); ``True`` if this call
        stored it (it was not there before)."""
        # Unpack first: a package that cannot be unpacked is not stored at all.
        dest, unpacked = await asyncio.to_thread(self._unpack, data, package.checksum)
        name = _name(package.checksum)
        try:
            if await self._reach(self.blobs.exists(name)):
                return False
            await self._reach(self.blobs.put(name, data))
        except BaseException:
            if unpacked:
                await asyncio.to_thread(shutil.rmtree, dest, True)
            raise
        return True

    async def discard(self, checksum: str) -> None:
        """Remove a package that ``put`` just stored for a deploy that then failed."""
        with contextlib.suppress(CodeStoreUnavailable):
            await self._reach(self.blobs.delete(_name(checksum)))
        await asyncio.to_thread(shutil.rmtree, self._unpacked / checksum, True)

    async def package(self, checksum: str) -> bytes | None:
        """The stored zip itself (GetFunctionCode's download), or None."""
        return await self._reach(self.blobs.get(_name(checksum)))

    async def fetch(self, checksum: str) -> str:
        """The package's unpacked folder, unpacking the stored zip first if this node has
        not yet (``CodeMissing``: it is not in the store; ``CodeStoreUnavailable``: the
        store cannot be reached).

        The first step of a cold start; a folder that exists costs one ``stat``.
        """
        dest = self._unpacked / checksum
        if dest.is_dir():
            return str(dest)
        data = await self._reach(self.blobs.get(_name(checksum)))
        if data is None:
            raise CodeMissing(f"code package {checksum} is missing from the code store "
                              f"{self.blobs.where}")
        if hashlib.sha256(data).hexdigest() != checksum:
            raise CodeMissing(f"code package {checksum} in {self.blobs.where} is damaged "
                              "(its sha256 differs)")
        unpacked, _ = await asyncio.to_thread(self._unpack, data, checksum)
        return unpacked

    async def _reach(self, call: Awaitable[T]) -> T:
        """A call to the store; what breaks on the way is ``CodeStoreUnavailable``."""
        try:
            return await call
        except (DiskFull, CodeStoreUnavailable):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise
            log.error("The code store %s failed: %s", self.blobs.where, exc)
            raise CodeStoreUnavailable(self.blobs.where, exc) from exc

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


def _name(checksum: str) -> str:
    return f"packages/{checksum}.zip"
