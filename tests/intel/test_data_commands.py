"""`geogate data build --verify`, the country-change gate and `geogate data diff`, run as a
user runs them (real subprocesses; exit codes and one-line errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.diff import diff_snapshots
from geogate.intel.snapshot import Snapshot

from .conftest import write_mmdb


def geogate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def _config(tmp_path: Path, rows: str, name: str = "build.toml", extra: str = "") -> Path:
    (tmp_path / f"{name}.csv").write_text(rows)
    (tmp_path / name).write_text(
        f"[build]\nblank_special_purpose = false\n{extra}"
        f'[[sources]]\nname = "c"\nkind = "csv-country"\npath = "{name}.csv"\n'
        'date = "2026-06-01"\n'
    )
    return tmp_path / name


OLD = "1.0.0.0,1.255.255.255,CN\n2.0.0.0,2.255.255.255,RU\n3.0.0.0,3.0.0.255,US\n"
# One /24 moves (3.0.0.0/24 US -> DE): 256 of 33,554,688 located addresses.
SMALL = "1.0.0.0,1.255.255.255,CN\n2.0.0.0,2.255.255.255,RU\n3.0.0.0,3.0.0.255,DE\n"
# A bad upstream day: all of 2.0.0.0/8 filed under US.
BAD = "1.0.0.0,1.255.255.255,CN\n2.0.0.0,2.255.255.255,US\n3.0.0.0,3.0.0.255,US\n"


def test_build_verify_and_gate(tmp_path: Path) -> None:
    out = tmp_path / "data.snapshot"
    r = geogate(
        "data",
        "build",
        "--config",
        str(_config(tmp_path, OLD)),
        "--out",
        str(out),
        "--verify",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stderr
    assert Snapshot.load(out).lookup("2.1.1.1").country == "RU"

    r = geogate(
        "data", "build", "--config", str(_config(tmp_path, SMALL)), "--out", str(out), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert Snapshot.load(out).lookup("3.0.0.1").country == "DE"

    r = geogate(
        "data", "build", "--config", str(_config(tmp_path, BAD)), "--out", str(out), cwd=tmp_path
    )
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "would change country" in line
    assert "RU->US" in line
    assert "Traceback" not in r.stderr
    assert Snapshot.load(out).lookup("2.1.1.1").country == "RU"  # the old snapshot stays
    assert not (tmp_path / "data.snapshot.new").exists()

    r = geogate(
        "data",
        "build",
        "--config",
        str(_config(tmp_path, BAD)),
        "--out",
        str(out),
        "--force",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert Snapshot.load(out).lookup("2.1.1.1").country == "US"


def test_configured_share(tmp_path: Path) -> None:
    out = tmp_path / "data.snapshot"
    assert (
        geogate(
            "data",
            "build",
            "--config",
            str(_config(tmp_path, OLD)),
            "--out",
            str(out),
            cwd=tmp_path,
        ).returncode
        == 0
    )
    cfg = _config(tmp_path, BAD, extra="max_country_change = 0.6\n")
    r = geogate("data", "build", "--config", str(cfg), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_diff_reports_movers(tmp_path: Path) -> None:
    old = build_snapshot(load_build_config(_config(tmp_path, OLD, name="old.toml")))
    new = build_snapshot(load_build_config(_config(tmp_path, BAD, name="new.toml")))
    d = diff_snapshots(old, new)
    assert d.v4.country_changed == 1 << 24
    assert d.v4.located == (1 << 24) * 2 + 256
    top = d.v4.country_movers[0]
    assert (top.old, top.new, top.units, top.ranges) == ("RU", "US", 1 << 24, 1)
    assert d.v6.country_changed == 0
    old.save(tmp_path / "old.snapshot")
    new.save(tmp_path / "new.snapshot")
    r = geogate("data", "diff", "old.snapshot", "new.snapshot", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ipv4"]["country_changed"] == 1 << 24
    assert doc["ipv4"]["country_movers"][0]["old"] == "RU"
    r = geogate("data", "diff", "old.snapshot", "new.snapshot", cwd=tmp_path)
    assert "country RU -> US: 16,777,216 addresses" in r.stdout


def test_diff_of_a_snapshot_with_itself_is_empty() -> None:
    snap = Snapshot.embedded()
    d = diff_snapshots(snap, snap)
    assert (d.v4.country_changed, d.v4.subdivision_changed, d.v4.flags_changed) == (0, 0, 0)
    assert d.v6.country_changed == 0
    assert d.v4.located > 3_000_000_000


def test_diff_refuses_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "bad.snapshot").write_bytes(b"nope")
    r = geogate("data", "diff", "bad.snapshot", "bad.snapshot", cwd=tmp_path)
    assert r.returncode == 3
    assert "bad.snapshot" in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_vendor_file_fails_the_build_with_one_line(tmp_path: Path) -> None:
    """A truncated .mmdb: exit 3, one line naming the file, and no snapshot written."""
    path = write_mmdb(
        tmp_path / "v.mmdb",
        {
            "database_type": "GeoIP2-Country",
            "ip_version": 6,
            "networks": [[f"{i}.0.0.0/8", {"country": {"iso_code": "CN"}}] for i in range(1, 60)],
        },
    )
    path.write_bytes(path.read_bytes()[:300])
    (tmp_path / "build.toml").write_text(
        '[[sources]]\nname = "v"\nkind = "mmdb"\npath = "v.mmdb"\ndate = "2026-06-01"\n'
    )
    r = geogate("data", "build", "--config", "build.toml", "--out", "out.snapshot", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "v.mmdb" in lines[0]
    assert "MaxMind DB" in lines[0]
    assert not (tmp_path / "out.snapshot").exists()


def test_data_info_names_where_cities_are_kept(tmp_path: Path) -> None:
    """`data info` says where a policy's city rules can match (the embedded default keeps
    cities in the four partly occupied oblasts the presets name)."""
    r = geogate("data", "info", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format_version"] == 3
    assert info["city_subdivisions"] == ["UA-09", "UA-14", "UA-23", "UA-65"]
    assert info["places"] > len(info["city_subdivisions"])
    text = geogate("data", "info", cwd=tmp_path)
    assert "cities kept in UA-09, UA-14, UA-23, UA-65" in text.stdout
