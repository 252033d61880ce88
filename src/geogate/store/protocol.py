"""The Store port: what account enforcement and notice delivery need from persistence.

Adapters (:class:`geogate.store.sql.SqlStore`, for SQLite and PostgreSQL) implement it; the
contract test module in ``tests/store`` runs against every one of them. Values crossing this
boundary are frozen dataclasses; raw rows stop inside the adapter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol


class NoticeState(enum.StrEnum):
    """Delivery state of an outbox notice."""

    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"
    FAILED = "failed"  # gave up (the notifier decided no further attempt is due)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeRow:
    """One notice in the outbox.

    ``kind`` is ``"warning"`` (the account will be blocked from the policy's effective date) or
    ``"blocked"``. ``policy_version`` is the policy label (``id@version``); one notice exists per
    (account, kind, policy_version). ``language`` is the account's preferred language tag
    (``"zh-CN"``, ``"en"``) or None. ``next_attempt_at`` is when delivery is due (aware UTC).
    """

    id: int
    account: str
    kind: str
    policy_version: str
    language: str | None
    payload: Mapping[str, Any]
    attempts: int
    state: NoticeState
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime | None = None
    sent_at: datetime | None = None


class StoredEvent(NamedTuple):
    """An event as the store keeps it: its id, kind, account, time and the original record.

    A NamedTuple rather than a frozen dataclass: one is built per ingested event, and the
    dataclass costs several times more to build.
    """

    id: str
    kind: str
    account: str
    ts: datetime
    data: str  # the record as JSON text (unknown fields included)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRow:
    """Persisted per-account state and evidence.

    ``evidence`` is the JSON-ready form of :class:`geogate.accounts.evidence.AccountEvidence`;
    ``reasons`` the rule names behind the current state; ``version`` increments on every write
    (optimistic concurrency for operator actions).
    """

    account: str
    state: str
    state_since: datetime | None
    policy_version: str | None
    reasons: tuple[str, ...]
    score: float
    points_unsupported: bool
    language: str | None
    evidence: Mapping[str, Any]
    last_seen: datetime | None
    version: int = 0

    def summary_json(self) -> dict[str, Any]:
        """The account's state as the CLI's ``--json`` and the account API show it (no
        evidence)."""
        return {
            "account": self.account,
            "state": self.state,
            "state_since": self.state_since.isoformat() if self.state_since else None,
            "policy_version": self.policy_version,
            "score": self.score,
            "reasons": list(self.reasons),
            "language": self.language,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
        }


class ScanRow(NamedTuple):
    """What a scan over every account reads: enough to skip an account without decoding its
    evidence (``evidence_json`` is the stored JSON text, decoded only when needed)."""

    account: str
    state: str
    policy_version: str | None
    reasons: tuple[str, ...]
    last_seen: datetime | None
    evidence_json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionRow:
    """One state change: from/to state, the rule(s) behind it, the policy version, the evidence
    snapshot at that moment, who made it (``engine`` or ``operator:NAME``) and a note."""

    account: str
    at: datetime
    from_state: str
    to_state: str
    rules: tuple[str, ...]
    policy_version: str | None
    evidence: Mapping[str, Any]
    actor: str = "engine"
    note: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressStats:
    """How many accounts use an egress key and how many of them point to unsupported regions."""

    key: str
    accounts: int
    unsupported: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit log record; ``hash`` chains it to the previous record's hash."""

    seq: int
    at: datetime
    account: str | None
    action: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """Result of :meth:`Store.verify_audit`: ok, how many records were checked, the head hash,
    and the first broken record's sequence number with what is wrong."""

    ok: bool
    records: int
    head: str
    broken_at: int | None = None
    problem: str | None = None
    details: tuple[str, ...] = field(default=())


class StoreTx(Protocol):
    """One transaction: everything an ingestion batch or an operator action reads and writes.

    Committed when the ``with store.transaction()`` block ends without an error, rolled back
    otherwise: a batch of events is acknowledged only once its transaction committed.
    """

    def insert_events(self, events: Sequence[StoredEvent]) -> set[str]:
        """Insert events, skipping ids already stored; returns the ids actually inserted."""
        ...

    def load_accounts(
        self, accounts: Sequence[str], *, lock: bool = False
    ) -> dict[str, AccountRow]:
        """Rows of the given accounts that exist (``lock``: SELECT ... FOR UPDATE where
        supported)."""
        ...

    def account_versions(self, accounts: Sequence[str], *, lock: bool = False) -> dict[str, int]:
        """The stored ``version`` of the given accounts that exist (``lock`` as above)."""
        ...

    def save_accounts(self, rows: Sequence[AccountRow]) -> None:
        """Insert or replace account rows."""
        ...

    def add_transitions(self, rows: Sequence[TransitionRow]) -> None:
        """Append state transitions (each also goes into the audit log)."""
        ...

    def link_egress(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Record (egress key, account) pairs; existing pairs are ignored."""
        ...

    def egress_stats(self, keys: Sequence[str]) -> dict[str, EgressStats]:
        """Account counts behind each egress key (keys without accounts are absent)."""
        ...

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
        """Queue a notice; False when one for (account, kind, policy_version) already exists."""
        ...

    def append_audit(
        self, *, at: datetime, account: str | None, action: str, detail: Mapping[str, Any]
    ) -> AuditEntry:
        """Append one hash-chained audit record."""
        ...


class Store(Protocol):
    """Persistence for events, per-account evidence and state, transitions, the notice outbox
    and the audit log. Implementations: :class:`geogate.store.sql.SqlStore`."""

    def transaction(self) -> AbstractContextManager[StoreTx]:
        """A unit of work (see :class:`StoreTx`)."""
        ...

    # ----- reads --------------------------------------------------------------------------

    def get_account(self, account: str) -> AccountRow | None:
        """One account's row, or None when the store has never heard of it."""
        ...

    def iter_accounts(
        self, *, state: str | None = None, batch_size: int = 10_000
    ) -> Iterator[AccountRow]:
        """Every account (optionally only those in ``state``), streamed in key order."""
        ...

    def scan_accounts(self, *, batch_size: int = 20_000) -> Iterator[ScanRow]:
        """Every account in key order, evidence undecoded (for enforcement runs)."""
        ...

    def count_accounts(self) -> dict[str, int]:
        """Number of accounts per state."""
        ...

    def transitions(self, account: str) -> list[TransitionRow]:
        """An account's transitions, oldest first."""
        ...

    def egress_members(self, *, min_accounts: int) -> dict[str, list[str]]:
        """Egress keys carrying at least ``min_accounts`` accounts, with those accounts."""
        ...

    def egress_stats(self, keys: Sequence[str]) -> dict[str, EgressStats]:
        """Account counts behind egress keys, as committed (see :meth:`StoreTx.egress_stats`)."""
        ...

    def egress_accounts(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """The accounts linked to each of ``keys`` (egress networks, ``org:`` and ``key:``
        groups), as committed."""
        ...

    def count_events(self) -> int:
        """Number of stored (distinct) events."""
        ...

    def iter_events(self, *, batch_size: int = 10_000) -> Iterator[StoredEvent]:
        """Every stored event in insertion order."""
        ...

    # ----- account status (the decision service's AccountStatusPort) ------------------------

    def account_status(self, account: str) -> str | None:
        """The account's state name (``"blocked"``, ``"warned"``...) or None when unknown."""
        ...

    def is_blocked(self, account: str) -> bool:
        """True when the account is blocked (the service answers ``account_blocked``)."""
        ...

    # ----- notice outbox (used by geogate.notify) -----------------------------------------

    def enqueue_notice(
        self,
        account: str,
        kind: str,
        policy_version: str,
        language: str | None,
        payload: Mapping[str, Any],
    ) -> bool:
        """Queue a notice in its own transaction; idempotent per (account, kind,
        policy_version): returns False when it already existed."""
        ...

    def pending_notices(self, now: datetime, limit: int) -> list[NoticeRow]:
        """Up to ``limit`` pending notices whose ``next_attempt_at`` is at or before ``now``,
        oldest due first."""
        ...

    def mark_notice_sent(self, id: int, at: datetime) -> None:
        """Record a successful delivery."""
        ...

    def mark_notice_failed(
        self,
        id: int,
        at: datetime,
        error: str,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record a failed attempt: the notice stays pending until ``next_attempt_at``, or
        becomes ``failed`` for good when ``next_attempt_at`` is None."""
        ...

    def get_notice(self, id: int) -> NoticeRow | None:
        """One notice by id."""
        ...

    def notices(self, account: str) -> list[NoticeRow]:
        """Every notice of one account, oldest first."""
        ...

    # ----- audit --------------------------------------------------------------------------

    def audit_entries(self, *, account: str | None = None) -> list[AuditEntry]:
        """Audit records, oldest first (optionally of one account)."""
        ...

    def verify_audit(self) -> AuditReport:
        """Recompute the hash chain; reports the first record that does not match."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
