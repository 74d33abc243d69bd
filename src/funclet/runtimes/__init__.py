"""The runtimes funclet can run, found on this machine, named as FC names them.

Code in this package runs *inside* instances (``python/bootstrap.py``,
``node/bootstrap.js``) or is the protocol both sides share (``protocol.py``); this
module only finds interpreters. Python instances are forked from a zygote running
their interpreter; an instance of any other language is forked from a Python zygote,
sandboxed, and then becomes (``exec``) that language's program.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYTHON_BOOTSTRAP = Path(__file__).parent / "python" / "bootstrap.py"
NODE_BOOTSTRAP = Path(__file__).parent / "node" / "bootstrap.js"
_PYTHON_MINORS = range(9, 15)
_NODE_PATHS = ("/usr/bin/node", "/usr/local/bin/node")
# FC's names for a runtime that is an HTTP server, and Lambda's for the Runtime API.
CUSTOM_HTTP = ("custom", "custom.debian10", "custom.debian11", "custom.debian12")
CUSTOM_LAMBDA = ("custom.lambda", "provided", "provided.al2", "provided.al2023")


@dataclass(frozen=True)
class Runtime:
    name: str
    language: str  # python | nodejs | custom (an HTTP server) | lambda (the Runtime API)
    interpreter: str
    zygote: str = ""  # not Python: the Python runtime whose zygote forks its instances

    def zygote_argv(self) -> list[str]:
        # Isolated, no site-packages, no bytecode written into the code package.
        return [self.interpreter, "-I", "-S", "-B", str(PYTHON_BOOTSTRAP)]

    @property
    def prestarts(self) -> bool:
        """Instances are started ahead, then specialised (no zygote can fork them warm)."""
        return self.language == "nodejs"

    def exec_argv(self, memory_mb: int | None) -> list[str] | None:
        """The program an instance becomes once sandboxed (None: Python, forked).
        ``memory_mb`` None: started ahead, before its function (and memory) is known."""
        if self.language == "nodejs":
            heap = [] if memory_mb is None else [
                # The heap within the function's memory, leaving room for the rest.
                f"--max-old-space-size={max(32, memory_mb * 3 // 4)}"]
            return [self.interpreter, *heap, str(NODE_BOOTSTRAP)]
        return None

    @property
    def invoke_ahead(self) -> bool:
        """The invocation that causes a cold start may be sent right behind the spec:
        the runtime reads it only once it is ready (Python's and Node.js's bootstraps),
        and takes its deadline from when it starts it (``deadlineIn``)."""
        return self.language in ("python", "nodejs")

    @property
    def adapter(self) -> str | None:
        """For a custom runtime, how the instance drives the user's program."""
        return {"custom": "http", "lambda": "lambda"}.get(self.language)

    def handler_files(self, handler: str) -> tuple[str, ...]:
        """Files of the code package, one of which must hold ``handler`` (none: the
        handler is the program's business)."""
        module = handler.rpartition(".")[0]
        if self.language == "custom":
            return ()
        if self.language == "lambda":
            return ("bootstrap",)
        if self.language == "nodejs":
            return (f"{module}.js", f"{module}.mjs", f"{module}.cjs")
        module = module.replace(".", "/")
        return (f"{module}.py", f"{module}/__init__.py")


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
    for name in CUSTOM_HTTP:
        found[name] = Runtime(name, "custom", found[current].interpreter, zygote=current)
    for name in CUSTOM_LAMBDA:
        found[name] = Runtime(name, "lambda", found[current].interpreter, zygote=current)
    for path in _NODE_PATHS:
        major = _node_major(path)
        if major and f"nodejs{major}" not in found:
            found[f"nodejs{major}"] = Runtime(f"nodejs{major}", "nodejs", path, zygote=current)
    return dict(sorted(found.items(), key=lambda kv: _version_key(kv[0])))


def _node_major(path: str) -> int | None:
    if not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip().lstrip("v").split(".")[0]
    return int(version) if version.isdigit() else None


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
