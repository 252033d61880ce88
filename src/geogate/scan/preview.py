"""Account preview: which accounts the account engine would flag, warn and block at a date.

Exact by construction: the scanned requests (with the client address the trusted-proxy walk
found) are fed as request events through the account engine's own
:class:`~geogate.accounts.engine.Enforcer` into a temporary SQLite store, in log order and in
batches, then ``enforce(at, dry_run=True)`` runs — the same code and the same ``[accounts]``
table as ``geogate ingest`` followed by ``geogate enforce --dry-run``. The price is the
engine's ingestion rate (tens of thousands of events per second, see bench/RESULTS.md), not
the scan's: preview a sample or a time window of a large log (``--since/--until``).

Request events are built from the fields a log has (time, account, org, client address, user
agent, Accept-Language); each gets the content id of that record, so two requests identical
in all of them count once, as two identical event lines do in ``geogate ingest``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, parse_record
from geogate.accounts.evidence import DeciderLocator
from geogate.decide import Decider
from geogate.errors import EventError
from geogate.policy.model import PolicySet

PREVIEW_SCHEMA = pa.schema(
    [
        ("account", pa.string()),
        ("status", pa.string()),
        ("verdict", pa.string()),
        ("score", pa.float64()),
        ("reasons", pa.string()),
        ("regions", pa.string()),
    ]
)
"""``status``: the account's state after the log was ingested; ``verdict``: its state after
an enforcement run at the preview date (the dry run's target, else ``status``)."""


class AccountPreview:
    """Streams judged batches into a temporary account store; :meth:`result` runs the
    dry-run enforcement. ``db`` is the SQLite file to use (deleted by the caller)."""

    def __init__(
        self, policies: PolicySet, snapshot: Any, *, db: Path, batch_size: int = 50_000
    ) -> None:
        from geogate.store.sql import SqlStore  # noqa: PLC0415 - SQLAlchemy only when asked

        self.store = SqlStore.open(f"sqlite:///{db}")
        decider = Decider(policies, snapshot)
        self.enforcer = Enforcer(self.store, policies=policies, locator=DeciderLocator(decider))
        self.batch_size = batch_size
        self.pending: list[Event] = []
        self.events = 0
        self.rejected = 0

    def add(self, judged: pa.RecordBatch) -> None:
        """Queue the batch's requests that name an account and have a client address."""
        keep = pc.and_(pc.is_valid(judged.column("account")), pc.is_valid(judged.column("client")))
        rows = judged.filter(keep)
        cols = {
            name: pc.cast(rows.column(name), pa.string()).to_pylist()
            for name in ("account", "org", "client", "user_agent", "accept_language")
        }
        stamps = [t.isoformat().replace("+00:00", "Z") for t in rows.column("ts").to_pylist()]
        for i, ts in enumerate(stamps):
            rec: dict[str, Any] = {
                "type": "request",
                "ts": ts,
                "account": cols["account"][i],
                "ip": cols["client"][i],
            }
            for name in ("org", "user_agent", "accept_language"):
                if cols[name][i] is not None:
                    rec[name] = cols[name][i]
            try:
                self.pending.append(parse_record(rec))
            except EventError:
                self.rejected += 1
            if len(self.pending) >= self.batch_size:
                self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.enforcer.ingest_batch(self.pending)
            self.events += len(self.pending)
            self.pending = []

    def result(self, at: datetime) -> pa.Table:
        """Accounts that are, or at ``at`` would be, anything but active."""
        self._flush()
        self.enforcer.close_open_days()
        report = self.enforcer.enforce(at, dry_run=True)
        changes = {c.account: c for c in report.changes}
        rows: list[dict[str, Any]] = []
        for row in self.store.iter_accounts():
            change = changes.get(row.account)
            verdict = change.to_state.value if change else row.state
            if row.state == "active" and verdict == "active":
                continue
            rows.append(
                {
                    "account": row.account,
                    "status": row.state,
                    "verdict": verdict,
                    "score": float(row.score),
                    "reasons": ",".join(change.rules if change else row.reasons),
                    "regions": ",".join(change.regions) if change else "",
                }
            )
        self.store.close()
        order = {"blocked": 0, "warned": 1, "flagged": 2}
        rows.sort(key=lambda r: (order.get(r["verdict"], 3), -r["score"], r["account"]))
        return pa.Table.from_pylist(rows, schema=PREVIEW_SCHEMA)
