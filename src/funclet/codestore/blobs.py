"""Where code packages are kept, by name (``packages/<sha256>.zip``): a local folder (the
default) or an S3-compatible bucket shared by a cluster's nodes (``s3://bucket/prefix``).

Both are written once per name and never changed: a package's name is its hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from funclet.errors import DiskFull, is_disk_full

log = logging.getLogger(__name__)


class CodeStoreUnusable(RuntimeError):
    """The code store named in the settings cannot be used (a bad URL, no bucket)."""


class Blobs(Protocol):
    """Named, immutable objects."""

    where: str  # for messages: the folder or s3://bucket/prefix

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def exists(self, name: str) -> bool: ...
    async def get(self, name: str) -> bytes | None: ...  # None: not there
    async def put(self, name: str, data: bytes) -> None: ...
    async def delete(self, name: str) -> None: ...
    async def health(self) -> str | None: ...  # None when reachable; else why not


def open_blobs(location: str, default: Path) -> Blobs:
    """The store ``location`` names: ``s3://bucket[/prefix]``, a folder, or ``default``."""
    if not location:
        return LocalBlobs(default)
    if location.startswith("s3://"):
        parts = urlsplit(location)
        if not parts.netloc:
            raise CodeStoreUnusable(f"code_store {location!r} names no bucket "
                                    "(s3://bucket/prefix)")
        return S3Blobs(parts.netloc, parts.path.strip("/"))
    if "://" in location:
        raise CodeStoreUnusable(f"code_store {location!r} must be s3://bucket/prefix or a "
                                "folder")
    return LocalBlobs(Path(location))


class LocalBlobs:
    """Files in a folder, each written to a temporary name and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.where = str(self.root)

    async def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        pass

    async def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    async def get(self, name: str) -> bytes | None:
        try:
            return await asyncio.to_thread((self.root / name).read_bytes)
        except FileNotFoundError:
            return None

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    def _put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if is_disk_full(exc):
                log.error("The disk holding %s is full: %s was not stored (%s).",
                          self.root, name, exc)
                raise DiskFull(str(self.root)) from exc
            raise

    async def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    async def health(self) -> str | None:
        return None if self.root.is_dir() else f"{self.root} is not a folder"


class S3Blobs:
    """Objects in an S3-compatible bucket, through aiobotocore. The endpoint, region and
    credentials are the standard AWS ones (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, profiles, …), read by botocore."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.where = f"s3://{bucket}/{prefix}".rstrip("/")
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        from aiobotocore.session import get_session
        from botocore.config import Config

        config = Config(retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5, read_timeout=60)
        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", config=config))
        problem = await self.health()
        if problem is not None:
            await self.close()
            raise CodeStoreUnusable(problem)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self._client.head_object(Bucket=self.bucket, Key=self.prefix + name)
            return True
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise

    async def get(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            answer = await self._client.get_object(Bucket=self.bucket, Key=self.prefix + name)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        async with answer["Body"] as body:
            return bytes(await body.read())

    async def put(self, name: str, data: bytes) -> None:
        await self._client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)

    async def delete(self, name: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=self.prefix + name)

    async def health(self) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404:
                return f"the code store's bucket {self.bucket} does not exist"
            return f"the code store {self.where} cannot be used: {exc}"
        except (BotoCoreError, OSError) as exc:
            return f"the code store {self.where} cannot be reached: {exc}"
        return None


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
