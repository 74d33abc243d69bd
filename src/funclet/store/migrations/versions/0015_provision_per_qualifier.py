"""Provision configs per qualifier: ``provision_configs`` (one per function) becomes
``provision_targets`` (one per function and qualifier); the old ones are LATEST's.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provision_targets",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "qualifier"),
    )
    op.execute("INSERT INTO provision_targets (function_name, qualifier, target) "
               "SELECT function_name, 'LATEST', target FROM provision_configs")
    op.drop_table("provision_configs")


def downgrade() -> None:
    op.create_table(
        "provision_configs",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.execute("INSERT INTO provision_configs SELECT function_name, target FROM "
               "provision_targets WHERE qualifier = 'LATEST'")
    op.drop_table("provision_targets")
