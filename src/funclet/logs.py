"""Invocation logs: the per-line cap and the tail returned with ``x-fc-log-type: Tail``."""

from __future__ import annotations

import base64

MAX_LINE = 32 * 1024
TAIL_BYTES = 4 * 1024
_MARKER = " [funclet: line cut, it exceeded 32 KB]"


def clip_lines(log: str, max_line: int = MAX_LINE) -> str:
    """Cut every line longer than ``max_line`` bytes, marking the cut."""
    if len(log) <= max_line:
        return log
    out = []
    for line in log.split("\n"):
        raw = line.encode("utf-8", "replace")
        if len(raw) > max_line:
            line = raw[:max_line].decode("utf-8", "ignore") + _MARKER
        out.append(line)
    return "\n".join(out)


def tail(log: str) -> str:
    """The last 4 KB of a log, base64, as FC's ``x-fc-log-result``."""
    raw = clip_lines(log).encode("utf-8", "replace")[-TAIL_BYTES:]
    return base64.b64encode(raw).decode("ascii")
