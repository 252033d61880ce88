"""An outbox held in memory: for the service's dev mode and for tests of the delivery loop.

It keeps the same promises as the SQL store's outbox (the contract tests in
``tests/notify/test_outbox_contract.py`` run against both) but nothing survives the process.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from geogate.clock import Clock, SystemClock
from geogate.store.protocol import NoticeRow, NoticeState


class MemoryOutbox:
    """A thread-safe in-memory notice outbox; ``clock`` dates new notices (due at once)."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._rows: dict[int, NoticeRow] = {}
        self._keys: set[tuple[str, str, str]] = set()

    def enqueue_notice(
        self,
        account: str,
        kind: str,
        policy_version: str,
        language: str | None,
        payload: Mapping[str, Any],
    ) -> bool:
        """Queue a notice due now; False (and no change) when (account, kind, policy_version)
        was queued before."""
        # A JSON round trip stores what the SQL store does: a copy in JSON types, with other
        # values (datetimes) as their str().
        stored = json.loads(json.dumps(dict(payload), default=str))
        key = (account, kind, policy_version)
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            now = self._clock.now()
            notice_id = len(self._rows) + 1
            self._rows[notice_id] = NoticeRow(
                id=notice_id,
                account=account,
                kind=kind,
                policy_version=policy_version,
                language=language,
                payload=MappingProxyType(stored),
                attempts=0,
                state=NoticeState.PENDING,
                next_attempt_at=now,
                last_error=None,
                created_at=now,
            )
            return True

    def pending_notices(self, now: datetime, limit: int) -> list[NoticeRow]:
        """Up to ``limit`` pending notices due at ``now``, oldest due first (then by id)."""
        with self._lock:
            due = [
                row
                for row in self._rows.values()
                if row.state is NoticeState.PENDING
                and (row.next_attempt_at is None or row.next_attempt_at <= now)
            ]
        due.sort(key=lambda r: (r.next_attempt_at or now, r.id))
        return due[: max(limit, 0)]

    def mark_notice_sent(self, id: int, at: datetime) -> None:
        """Record a successful delivery at ``at`` (an unknown id changes nothing)."""
        self._update(
            id,
            lambda row: dataclasses.replace(
                row,
                state=NoticeState.SENT,
                attempts=row.attempts + 1,
                sent_at=at,
                last_error=None,
                next_attempt_at=None,
            ),
        )

    def mark_notice_failed(
        self, id: int, at: datetime, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Record a failed attempt; with ``next_attempt_at=None`` the notice is given up (an
        unknown id changes nothing)."""
        state = NoticeState.PENDING if next_attempt_at is not None else NoticeState.FAILED
        self._update(
            id,
            lambda row: dataclasses.replace(
                row,
                state=state,
                attempts=row.attempts + 1,
                last_error=error,
                next_attempt_at=next_attempt_at,
            ),
        )

    def get_notice(self, id: int) -> NoticeRow | None:
        """One notice by id, or None."""
        with self._lock:
            return self._rows.get(id)

    def notices(self, account: str) -> list[NoticeRow]:
        """Every notice of one account, oldest first."""
        with self._lock:
            return [row for row in self._rows.values() if row.account == account]

    def _update(self, id: int, change: Callable[[NoticeRow], NoticeRow]) -> None:
        with self._lock:
            row = self._rows.get(id)
            if row is not None:
                self._rows[id] = change(row)
