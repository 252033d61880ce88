"""Indexes for the review queue (flagged accounts by score and age) and for reading events
by time (the console's impact preview, audits of a window).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_accounts_review", "accounts", ["state", "score", "state_since"])
    op.create_index("ix_events_ts", "events", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_events_ts", table_name="events")
    op.drop_index("ix_accounts_review", table_name="accounts")
