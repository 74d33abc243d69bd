"""Identifiers in FC's shapes."""

from __future__ import annotations

import os


def _random_id(prefix: str) -> str:
    raw = os.urandom(14).hex()  # one read of the kernel's randomness, not three
    return f"{prefix}-{raw[:8]}-{raw[8:16]}-{raw[16:]}"


def new_request_id() -> str:
    """``1-6f1c2a4b-0d9e8f7a-3b2c1d0e9f8a``, as FC's request ids look."""
    return _random_id("1")


def new_instance_id() -> str:
    """``c-…``, as FC's instance ids look."""
    return _random_id("c")
