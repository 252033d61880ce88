"""Benchmark of the scan's account preview: lines/s and events/s, runs against every line.

    python bench/bench_preview.py [--rows 1000000] [--chatty-rows 1000000]

Two generated logs, judged once up front (the judge is the scan's cost, not the preview's):

- the scan benchmark's synthetic log (``bench/bench_scan.py``: 28 days, 50,000 accounts with
  Zipf-distributed activity, each on a home address with 15 % of requests from elsewhere);
- a chatty log: 200 API clients, each calling from one server address with one user agent
  around the clock for a day (what a backend integration looks like).

For each, in the same run: the reference — every line fed to the account engine as its own
event, as the preview did before runs (``lines``) — and :class:`AccountPreview` with runs
(``runs``). Both end with ``enforce(at, dry_run=True)``; the benchmark checks that their
preview tables are equal. Rates divide by the process's CPU time (the machine is shared);
wall-clock seconds are printed beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, parse_record
from geogate.accounts.evidence import DeciderLocator
from geogate.decide import Decider
from geogate.errors import EventError
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.scan.judge import Judge, Scenario
from geogate.scan.preview import AccountPreview
from geogate.scan.readers import RAW_SCHEMA
from geogate.scan.synthetic import synthetic_requests

START = datetime(2024, 6, 20, tzinfo=UTC)
AT = datetime(2024, 7, 10, tzinfo=UTC)
BATCH_ROWS = 262_144  # the readers' default batch


def scan_log(snapshot: Snapshot, rows: int) -> pa.Table:
    """The scan benchmark's log (its first chunk's parameters)."""
    return synthetic_requests(
        snapshot, rows, start=START, days=28, accounts=50_000, clients=200_000, seed=100
    )


def chatty_log(snapshot: Snapshot, rows: int, clients: int = 200) -> pa.Table:
    """``clients`` API clients calling around the clock for a day, each from one address."""
    base = synthetic_requests(snapshot, clients, start=START, days=1, accounts=clients, seed=5)
    rng = np.random.default_rng(11)
    who = rng.integers(0, clients, rows)
    offsets = np.sort(rng.integers(0, 86_400, rows)) * 1_000_000
    ts = pa.array(int(START.timestamp()) * 1_000_000 + offsets, pa.int64())
    idx = pa.array(who)
    return pa.table(
        {
            "ts": ts.cast(pa.timestamp("us", tz="UTC")),
            "ip": base.column("ip").take(idx),
            "account": pa.array([f"svc-{i}" for i in range(clients)]).take(idx),
            "org": pa.array([f"org-{i // 10}" for i in range(clients)]).take(idx),
            "user_agent": pa.array(["Go-http-client/2.0"] * rows),
            "accept_language": pa.nulls(rows, pa.string()),
        }
    )


def judged(table: pa.Table, snapshot: Snapshot, policies: PolicySet) -> list[pa.RecordBatch]:
    """The log as judged batches of the readers' size (the preview's input)."""
    judge = Judge(snapshot, Scenario(policies=policies, at=AT), pivot=AT)
    given = {"peer": table.column("ip")} | {
        n: table.column(n) for n in ("ts", "account", "org", "user_agent", "accept_language")
    }
    raw = pa.table(
        {f.name: given.get(f.name, pa.nulls(table.num_rows, f.type)) for f in RAW_SCHEMA},
        schema=RAW_SCHEMA,
    )
    return [judge.judge(b) for b in raw.to_batches(BATCH_ROWS)]


class LinePreview(AccountPreview):
    """The reference: every line its own event with its content id, stored in the event log
    (what made duplicates count once), as the preview did before runs; the same dry run."""

    def __init__(self, policies: PolicySet, snapshot: Snapshot, *, db: Path) -> None:
        super().__init__(policies, snapshot, db=db)
        locator = DeciderLocator(Decider(policies, snapshot))
        self.enforcer = Enforcer(self.store, policies=policies, locator=locator)

    def add(self, judged: pa.RecordBatch) -> None:
        keep = pc.and_(pc.is_valid(judged.column("account")), pc.is_valid(judged.column("client")))
        rows = judged.filter(keep)
        cols = {
            name: pc.cast(rows.column(name), pa.string()).to_pylist()
            for name in ("account", "org", "client", "user_agent", "accept_language")
        }
        stamps = [t.isoformat().replace("+00:00", "Z") for t in rows.column("ts").to_pylist()]
        self.lines += len(stamps)
        pending: list[Event] = []
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
                pending.append(parse_record(rec))
            except EventError:
                self.rejected += 1
            if len(pending) >= self.batch_size:
                self._flush(pending)
                pending = []
        self._flush(pending)


def run(
    make: Callable[..., AccountPreview],
    batches: list[pa.RecordBatch],
    snapshot: Snapshot,
    policies: PolicySet,
) -> tuple[dict[str, float], pa.Table]:
    with tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        t0 = time.perf_counter()
        preview = make(policies, snapshot, db=Path(tmp) / "a.db")
        for b in batches:
            preview.add(b)
        table = preview.result(AT)
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
    stats = {
        "lines": preview.lines,
        "events": preview.events,
        "duplicates": preview.duplicates,
        "cpu": cpu,
        "wall": wall,
        "lines_per_s": preview.lines / cpu,
        "events_per_s": preview.events / cpu,
        "ratio": preview.lines_per_event,
    }
    return stats, table


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints one Markdown table row per run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chatty-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    snapshot = Snapshot.embedded()
    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    # Checked here, not assumed: the preview tables of both ways must agree.
    ok = True
    print("| log | way | lines | events | lines/event | CPU s | wall s | lines/s | events/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, table in (
        ("scan benchmark", scan_log(snapshot, args.rows)),
        ("chatty clients", chatty_log(snapshot, args.chatty_rows)),
    ):
        batches = judged(table, snapshot, policies)
        tables = []
        for way, make in (("lines", LinePreview), ("runs", AccountPreview)):
            stats, result = run(make, batches, snapshot, policies)
            tables.append(result)
            print(
                f"| {name} | {way} | {stats['lines']:,.0f} | {stats['events']:,.0f} | "
                f"{stats['ratio']:.2f} | {stats['cpu']:.1f} | {stats['wall']:.1f} | "
                f"{stats['lines_per_s']:,.0f} | {stats['events_per_s']:,.0f} |",
                flush=True,
            )
        same = (
            tables[0]
            .select(["account", "status", "verdict", "reasons"])
            .equals(tables[1].select(["account", "status", "verdict", "reasons"]))
        )
        ok = ok and same
        print(f"<!-- {name}: preview tables equal: {same}; {tables[1].num_rows} accounts -->")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
