"""The AS organisation comes from the very record that gave the AS number: never from another
network of the same AS, never filled in from another source where the record has none."""

from __future__ import annotations

from pathlib import Path

from geogate.intel.build import build_snapshot, load_build_config, verify_written
from geogate.intel.snapshot import Snapshot

FIRST = (
    "1.0.0.0,1.0.0.255,64500,Org One\n"
    "1.0.1.0,1.0.1.255,64500,Org Renamed\n"
    "1.0.2.0,1.0.2.255,64500\n"
)
SECOND = "1.0.2.0,1.0.2.255,64500,Filled Elsewhere\n1.0.3.0,1.0.3.255,64501,Second Only\n"


def test_as_org_is_the_records_own(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(FIRST)
    (tmp_path / "b.csv").write_text(SECOND)
    (tmp_path / "build.toml").write_text(
        "[build]\nblank_special_purpose = false\n"
        '[[sources]]\nname = "a"\nkind = "csv-asn"\npath = "a.csv"\ndate = "2026-06-01"\n'
        '[[sources]]\nname = "b"\nkind = "csv-asn"\npath = "b.csv"\ndate = "2026-06-01"\n'
        '[precedence]\nasn = ["a", "b"]\n'
    )
    snap = build_snapshot(load_build_config(tmp_path / "build.toml"))
    snap.save(tmp_path / "s.snapshot")
    for s in (
        snap,
        verify_written(snap, tmp_path / "s.snapshot"),
        Snapshot.load(tmp_path / "s.snapshot"),
    ):
        got = {
            ip: (s.lookup(ip).asn, s.lookup(ip).as_org)
            for ip in ("1.0.0.1", "1.0.1.1", "1.0.2.1", "1.0.3.1")
        }
        assert got == {
            "1.0.0.1": (64500, "Org One"),
            "1.0.1.1": (64500, "Org Renamed"),
            "1.0.2.1": (64500, None),  # the record names none: nothing is filled in
            "1.0.3.1": (64501, "Second Only"),
        }


def test_snapshots_without_the_column_use_the_as_table() -> None:
    snap = Snapshot.embedded()
    facts = snap.lookup("8.8.8.8")
    assert facts.as_org == snap.as_org(15169)


def test_the_column_is_left_out_when_one_name_per_as_says_it_all(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1.0.0.0,1.0.0.255,64500,Same\n1.0.1.0,1.0.1.255,64500,Same\n")
    (tmp_path / "build.toml").write_text(
        '[[sources]]\nname = "a"\nkind = "csv-asn"\npath = "a.csv"\ndate = "2026-06-01"\n'
    )
    snap = build_snapshot(load_build_config(tmp_path / "build.toml"))
    assert snap.org_names is None
    assert snap.lookup("1.0.1.1").as_org == "Same"
    snap.save(tmp_path / "s.snapshot")
    assert verify_written(snap, tmp_path / "s.snapshot").org_names is None
