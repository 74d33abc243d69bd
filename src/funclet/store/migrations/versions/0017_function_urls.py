"""Lambda's Function URLs: one per function and qualifier, served at /lambda-url/{id}/.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_urls",
        sa.Column("url_id", sa.String(length=40), nullable=False),
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("url_id"),
    )
    op.create_index("uq_function_urls_target", "function_urls", ["function_name", "qualifier"],
                    unique=True)


def downgrade() -> None:
    op.drop_table("function_urls")
