"""Read-only queries the console pages need beyond the Store protocol.

They read the store's tables (``geogate.store.schema``) through the store's own SQLAlchemy
engine and never write: every change goes through the Enforcer, as with the CLI and the
account API. Each query is bounded (``LIMIT``, an index or a key range) so that pages stay fast
with many accounts (``bench/bench_console.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.pool import QueuePool

from geogate.store.schema import accounts, audit, egress_accounts, events
from geogate.store.sql import SqlStore


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSummary:
    """One line of a list of accounts (no evidence; ``last_seen`` None unless asked for)."""

    account: str
    state: str
    score: float
    reasons: tuple[str, ...]
    state_since: datetime | None
    last_seen: datetime | None


# ``last_seen`` is stored after the (large) evidence column: reading it makes SQLite walk the
# evidence's overflow pages, which made the review queue 5x slower at 100,000 accounts. Lists
# leave it out; :func:`accounts_by_id` reads it for the few accounts of an organisation.
_SUMMARY_COLS = (
    accounts.c.account,
    accounts.c.state,
    accounts.c.score,
    accounts.c.reasons,
    accounts.c.state_since,
)


_READERS: dict[int, tuple[SqlStore, Engine]] = {}
_READERS_LOCK = threading.Lock()


def reader(store: SqlStore) -> Engine:
    """The engine the console reads ``store`` with.

    On PostgreSQL the store's own (pooled) engine. On SQLite the store opens a new connection
    for every unit of work, so each query starts with an empty page cache; the console's reads
    go through a small pool of read-only connections with a 64 MiB page cache instead (the
    review queue at 100,000 accounts: 118 ms -> 35 ms). Each read is its own transaction, so
    it sees every commit made before it.
    """
    if store.engine.dialect.name != "sqlite":
        return store.engine
    with _READERS_LOCK:
        held = _READERS.get(id(store))
        if held is not None and held[0] is store:
            return held[1]
        engine = create_engine(
            store.engine.url,
            poolclass=QueuePool,
            pool_size=2,
            max_overflow=4,
            connect_args={"check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout = 5000")
            cursor.execute("PRAGMA query_only = 1")
            cursor.execute("PRAGMA cache_size = -65536")
            cursor.close()

        _READERS[id(store)] = (store, engine)
        return engine


def _summaries(store: SqlStore, stmt: Any, *, with_last_seen: bool = False) -> list[AccountSummary]:
    with reader(store).connect() as conn:
        return [
            AccountSummary(
                account=row[0],
                state=row[1],
                score=float(row[2]),
                reasons=tuple(json.loads(row[3])) if row[3] and row[3] != "[]" else (),
                state_since=row[4],
                last_seen=row[5] if with_last_seen else None,
            )
            for row in conn.execute(stmt)
        ]


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


def accounts_by_id(
    store: SqlStore, ids: Sequence[str], *, with_last_seen: bool = False
) -> list[AccountSummary]:
    """The summaries of the given accounts that exist, in id order (``last_seen`` only when
    asked: it costs a read of each account's evidence)."""
    out: list[AccountSummary] = []
    cols = (*_SUMMARY_COLS, accounts.c.last_seen) if with_last_seen else _SUMMARY_COLS
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        stmt = select(*cols).where(accounts.c.account.in_(chunk))
        out.extend(_summaries(store, stmt, with_last_seen=with_last_seen))
    return sorted(out, key=lambda s: s.account)


def accounts_by_state(store: SqlStore) -> dict[str, int]:
    """Accounts per state (one grouped query over the state index)."""
    stmt = select(accounts.c.state, func.count()).group_by(accounts.c.state)
    with reader(store).connect() as conn:
        return {str(s): int(n) for s, n in conn.execute(stmt)}


def count_flagged(store: SqlStore) -> int:
    """Size of the review queue."""
    stmt = select(func.count()).select_from(accounts).where(accounts.c.state == "flagged")
    with reader(store).connect() as conn:
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
    with reader(store).connect() as conn:
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
    with reader(store).connect() as conn:
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
        with reader(store).connect() as conn:
            out.extend((int(s), str(k), ts, str(d)) for s, k, ts, d in conn.execute(stmt))
    out.sort()
    return [(k, ts, d) for _, k, ts, d in out]


def request_window(
    store: SqlStore, *, start: datetime, end: datetime, limit: int
) -> tuple[list[tuple[str, str | None]], bool]:
    """(address, account) of the stored request events in ``[start, end)``, at most ``limit``
    (and whether there were more). The event table has no index on time: this reads it all,
    so it runs only when an operator asks for a preview."""
    stmt = (
        select(events.c.account, events.c.data)
        .where(events.c.kind == "request", events.c.ts >= start, events.c.ts < end)
        .limit(limit + 1)
    )
    out: list[tuple[str, str | None]] = []
    with reader(store).connect() as conn:
        for account, data in conn.execute(stmt):
            try:
                ip = json.loads(data).get("ip")
            except (ValueError, AttributeError):
                continue
            if isinstance(ip, str):
                out.append((ip, str(account)))
    return out[:limit], len(out) > limit


def last_event_time(store: SqlStore) -> datetime | None:
    """The time of the most recently stored event (by insertion order)."""
    stmt = select(events.c.ts).order_by(events.c.seq.desc()).limit(1)
    with reader(store).connect() as conn:
        value = conn.execute(stmt).scalar()
    return value if isinstance(value, datetime) else None
