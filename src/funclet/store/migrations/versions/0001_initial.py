"""The schema as funclet had it before migrations: functions, invocations, instances,
per-function configs, async tasks, the outbox, triggers.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "async_configs",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.create_table(
        "async_tasks",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("run_after_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("return_payload", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("destination_status", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("task_id"),
    )
    with op.batch_alter_table("async_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_async_tasks_due", ["status", "run_after_ms"], unique=False)
        batch_op.create_index(
            "ix_async_tasks_function_created", ["function_name", "created_ms"], unique=False
        )

    op.create_table(
        "concurrency_configs",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("reserved_concurrency", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.create_table(
        "functions",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("code_checksum", sa.String(length=64), nullable=False),
        sa.Column("code_size", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stop_reason", sa.String(length=16), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("destroyed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("instance_id"),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.create_index(
            "ix_instances_function_created", ["function_name", "created_ms"], unique=False
        )

    op.create_table(
        "invocations",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("start_kind", sa.String(length=16), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("init_ms", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("queue_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_type", sa.String(length=128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    with op.batch_alter_table("invocations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invocations_function_started", ["function_name", "started_ms"], unique=False
        )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["status", "next_attempt_ms"], unique=False)

    op.create_table(
        "provision_configs",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("function_name"),
    )
    op.create_table(
        "triggers",
        sa.Column("function_name", sa.String(length=128), nullable=False),
        sa.Column("trigger_name", sa.String(length=128), nullable=False),
        sa.Column("trigger_id", sa.String(length=36), nullable=False),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("invocation_role", sa.Text(), nullable=False),
        sa.Column("source_arn", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("modified_ms", sa.BigInteger(), nullable=False),
        sa.Column("next_fire_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("function_name", "trigger_name"),
    )


def downgrade() -> None:
    op.drop_table("triggers")
    op.drop_table("provision_configs")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox")
    with op.batch_alter_table("invocations", schema=None) as batch_op:
        batch_op.drop_index("ix_invocations_function_started")

    op.drop_table("invocations")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index("ix_instances_function_created")

    op.drop_table("instances")
    op.drop_table("functions")
    op.drop_table("concurrency_configs")
    with op.batch_alter_table("async_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_async_tasks_function_created")
        batch_op.drop_index("ix_async_tasks_due")

    op.drop_table("async_tasks")
    op.drop_table("async_configs")
