"""The account preview equals `geogate ingest` + `geogate enforce --dry-run` on the same log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from tests.scan.logfiles import event_jsonl

from geogate.cli.main import main
from geogate.policy.model import PolicySet
from geogate.scan.run import ScanConfig, scan_local
from geogate.store.sql import SqlStore

AT = datetime(2024, 7, 12, tzinfo=UTC)


def test_preview_equals_ingest_then_enforce_dry_run(
    tmp_path: Path,
    requests: pa.Table,
    snapshot,
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
    preview = {r["account"]: r for r in result.tables["account_preview"].to_pylist()}

    db = f"sqlite:///{tmp_path / 'accounts.db'}"
    assert main(["ingest", str(log), "--db", db]) == 0
    capsys.readouterr()
    assert main(["enforce", "--at", AT.isoformat(), "--dry-run", "--json", "--db", db]) == 0
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

    assert expected, "the sample must exercise the account rules"
    assert {v["verdict"] for v in expected.values()} >= {"blocked"}
    got = {
        a: {"status": r["status"], "verdict": r["verdict"], "reasons": r["reasons"]}
        for a, r in preview.items()
    }
    assert got == expected
    assert (tmp_path / "out" / "account_preview.parquet").exists()
