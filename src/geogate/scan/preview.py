"""Account preview: which accounts the account engine would flag, warn and block at a date.

The scanned requests (with the client address the trusted-proxy walk found) go through the
account engine's own :class:`~geogate.accounts.engine.Enforcer` into a temporary SQLite store,
then ``enforce(at, dry_run=True)`` runs — the same code and the same ``[accounts]`` table as
``geogate ingest`` followed by ``geogate enforce --dry-run``, and the same result.

What makes it run at log scale is that the lines are not fed one by one. Within each batch,
each account's consecutive requests that agree in everything the engine reads — UTC hour,
policy segment, client address, user agent, Accept-Language, org, API key — form a *run*, fed
as one request event with a repeat count (:class:`~geogate.accounts.events.Event` ``repeat``
and ``last_epoch``). The engine counts such an event exactly as that many lines: every counter
gains the count, the VPN-switching detector can fire only at a run's first request (the others
share its network class), and the run's last request sets the latest times. Runs are formed
vectorised with Arrow and numpy and fed in the order of their first line, one engine batch per
scan batch, so the engine's day-by-day judging sees what it sees on ingestion; runs are never
merged across batches (two runs of the same requests count the same as one). How much faster
this is depends on the traffic: lines per run (see bench/RESULTS.md).

Duplicates: ``geogate ingest`` stores an event once, so two identical lines count once. Here a
line identical to an earlier one in time, account, client address, org, user agent,
Accept-Language and API key is dropped: within a batch always, across batches against the lines
of the last ``dedupe_horizon_seconds`` before the newest time seen. A line older than that
horizon cannot be checked and is counted as :attr:`AccountPreview.late` — zero for a log in
time order, and the preview is then exact.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, parse_record
from geogate.accounts.evidence import DeciderLocator
from geogate.decide import Decider
from geogate.errors import ConfigError, EventError
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
PREVIEW_STATS_KEY: Final = "geogate.preview"
"""Schema metadata key of the preview table (and ``account_preview.parquet``): JSON of
:meth:`AccountPreview.stats`."""

#: Judged columns a run's requests must agree in (``api_key`` when the batch has it).
RUN_FIELDS: Final = ("account", "client", "user_agent", "accept_language", "org", "api_key")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_US: Final = 3_600_000_000
_SECOND_US: Final = 1_000_000
_TS: Final = pa.timestamp("us", tz="UTC")


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _stamp(micros: int) -> pa.Scalar:
    return pa.scalar(micros, _TS)


def _codes(column: pa.Array) -> tuple[npt.NDArray[np.int64], pa.Array]:
    """Integer codes of a text column (-1 for null; equal codes <=> equal text) and the
    distinct values they index."""
    encoded = pc.dictionary_encode(pc.cast(column, pa.string()))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _first_occurrences(ts_us: npt.NDArray[np.int64], columns: list[pa.Array]) -> npt.NDArray[Any]:
    """True for each row not identical (time and every column) to an earlier row."""
    keys = [_codes(c)[0] for c in columns]
    order = np.lexsort([np.arange(len(ts_us)), *reversed(keys), ts_us])
    same = np.ones(len(order) - 1, bool) if len(order) > 1 else np.zeros(0, bool)
    for k in (ts_us, *keys):
        s = k[order]
        same &= s[1:] == s[:-1]
    first = np.ones(len(order), bool)
    first[order[1:][same]] = False
    return first


class AccountPreview:
    """Collapses judged batches into runs and streams them into a temporary account store;
    :meth:`result` runs the dry-run enforcement. ``db`` is the SQLite file to use (deleted by
    the caller); ``batch_size`` caps the events of one engine batch (a scan batch with more
    runs is fed in several, in the order of their first line)."""

    def __init__(
        self,
        policies: PolicySet,
        snapshot: Any,
        *,
        db: Path,
        batch_size: int = 50_000,
        dedupe_horizon_seconds: int = 600,
    ) -> None:
        from geogate.store.sql import SqlStore  # noqa: PLC0415 - SQLAlchemy only when asked

        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, not {batch_size}", key="batch_size")
        if dedupe_horizon_seconds < 0:
            raise ConfigError(
                f"dedupe horizon must be 0 or more seconds, not {dedupe_horizon_seconds}",
                key="dedupe_horizon_seconds",
            )
        self.store = SqlStore.open(f"sqlite:///{db}")
        decider = Decider(policies, snapshot)
        # Every run gets a new id and duplicates are dropped here: the event log would only
        # fill the disk (about a hundred bytes per run).
        self.enforcer = Enforcer(
            self.store, policies=policies, locator=DeciderLocator(decider), log_events=False
        )
        self.batch_size = batch_size
        self.horizon_us = dedupe_horizon_seconds * _SECOND_US
        self._bounds = np.array([_micros(b) for b in policies.boundaries], np.int64)
        self.lines = 0
        """Requests that named an account and had a client address."""
        self.duplicates = 0
        """Lines identical to an earlier line (counted once, as ingestion counts them)."""
        self.events = 0
        """Run events fed to the engine (``lines - duplicates - rejected`` lines in all)."""
        self.rejected = 0
        """Lines the event parser refuses (as ``geogate ingest`` would reject them)."""
        self.late = 0
        """Lines older than the dedupe horizon: counted without checking for an identical
        earlier line (0 for a log in time order)."""
        self._seq = 0
        self._newest_us: int | None = None
        # Distinct lines of recent batches (within the horizon of the newest time), each chunk
        # with its newest time, to find duplicates of a batch's first lines.
        self._recent: list[tuple[int, pa.Table]] = []

    @property
    def lines_per_event(self) -> float:
        """The collapse ratio: distinct accepted lines per event fed to the engine."""
        fed = self.lines - self.duplicates - self.rejected
        return fed / self.events if self.events else 0.0

    def add(self, judged: pa.RecordBatch) -> None:
        """Collapse the batch's requests that name an account and have a client address into
        runs and ingest them (one engine batch, or several of ``batch_size`` runs)."""
        keep = pc.and_(pc.is_valid(judged.column("account")), pc.is_valid(judged.column("client")))
        names = [n for n in RUN_FIELDS if n in judged.schema.names]
        rows = judged.filter(keep).select(["ts", *names])
        if rows.num_rows == 0:
            return
        self.lines += rows.num_rows
        table = pa.Table.from_batches([rows]).combine_chunks()
        table = table.set_column(0, "ts", pc.cast(table.column("ts"), _TS))
        for i, name in enumerate(names, start=1):
            table = table.set_column(i, name, pc.cast(table.column(name), pa.string()))
        table = self._drop_duplicates(table)
        if table.num_rows:
            self._ingest_runs(table, names)

    def _drop_duplicates(self, table: pa.Table) -> pa.Table:
        """``table`` without lines identical to an earlier one (see the module docstring)."""
        ts_us = table.column("ts").cast(pa.int64()).to_numpy().astype(np.int64)
        columns = [c.combine_chunks() for c in table.columns[1:]]
        first = _first_occurrences(ts_us, columns)
        newest = self._newest_us
        if newest is not None:
            cutoff = newest - self.horizon_us
            self.late += int(np.count_nonzero(first & (ts_us < cutoff)))
            # Only lines no newer than the newest line seen can repeat an earlier batch's.
            maybe = np.nonzero(first & (ts_us >= cutoff) & (ts_us <= newest))[0]
            if len(maybe) and self._recent:
                low = int(ts_us[maybe].min())
                parts = [
                    t.filter(pc.greater_equal(t.column("ts"), _stamp(low)))
                    for newest_us, t in self._recent
                    if newest_us >= low
                ]
                earlier = pa.concat_tables(parts, promote_options="default") if parts else None
                if earlier is not None and earlier.num_rows:
                    both = pa.concat_tables(
                        [earlier, table.take(pa.array(maybe))], promote_options="default"
                    )
                    seen = _first_occurrences(
                        both.column("ts").cast(pa.int64()).to_numpy().astype(np.int64),
                        [c.combine_chunks() for c in both.columns[1:]],
                    )
                    first[maybe[~seen[earlier.num_rows :]]] = False
        self.duplicates += int(len(first) - np.count_nonzero(first))
        table = table.filter(pa.array(first))
        if table.num_rows:
            batch_newest = int(ts_us.max())
            newest = batch_newest if newest is None else max(newest, batch_newest)
            self._newest_us = newest
            cutoff = newest - self.horizon_us
            self._recent = [(n, t) for n, t in self._recent if n >= cutoff]
            recent = table.filter(pc.greater_equal(table.column("ts"), _stamp(cutoff)))
            if recent.num_rows:
                self._recent.append((batch_newest, recent))
        return table

    def _ingest_runs(self, table: pa.Table, names: list[str]) -> None:
        ts_us = table.column("ts").cast(pa.int64()).to_numpy().astype(np.int64)
        coded = [_codes(table.column(n).combine_chunks()) for n in names]
        account = coded[0][0]
        # Each account's lines in log order, then break wherever the engine could tell two
        # neighbours apart: another account, hour or policy segment, other attributes, or a
        # time going back (a run's requests must be in time order).
        order = np.argsort(account, kind="stable")
        t = ts_us[order]
        hour = t // _HOUR_US
        segment = np.searchsorted(self._bounds, t, side="right")
        brk = np.ones(len(order), bool)
        if len(order) > 1:
            same = (hour[1:] == hour[:-1]) & (segment[1:] == segment[:-1]) & (t[1:] >= t[:-1])
            for codes, _ in coded:
                c = codes[order]
                same &= c[1:] == c[:-1]
            brk[1:] = ~same
        starts = np.nonzero(brk)[0]
        ends = np.append(starts[1:], len(order)) - 1
        counts = ends - starts + 1
        # Fed in the order of their first line: each account's runs stay in its order.
        feed = np.argsort(order[starts], kind="stable")
        starts, ends, counts = starts[feed], ends[feed], counts[feed]
        last_s = t[ends] // _SECOND_US
        # In engine batches of ``batch_size`` runs: the Python objects of a batch of a million
        # lines would otherwise all exist at once.
        for lo in range(0, len(starts), self.batch_size):
            hi = lo + self.batch_size
            self._ingest_slice(
                ts_us, order[starts[lo:hi]], counts[lo:hi], last_s[lo:hi], names, coded
            )

    def _ingest_slice(
        self,
        ts_us: npt.NDArray[np.int64],
        first_rows: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
        last_s: npt.NDArray[np.int64],
        names: list[str],
        coded: list[tuple[npt.NDArray[np.int64], pa.Array]],
    ) -> None:
        """One engine batch: the runs whose first lines are ``first_rows``."""
        values: dict[str, list[Any]] = {}
        for n, (codes, vals) in zip(names, coded, strict=True):
            picked = codes[first_rows]
            values[n] = (
                vals.take(pa.array(np.where(picked < 0, 0, picked))).to_pylist()
                if len(vals)
                else [None] * len(first_rows)
            )
            for i in np.nonzero(picked < 0)[0].tolist():
                values[n][i] = None
        stamps = pc.cast(pa.array(ts_us[first_rows]), _TS).to_pylist()
        lasts = last_s.tolist()
        sizes = counts.tolist()
        pending: list[Event] = []
        for i, ts in enumerate(stamps):
            self._seq += 1
            rec: dict[str, Any] = {
                "id": f"run-{self._seq}",
                "type": "request",
                "ts": ts.isoformat().replace("+00:00", "Z"),
            }
            for n in names:
                value = values[n][i]
                if value is not None:
                    rec["ip" if n == "client" else n] = value
            try:
                event = parse_record(rec, text="")
            except EventError:
                self.rejected += sizes[i]
                continue
            pending.append(event._replace(repeat=sizes[i], last_epoch=lasts[i]))
        self._flush(pending)

    def _flush(self, events: list[Event]) -> None:
        if events:
            self.enforcer.ingest_batch(events)
            self.events += len(events)

    def result(self, at: datetime) -> pa.Table:
        """Accounts that are, or at ``at`` would be, anything but active."""
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
        table = pa.Table.from_pylist(rows, schema=PREVIEW_SCHEMA)
        return table.replace_schema_metadata({PREVIEW_STATS_KEY: json.dumps(self.stats())})

    def stats(self) -> dict[str, int | float]:
        """The counts of the preview (kept in the table's schema metadata as JSON under
        :data:`PREVIEW_STATS_KEY`): lines, duplicates, late, rejected, events, lines per event."""
        return {
            "lines": self.lines,
            "duplicates": self.duplicates,
            "late": self.late,
            "rejected": self.rejected,
            "events": self.events,
            "lines_per_event": round(self.lines_per_event, 3),
        }
