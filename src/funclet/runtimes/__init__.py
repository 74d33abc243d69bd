"""The runtimes funclet can run, found on this machine, named as FC names them.

Code in this package runs *inside* instances (``python/bootstrap.py``) or is the
protocol both sides share (``protocol.py``); this module only finds interpreters.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PYTHON_BOOTSTRAP = Path(__file__).parent / "python" / "bootstrap.py"
_PYTHON_MINORS = range(9, 15)


@dataclass(frozen=True)
class Runtime:
    name: str
    language: str
    interpreter: str

    def zygote_argv(self) -> list[str]:
        # Isolated, no site-packages, no bytecode written into the code package.
        return [self.interpreter, "-I", "-S", "-B", str(PYTHON_BOOTSTRAP)]


def discover(overrides: dict[str, str] | None = None) -> dict[str, Runtime]:
    """Python runtimes of this machine (``python3.N``), plus configured overrides."""
    found: dict[str, Runtime] = {}
    current = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = getattr(sys, "_base_executable", sys.executable)
    found[current] = Runtime(current, "python", os.path.realpath(base))
    for minor in _PYTHON_MINORS:
        name = f"python3.{minor}"
        if name in found:
            continue
        for candidate in _candidates(minor):
            if os.access(candidate, os.X_OK):
                found[name] = Runtime(name, "python", candidate)
                break
    for name, path in (overrides or {}).items():
        found[name] = Runtime(name, "python", path)
    return dict(sorted(found.items(), key=lambda kv: _version_key(kv[0])))


def _version_key(name: str) -> tuple[str, tuple[int, ...]]:
    """``python3.9`` before ``python3.10``."""
    prefix = name.rstrip("0123456789.")
    digits = name[len(prefix):]
    return prefix, tuple(int(p) for p in digits.split(".") if p.isdigit())


def _candidates(minor: int) -> list[str]:
    exe = f"python3.{minor}"
    paths = [f"/usr/bin/{exe}", f"/usr/local/bin/{exe}"]
    pyenv = os.path.expanduser("~/.pyenv/versions")
    paths += sorted(glob.glob(f"{pyenv}/3.{minor}.*/bin/{exe}"), reverse=True)
    return paths
