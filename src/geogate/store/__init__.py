"""Persistence: the Store protocol, its SQLAlchemy adapter (SQLite and PostgreSQL),
Alembic migrations and the hash-chained audit log."""

from __future__ import annotations

from geogate.store.protocol import (
    AccountRow,
    AuditEntry,
    AuditReport,
    EgressStats,
    NoticeRow,
    NoticeState,
    ScanRow,
    Store,
    StoredEvent,
    StoreTx,
    TransitionRow,
)

__all__ = [
    "AccountRow",
    "AuditEntry",
    "AuditReport",
    "EgressStats",
    "NoticeRow",
    "NoticeState",
    "ScanRow",
    "Store",
    "StoreTx",
    "StoredEvent",
    "TransitionRow",
]
