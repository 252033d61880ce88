"""Read-only queries the console pages need beyond the Store protocol.

They read the store's tables (``geogate.store.schema``) through the store's own SQLAlchemy
engine and never write: every change goes through the Enforcer, as with the CLI and the
account API. Each query is bounded (``LIMIT``, an index or a key range) so that pages stay fast
with many accounts (``bench/bench_console.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from geogate.store.schema import accounts, audit, egress_accounts, events
from geogate.store.sql import SqlStore


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSummary:
    """One line of a list of accounts (no evidence)."""

    account: str
    state: str
    score: float
    reasons: tuple[str, ...]
    state_since: datetime | None
    last_seen: datetime | None


_SUMMARY_COLS = (
    accounts.c.account,
    accounts.c.state,
    accounts.c.score,
    accounts.c.reasons,
    accounts.c.state_since,
    accounts.c.last_seen,
)


def _summaries(store: SqlStore, stmt: Any) -> list[AccountSummary]:
    with store.engine.connect() as conn:
        return [
            AccountSummary(
                account=a,
                state=s,
                score=float(sc),
                reasons=tuple(json.loads(r)) if r and r != "[]" else (),
                state_since=store_time(since),
                last_seen=store_time(seen),
            )
            for a, s, sc, r, since, seen in conn.execute(stmt)
        ]


def store_time(value: datetime | None) -> datetime | None:
    """A time read from the store (already aware UTC through the column type)."""
    return value


def review_queue(store: SqlStore, *, limit: int = 50, offset: int = 0) -> list[AccountSummary]:
    """Flagged accounts, highest score first, then longest waiting (oldest ``state_since``)."""
    stmt = (
        select(*_SUMMARY_COLS)
        .where(accounts.c.state == "flagged")
        .order_by(accounts.c.score.desc(), accounts.c.state_since.asc(), accounts.c.account)
        .limit(limit)
        .offset(offset)
    )
    return _summaries(store, stmt)


def accounts_with_prefix(store: SqlStore, prefix: str, *, limit: int = 50) -> list[AccountSummary]:
    """Accounts whose id starts with ``prefix`` (a key range on the primary key)."""
    stmt = select(*_SUMMARY_COLS).order_by(accounts.c.account).limit(limit)
    if prefix:
        stmt = stmt.where(accounts.c.account >= prefix, accounts.c.account < prefix + "\U0010ffff")
    return _summaries(store, stmt)


def accounts_by_id(store: SqlStore, ids: Sequence[str]) -> list[AccountSummary]:
    """The summaries of the given accounts that exist, in id order."""
    out: list[AccountSummary] = []
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        stmt = select(*_SUMMARY_COLS).where(accounts.c.account.in_(chunk))
        out.extend(_summaries(store, stmt))
    return sorted(out, key=lambda s: s.account)


def count_flagged(store: SqlStore) -> int:
    """Size of the review queue."""
    stmt = select(func.count()).select_from(accounts).where(accounts.c.state == "flagged")
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def top_egress(store: SqlStore, *, limit: int = 10) -> list[tuple[str, int]]:
    """Datacenter and anonymizer egress networks (address, /24 or /48, ASN) carrying the most
    accounts."""
    n = func.count().label("n")
    key = egress_accounts.c.egress
    stmt = (
        select(key, n)
        # Group keys (org:, key:) share the table with network keys: networks only here.
        .where(~key.startswith("org:"), ~key.startswith("key:"))
        .group_by(key)
        .order_by(n.desc(), key)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [(str(k), int(c)) for k, c in conn.execute(stmt)]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditLine:
    """One audit record as the console lists it."""

    seq: int
    at: datetime
    account: str | None
    action: str
    detail: dict[str, Any]


def recent_audit(
    store: SqlStore, *, account: str | None = None, limit: int = 50
) -> list[AuditLine]:
    """The latest audit records, newest first (optionally of one account)."""
    stmt = select(audit.c.seq, audit.c.at, audit.c.account, audit.c.action, audit.c.body)
    if account is not None:
        stmt = stmt.where(audit.c.account == account)
    stmt = stmt.order_by(audit.c.seq.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = list(conn.execute(stmt))
    out = []
    for seq, at, acct, action, body in rows:
        try:
            detail = json.loads(body).get("detail") or {}
        except (ValueError, AttributeError):
            detail = {}
        out.append(
            AuditLine(
                seq=int(seq),
                at=at,
                account=acct,
                action=str(action),
                detail=detail if isinstance(detail, dict) else {"value": detail},
            )
        )
    return out


def events_by_seq(store: SqlStore, seqs: Sequence[int]) -> list[tuple[str, datetime, str]]:
    """(kind, time, record JSON) of the events with these sequence numbers, oldest first."""
    out: list[tuple[int, str, datetime, str]] = []
    for i in range(0, len(seqs), 500):
        chunk = list(seqs[i : i + 500])
        stmt = select(events.c.seq, events.c.kind, events.c.ts, events.c.data).where(
            events.c.seq.in_(chunk)
        )
        with store.engine.connect() as conn:
            out.extend((int(s), str(k), ts, str(d)) for s, k, ts, d in conn.execute(stmt))
    out.sort()
    return [(k, ts, d) for _, k, ts, d in out]
