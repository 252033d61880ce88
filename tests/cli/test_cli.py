"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from geogate.intel.samples import sample_addresses
from geogate.intel.snapshot import Snapshot


def geogate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_json_gives_countries_and_reasons() -> None:
    snap = Snapshot.embedded()
    cn4, cn6 = sample_addresses(snap, ["CN"])[:2]
    de4 = sample_addresses(snap, ["DE"], ipv6=False)[0]
    r = geogate("check", cn4, cn6, de4, "--json", "--at", "2024-07-10")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["ip"] for row in rows] == [cn4, cn6, de4]
    assert [row["evidence"]["country"] for row in rows] == ["CN", "CN", "DE"]
    assert rows[0]["action"] == "deny"
    assert "region_unsupported" in rows[0]["reasons"]
    assert rows[2]["action"] in {"allow", "warn"}
    assert rows[0]["evidence"]["provenance"]


def test_check_table_explains() -> None:
    r = geogate("check", "8.8.8.8", "--at", "2024-07-10")
    assert r.returncode == 0, r.stderr
    assert "8.8.8.8" in r.stdout
    assert "unsupported-regions@2024-07-09" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["check", "1.2.3.999"], 2, "not an IP address: '1.2.3.999'"),
        (["check", "8.8.8.8", "--at", "tomorrow"], 2, "--at"),
        (["check", "8.8.8.8", "--policy", "nope.toml"], 2, "nope.toml: no such file"),
        (["check", "8.8.8.8", "--snapshot", "missing.snap"], 3, "missing.snap"),
        (["policy", "check", "builtin:nope"], 2, "no built-in policy"),
        (["data", "build", "--out", "x.snap"], 2, "--config"),
    ],
)
def test_user_mistakes_are_one_line_errors(args: list[str], code: int, fragment: str) -> None:
    r = geogate(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_usage_errors_show_usage_without_traceback() -> None:
    r = geogate("check", "8.8.8.8", "--no-such-option")
    assert r.returncode == 2
    assert "No such option: --no-such-option" in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_snapshot_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.snapshot"
    bad.write_bytes(b"PK\x03\x04 this is not a snapshot")
    r = geogate("check", "8.8.8.8", "--snapshot", str(bad))
    assert r.returncode == 3
    assert str(bad) in r.stderr
    assert "Traceback" not in r.stderr


def test_policy_check_reports_line(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('[policy]\nid = "x"\n\n[[rules]]\nid = "r"\nregions = ["XX-NOPE-1"]\n')
    r = geogate("policy", "check", str(p))
    assert r.returncode == 2
    assert f"{p}:6: rules[0].regions" in r.stderr


def test_policy_explain_shows_schedule() -> None:
    before = geogate("policy", "explain", "builtin:unsupported-regions", "--at", "2024-07-01")
    after = geogate("policy", "explain", "builtin:unsupported-regions", "--at", "2024-07-10")
    assert before.returncode == after.returncode == 0
    assert "warn" in before.stdout
    assert "changes ahead: 2024-07-09" in before.stdout
    assert "deny" in after.stdout
    assert "changes ahead" not in after.stdout


def test_data_info_lists_sources() -> None:
    r = geogate("data", "info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    names = {s["name"] for s in info["sources"]}
    assert len(names) >= 3
    assert all(s["date"] for s in info["sources"])
