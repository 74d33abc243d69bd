"""Layers (FC's CreateLayerVersion, ...): shared files a function names by ARN, in order,
up to five; an instance sees them merged, read-only, at ``/opt``.

A layer version's package is stored and unpacked like a function's (by sha256, once
per node). The merged folder of a function's list of layers is made once per node and
list (hard links into the unpacked layers), under ``<root>/<sha256 of the list>``; one
that no pool of this node uses any more (the function changed its layers, or is gone)
is removed by ``collect`` (it is made again if needed), and all of them at start. As FC
merges them, an earlier layer's file wins over a later one's: the list is laid down
from its last layer to its first (Lambda does the opposite).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from funclet.codestore import CodeStore
from funclet.errors import InvalidArgument, InvalidCodePackage, LayerNotFound
from funclet.store.layers import LayerRow, LayerStore

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ARN_RE = re.compile(r"^acs:fc:([^:/]*):([^:/]*):layers/([A-Za-z0-9_-]{1,64})/versions/"
                    r"([1-9][0-9]{0,9})$")
log = logging.getLogger(__name__)


class Layers:
    def __init__(self, store: LayerStore, code: CodeStore, region: str, account_id: str,
                 root: Path) -> None:
        self._store = store
        self._code = code
        self._region = region
        self._account = account_id
        self._root = root
        self._merging: dict[str, asyncio.Lock] = {}
        self._rows: dict[tuple[str, int], LayerRow] = {}  # immutable: cached once read
        self._folders: dict[tuple[str, ...], Path] = {}  # each merged list's folder

    def arn(self, name: str, version: int) -> str:
        return f"acs:fc:{self._region}:{self._account}:layers/{name}/versions/{version}"

    # -- the API --------------------------------------------------------------------

    async def create_version(self, name: str, body: dict[str, Any]) -> LayerRow:
        _check_name(name)
        runtimes = body.get("compatibleRuntime") or []
        if not isinstance(runtimes, list) or not all(isinstance(r, str) for r in runtimes):
            raise InvalidArgument("compatibleRuntime must be a list of runtime names")
        texts = {key: body.get(key) or "" for key in ("description", "license")}
        for key, value in texts.items():
            if not isinstance(value, str) or len(value) > 256:
                raise InvalidArgument(f"{key} must be a string of at most 256 characters")
        code = body.get("code")
        if not isinstance(code, dict) or not isinstance(code.get("zipFile"), str) or not (
                code["zipFile"]):
            raise InvalidArgument("code.zipFile is required: a base64-encoded zip archive")
        try:
            data = base64.b64decode(code["zipFile"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCodePackage("code.zipFile is not valid base64") from None
        package = self._code.check(data)
        await self._code.put(data, package)  # (kept: other versions may share the hash)
        return await self._store.create(name, texts["description"], runtimes,
                                        texts["license"], package.checksum, package.size,
                                        int(time.time() * 1000), package.crc64)

    async def get(self, name: str, version: str) -> LayerRow:
        row = None
        if NAME_RE.fullmatch(name) and re.fullmatch(r"[1-9][0-9]{0,9}", version):
            row = await self._store.get(name, int(version))
        if row is None:
            raise LayerNotFound(f"layer '{name[:64]}' has no version '{version[:16]}'")
        return row

    async def by_arn(self, arn: str) -> LayerRow:
        match = ARN_RE.fullmatch(arn)
        if match is None or match.group(1, 2) != (self._region, self._account):
            raise LayerNotFound(f"no layer version has the ARN '{arn[:200]}'")
        return await self.get(match.group(3), match.group(4))

    async def page(self, prefix: str, after: str, limit: int,
                   public_only: bool) -> list[LayerRow]:
        return await self._store.latest(prefix, after, limit, public_only)

    async def versions(self, name: str, start: int, limit: int) -> list[LayerRow]:
        rows = await self._store.versions(name, start, limit)
        if not rows and start <= 1:
            raise LayerNotFound(f"layer '{name[:64]}' does not exist")
        return rows

    async def delete(self, name: str, version: str) -> None:
        """The version is gone from the API; functions that use it go on running it."""
        await self.get(name, version)
        await self._store.delete(name, int(version), int(time.time() * 1000))

    async def set_public(self, name: str, public: bool) -> None:
        _check_name(name)
        if not await self._store.set_public(name, public):
            raise LayerNotFound(f"layer '{name}' does not exist")

    # -- functions' layers ----------------------------------------------------------

    async def check(self, arns: tuple[str, ...], runtime: str) -> None:
        """At deploy: each layer must exist (not deleted) and take the function's
        runtime (when it names runtimes); 400 naming the first that does not."""
        for arn in arns:
            match = ARN_RE.fullmatch(arn)
            row = None
            if match is not None and match.group(1, 2) == (self._region, self._account):
                row = await self._store.get(match.group(3), int(match.group(4)))
            if row is None:
                raise InvalidArgument(f"layers: layer version '{arn[:200]}' does not exist")
            if row.compatible_runtimes and runtime not in row.compatible_runtimes:
                raise InvalidArgument(
                    f"layers: layer version '{arn}' is for "
                    f"{', '.join(row.compatible_runtimes)}, not {runtime}")

    async def sizes(self, arns: tuple[str, ...]) -> dict[str, int]:
        """Each layer's package size (GetFunction's ``layers``), 0 if unknown."""
        out = {}
        for arn in arns:
            row = await self._row(arn)
            out[arn] = row.code_size if row else 0
        return out

    async def merged(self, arns: tuple[str, ...]) -> str:
        """The folder an instance mounts at /opt: the layers merged in order (made once)."""
        rows = [await self._row(arn) for arn in arns]
        if any(r is None for r in rows):
            missing = next(a for a, r in zip(arns, rows, strict=True) if r is None)
            raise LayerNotFound(f"layer version '{missing}' is not in the store")
        checksums = [r.code_checksum for r in rows if r is not None]
        key = hashlib.sha256("\n".join(["first wins", *checksums]).encode()).hexdigest()
        dest = self._root / key
        self._folders[arns] = dest
        if dest.is_dir():
            return str(dest)
        try:
            async with self._merging.setdefault(key, asyncio.Lock()):
                if not dest.is_dir():
                    sources = [await self._code.fetch(c) for c in checksums]
                    await asyncio.to_thread(_merge, sources[::-1], dest)  # the first wins
        finally:
            self._merging.pop(key, None)
        return str(dest)

    def clear(self) -> None:
        """At start, before any instance: no merged folder is in use."""
        shutil.rmtree(self._root, ignore_errors=True)

    async def collect(self, in_use: set[tuple[str, ...]]) -> int:
        """Remove the merged folders of layer lists that no pool uses (``in_use``: the
        lists of every pool's version, draining ones included: their instances still
        have the folder mounted). Returns how many went."""
        gone = [(arns, path) for arns, path in self._folders.items() if arns not in in_use]
        for arns, path in gone:
            del self._folders[arns]
            if path not in self._folders.values():  # (two lists, one folder: never)
                await asyncio.to_thread(shutil.rmtree, path, True)
        return len(gone)

    async def collect_forever(self, in_use: Callable[[], set[tuple[str, ...]]],
                              interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.collect(in_use())
            except Exception as exc:  # the next round tries again
                log.warning("Removing unused merged layers failed: %s", exc)

    async def _row(self, arn: str) -> LayerRow | None:
        match = ARN_RE.fullmatch(arn)
        if match is None:
            return None
        key = (match.group(3), int(match.group(4)))
        row = self._rows.get(key)
        if row is None:
            row = await self._store.get(*key, deleted=True)
            if row is not None:
                self._rows[key] = row
        return row


def _check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(f"layer name '{name[:64]}' is invalid: 1-64 letters, digits, "
                              "'_' and '-'")


def _merge(sources: list[str], dest: Path) -> None:
    """Hard-link each source's files into a new folder, later sources over earlier ones
    (the caller passes a function's layers last first);
    the folder appears whole (renamed into place) or not at all."""
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o755)
    try:
        for source in sources:
            for folder, dirs, files in os.walk(source):
                rel = os.path.relpath(folder, source)
                target = staging / rel if rel != "." else staging
                for name in dirs:
                    path = target / name
                    if os.path.islink(os.path.join(folder, name)):
                        _replace(path)
                        os.symlink(os.readlink(os.path.join(folder, name)), path)
                    elif not path.is_dir() or path.is_symlink():
                        _replace(path)
                        path.mkdir(mode=0o755)
                for name in files:
                    src, path = os.path.join(folder, name), target / name
                    _replace(path)
                    if os.path.islink(src):
                        os.symlink(os.readlink(src), path)
                    else:
                        try:
                            os.link(src, path)
                        except OSError:  # another file system: a copy
                            shutil.copy2(src, path)
        try:
            os.rename(staging, dest)
        except OSError:
            if not dest.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # made meanwhile: that one stands
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(path: Path) -> None:
    """Make room at ``path`` for a later layer's entry."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
