"""Build helpers: the npm default config round-trips through TOML, disagreement counting is
exact, and the date is read from ip-location-db version numbers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from geogate.errors import IntelDataError
from geogate.intel.build import (
    NPM_PACKAGES,
    BuildReport,
    build_snapshot,
    load_build_config,
    location_disagreement,
    npm_build_config,
    random_public_ipv4,
    render_build_config,
)
from geogate.intel.build import _npm_date as npm_date


def test_npm_version_gives_the_data_date() -> None:
    assert npm_date("2.3.2026060513") == "2026-06-05"
    with pytest.raises(IntelDataError):
        npm_date("1.0.0")


def test_default_config_round_trips_through_toml(tmp_path: Path) -> None:
    dirs = {
        name: (tmp_path / name.split("/")[1] / "package", "2.3.2026061719") for name in NPM_PACKAGES
    }
    config = npm_build_config(dirs)
    (tmp_path / "build.toml").write_text(render_build_config(config, base_dir=tmp_path))
    again = load_build_config(tmp_path / "build.toml")
    assert again == config
    assert config.subdivision_countries == ("UA",)
    assert config.precedence["location"] == ("dbip-city", "geo-whois-asn-country")


def test_disagreement_is_counted_exactly(tmp_path: Path) -> None:
    # a says US everywhere; b says US below 100.0.0.0 and CA above: every sample from
    # 100.0.0.0 on disagrees.
    (tmp_path / "a.csv").write_text("0.0.0.0,255.255.255.255,US\n")
    (tmp_path / "b.csv").write_text("0.0.0.0,99.255.255.255,US\n100.0.0.0,255.255.255.255,CA\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text(
            f'[[sources]]\nname = "{name}"\nkind = "csv-country"\npath = "{name}.csv"\n'
            'date = "2026-06-01"\n'
        )
    a = build_snapshot(load_build_config(tmp_path / "a.toml"))
    b = build_snapshot(load_build_config(tmp_path / "b.toml"), report=BuildReport())
    result = location_disagreement(a, b, samples=5000, seed=4)
    samples = random_public_ipv4(5000, seed=4)
    expected = int((samples >= 100 << 24).sum())
    assert result.samples == result.both_known == 5000
    assert result.differ == expected
    assert result.top_pairs == (("US", "CA", expected),)
    assert result.percent == pytest.approx(100 * expected / 5000)
    # samples avoid special-purpose blocks
    texts = [socket.inet_ntoa(int(x).to_bytes(4, "big")) for x in samples]
    assert not any(t.startswith(("10.", "127.", "192.168.")) for t in texts)
    assert int(samples.max()) < 224 << 24
