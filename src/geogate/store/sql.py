"""The Store over SQLAlchemy Core: SQLite (the embedded default) and PostgreSQL.

``SqlStore.open(url)`` accepts ``sqlite:///path.db``, a bare file path (SQLite),
``postgresql://...`` or ``postgresql+psycopg://...``; it runs the shipped migrations unless told
not to. SQLite runs in WAL mode; every write transaction starts with ``BEGIN IMMEDIATE`` so two
writers queue up instead of failing half-way. PostgreSQL rows read for an update are locked
(``SELECT ... FOR UPDATE``), and so is the audit log head, which keeps the hash chain linear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from geogate.clock import Clock, SystemClock
from geogate.errors import ConfigError, StoreError, StoreUnavailable
from geogate.store import migrate
from geogate.store.protocol import (
    AccountRow,
    AuditEntry,
    AuditReport,
    EgressStats,
    NoticeRow,
    NoticeState,
    ScanRow,
    StoredEvent,
    TransitionRow,
)
from geogate.store.schema import (
    accounts,
    audit,
    audit_head,
    egress_accounts,
    events,
    notices,
    transitions,
)

GENESIS = "0" * 64
# Key of the advisory lock that serialises audit-log appends on PostgreSQL ("geogate").
_AUDIT_LOCK_KEY = 0x67656F67617465
_CHUNK = 500


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


_EVIDENCE_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _dumps_evidence(value: Mapping[str, Any]) -> str:
    """An account's evidence as compact JSON, by orjson: it is written once per account per
    ingestion batch, and the standard encoder costs about six times more. The options make it
    write what :func:`_dumps` writes (non-string keys as strings, other types through ``str``)
    up to the spelling of some floats (``1e-05`` is ``1e-5``), which decode to the same values."""
    return orjson.dumps(value, default=str, option=_EVIDENCE_OPTIONS).decode()


def _loads_evidence(text: str) -> Any:
    """Decode a stored evidence column (orjson; the standard decoder for anything orjson
    refuses, such as a NaN written by an older version)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _canonical(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=str)


_ACCOUNT_COLUMNS = (
    "account",
    "state",
    "state_since",
    "policy_version",
    "reasons",
    "score",
    "points_unsupported",
    "language",
    "evidence",
    "last_seen",
    "version",
)
_SQLITE_UPSERT_ACCOUNT = (
    f"INSERT INTO accounts ({', '.join(_ACCOUNT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ACCOUNT_COLUMNS))}) ON CONFLICT (account) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ACCOUNT_COLUMNS[1:])
)


def _sqlite_time(ts: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime type stores (naive UTC, microseconds)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def normalise_url(url: str) -> str:
    """A SQLAlchemy URL from what a user typed: a bare path means SQLite, ``postgresql://``
    means the psycopg 3 driver."""
    text = url.strip()
    if not text:
        raise ConfigError("empty database URL", key="--db")
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if text.startswith(("postgresql+psycopg://", "sqlite://")):
        return text
    if "://" in text:
        raise ConfigError(
            f"unsupported database URL scheme in {text.split('://', 1)[0]!r} "
            "(use sqlite:///FILE or postgresql://...)",
            key="--db",
        )
    return f"sqlite:///{text}"


def _wrap(exc: Exception, what: str) -> StoreError:
    if isinstance(exc, OperationalError | DBAPIError) and getattr(
        exc, "connection_invalidated", False
    ):
        return StoreUnavailable(f"{what}: {exc.orig or exc}")
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"{what}: {str(exc.orig or exc).splitlines()[0]}")
    return StoreError(f"{what}: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}")


class SqlTx:
    """A :class:`~geogate.store.protocol.StoreTx` on one SQLAlchemy connection."""

    def __init__(self, store: SqlStore, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self.is_pg = store.is_postgres

    def _insert(self, table: Any) -> Any:
        return (pg.insert if self.is_pg else sqlite_dialect.insert)(table)

    def insert_events(self, rows: Sequence[StoredEvent]) -> set[str]:
        """Insert events, skipping known ids; returns the ids inserted (ids within one call
        must be distinct)."""
        if not rows:
            return set()
        if self.is_pg:
            return self._insert_events_pg(rows)
        # One pass, no look-up first: insert, letting the unique index skip known ids, and
        # count what went in. ``seq`` is the rowid, so every row this call inserts has a seq
        # above the largest one before it (BEGIN IMMEDIATE keeps other writers out), which
        # names the inserted ids when some were skipped. Plain DBAPI executemany: SQLAlchemy's
        # per-row parameter processing would cost more than the insert itself. Events repeat
        # their timestamps (whole seconds), so each is formatted once; kinds are bound as plain
        # strings (an enum member would go through sqlite3's adaptation look-up).
        before = self.conn.exec_driver_sql("SELECT max(seq) FROM events").scalar()
        times: dict[datetime, str] = {}
        params = []
        for r in rows:
            ts = r.ts
            ts_text = times.get(ts)
            if ts_text is None:
                ts_text = times[ts] = _sqlite_time(ts)
            kind = r.kind
            params.append(
                (r.id, kind if type(kind) is str else str(kind), r.account, ts_text, r.data)
            )
        result = self.conn.exec_driver_sql(
            "INSERT INTO events (id, kind, account, ts, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING",
            params,
        )
        if result.rowcount == len(rows):
            return {r.id for r in rows}
        if result.rowcount == 0:
            return set()
        found = self.conn.exec_driver_sql(
            "SELECT id FROM events WHERE seq > ?", (before if before is not None else 0,)
        )
        return {row[0] for row in found}

    def _insert_events_pg(self, rows: Sequence[StoredEvent]) -> set[str]:
        # COPY into a session-local staging table, then one INSERT ... ON CONFLICT DO NOTHING:
        # two round trips per batch instead of one per thousand rows, and concurrent
        # ingesters sending the same event still count it once.
        raw = self.conn.connection.driver_connection
        if raw is None:  # pragma: no cover - a pooled connection always has one
            raise StoreUnavailable("the database connection is closed")
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS geogate_events_in (ord bigint, id text, "
                "kind text, account text, ts timestamptz, data text) ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY geogate_events_in (ord, id, kind, account, ts, data) FROM STDIN"
            ) as copy:
                for i, r in enumerate(rows):
                    copy.write_row((i, r.id, str(r.kind), r.account, r.ts, r.data))
            cur.execute(
                "INSERT INTO events (id, kind, account, ts, data) "
                "SELECT id, kind, account, ts, data FROM geogate_events_in ORDER BY ord "
                "ON CONFLICT (id) DO NOTHING RETURNING id"
            )
            inserted = {str(row[0]) for row in cur.fetchall()}
            cur.execute("TRUNCATE geogate_events_in")
        return inserted

    def load_accounts(self, names: Sequence[str], *, lock: bool = False) -> dict[str, AccountRow]:
        """Existing rows of ``names``."""
        out: dict[str, AccountRow] = {}
        for i in range(0, len(names), _CHUNK):
            stmt = select(accounts).where(accounts.c.account.in_(names[i : i + _CHUNK]))
            if lock and self.is_pg:
                stmt = stmt.with_for_update()
            for m in self.conn.execute(stmt).mappings():
                row = _account_row(m)
                out[row.account] = row
        return out

    def account_versions(self, names: Sequence[str], *, lock: bool = False) -> dict[str, int]:
        """Stored versions of ``names`` (cheap: no evidence is read)."""
        out: dict[str, int] = {}
        for i in range(0, len(names), _CHUNK):
            stmt = select(accounts.c.account, accounts.c.version).where(
                accounts.c.account.in_(names[i : i + _CHUNK])
            )
            if lock and self.is_pg:
                stmt = stmt.with_for_update()
            out.update((a, int(v)) for a, v in self.conn.execute(stmt))
        return out

    def save_accounts(self, rows: Sequence[AccountRow]) -> None:
        """Upsert rows."""
        if not rows:
            return
        if not self.is_pg:
            # Plain DBAPI on SQLite: every ingestion batch upserts each account it touched,
            # and SQLAlchemy's per-row processing would double the cost.
            self.conn.exec_driver_sql(
                _SQLITE_UPSERT_ACCOUNT,
                [
                    (
                        r.account,
                        r.state,
                        _sqlite_time(r.state_since) if r.state_since else None,
                        r.policy_version,
                        _dumps(list(r.reasons)) if r.reasons else "[]",
                        r.score,
                        int(r.points_unsupported),
                        r.language,
                        _dumps_evidence(r.evidence),
                        _sqlite_time(r.last_seen) if r.last_seen else None,
                        r.version,
                    )
                    for r in rows
                ],
            )
            return
        raw = self.conn.connection.driver_connection
        if raw is None:  # pragma: no cover - a pooled connection always has one
            raise StoreUnavailable("the database connection is closed")
        cols = ", ".join(_ACCOUNT_COLUMNS)
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS geogate_accounts_in "
                "(LIKE accounts) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY geogate_accounts_in ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(
                        (
                            r.account,
                            r.state,
                            r.state_since,
                            r.policy_version,
                            _dumps(list(r.reasons)) if r.reasons else "[]",
                            r.score,
                            r.points_unsupported,
                            r.language,
                            _dumps_evidence(r.evidence),
                            r.last_seen,
                            r.version,
                        )
                    )
            updates = ", ".join(f"{c} = excluded.{c}" for c in _ACCOUNT_COLUMNS[1:])
            cur.execute(
                f"INSERT INTO accounts ({cols}) SELECT {cols} FROM geogate_accounts_in "
                f"ON CONFLICT (account) DO UPDATE SET {updates}"
            )
            cur.execute("TRUNCATE geogate_accounts_in")

    def add_transitions(self, rows: Sequence[TransitionRow]) -> None:
        """Append transitions, each with its audit record."""
        if not rows:
            return
        self.conn.execute(
            transitions.insert(),
            [
                {
                    "account": t.account,
                    "at": t.at,
                    "from_state": t.from_state,
                    "to_state": t.to_state,
                    "rules": _dumps(list(t.rules)),
                    "policy_version": t.policy_version,
                    "evidence": _dumps(t.evidence),
                    "actor": t.actor,
                    "note": t.note,
                }
                for t in rows
            ],
        )
        self._append_audit_many(
            [
                (
                    t.at,
                    t.account,
                    "transition",
                    {
                        "from": t.from_state,
                        "to": t.to_state,
                        "rules": list(t.rules),
                        "policy_version": t.policy_version,
                        "actor": t.actor,
                        "note": t.note,
                        "evidence_sha256": hashlib.sha256(
                            _canonical(t.evidence).encode()
                        ).hexdigest(),
                    },
                )
                for t in rows
            ]
        )

    def link_egress(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Record (egress, account) pairs, ignoring known ones."""
        if not pairs:
            return
        unique = sorted(set(pairs))
        stmt = self._insert(egress_accounts).on_conflict_do_nothing(
            index_elements=["egress", "account"]
        )
        self.conn.execute(stmt, [{"egress": e, "account": a} for e, a in unique])

    def egress_stats(self, keys: Sequence[str]) -> dict[str, EgressStats]:
        """Account counts behind the given egress keys."""
        out: dict[str, EgressStats] = {}
        flag = case((accounts.c.points_unsupported, 1), else_=0)
        for i in range(0, len(keys), _CHUNK):
            stmt = (
                select(egress_accounts.c.egress, func.count(), func.coalesce(func.sum(flag), 0))
                .select_from(
                    egress_accounts.outerjoin(
                        accounts, accounts.c.account == egress_accounts.c.account
                    )
                )
                .where(egress_accounts.c.egress.in_(keys[i : i + _CHUNK]))
                .group_by(egress_accounts.c.egress)
            )
            for key, n, bad in self.conn.execute(stmt):
                out[key] = EgressStats(key=key, accounts=int(n), unsupported=int(bad))
        return out

    def enqueue_notice(
        self,
        account: str,
        kind: str,
        policy_version: str,
        language: str | None,
        payload: Mapping[str, Any],
        *,
        at: datetime | None = None,
    ) -> bool:
        """Queue a notice once per (account, kind, policy_version)."""
        when = at or self.store.clock.now()
        stmt = (
            self._insert(notices)
            .on_conflict_do_nothing(index_elements=["account", "kind", "policy_version"])
            .returning(notices.c.id)
        )
        result = self.conn.execute(
            stmt,
            {
                "account": account,
                "kind": kind,
                "policy_version": policy_version,
                "language": language,
                "payload": _dumps(dict(payload)),
                "attempts": 0,
                "state": NoticeState.PENDING.value,
                "next_attempt_at": when,
                "last_error": None,
                "created_at": when,
            },
        )
        return result.first() is not None

    def append_audit(
        self, *, at: datetime, account: str | None, action: str, detail: Mapping[str, Any]
    ) -> AuditEntry:
        """Append one audit record."""
        return self._append_audit_many([(at, account, action, detail)])[-1]

    def _append_audit_many(
        self, items: Sequence[tuple[datetime, str | None, str, Mapping[str, Any]]]
    ) -> list[AuditEntry]:
        stmt = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        if self.is_pg:
            # Before the first record there is no head row for FOR UPDATE to lock, so two
            # writers would both append record 1; a transaction-scoped advisory lock
            # serialises appenders from the very first one. (SQLite writers already queue
            # behind BEGIN IMMEDIATE.)
            self.conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK_KEY,))
            stmt = stmt.with_for_update()
        head = self.conn.execute(stmt).first()
        seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
        rows: list[dict[str, Any]] = []
        entries: list[AuditEntry] = []
        for at, account, action, detail in items:
            seq += 1
            at_utc = at.astimezone(UTC)
            body = _canonical(
                {
                    "seq": seq,
                    "at": at_utc.isoformat(),
                    "account": account,
                    "action": action,
                    "detail": detail,
                }
            )
            digest = hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()
            rows.append(
                {
                    "seq": seq,
                    "at": at_utc,
                    "account": account,
                    "action": action,
                    "body": body,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            entries.append(
                AuditEntry(
                    seq=seq,
                    at=at_utc,
                    account=account,
                    action=action,
                    detail=dict(detail),
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        self.conn.execute(audit.insert(), rows)
        if head is None:
            self.conn.execute(audit_head.insert(), {"id": 1, "seq": seq, "hash": prev})
        else:
            self.conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev)
            )
        return entries


def _account_row(m: Mapping[Any, Any]) -> AccountRow:
    return AccountRow(
        account=m["account"],
        state=m["state"],
        state_since=m["state_since"],
        policy_version=m["policy_version"],
        reasons=tuple(json.loads(m["reasons"])),
        score=float(m["score"]),
        points_unsupported=bool(m["points_unsupported"]),
        language=m["language"],
        evidence=_loads_evidence(m["evidence"]),
        last_seen=m["last_seen"],
        version=int(m["version"]),
    )


def _notice_row(m: Mapping[Any, Any]) -> NoticeRow:
    return NoticeRow(
        id=int(m["id"]),
        account=m["account"],
        kind=m["kind"],
        policy_version=m["policy_version"],
        language=m["language"],
        payload=json.loads(m["payload"]),
        attempts=int(m["attempts"]),
        state=NoticeState(m["state"]),
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        sent_at=m["sent_at"],
    )


def _transition_row(m: Mapping[Any, Any]) -> TransitionRow:
    return TransitionRow(
        id=int(m["id"]),
        account=m["account"],
        at=m["at"],
        from_state=m["from_state"],
        to_state=m["to_state"],
        rules=tuple(json.loads(m["rules"])),
        policy_version=m["policy_version"],
        evidence=json.loads(m["evidence"]),
        actor=m["actor"],
        note=m["note"],
    )


class SqlStore:
    """The :class:`~geogate.store.protocol.Store` on SQLite or PostgreSQL (see module doc)."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, clock: Clock | None = None) -> SqlStore:
        """Open (and by default migrate) the store at ``url`` (see :func:`normalise_url`).

        Raises :class:`StoreUnavailable` when the database cannot be reached.
        """
        full = normalise_url(url)
        try:
            if full.startswith("sqlite"):
                engine = create_engine(full, poolclass=NullPool)
                _sqlite_setup(engine)
            else:
                engine = create_engine(full, pool_pre_ping=True)
            store = cls(engine, clock=clock)
            if migrate_schema:
                migrate.upgrade(engine)
        except SQLAlchemyError as exc:
            raise _wrap(exc, f"cannot open store {_masked(full)}") from exc
        return store

    # ----- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[SqlTx]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(geogate_immediate=True)
                with conn.begin():
                    yield SqlTx(self, conn)
        except SQLAlchemyError as exc:
            raise _wrap(exc, "store transaction failed") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise _wrap(exc, "store read failed") from exc

    # ----- reads ------------------------------------------------------------------------

    def get_account(self, account: str) -> AccountRow | None:
        """One account's row, or None."""
        with self._read() as conn:
            m = (
                conn.execute(select(accounts).where(accounts.c.account == account))
                .mappings()
                .first()
            )
            return _account_row(m) if m else None

    def iter_accounts(
        self, *, state: str | None = None, batch_size: int = 10_000
    ) -> Iterator[AccountRow]:
        """Every account in key order, streamed ``batch_size`` at a time (keyset pagination,
        so no long-running read transaction holds the database)."""
        last: str | None = None
        while True:
            stmt = select(accounts).order_by(accounts.c.account).limit(batch_size)
            if state is not None:
                stmt = stmt.where(accounts.c.state == state)
            if last is not None:
                stmt = stmt.where(accounts.c.account > last)
            with self._read() as conn:
                rows = [_account_row(m) for m in conn.execute(stmt).mappings()]
            yield from rows
            if len(rows) < batch_size:
                return
            last = rows[-1].account

    def scan_accounts(self, *, batch_size: int = 20_000) -> Iterator[ScanRow]:
        """Every account in key order with its evidence as undecoded JSON text."""
        cols = (
            accounts.c.account,
            accounts.c.state,
            accounts.c.policy_version,
            accounts.c.reasons,
            accounts.c.last_seen,
            accounts.c.evidence,
        )
        last: str | None = None
        while True:
            stmt = select(*cols).order_by(accounts.c.account).limit(batch_size)
            if last is not None:
                stmt = stmt.where(accounts.c.account > last)
            with self._read() as conn:
                rows = [
                    ScanRow(a, s, p, tuple(json.loads(r)) if r != "[]" else (), seen, ev)
                    for a, s, p, r, seen, ev in conn.execute(stmt)
                ]
            yield from rows
            if len(rows) < batch_size:
                return
            last = rows[-1].account

    def count_accounts(self) -> dict[str, int]:
        """Accounts per state."""
        with self._read() as conn:
            rows = conn.execute(select(accounts.c.state, func.count()).group_by(accounts.c.state))
            return {str(s): int(n) for s, n in rows}

    def transitions(self, account: str) -> list[TransitionRow]:
        """An account's transitions, oldest first."""
        with self._read() as conn:
            stmt = (
                select(transitions)
                .where(transitions.c.account == account)
                .order_by(transitions.c.id)
            )
            return [_transition_row(m) for m in conn.execute(stmt).mappings()]

    def egress_members(self, *, min_accounts: int) -> dict[str, list[str]]:
        """Egress keys with at least ``min_accounts`` accounts, and those accounts."""
        with self._read() as conn:
            busy = (
                select(egress_accounts.c.egress)
                .group_by(egress_accounts.c.egress)
                .having(func.count() >= min_accounts)
                .subquery()
            )
            stmt = select(egress_accounts.c.egress, egress_accounts.c.account).where(
                egress_accounts.c.egress.in_(select(busy.c.egress))
            )
            out: dict[str, list[str]] = {}
            for key, account in conn.execute(stmt):
                out.setdefault(key, []).append(account)
            return out

    def egress_stats(self, keys: Sequence[str]) -> dict[str, EgressStats]:
        """Account counts behind egress keys, as committed."""
        with self._read() as conn:
            return SqlTx(self, conn).egress_stats(keys)

    def egress_accounts(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """The accounts linked to each of ``keys``, as committed."""
        out: dict[str, list[str]] = {}
        with self._read() as conn:
            for i in range(0, len(keys), _CHUNK):
                stmt = select(egress_accounts.c.egress, egress_accounts.c.account).where(
                    egress_accounts.c.egress.in_(keys[i : i + _CHUNK])
                )
                for key, account in conn.execute(stmt):
                    out.setdefault(key, []).append(account)
        for accts in out.values():
            accts.sort()
        return out

    def count_events(self) -> int:
        """Stored events."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def iter_events(self, *, batch_size: int = 10_000) -> Iterator[StoredEvent]:
        """Every event in insertion order."""
        last = 0
        while True:
            with self._read() as conn:
                stmt = (
                    select(events)
                    .where(events.c.seq > last)
                    .order_by(events.c.seq)
                    .limit(batch_size)
                )
                rows = list(conn.execute(stmt).mappings())
            for m in rows:
                yield StoredEvent(
                    id=m["id"], kind=m["kind"], account=m["account"], ts=m["ts"], data=m["data"]
                )
            if len(rows) < batch_size:
                return
            last = int(rows[-1]["seq"])

    # ----- account status (AccountStatusPort) --------------------------------------------

    def account_status(self, account: str) -> str | None:
        """The account's state name, or None when unknown."""
        with self._read() as conn:
            value = conn.execute(
                select(accounts.c.state).where(accounts.c.account == account)
            ).scalar()
            return str(value) if value is not None else None

    def is_blocked(self, account: str) -> bool:
        """True when the account is blocked."""
        return self.account_status(account) == "blocked"

    def blocked_accounts(self) -> frozenset[str]:
        """Every blocked account (for a service that keeps the set in memory)."""
        with self._read() as conn:
            stmt = select(accounts.c.account).where(accounts.c.state == "blocked")
            return frozenset(conn.execute(stmt).scalars())

    # ----- notices ------------------------------------------------------------------------

    def enqueue_notice(
        self,
        account: str,
        kind: str,
        policy_version: str,
        language: str | None,
        payload: Mapping[str, Any],
    ) -> bool:
        """Queue a notice in its own transaction; False when it already existed."""
        with self.transaction() as tx:
            return tx.enqueue_notice(account, kind, policy_version, language, payload)

    def pending_notices(self, now: datetime, limit: int) -> list[NoticeRow]:
        """Due pending notices, oldest due first."""
        with self._read() as conn:
            stmt = (
                select(notices)
                .where(
                    and_(
                        notices.c.state == NoticeState.PENDING.value,
                        or_(notices.c.next_attempt_at.is_(None), notices.c.next_attempt_at <= now),
                    )
                )
                .order_by(notices.c.next_attempt_at, notices.c.id)
                .limit(limit)
            )
            return [_notice_row(m) for m in conn.execute(stmt).mappings()]

    def mark_notice_sent(self, id: int, at: datetime) -> None:
        """Record a delivery."""
        with self.transaction() as tx:
            tx.conn.execute(
                update(notices)
                .where(notices.c.id == id)
                .values(
                    state=NoticeState.SENT.value,
                    sent_at=at,
                    last_attempt_at=at,
                    attempts=notices.c.attempts + 1,
                    last_error=None,
                    next_attempt_at=None,
                )
            )

    def mark_notice_failed(
        self,
        id: int,
        at: datetime,
        error: str,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record a failed attempt (``failed`` for good when ``next_attempt_at`` is None)."""
        state = NoticeState.PENDING if next_attempt_at is not None else NoticeState.FAILED
        with self.transaction() as tx:
            tx.conn.execute(
                update(notices)
                .where(notices.c.id == id)
                .values(
                    state=state.value,
                    last_attempt_at=at,
                    attempts=notices.c.attempts + 1,
                    last_error=error[:2000],
                    next_attempt_at=next_attempt_at,
                )
            )

    def get_notice(self, id: int) -> NoticeRow | None:
        """One notice by id."""
        with self._read() as conn:
            m = conn.execute(select(notices).where(notices.c.id == id)).mappings().first()
            return _notice_row(m) if m else None

    def notices(self, account: str) -> list[NoticeRow]:
        """An account's notices, oldest first."""
        with self._read() as conn:
            stmt = select(notices).where(notices.c.account == account).order_by(notices.c.id)
            return [_notice_row(m) for m in conn.execute(stmt).mappings()]

    # ----- audit --------------------------------------------------------------------------

    def audit_entries(self, *, account: str | None = None) -> list[AuditEntry]:
        """Audit records, oldest first."""
        with self._read() as conn:
            stmt = select(audit).order_by(audit.c.seq)
            if account is not None:
                stmt = stmt.where(audit.c.account == account)
            out = []
            for m in conn.execute(stmt).mappings():
                body = json.loads(m["body"])
                out.append(
                    AuditEntry(
                        seq=int(m["seq"]),
                        at=m["at"],
                        account=m["account"],
                        action=m["action"],
                        detail=body.get("detail", {}),
                        prev_hash=m["prev_hash"],
                        hash=m["hash"],
                    )
                )
            return out

    def verify_audit(self) -> AuditReport:
        """Walk the chain from the genesis hash; any edited, removed, reordered or inserted
        record, or a head that does not match the last record, is reported."""
        with self._read() as conn:
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            ).first()
            prev = GENESIS
            count = 0
            rows = conn.execute(select(audit).order_by(audit.c.seq)).mappings()
            for expected_seq, m in enumerate(rows, start=1):
                count = expected_seq
                seq = int(m["seq"])
                problem: str | None = None
                if seq != expected_seq:
                    problem = f"record {expected_seq} is missing (found {seq} next)"
                elif m["prev_hash"] != prev:
                    problem = "its prev_hash does not match the previous record's hash"
                else:
                    digest = hashlib.sha256(f"{prev}\n{m['body']}".encode()).hexdigest()
                    if digest != m["hash"]:
                        problem = "its content does not match its hash"
                    else:
                        try:
                            body = json.loads(m["body"])
                        except json.JSONDecodeError:
                            body = {}
                        at = m["at"]
                        if (
                            body.get("seq") != seq
                            or body.get("account") != m["account"]
                            or body.get("action") != m["action"]
                            or body.get("at") != at.astimezone(UTC).isoformat()
                        ):
                            problem = "its columns differ from the hashed record"
                if problem is not None:
                    return AuditReport(
                        ok=False, records=count, head=prev, broken_at=expected_seq, problem=problem
                    )
                prev = m["hash"]
            if head is None:
                if count:
                    return AuditReport(
                        ok=False, records=count, head=prev, problem="the head record is missing"
                    )
                return AuditReport(ok=True, records=0, head=GENESIS)
            if int(head[0]) != count or head[1] != prev:
                return AuditReport(
                    ok=False,
                    records=count,
                    head=prev,
                    broken_at=count + 1 if int(head[0]) > count else int(head[0]),
                    problem=f"the head names record {head[0]} with another hash: "
                    "records were removed or replaced",
                )
            return AuditReport(ok=True, records=count, head=prev)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()


def _masked(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes in WAL mode
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("geogate_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
