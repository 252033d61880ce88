"""Flag lists read directly: `cidr-list` files (X4BNet's layout), X4BNet's `ASN.txt` as a
hosting-ASN list, and a relay list that clears the VPN flag a broader list gives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from geogate.errors import ConfigError
from geogate.intel.build import build_snapshot, load_build_config, x4bnet_sources
from geogate.intel.facts import NetworkFlag
from geogate.intel.sources import ProblemLog
from geogate.intel.sources.hosting_asns import HostingAsnSource

F = NetworkFlag

ASN_CSV = "1.0.0.0,1.0.255.255,64500,Cloudy\n2.0.0.0,2.0.255.255,64501,Home ISP\n"
VPN = "# known VPN exits\n1.0.1.0/24\n2.0.9.0/24\n2a02:2770::/32\n5.5.0.0/16\n"
DATACENTER = "1.0.0.0/16\n5.5.0.0/16\n"
RELAY = "5.5.5.0/24\n5.5.6.0/25\n"
ASNS = "AS64500 # CLOUDY-AS - Cloudy Inc, US\nAS64502\t# OTHER\n# comment line\nbogus # x\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    for name, text in {
        "asn.csv": ASN_CSV,
        "vpn.txt": VPN,
        "dc.txt": DATACENTER,
        "relay.txt": RELAY,
        "ASN.txt": ASNS,
    }.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "build.toml"
    path.write_text(
        """
[build]
blank_special_purpose = false

[[sources]]
name = "asn"
kind = "csv-asn"
path = "asn.csv"
date = "2026-06-01"

[[sources]]
name = "dc-asns"
kind = "hosting-asns"
path = "ASN.txt"
date = "2026-08-22"

[[sources]]
name = "dc"
kind = "cidr-list"
path = "dc.txt"
date = "2026-08-22"
flag = "hosting"

[[sources]]
name = "vpn"
kind = "cidr-list"
path = "vpn.txt"
date = "2026-08-22"
flag = "vpn"

[[sources]]
name = "relay"
kind = "cidr-list"
path = "relay.txt"
date = "2026-08-22"
flag = "relay"
clears = ["vpn", "hosting"]
"""
    )
    return path


def test_lists_flag_and_the_relay_stays_a_relay(config: Path) -> None:
    snap = build_snapshot(load_build_config(config))
    cases = {
        "1.0.0.1": (F.HOSTING, {"dc-asns", "dc"}),  # AS64500 listed, and in dc.txt
        "1.0.1.1": (F.HOSTING | F.VPN, {"dc-asns", "dc", "vpn"}),
        "2.0.9.1": (F.VPN, {"vpn"}),  # a VPN exit inside a home ISP
        "2.0.1.1": (F.NONE, set()),  # the home ISP itself
        "2a02:2770::1": (F.VPN, {"vpn"}),
        "5.5.1.1": (F.HOSTING | F.VPN, {"dc", "vpn"}),
        "5.5.5.5": (F.RELAY, {"relay"}),  # inside both broader lists: relay only
        "5.5.6.1": (F.RELAY, {"relay"}),
        "5.5.6.200": (F.HOSTING | F.VPN, {"dc", "vpn"}),
    }
    for ip, (flags, sources) in cases.items():
        facts = snap.lookup(ip)
        assert facts.flags == flags, ip
        assert {p.source for p in facts.provenance if p.field == "flags"} == sources, ip


def test_x4bnet_asn_format(tmp_path: Path) -> None:
    (tmp_path / "ASN.txt").write_text(ASNS)
    problems = ProblemLog()
    source = HostingAsnSource(tmp_path / "ASN.txt")
    assert source.asn_flags(problems) == {64500: F.HOSTING, 64502: F.HOSTING}
    assert source.names[64500] == "CLOUDY-AS - Cloudy Inc, US"
    assert problems.total == 1
    assert "ASN.txt:4" in problems.lines[0]


def test_shipped_lists_are_the_maintained_x4bnet_ones() -> None:
    shipped = HostingAsnSource().asn_flags(ProblemLog())
    assert len(shipped) > 800
    assert {16509, 15169, 8075, 14061, 24940} <= set(shipped)
    sources = {s.name: s for s in x4bnet_sources()}
    assert sources["icloud-relay"].clears == F.VPN | F.HOSTING
    for s in sources.values():
        assert s.license == "MIT"
        assert all(p.exists() for p in s.paths), s.name


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("", "sources[0].flag"),  # a cidr-list needs its flag
        ('flag = "vpn"\nclears = ["vpn"]\n', "sources[0].clears"),
        ('flag = "relay"\nclears = ["nonsense"]\n', "sources[0].clears"),
        ('flag = "relay"\nclears = "vpn"\n', "sources[0].clears"),
    ],
)
def test_bad_list_configs_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    (tmp_path / "l.txt").write_text("1.0.0.0/8\n")
    (tmp_path / "b.toml").write_text(
        f'[[sources]]\nname = "l"\nkind = "cidr-list"\npath = "l.txt"\ndate = "2026-06-01"\n{extra}'
    )
    with pytest.raises(ConfigError) as info:
        load_build_config(tmp_path / "b.toml")
    assert info.value.key == key
