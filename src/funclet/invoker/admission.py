"""Admission: may this invocation run now? One seam, ``acquire``/``release``.

This revision admits every invocation and only counts what runs; the account
and per-function limits, with their FIFO wait queue, come behind this same seam.
"""

from __future__ import annotations

from collections import Counter


class Admission:
    """Counts running invocations, per function and in all."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self.total = 0

    async def acquire(self, function_name: str) -> float:
        """Admit one invocation; returns how long it waited, in ms."""
        self.running[function_name] += 1
        self.total += 1
        return 0.0

    def release(self, function_name: str) -> None:
        self.running[function_name] -= 1
        if not self.running[function_name]:
            del self.running[function_name]
        self.total -= 1
