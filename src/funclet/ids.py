"""Identifiers in FC's shapes."""

from __future__ import annotations

import secrets


def new_request_id() -> str:
    """``1-6f1c2a4b-0d9e8f7a-3b2c1d0e9f8a``, as FC's request ids look."""
    return f"1-{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(6)}"


def new_instance_id() -> str:
    """``c-…``, as FC's instance ids look."""
    return f"c-{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(6)}"
