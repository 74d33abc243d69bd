"""Checking and unpacking code packages (zip), refusing anything that could escape.

Refused, each with a message that says why: not a zip (or a truncated one), an entry
with an absolute path or ``..``, a symlink whose target leaves the package, is empty,
holds NUL or is not UTF-8, more unpacked bytes than the limit (a zip bomb) or a
compression ratio over the limit, an encrypted entry, a compression method other than
``METHODS``, and (while unpacking) data that does not decompress or fails its CRC.
"""

from __future__ import annotations

import io
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from funclet.errors import InvalidCodePackage

_CHUNK = 1 << 20
# What funclet unpacks: FC's stored and deflate, and what Python's zipfile also reads.
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
           zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_OTHER_METHODS = {9: "deflate64", 93: "zstd", 95: "xz", 97: "wavpack", 98: "ppmd",
                  99: "WinZip AES encryption"}
# What reading a damaged entry raises: a bad CRC or header (BadZipFile), bad deflate
# (zlib.error), cut-off data (EOFError), bad bzip2 (OSError), bad lzma (LZMAError).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, lzma.LZMAError,
                NotImplementedError, RuntimeError, ValueError)


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
    except (zipfile.BadZipFile, ValueError, NotImplementedError, EOFError) as exc:
        # (NotImplementedError: "zip file version 63.0", a newer format than Python's)
        raise InvalidCodePackage(f"code.zipFile is not a valid zip archive ({exc})") from None
    with archive:
        kinds: dict[str, str] = {}
        links: dict[str, str] = {}
        total = 0
        compressed = 0
        for info in archive.infolist():
            path = _normalise(info.filename)
            total += info.file_size
            compressed += info.compress_size
            if not path:
                continue
            kind = "symlink" if _is_symlink(info) else "dir" if info.is_dir() else "file"
            if path in kinds and not (kind == "dir" == kinds[path]):
                raise InvalidCodePackage(f"code package has '{path}' more than once")
            kinds[path] = kind
            _check_method(info, path)
            if kind == "symlink" and info.file_size <= 4096:
                links[path] = _link_target(archive, info, path)
            elif kind == "symlink":
                raise InvalidCodePackage(f"symlink '{path}' has a target over 4096 bytes")
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
    for path in kinds:
        for parent in _parents(path):
            if kinds.get(parent, "dir") != "dir":
                raise InvalidCodePackage(
                    f"code package entry '{path}' is inside '{parent}', which is a "
                    f"{kinds[parent]}, not a folder"
                )
    for path, target in links.items():
        _check_link(path, target, kinds)
    return Inspected(frozenset(p for p, k in kinds.items() if k != "dir"), total)


def _check_method(info: zipfile.ZipInfo, path: str) -> None:
    if info.flag_bits & 0x1:
        raise InvalidCodePackage(
            f"code package entry '{path}' is encrypted: funclet unpacks only unencrypted zips")
    if info.compress_type not in METHODS:
        name = _OTHER_METHODS.get(info.compress_type, "unknown")
        raise InvalidCodePackage(
            f"code package entry '{path}' uses compression method {info.compress_type} "
            f"({name}); funclet unpacks {', '.join(METHODS.values())}")


def _link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> str:
    data = b"".join(_chunks(archive, info, path))
    try:
        target = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCodePackage(f"symlink '{path}' has a target that is not UTF-8") from None
    if not target:
        raise InvalidCodePackage(f"symlink '{path}' has an empty target")
    if "\0" in target:
        raise InvalidCodePackage(f"symlink '{path}' has a target holding a NUL byte")
    return target


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> Iterator[bytes]:
    """An entry's data, checked against its CRC; damage is ``InvalidCodePackage``."""
    try:
        with archive.open(info) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except _READ_ERRORS as exc:
        raise InvalidCodePackage(
            f"code package entry '{path}' cannot be read, the zip is damaged: "
            f"{type(exc).__name__}: {exc}") from None


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _check_link(path: str, target: str, kinds: dict[str, str]) -> None:
    """A link must resolve inside the package without passing through another link."""
    if target.startswith("/"):
        raise InvalidCodePackage(f"symlink '{path}' points to an absolute path '{target}'")
    stack = path.split("/")[:-1]
    parts = [p for p in target.split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        if part == "..":
            if not stack:
                raise InvalidCodePackage(
                    f"symlink '{path}' points outside the package ('{target}')"
                )
            stack.pop()
            continue
        stack.append(part)
        if i < len(parts) - 1 and kinds.get("/".join(stack)) == "symlink":
            raise InvalidCodePackage(
                f"symlink '{path}' goes through another symlink ('{target}')"
            )


def unpack(data: bytes, dest: str) -> None:
    """Unpack an inspected package into the empty folder ``dest``.

    Folders and files first, symlinks last, files opened with ``O_NOFOLLOW | O_EXCL``:
    nothing is ever written through a link. A damaged entry raises
    ``InvalidCodePackage``; an ``OSError`` is the disk's (the caller removes ``dest``).
    """
    links: list[tuple[str, str]] = []
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
                links.append((_link_target(archive, info, path), target))
                continue
            mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(archive, info, path):
                    out.write(chunk)
            os.chmod(target, mode)
    for link_target, link in links:
        os.symlink(link_target, link)
