"""Hostile input on the command line: one bad address or event line is one line of error, the
valid input is still processed. Real subprocesses and a real SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from geogate.intel.samples import sample_addresses
from geogate.intel.snapshot import Snapshot


def geogate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_check_prints_the_valid_addresses_and_one_line_per_bad_one() -> None:
    r = geogate("check", "8.8.8.8", "1.2.3.999", "1.1.1.1", "--json", "--at", "2024-07-10")
    assert r.returncode == 2
    assert [json.loads(line)["ip"] for line in r.stdout.splitlines()] == ["8.8.8.8", "1.1.1.1"]
    assert r.stderr.strip() == "geogate: error: not an IP address: '1.2.3.999'"


def test_check_rejects_dates_outside_1970_to_2100() -> None:
    for at in ("0001-01-01T00:00:00+01:00", "2200-01-01"):
        r = geogate("check", "8.8.8.8", "--at", at)
        assert r.returncode == 2
        assert r.stderr.strip().endswith("is outside the years 1970 to 2100"), r.stderr
        assert "Traceback" not in r.stderr


def test_ingest_rejects_bad_lines_with_their_numbers_and_keeps_the_rest(tmp_path: Path) -> None:
    """The lines that jammed the feed (exit 1, no reject file, nothing stored, same stop on
    every re-run) now each go to the reject file; the good lines are stored; a re-run stores
    nothing twice."""
    us4 = sample_addresses(Snapshot.embedded(), ["US"], ipv6=False)[0]
    good = [
        json.dumps({"type": "request", "ts": f"2024-07-20T10:0{m}:00Z", "account": "a", "ip": us4})
        for m in range(2)
    ]
    bad = [
        '{"type":"request","ts":"0001-01-01T00:00:00+01:00","account":"a","ip":"8.8.8.8"}',
        '{"type":"payment","ts":"2024-07-01T00:00:00Z","account":"a","amount":' + "9" * 401 + "}",
        '{"type":"payment","ts":"2024-07-01T00:00:00Z","account":"a","amount":' + "9" * 5001 + "}",
    ]
    feed = tmp_path / "events.jsonl"
    feed.write_text("\n".join([good[0], *bad, good[1]]) + "\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    r = geogate("ingest", str(feed), "--db", db, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "ingested 2 new events (0 already stored, 3 rejected)" in r.stdout
    reject_file = tmp_path / "events.jsonl.rejects.jsonl"
    rejects = [json.loads(line) for line in reject_file.read_text(encoding="utf-8").splitlines()]
    assert [x["line"] for x in rejects] == [2, 3, 4]
    assert "outside the years 1970 to 2100" in rejects[0]["error"]
    assert rejects[1]["field"] == "amount"
    assert "5001 digits" in rejects[2]["error"]
    again = geogate("ingest", str(feed), "--db", db, "--quiet", "--rejects", str(tmp_path / "r"))
    assert again.returncode == 0, again.stderr
    assert "ingested 0 new events (2 already stored, 3 rejected)" in again.stdout


def test_ingest_rejects_invalid_utf8_lines_alone(tmp_path: Path) -> None:
    """A line with bytes that are not UTF-8 (or a lone surrogate escape) is rejected; the
    reject file stays valid UTF-8; the other lines are stored."""
    us4 = sample_addresses(Snapshot.embedded(), ["US"], ipv6=False)[0]
    good = json.dumps({"type": "request", "ts": "2024-07-20T10:00:00Z", "account": "a", "ip": us4})
    feed = tmp_path / "events.jsonl"
    feed.write_bytes(
        good.encode()
        + b'\n{"type":"request","ts":"2024-07-20T10:01:00Z","account":"caf\xe9","ip":"8.8.8.8"}\n'
        + b'{"type":"request","ts":"2024-07-20T10:02:00Z","account":"\\ud800","ip":"8.8.8.8"}\n'
    )
    r = geogate("ingest", str(feed), "--db", f"sqlite:///{tmp_path / 's.db'}", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "ingested 1 new events (0 already stored, 2 rejected)" in r.stdout
    rejects = (tmp_path / "events.jsonl.rejects.jsonl").read_bytes().decode("utf-8")
    assert [json.loads(line)["line"] for line in rejects.splitlines()] == [2, 3]


def test_parquet_row_out_of_python_range_is_rejected_alone(tmp_path: Path) -> None:
    """A timestamp column value past year 9999 made the whole Parquet batch fail to convert
    (OverflowError, traceback); now only its row is rejected."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    us4 = sample_addresses(Snapshot.embedded(), ["US"], ipv6=False)[0]
    seconds = [1_721_469_600, 2 * 253_402_300_800, 1_721_469_660]
    table = pa.table(
        {
            "type": ["request"] * 3,
            "ts": pa.array(seconds, pa.timestamp("s")),
            "account": ["a", "b", "c"],
            "ip": [us4] * 3,
        }
    )
    feed = tmp_path / "events.parquet"
    pq.write_table(table, feed)
    r = geogate("ingest", str(feed), "--db", f"sqlite:///{tmp_path / 's.db'}", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "ingested 2 new events (0 already stored, 1 rejected)" in r.stdout
    assert "Traceback" not in r.stderr
