"""Layers and their versions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("layer_name", sa.String(length=128), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("public", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("layer_name"),
    )
    op.create_table(
        "layer_versions",
        sa.Column("layer_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("compatible_runtimes", sa.JSON(), nullable=False),
        sa.Column("license", sa.Text(), nullable=False),
        sa.Column("code_checksum", sa.String(length=64), nullable=False),
        sa.Column("code_size", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("deleted_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("layer_name", "version"),
    )


def downgrade() -> None:
    op.drop_table("layer_versions")
    op.drop_table("layers")
