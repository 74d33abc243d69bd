"""Invocation logs: the per-line cap, the tail returned with ``x-fc-log-type: Tail``,
and the live records followed by the console (``LiveLogs``)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

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


class LiveLogs:
    """Invocation records as this node records them, for those following them (the
    console's live logs). Each follower has a bounded queue: one that does not keep up
    loses records (counted, and told), never slows invocations or grows memory; there
    are at most ``max_followers`` at once (``follow`` refuses past that)."""

    def __init__(self, max_followers: int = 64, queue: int = 256) -> None:
        self._followers: set[Follower] = set()
        self._max = max_followers
        self._queue = queue

    def publish(self, record: dict[str, Any]) -> None:
        for follower in self._followers:
            if follower.function in (None, record["function_name"]):
                follower.put(record)

    def follow(self, function: str | None) -> Follower:
        if len(self._followers) >= self._max:
            raise TooManyFollowers(
                f"{self._max} live logs are followed on this node already; close one")
        follower = Follower(function, self._queue, self._followers.discard)
        self._followers.add(follower)
        return follower


class TooManyFollowers(Exception):
    pass


class Follower:
    """One reader of live logs (``function`` None: every function's); ``close`` when
    done."""

    def __init__(self, function: str | None, size: int,
                 on_close: Callable[[Follower], None]) -> None:
        self.function = function
        self.dropped = 0
        self._records: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self._on_close = on_close

    def put(self, record: dict[str, Any]) -> None:
        try:
            self._records.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next record, or None after ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self._records.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        self._on_close(self)
