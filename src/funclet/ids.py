"""Identifiers in FC's shapes."""

from __future__ import annotations

import os
import time


def _time_ordered_id(prefix: str) -> str:
    """``{prefix}-{seconds since the epoch, 8 hex digits}-{80 random bits}``: the shape
    of FC's (and X-Ray's) ids, whose first group is the time they were made. Ids made
    later sort after: the records' primary-key index grows at its end, where random ids
    wrote a page anywhere in it for every record (insert cost and WAL grew with the
    table)."""
    raw = os.urandom(10).hex()  # one read of the kernel's randomness
    return f"{prefix}-{int(time.time()):08x}-{raw[:8]}-{raw[8:]}"


def new_request_id() -> str:
    """``1-6752f1a0-0d9e8f7a-3b2c1d0e9f8a``, as FC's request ids look."""
    return _time_ordered_id("1")


def new_instance_id() -> str:
    """``c-…``, as FC's instance ids look."""
    return _time_ordered_id("c")
