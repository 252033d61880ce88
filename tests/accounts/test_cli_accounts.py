"""The account commands end to end, in process: ingest, accounts, enforce, audit.

User mistakes end in one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geogate.cli.main import main
from geogate.store.sql import SqlStore

from . import traffic


@pytest.fixture
def files(tmp_path: Path, snapshot_file: Path) -> dict[str, str]:
    events = tmp_path / "events.jsonl"
    with events.open("w") as f:
        for rec in traffic.all_events():
            f.write(json.dumps(rec) + "\n")
        f.write("{oops\n")
    return {
        "events": str(events),
        "db": str(tmp_path / "accounts.db"),
        "snapshot": str(snapshot_file),
    }


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ingest_then_inspect_and_explain(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, snap = files["db"], files["snapshot"]
    code, out, err = run(
        capsys, "ingest", files["events"], "--db", db, "--snapshot", snap, "--quiet"
    )
    assert code == 0, err
    assert "rejected" in out
    assert "1 rejected" in out
    assert "events.jsonl:" in err
    reject_file = Path(files["events"] + ".rejects.jsonl")
    assert json.loads(reject_file.read_text())["line"] == len(traffic.all_events()) + 1

    # Re-running the same file adds nothing.
    code, out, _ = run(capsys, "ingest", files["events"], "--db", db, "--snapshot", snap, "-q")
    assert code == 0
    assert out.startswith("ingested 0 new events")

    code, out, _ = run(capsys, "accounts", "list", "--db", db, "--state", "blocked")
    assert code == 0
    assert "acct-vpn" in out
    assert "acct-home" not in out

    code, out, _ = run(capsys, "accounts", "show", "acct-card", "--db", db, "--json")
    shown = json.loads(out)
    assert shown["state"] == "blocked"
    assert [t["to"] for t in shown["transitions"]] == ["warned", "blocked"]

    code, out, _ = run(capsys, "accounts", "explain", "acct-card", "--db", db, "--snapshot", snap)
    assert code == 0
    assert "Account acct-card is BLOCKED" in out
    assert "[FIRED    ] payment_unsupported" in out
    for rule in (
        "direct_unsupported",
        "vpn_switching",
        "language",
        "activity_clock",
        "egress_concentration",
    ):
        assert f"] {rule} " in out  # every rule is listed, fired or not, with its reasoning
    assert "payments: 8 with card country CN (unsupported)" in out
    assert "History:" in out
    assert "warning for unsupported-regions@2024-07-09" in out


def test_enforce_dry_run_reports_counts_and_list(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = tmp_path / "before.jsonl"
    before.write_text(
        "".join(json.dumps(r) + "\n" for r in traffic.all_events() if r["ts"] < "2024-07-09")
    )
    db, snap = files["db"], files["snapshot"]
    assert run(capsys, "ingest", str(before), "--db", db, "--snapshot", snap, "-q")[0] == 0
    # The day before the date the scheduled run adds the cross-account evidence: the relay
    # and its customers would be blocked, so they are warned.
    day_before = "2024-07-08T12:00:00Z"
    code, out, _ = run(
        capsys, "enforce", "--at", day_before, "--dry-run", "--db", db, "--snapshot", snap
    )
    assert code == 0
    assert "would change" in out
    assert "by reason:" in out
    assert "acct-reseller" in out
    assert "egress_concentration" in out
    code, out, _ = run(
        capsys, "enforce", "--at", day_before, "--db", db, "--snapshot", snap, "--json"
    )
    report = json.loads(out)
    assert report["by_state"].get("warned", 0) >= 1
    assert "blocked" not in report["by_state"]
    # On the date itself, with nothing from after it, evidence from before it blocks nobody.
    code, out, _ = run(
        capsys, "enforce", "--at", "2024-07-09", "--db", db, "--snapshot", snap, "--json"
    )
    assert "blocked" not in json.loads(out)["by_state"]
    assert run(capsys, "enforce", "--at", "2024-07-09", "--db", db, "--snapshot", snap)[
        1
    ].startswith("26 accounts evaluated")


def test_operator_actions_and_audit(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, snap = files["db"], files["snapshot"]
    run(capsys, "ingest", files["events"], "--db", db, "--snapshot", snap, "-q")
    assert run(
        capsys, "accounts", "appeal", "acct-card", "--db", db, "--note", "card issued abroad"
    )[1] == ("acct-card: blocked -> appealed\n")
    code, out, _ = run(
        capsys, "accounts", "reinstate", "acct-card", "--db", db, "--operator", "alice"
    )
    assert out == "acct-card: appealed -> reinstated\n"
    code, out, _ = run(capsys, "accounts", "show", "acct-card", "--db", db, "--json")
    shown = json.loads(out)
    assert [n["kind"] for n in shown["notices"]] == ["warning", "blocked", "reinstated"]
    last = shown["transitions"][-1]
    assert last["actor"] == "operator:alice"
    assert last["rules"] == ["operator:reinstate"]
    assert (
        run(capsys, "accounts", "exempt", "acct-home", "--db", db)[1]
        == "acct-home: active -> exempt\n"
    )
    assert (
        run(capsys, "accounts", "exempt", "acct-home", "--db", db, "--revoke")[1]
        == "acct-home: exempt -> active\n"
    )

    code, _, err = run(capsys, "accounts", "reinstate", "acct-home", "--db", db)
    assert code == 5
    assert err.count("\n") == 1
    assert "applies only to" in err

    code, out, _ = run(capsys, "audit", "verify", "--db", db)
    assert code == 0
    assert out.startswith("audit log ok")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["enforce", "--at", "next tuesday"], 2, "is not a date"),
        (["ingest", "missing.jsonl"], 2, "no such file"),
        (["accounts", "show", "nobody"], 2, "no account 'nobody'"),
        (["accounts", "list", "--state", "sleepy"], 2, "unknown state"),
        (["audit", "verify", "--db", "mysql://x@y/z"], 2, "unsupported database URL"),
        (["ingest", "x.jsonl", "--batch-size", "0"], 2, "at least 1"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    if "--db" not in args:
        args = [*args, "--db", files["db"]]
    got, _, err = run(capsys, *args)
    assert got == code
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_operator_events_in_the_feed(
    tmp_path: Path, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    feed = tmp_path / "ops.jsonl"
    feed.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "type": "exemption",
                    "ts": "2024-06-01T00:00:00Z",
                    "account": "partner",
                    "operator": "bob",
                },
                {
                    "type": "request",
                    "ts": "2024-07-10T00:00:00Z",
                    "account": "partner",
                    "ip": "11.4.1.9",
                },
                {
                    "type": "request",
                    "ts": "2024-07-10T00:01:00Z",
                    "account": "partner",
                    "ip": "11.4.1.9",
                },
                {
                    "type": "request",
                    "ts": "2024-07-10T00:02:00Z",
                    "account": "partner",
                    "ip": "11.4.1.9",
                },
            ]
        )
        + "\n"
    )
    db, snap = files["db"], files["snapshot"]
    assert run(capsys, "ingest", str(feed), "--db", db, "--snapshot", snap, "-q")[0] == 0
    _, out, _ = run(capsys, "accounts", "show", "partner", "--db", db, "--json")
    shown = json.loads(out)
    assert shown["state"] == "exempt"  # direct access from CN after the date, but exempt
    assert shown["transitions"][0]["actor"] == "operator:bob"


def test_operator_block_needs_a_reason_and_queues_a_notice(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, snap = files["db"], files["snapshot"]
    assert run(capsys, "ingest", files["events"], "--db", db, "--snapshot", snap, "-q")[0] == 0
    code, _, err = run(capsys, "accounts", "block", "acct-home", "--note", " ", "--db", db)
    assert code != 0
    assert "reason is required" in err
    code, out, _ = run(
        capsys,
        "accounts",
        "block",
        "acct-home",
        "--note",
        "chargeback investigation 1234",
        "--operator",
        "alice",
        "--db",
        db,
    )
    assert code == 0
    assert "active -> blocked" in out or "flagged -> blocked" in out
    store = SqlStore.open(db)
    try:
        last = store.transitions("acct-home")[-1]
        assert last.actor == "operator:alice"
        assert last.note == "chargeback investigation 1234"
        assert [n.kind for n in store.notices("acct-home")][-1] == "blocked"
        assert any(e.account == "acct-home" for e in store.audit_entries(account="acct-home"))
    finally:
        store.close()
