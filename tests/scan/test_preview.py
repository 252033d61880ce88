"""The account preview equals `geogate ingest` + `geogate enforce --dry-run` on the same log.

The preview collapses each account's identical requests of an hour into one event with a repeat
count (scan/preview.py); these tests hold it to the states and reasons of ingesting every line,
on the small synthetic log and on the judgement benchmark's labelled traffic (VPN switching
within minutes, travellers, relay orgs, direct users, one-off leaks), with identical duplicate
lines, in scan batches of a few hundred lines so that runs and duplicates straddle batches.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bench.judgement.generate import generate
from tests.scan.logfiles import event_jsonl

from geogate.cli.main import main
from geogate.errors import ConfigError
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.scan.preview import PREVIEW_STATS_KEY, AccountPreview
from geogate.scan.readers import ReadStats, expand_inputs
from geogate.scan.run import ScanConfig, judged_batches, scan_local
from geogate.store.sql import SqlStore

AT = datetime(2024, 7, 12, tzinfo=UTC)
LATE_AT = datetime(
    2024, 7, 30, tzinfo=UTC
)  # after the labelled traffic's three weeks past the date
SCANNED = ("type", "ts", "account", "org", "ip", "user_agent", "accept_language", "api_key")


def _ingest_then_enforce(
    log: Path, db_path: Path, at: datetime, capsys: pytest.CaptureFixture[str]
) -> dict[str, dict[str, str]]:
    """What `geogate ingest` + `geogate enforce --dry-run --json` decide: the accounts that
    are, or at ``at`` would be, anything but active (as the preview table lists them)."""
    db = f"sqlite:///{db_path}"
    assert main(["ingest", str(log), "--db", db]) == 0
    capsys.readouterr()
    assert main(["enforce", "--at", at.isoformat(), "--dry-run", "--json", "--db", db]) == 0
    report = json.loads(capsys.readouterr().out)
    changes = {c["account"]: c for c in report["changes"]}
    store = SqlStore.open(db)
    expected = {}
    for row in store.iter_accounts():
        change = changes.get(row.account)
        verdict = change["to"] if change else row.state
        if row.state == "active" and verdict == "active":
            continue
        expected[row.account] = {
            "status": row.state,
            "verdict": verdict,
            "reasons": ",".join(change["rules"] if change else row.reasons),
        }
    store.close()
    return expected


def _got(table: pa.Table) -> dict[str, dict[str, str]]:
    return {
        r["account"]: {"status": r["status"], "verdict": r["verdict"], "reasons": r["reasons"]}
        for r in table.to_pylist()
    }


def test_preview_equals_ingest_then_enforce_dry_run(
    tmp_path: Path,
    requests: pa.Table,
    snapshot: Snapshot,
    policies: PolicySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(event_jsonl(requests))

    result = scan_local(
        ScanConfig(
            inputs=[str(log)],
            out=tmp_path / "out",
            policies=policies,
            snapshot=snapshot,
            at=AT,
            report=False,
            preview_accounts=True,
        )
    )
    expected = _ingest_then_enforce(log, tmp_path / "accounts.db", AT, capsys)
    assert expected, "the sample must exercise the account rules"
    assert {v["verdict"] for v in expected.values()} >= {"blocked"}
    assert _got(result.tables["account_preview"]) == expected
    written = pq.read_schema(tmp_path / "out" / "account_preview.parquet")
    stats = json.loads(written.metadata[PREVIEW_STATS_KEY.encode()])
    assert stats["lines"] == requests.num_rows
    assert stats["late"] == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["account_preview"] == stats


@pytest.fixture(scope="module")
def labelled_log(tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot) -> Path:
    """The judgement benchmark's traffic at a tenth of its size (37 accounts, about 61,000
    requests over seven weeks), as the fields a log has (API keys included), with identical
    duplicates: every 50th line repeated at once, every 77th three lines later (the log then
    goes back in time by seconds there, as logs written at the end of each request do)."""
    traffic = generate(1, 0.1, snapshot=snapshot)
    lines: list[bytes] = []
    later: list[tuple[int, bytes]] = []
    for i, rec in enumerate(r for r in traffic.records if r["type"] == "request"):
        line = orjson.dumps({k: rec[k] for k in SCANNED if k in rec})
        while later and later[0][0] <= i:
            lines.append(later.pop(0)[1])
        lines.append(line)
        if i % 50 == 0:
            lines.append(line)
        if i % 77 == 0:
            later.append((i + 3, line))
    lines.extend(line for _, line in later)
    path = tmp_path_factory.mktemp("labelled") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _preview_of(
    log: Path,
    tmp_path: Path,
    snapshot: Snapshot,
    policies: PolicySet,
    *,
    batch_rows: int,
    **options: Any,
) -> tuple[pa.Table, AccountPreview]:
    """The preview of ``log`` fed in judged batches of exactly ``batch_rows`` rows (cut here:
    how many rows a reader puts in a batch is the reader's business)."""
    config = ScanConfig(
        inputs=[str(log)],
        out=tmp_path / "out",
        policies=policies,
        snapshot=snapshot,
        at=LATE_AT,
        report=False,
    )
    judged = pa.Table.from_batches(
        list(judged_batches(config, expand_inputs([str(log)]), ReadStats(), None))
    ).combine_chunks()
    preview = AccountPreview(policies, snapshot, db=tmp_path / "preview.db", **options)
    for batch in judged.to_batches(max_chunksize=batch_rows):
        preview.add(batch)
    return preview.result(LATE_AT), preview


@pytest.mark.parametrize(
    ("batch_rows", "options"),
    [(20_000, {}), (997, {"batch_size": 200, "dedupe_horizon_seconds": 86_400})],
    ids=["large-batches", "small-batches"],
)
def test_preview_of_labelled_traffic_equals_ingest_then_enforce(
    tmp_path: Path,
    labelled_log: Path,
    snapshot: Snapshot,
    policies: PolicySet,
    capsys: pytest.CaptureFixture[str],
    batch_rows: int,
    options: dict[str, Any],
) -> None:
    table, preview = _preview_of(
        labelled_log, tmp_path, snapshot, policies, batch_rows=batch_rows, **options
    )
    expected = _ingest_then_enforce(labelled_log, tmp_path / "accounts.db", LATE_AT, capsys)
    verdicts = {v["verdict"] for v in expected.values()}
    assert {"blocked", "warned"} <= verdicts
    assert _got(table) == expected
    lines = sum(1 for line in labelled_log.read_bytes().splitlines() if line.strip())
    assert preview.lines == lines
    assert preview.duplicates == lines - len(set(labelled_log.read_bytes().splitlines()) - {b""})
    assert preview.late == 0
    assert preview.rejected == 0
    # Runs of several lines were fed (people's traffic collapses little: about 1.1 lines per
    # event here, where a client calling from one address all day collapses a thousandfold).
    assert preview.events < lines - preview.duplicates
    assert preview.lines_per_event > 1.05
    assert json.loads(table.schema.metadata[PREVIEW_STATS_KEY.encode()]) == preview.stats()


def test_lines_older_than_the_dedupe_horizon_are_counted_as_late(
    tmp_path: Path, requests: pa.Table, snapshot: Snapshot, policies: PolicySet
) -> None:
    """A log out of time order: its second half (written again, earlier by days) cannot be
    checked for duplicates against lines long gone from the horizon, and says so."""
    log = tmp_path / "events.jsonl"
    body = event_jsonl(requests)
    log.write_bytes(body + body)  # the whole log twice: every line of the copy is a duplicate
    _table, preview = _preview_of(
        log, tmp_path, snapshot, policies, batch_rows=100, dedupe_horizon_seconds=3_600
    )
    assert preview.lines == 2 * requests.num_rows
    assert preview.late > 0
    assert preview.duplicates + preview.late >= requests.num_rows


def test_a_duplicate_in_the_next_batch_counts_once(
    tmp_path: Path, requests: pa.Table, snapshot: Snapshot, policies: PolicySet
) -> None:
    """Batches of two lines: the third line repeats the second, across the boundary."""
    log = tmp_path / "events.jsonl"
    lines = event_jsonl(requests.slice(0, 2)).splitlines()
    log.write_bytes(b"\n".join([*lines, lines[1]]) + b"\n")
    _table, preview = _preview_of(
        log, tmp_path, snapshot, policies, batch_rows=2, dedupe_horizon_seconds=0
    )
    assert (preview.lines, preview.duplicates, preview.late) == (3, 1, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch size must be positive, not 0"),
        ({"dedupe_horizon_seconds": -1}, "dedupe horizon must be 0 or more seconds, not -1"),
    ],
)
def test_bad_preview_settings_are_one_line_errors(
    tmp_path: Path,
    snapshot: Snapshot,
    policies: PolicySet,
    options: dict[str, int],
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        AccountPreview(policies, snapshot, db=tmp_path / "preview.db", **options)
