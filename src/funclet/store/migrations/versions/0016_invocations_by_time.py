"""Invocations by time across functions (the console's invocation list, newest first).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invocations_started", "invocations", ["started_ms", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_invocations_started", "invocations")
