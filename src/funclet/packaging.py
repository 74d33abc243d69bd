"""Turning a folder into a code package, and reading an example's ``function.json``."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import orjson

MANIFEST = "function.json"
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache"}


def zip_dir(folder: Path) -> bytes:
    """Zip a folder's files (not the manifest, caches or VCS folders), keeping modes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            for name in sorted(files):
                path = Path(root) / name
                rel = path.relative_to(folder).as_posix()
                if rel == MANIFEST or name.endswith(".pyc"):
                    continue
                info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | (path.stat().st_mode & 0o777)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return buf.getvalue()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The CreateFunction fields an example folder declares in ``function.json``."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data
