"""The update gate also watches subdivisions: a feed that drops Crimea's subdivision changes
no country (DB-IP files those networks under UA or RU either way), so the country gate let it
through and the UA-filed Crimean networks became plain, allowed UA. Now more than
``max_subdivision_change`` (10 %) of the IPv4 addresses with a subdivision changing it
refuses the update, in one line, unless ``--force``."""

from __future__ import annotations

from pathlib import Path

from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.diff import diff_snapshots
from geogate.intel.snapshot import Snapshot

from .conftest import write_mmdb
from .test_data_commands import geogate


def _city_db(tmp_path: Path, name: str, crimea: str | None) -> Path:
    """Ukraine by oblast: Kyiv oblast /16s, one Crimean /16 (subdivision ``crimea``)."""
    networks: list[list[object]] = [
        [f"31.{i}.0.0/16", {"country": {"iso_code": "UA"}, "subdivisions": [{"iso_code": "32"}]}]
        for i in range(4)
    ]
    record: dict[str, object] = {"country": {"iso_code": "UA"}}
    if crimea is not None:
        record["subdivisions"] = [{"iso_code": crimea}]
    networks.append(["46.0.0.0/15", record])
    write_mmdb(
        tmp_path / f"{name}.mmdb",
        {"database_type": "GeoIP2-City", "ip_version": 6, "networks": networks},
    )
    (tmp_path / f"{name}.toml").write_text(
        f'[[sources]]\nname = "city"\nkind = "mmdb"\npath = "{name}.mmdb"\ndate = "2026-06-01"\n'
    )
    return tmp_path / f"{name}.toml"


def test_dropped_territory_subdivision_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "data.snapshot"
    good, bad = _city_db(tmp_path, "good", "43"), _city_db(tmp_path, "bad", None)
    assert (
        geogate("data", "build", "--config", str(good), "--out", str(out), cwd=tmp_path).returncode
        == 0
    )

    r = geogate("data", "build", "--config", str(bad), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
    assert "33.33 % of IPv4 addresses with a subdivision would change it" in line
    assert "UA-43->- 131,072" in line
    assert Snapshot.load(out).lookup("46.0.0.1").subdivision == "UA-43"  # kept

    forced = geogate(
        "data", "build", "--config", str(bad), "--out", str(out), "--force", cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    assert Snapshot.load(out).lookup("46.0.0.1").subdivision is None


def test_diff_reports_the_subdivision_share(tmp_path: Path) -> None:
    old = build_snapshot(load_build_config(_city_db(tmp_path, "old", "43")))
    new = build_snapshot(load_build_config(_city_db(tmp_path, "new", "40")))
    v4 = diff_snapshots(old, new).v4
    assert (v4.country_changed, v4.subdivision_changed, v4.subdivided) == (0, 131_072, 393_216)
    assert v4.subdivision_change_share == 131_072 / 393_216
    assert [(m.old, m.new, m.units) for m in v4.subdivision_movers] == [("UA-43", "UA-40", 131_072)]
    old.save(tmp_path / "old.snapshot")
    new.save(tmp_path / "new.snapshot")
    r = geogate("data", "diff", "old.snapshot", "new.snapshot", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "131,072 of 393,216 subdivision (33.333 %)" in r.stdout
    assert "subdivision UA-43 -> UA-40: 131,072 addresses in 1 ranges" in r.stdout


def test_configured_subdivision_share(tmp_path: Path) -> None:
    out = tmp_path / "data.snapshot"
    good, bad = _city_db(tmp_path, "good", "43"), _city_db(tmp_path, "bad", None)
    bad.write_text("[build]\nmax_subdivision_change = 0.5\n" + bad.read_text())
    assert (
        geogate("data", "build", "--config", str(good), "--out", str(out), cwd=tmp_path).returncode
        == 0
    )
    r = geogate("data", "build", "--config", str(bad), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
