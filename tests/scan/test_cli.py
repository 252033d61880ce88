"""`geogate scan` end to end: tables written, a one-line error for bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.scan.logfiles import TEXT_FORMATS, write_text

from geogate.cli.main import main


def test_scan_writes_the_tables_and_counts_malformed_lines(
    tmp_path: Path, requests: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    _, render = TEXT_FORMATS["nginx-combined"]
    log = write_text(tmp_path / "access.log", render(requests) + b"garbage line\n", "gzip")
    out = tmp_path / "out"
    code = main(["scan", str(log), "--out", str(out), "--at", "2024-07-10", "--no-report"])
    assert code == 0
    daily = pq.read_table(out / "daily.parquet")
    assert sum(daily.column("requests").to_pylist()) == requests.num_rows
    for name in ("accounts", "orgs", "egress", "account_egress"):
        assert (out / f"{name}.parquet").exists()
    err = capsys.readouterr().err
    assert "1 malformed lines" in err
    assert f"access.log.gz:{requests.num_rows + 1}: not an nginx combined line" in err


def test_jobs_scan_files_in_processes_from_the_command_line(
    tmp_path: Path, requests: pa.Table
) -> None:
    _, render = TEXT_FORMATS["events"]
    half = requests.num_rows // 2
    logs = [
        write_text(tmp_path / "a.jsonl", render(requests.slice(0, half)), "gzip"),
        write_text(tmp_path / "b.jsonl", render(requests.slice(half)), "zstd"),
    ]
    for jobs in ("1", "2"):
        out = tmp_path / f"out-{jobs}"
        args = ["scan", *map(str, logs), "--out", str(out), "--jobs", jobs, "--no-report"]
        assert main(args) == 0
    for name in ("daily", "accounts", "account_egress", "orgs", "egress"):
        one = pq.read_table(tmp_path / "out-1" / f"{name}.parquet")
        assert pq.read_table(tmp_path / "out-2" / f"{name}.parquet").equals(one), name


def test_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tmp_path / "none*.log"), "--out", str(tmp_path)]) == 2
    assert main(["scan", str(tmp_path), "--out", str(tmp_path), "--at", "soon"]) == 2
    assert main(["scan", str(tmp_path), "--out", str(tmp_path), "--field", "bogus=x"]) == 2
    (tmp_path / "x.jsonl").write_text("")
    assert main(["scan", str(tmp_path / "x.jsonl"), "--out", str(tmp_path), "--jobs", "0"]) == 2
    huge = ["--jobs", "9" * 20]  # used to build that many shares and never return
    assert main(["scan", str(tmp_path / "x.jsonl"), "--out", str(tmp_path), *huge]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5
    assert all(line.startswith("geogate: error: ") for line in lines)
