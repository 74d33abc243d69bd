"""Async invoke configs per qualifier: ``async_configs`` (one per function) becomes
``async_invoke_configs`` (one per function and qualifier); the old ones are LATEST's.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "async_invoke_configs",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "qualifier"),
    )
    op.execute("INSERT INTO async_invoke_configs (function_name, qualifier, config, "
               "created_ms, modified_ms) SELECT function_name, 'LATEST', config, "
               "created_ms, modified_ms FROM async_configs")
    op.drop_table("async_configs")


def downgrade() -> None:
    op.create_table(
        "async_configs",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.execute("INSERT INTO async_configs SELECT function_name, config, created_ms, "
               "modified_ms FROM async_invoke_configs WHERE qualifier = 'LATEST'")
    op.drop_table("async_invoke_configs")
