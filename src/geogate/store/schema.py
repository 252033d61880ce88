"""The store's tables as SQLAlchemy Core metadata (the Alembic migrations create the same).

Times are stored as UTC: ``UTCDateTime`` converts aware datetimes to UTC on the way in and
hands back aware UTC datetimes on the way out, on SQLite (which has no time zones) as on
PostgreSQL (``timestamptz``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime column."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


_SeqType = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY = rowid

events = Table(
    "events",
    metadata,
    Column("seq", _SeqType, primary_key=True, autoincrement=True),
    Column("id", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("account", String(256), nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
    Column("data", Text, nullable=False),
    UniqueConstraint("id", name="uq_events_id"),
)
Index("ix_events_ts", events.c.ts)

accounts = Table(
    "accounts",
    metadata,
    Column("account", String(256), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("state_since", UTCDateTime()),
    Column("policy_version", String(256)),
    Column("reasons", Text, nullable=False),
    Column("score", Float, nullable=False),
    Column("points_unsupported", Boolean, nullable=False),
    Column("language", String(64)),
    Column("evidence", Text, nullable=False),
    Column("last_seen", UTCDateTime()),
    Column("version", Integer, nullable=False),
)
Index("ix_accounts_state", accounts.c.state)
Index("ix_accounts_review", accounts.c.state, accounts.c.score, accounts.c.state_since)

transitions = Table(
    "transitions",
    metadata,
    Column("id", _SeqType, primary_key=True, autoincrement=True),
    Column("account", String(256), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("rules", Text, nullable=False),
    Column("policy_version", String(256)),
    Column("evidence", Text, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("note", Text, nullable=False),
)
Index("ix_transitions_account", transitions.c.account)

egress_accounts = Table(
    "egress_accounts",
    metadata,
    Column("egress", String(128), primary_key=True),
    Column("account", String(256), primary_key=True),
)

notices = Table(
    "notices",
    metadata,
    Column("id", _SeqType, primary_key=True, autoincrement=True),
    Column("account", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("policy_version", String(256), nullable=False),
    Column("language", String(64)),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("next_attempt_at", UTCDateTime()),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_attempt_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    UniqueConstraint("account", "kind", "policy_version", name="uq_notices_once"),
)
Index("ix_notices_due", notices.c.state, notices.c.next_attempt_at)

audit = Table(
    "audit",
    metadata,
    Column("seq", _SeqType, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("account", String(256)),
    Column("action", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_account", audit.c.account)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", _SeqType, nullable=False),
    Column("hash", String(64), nullable=False),
)
