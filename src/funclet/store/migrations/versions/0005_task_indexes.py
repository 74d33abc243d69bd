"""async_tasks' index on (status, run_after_ms) becomes two partial indexes: the waiting
tasks by due time, the running ones by node (see ``schema.TASKS_WAITING``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WAITING = sa.text("status IN ('Enqueued', 'Retrying')")
_RUNNING = sa.text("status IN ('Running', 'Stopping')")


def upgrade() -> None:
    op.create_index("ix_async_tasks_waiting", "async_tasks", ["run_after_ms"],
                    sqlite_where=_WAITING, postgresql_where=_WAITING)
    op.create_index("ix_async_tasks_running", "async_tasks", ["node_id"],
                    sqlite_where=_RUNNING, postgresql_where=_RUNNING)
    op.drop_index("ix_async_tasks_due", table_name="async_tasks")


def downgrade() -> None:
    op.create_index("ix_async_tasks_due", "async_tasks", ["status", "run_after_ms"])
    op.drop_index("ix_async_tasks_running", table_name="async_tasks")
    op.drop_index("ix_async_tasks_waiting", table_name="async_tasks")
