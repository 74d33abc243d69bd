"""Function versions, their id counters and aliases; the qualifier an async task invokes,
the version an invocation or an instance ran.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_versions",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("code_checksum", sa.String(length=64), nullable=False),
        sa.Column("code_size", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "version_id"),
    )
    op.create_table(
        "function_counters",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.create_table(
        "aliases",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("alias_name", sa.String(length=128), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("additional_weight", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "alias_name"),
    )
    with op.batch_alter_table("async_tasks") as batch:
        batch.add_column(sa.Column("qualifier", sa.String(length=128), nullable=True))
    for table in ("invocations", "instances"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("version_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    for table in ("invocations", "instances"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("version_id")
    with op.batch_alter_table("async_tasks") as batch:
        batch.drop_column("qualifier")
    op.drop_table("aliases")
    op.drop_table("function_counters")
    op.drop_table("function_versions")
