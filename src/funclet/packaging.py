"""Turning a folder into a code package (its ``requirements.txt`` installed beside it),
and reading its ``function.json``."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MANIFEST = "function.json"
REQUIREMENTS = "requirements.txt"
PACKAGE_JSON = "package.json"
PACKAGE_LOCK = "package-lock.json"
_HOW = b"pip --only-binary; npm --omit=dev"  # in the cache key: change it, rebuild
_SKIP_DIRS = {"__pycache__", ".git", ".venv", ".pytest_cache"}  # node_modules is code


def zip_dir(folder: Path, vendored: Path | None = None,
            beside: Sequence[tuple[str, Path]] = ()) -> bytes:
    """Zip a folder's files (not the manifest, caches or VCS folders), keeping modes;
    ``vendored`` (installed dependencies) goes in at the root beside them, and each
    ``(prefix, tree)`` of ``beside`` under its prefix."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        seen: set[str] = set()
        trees = [("", folder), *([("", vendored)] if vendored else []), *beside]
        for prefix, base in trees:
            for root, dirs, files in os.walk(base):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS
                                 and not (base is vendored and Path(root) == base
                                          and d == "bin"))
                for name in sorted(files):
                    path = Path(root) / name
                    rel = prefix + path.relative_to(base).as_posix()
                    if rel in (MANIFEST, ".complete") or name.endswith(".pyc") or rel in seen:
                        continue
                    seen.add(rel)
                    info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                    info.external_attr = (stat.S_IFREG | (path.stat().st_mode & 0o777)) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    return buf.getvalue()


class DependencyError(Exception):
    """``pip`` could not install a function's requirements."""


def dependency_cache() -> Path:
    """The one cache of installed dependencies, shared by ``funclet serve --examples``
    (``make run``) and ``funclet deploy``: ``$FUNCLET_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/funclet``, else ``~/.cache/funclet``; its ``deps/`` folder."""
    base = os.environ.get("FUNCLET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "funclet")
    return Path(base) / "deps"


def vendor_requirements(folder: Path, runtime: str, cache: Path) -> Path | None:
    """Install the folder's dependencies into a folder cached by their declaration:
    ``requirements.txt`` with pip, for ``runtime``'s Python (for a custom runtime, the
    Python funclet runs on); ``package.json`` with npm, unless the folder has its own
    ``node_modules``. None when there is nothing to install."""
    requirements = folder / REQUIREMENTS
    package = folder / PACKAGE_JSON
    pip = requirements.exists() and not runtime.startswith("nodejs")
    npm = package.exists() and not (folder / "node_modules").exists()
    if not pip and not npm:
        return None
    declared = b"".join(_declaration(p) for p in (requirements, package,
                                                  folder / PACKAGE_LOCK) if p.exists())
    key = hashlib.sha256(declared + runtime.encode() + _HOW).hexdigest()[:16]
    target = cache / key
    if (target / ".complete").exists():
        return target
    staging = cache / f"{key}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if pip:
            version = runtime.removeprefix("python") if runtime.startswith("python") else (
                f"{sys.version_info.major}.{sys.version_info.minor}")
            _run([sys.executable, "-m", "pip", "install", "--quiet",
                  "--disable-pip-version-check", "--no-compile", "--target", str(staging),
                  "--python-version", version, "--only-binary=:all:", "-r", str(requirements)],
                 f"pip could not install {requirements} for {runtime}")
        if npm:
            for name in (PACKAGE_JSON, PACKAGE_LOCK):
                if (folder / name).exists():
                    shutil.copy(folder / name, staging / name)
            # Install scripts run, as with any npm install: native addons build here
            # (aws-lambda-ric compiles its client this way, in about a minute).
            _run(["npm", "install", "--omit=dev", "--no-audit", "--no-fund",
                  "--loglevel=error", "--prefix", str(staging)],
                 f"npm could not install the dependencies of {package}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


# What of a package.json decides what npm installs (its name, version or description
# do not): two functions that declare the same share one cached install.
_NPM_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies", "overrides",
               "bundleDependencies", "bundledDependencies", "workspaces", "scripts")


def _declaration(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name != PACKAGE_JSON:
        return raw
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # (npm says what is wrong with it)
    if not isinstance(doc, dict):
        return raw
    return orjson.dumps({k: doc[k] for k in _NPM_FIELDS if k in doc},
                        option=orjson.OPT_SORT_KEYS)


def _run(argv: list[str], failure: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True)
    except OSError as exc:
        raise DependencyError(f"{failure}: {exc}") from None
    if done.returncode != 0:
        raise DependencyError(f"{failure}: {(done.stderr or done.stdout).strip()[-800:]}")


@dataclass
class Manifest:
    """A ``function.json``: CreateFunction's fields, plus what is set beside the
    function — its ``reservedConcurrency`` and its ``triggers`` (CreateTrigger bodies)."""

    function: dict[str, Any]
    reserved_concurrency: int | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)


def read_full_manifest(folder: Path) -> Manifest:
    body = read_manifest(folder)
    reserved = body.pop("reservedConcurrency", None)
    triggers = body.pop("triggers", [])
    if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
        raise ValueError(f"{folder / MANIFEST}: 'triggers' must be a list of objects")
    return Manifest(body, reserved, triggers)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The fields an example folder declares in ``function.json``."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data
