"""Initial store: events, accounts, transitions, egress links, notice outbox, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from geogate.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("account", sa.String(256), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("id", name="uq_events_id"),
    )
    op.create_table(
        "accounts",
        sa.Column("account", sa.String(256), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_since", UTCDateTime()),
        sa.Column("policy_version", sa.String(256)),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("points_unsupported", sa.Boolean, nullable=False),
        sa.Column("language", sa.String(64)),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("last_seen", UTCDateTime()),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_accounts_state", "accounts", ["state"])
    op.create_table(
        "transitions",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(256), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("policy_version", sa.String(256)),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_transitions_account", "transitions", ["account"])
    op.create_table(
        "egress_accounts",
        sa.Column("egress", sa.String(128), primary_key=True),
        sa.Column("account", sa.String(256), primary_key=True),
    )
    op.create_table(
        "notices",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("policy_version", sa.String(256), nullable=False),
        sa.Column("language", sa.String(64)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime()),
        sa.Column("sent_at", UTCDateTime()),
        sa.UniqueConstraint("account", "kind", "policy_version", name="uq_notices_once"),
    )
    op.create_index("ix_notices_due", "notices", ["state", "next_attempt_at"])
    op.create_table(
        "audit",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("account", sa.String(256)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_account", "audit", ["account"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # The audit log is append-only: the database itself refuses updates and deletes.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION geogate_audit_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
            "FOR EACH ROW EXECUTE FUNCTION geogate_audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_append_only ON audit")
        op.execute("DROP FUNCTION IF EXISTS geogate_audit_append_only()")
    for name in (
        "audit_head",
        "audit",
        "notices",
        "egress_accounts",
        "transitions",
        "accounts",
        "events",
    ):
        op.drop_table(name)
