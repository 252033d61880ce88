"""The update gate watches network flags too: a VPN feed cut short (or swapped for another
list) changes no country and no subdivision, so the other gates let it through and the VPN
exits it dropped became plain, allowed networks. More than ``max_flag_change`` (25 %) of the
IPv4 addresses carrying a flag gaining or losing it refuses the update, in one line, unless
``--force``; flags on fewer addresses than a /16 (Tor exits) churn and are not gated."""

from __future__ import annotations

from pathlib import Path

from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.diff import diff_snapshots
from geogate.intel.snapshot import Snapshot

from .conftest import write_mmdb
from .test_data_commands import geogate


def _anonymizer_db(tmp_path: Path, name: str, vpn_16s: int, tor: bool = True) -> Path:
    """``vpn_16s`` VPN /16s under 45.x, one Tor /24, in MaxMind's Anonymous-IP layout."""
    networks: list[list[object]] = [
        [f"45.{i}.0.0/16", {"is_anonymous": True, "is_anonymous_vpn": True}] for i in range(vpn_16s)
    ]
    if tor:
        networks.append(["185.220.101.0/24", {"is_anonymous": True, "is_tor_exit_node": True}])
    write_mmdb(
        tmp_path / f"{name}.mmdb",
        {"database_type": "GeoIP2-Anonymous-IP", "ip_version": 6, "networks": networks},
    )
    (tmp_path / f"{name}.toml").write_text(
        f'[[sources]]\nname = "anon"\nkind = "mmdb"\npath = "{name}.mmdb"\ndate = "2026-06-01"\n'
    )
    return tmp_path / f"{name}.toml"


def _build(tmp_path: Path, config: Path, *extra: str) -> tuple[int, str]:
    out = tmp_path / "data.snapshot"
    r = geogate("data", "build", "--config", str(config), "--out", str(out), *extra, cwd=tmp_path)
    return r.returncode, r.stderr


def test_vpn_feed_cut_short_is_refused(tmp_path: Path) -> None:
    assert _build(tmp_path, _anonymizer_db(tmp_path, "full", 8))[0] == 0
    code, stderr = _build(tmp_path, _anonymizer_db(tmp_path, "cut", 4))
    assert code == 3, stderr
    line = stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    assert "50.00 % of IPv4 addresses flagged vpn in either snapshot would gain or lose it" in line
    assert "max_flag_change 25.00 %" in line
    assert "vpn->none 262,144" in line
    assert Snapshot.load(tmp_path / "data.snapshot").lookup("45.7.0.1").flags.names() == ("vpn",)

    code, stderr = _build(tmp_path, tmp_path / "cut.toml", "--force")
    assert code == 0, stderr
    assert not Snapshot.load(tmp_path / "data.snapshot").lookup("45.7.0.1").flags


def test_ordinary_churn_and_small_lists_pass(tmp_path: Path) -> None:
    assert _build(tmp_path, _anonymizer_db(tmp_path, "full", 8))[0] == 0
    # One VPN /16 of eight gone (12.5 %) and every Tor exit gone (a /24: not gated).
    code, stderr = _build(tmp_path, _anonymizer_db(tmp_path, "churn", 7, tor=False))
    assert code == 0, stderr
    assert not Snapshot.load(tmp_path / "data.snapshot").lookup("185.220.101.1").flags


def test_configured_flag_share(tmp_path: Path) -> None:
    assert _build(tmp_path, _anonymizer_db(tmp_path, "full", 8))[0] == 0
    cut = _anonymizer_db(tmp_path, "cut", 4)
    cut.write_text("[build]\nmax_flag_change = 0.6\n" + cut.read_text())
    assert _build(tmp_path, cut)[0] == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[build]\nmax_flag_change = 2\n" + cut.read_text().split("\n", 2)[2])
    code, stderr = _build(tmp_path, bad)
    assert code != 0
    assert "build.max_flag_change" in stderr.strip().splitlines()[-1]


def test_diff_reports_each_flag(tmp_path: Path) -> None:
    old = build_snapshot(load_build_config(_anonymizer_db(tmp_path, "old", 8)))
    new = build_snapshot(load_build_config(_anonymizer_db(tmp_path, "new", 6, tor=False)))
    changes = {c.flag: (c.changed, c.carried) for c in diff_snapshots(old, new).v4.flag_changes}
    assert changes == {"vpn": (131_072, 524_288), "tor": (256, 256)}
    old.save(tmp_path / "old.snapshot")
    new.save(tmp_path / "new.snapshot")
    r = geogate("data", "diff", "old.snapshot", "new.snapshot", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "flag vpn: 131,072 of 524,288 addresses gained or lost it (25.000 %)" in r.stdout
