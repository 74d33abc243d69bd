"""Code packages: stored by sha256 in a local folder, unpacked once per hash."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from funclet.codestore.archive import Inspected, Limits, inspect, unpack
from funclet.errors import InvalidCodePackage, PayloadTooLarge

__all__ = ["CodeMissing", "CodeStore", "Package"]


class CodeMissing(FileNotFoundError):
    """A deployed function's package is not in the code store (deleted by hand?)."""


@dataclass(frozen=True)
class Package:
    checksum: str
    size: int
    files: frozenset[str]


class CodeStore:
    """``packages/<sha256>.zip`` is the stored object; ``unpacked/<sha256>/`` its files."""

    def __init__(self, root: Path, max_zipped: int, limits: Limits) -> None:
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

    async def put(self, data: bytes, package: Package) -> str:
        """Store and unpack a checked package (once per hash); returns its code folder."""
        return await asyncio.to_thread(self._put, data, package)

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
        return await asyncio.to_thread(self._unpack, data, checksum)

    def _put(self, data: bytes, package: Package) -> str:
        # Unpack first: a package that cannot be unpacked is not stored at all.
        dest = self._unpack(data, package.checksum)
        zipped = self._packages / f"{package.checksum}.zip"
        if not zipped.exists():
            fd, tmp = tempfile.mkstemp(dir=self._packages, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, zipped)
        return dest

    def _unpack(self, data: bytes, checksum: str) -> str:
        """Unpack into a staging folder, then rename it into place (atomic, once per hash)."""
        dest = self._unpacked / checksum
        if not dest.exists():
            staging = tempfile.mkdtemp(dir=self._unpacked, prefix=".unpack-")
            try:
                unpack(data, staging)
                os.chmod(staging, 0o755)
                os.rename(staging, dest)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if not dest.exists():  # else another deploy of the same hash won the race
                    raise InvalidCodePackage(f"code package could not be unpacked: {exc}") from exc
        return str(dest)
