"""Checking and unpacking code packages (zip), refusing anything that could escape.

Refused, each with a message that says why: not a zip, an entry with an absolute
path or ``..``, a symlink whose target leaves the package, more unpacked bytes
than the limit (a zip bomb) or a compression ratio over the limit.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import stat
import zipfile
from dataclasses import dataclass

from funclet.errors import InvalidCodePackage

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_unpacked: int
    max_ratio: int


@dataclass(frozen=True)
class Inspected:
    """What a valid package holds: its files (normalised paths) and sizes."""

    files: frozenset[str]
    unpacked_size: int


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _normalise(name: str) -> str:
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidCodePackage(f"code package entry '{name}' has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidCodePackage(f"code package entry '{name}' points outside the package")
    return "/".join(parts)


def inspect(data: bytes, limits: Limits) -> Inspected:
    """Check a package without unpacking it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidCodePackage(f"code.zipFile is not a valid zip archive ({exc})") from None
    with archive:
        files: set[str] = set()
        total = 0
        compressed = 0
        for info in archive.infolist():
            path = _normalise(info.filename)
            total += info.file_size
            compressed += info.compress_size
            if _is_symlink(info):
                target = archive.read(info).decode("utf-8", "replace")
                _check_link(path, target)
            if not info.is_dir() and path:
                files.add(path)
        if total > limits.max_unpacked:
            raise InvalidCodePackage(
                f"code package unpacks to {total} bytes, over the limit of "
                f"{limits.max_unpacked} bytes"
            )
        if total > _CHUNK and total / max(compressed, 1) > limits.max_ratio:
            raise InvalidCodePackage(
                f"code package compression ratio {total // max(compressed, 1)}:1 is over the "
                f"limit of {limits.max_ratio}:1 (a zip bomb?)"
            )
    return Inspected(frozenset(files), total)


def _check_link(path: str, target: str) -> None:
    if target.startswith("/"):
        raise InvalidCodePackage(f"symlink '{path}' points to an absolute path '{target}'")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise InvalidCodePackage(f"symlink '{path}' points outside the package ('{target}')")


def unpack(data: bytes, dest: str) -> None:
    """Unpack an inspected package into the empty folder ``dest``."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            path = _normalise(info.filename)
            if not path:
                continue
            target = os.path.join(dest, path)
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if _is_symlink(info):
                os.symlink(archive.read(info).decode("utf-8"), target)
                continue
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
