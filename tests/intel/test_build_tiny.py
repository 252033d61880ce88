"""A snapshot compiled from tiny real files of every source kind answers every field right.

The MaxMind DBs are written by the test (mmdb_writer) from tests/intel/data/tiny-sources.json;
CSV, Tor, cloud and hosting-ASN files are written inline. Each expected answer is derived by
hand from those inputs and the precedence in ``CONFIG``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from geogate.intel.build import BuildReport, build_snapshot, load_build_config
from geogate.intel.facts import IntelFacts, NetworkFlag, Provenance
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources import ProblemLog
from geogate.intel.sources.mmdb import MmdbSource

from .conftest import write_mmdb

ASN_CSV = """\
# start,end,asn,org
1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."
5.8.0.0,5.8.7.255,AS48330,Crimea ISP
8.8.8.0,8.8.8.255,15169,Google LLC
not-an-ip,1.2.3.4,1,Bad
9.9.9.0,9.9.9.255,notanumber,Bad
2001:db9::,2001:db9:ffff:ffff:ffff:ffff:ffff:ffff,3320,Deutsche Telekom AG
"""

TOR = """\
# Tor bulk exit list
5.8.4.10
2001:db9::5
bogus
"""

CLOUD = """\
{"syncToken": "1", "prefixes": [{"ip_prefix": "8.8.8.128/25", "service": "EC2"}],
 "ipv6_prefixes": [{"ipv6_prefix": "2001:db9:1::/48"}, {"ipv6_prefix": "nope"}]}
"""

HOSTING = """\
# test hosting list
asn,name,note
13335,Cloudflare,CDN
AS-bad,Bad,bad
"""

CONFIG = """\
[build]
blank_special_purpose = true

[[sources]]
name = "city"
kind = "mmdb"
path = "city.mmdb"
date = "2026-06-05"
license = "CC-BY-4.0"
attribution = "City test data"
fields = ["location", "subdivision"]

[[sources]]
name = "flat"
kind = "mmdb"
path = ["flat.mmdb"]
date = "2026-06-17"
license = "CC0-1.0"
fields = ["location", "subdivision"]

[[sources]]
name = "asn"
kind = "csv-asn"
path = "asn.csv"
date = "2026-06-10"

[[sources]]
name = "tor"
kind = "tor"
path = "tor.txt"
date = "2026-06-20"

[[sources]]
name = "cloud"
kind = "cloud"
path = "cloud.json"
date = "2026-06-21"

[[sources]]
name = "hosting"
kind = "hosting-asns"
path = "hosting.csv"
date = "2026-06-01"

[precedence]
location = ["city", "flat"]
subdivision = ["city", "flat"]
"""

CITY = ("city", "2026-06-05")
FLAT = ("flat", "2026-06-17")
ASN = ("asn", "2026-06-10")
TOR_SRC = ("tor", "2026-06-20")
CLOUD_SRC = ("cloud", "2026-06-21")
HOSTING_SRC = ("hosting", "2026-06-01")


def _prov(*items: tuple[str, tuple[str, str]]) -> tuple[Provenance, ...]:
    return tuple(Provenance(field=f, source=s, date=d) for f, (s, d) in items)


EXPECTED: dict[str, IntelFacts] = {
    # city AU/AU-NSW wins over flat CN, which becomes alt_country; AS13335 is on the list.
    "1.0.0.5": IntelFacts(
        country="AU",
        subdivision="AU-NSW",
        alt_country="CN",
        asn=13335,
        as_org="Cloudflare, Inc.",
        flags=NetworkFlag.HOSTING,
        network="1.0.0.0-1.0.0.255",
        provenance=_prov(
            ("location", CITY),
            ("subdivision", CITY),
            ("alt_country", FLAT),
            ("asn", ASN),
            ("flags", HOSTING_SRC),
        ),
    ),
    # Only flat knows 1.0.1.0/24.
    "1.0.1.5": IntelFacts(
        country="CN",
        network="1.0.1.0-1.0.1.255",
        provenance=_prov(("location", FLAT)),
    ),
    # RU-filed Crimea: subdivision UA-43 from city (over flat's UA-40), country kept as RU.
    "5.8.1.1": IntelFacts(
        country="RU",
        subdivision="UA-43",
        alt_country="UA",
        asn=48330,
        as_org="Crimea ISP",
        network="5.8.0.0-5.8.3.255",
        provenance=_prov(
            ("location", CITY),
            ("subdivision", CITY),
            ("alt_country", FLAT),
            ("asn", ASN),
        ),
    ),
    # A Tor exit inside city's UA/Kherson range; flat agrees on UA so there is no alt.
    "5.8.4.10": IntelFacts(
        country="UA",
        subdivision="UA-65",
        asn=48330,
        as_org="Crimea ISP",
        flags=NetworkFlag.TOR,
        network="5.8.4.10-5.8.4.10",
        provenance=_prov(
            ("location", CITY), ("subdivision", CITY), ("asn", ASN), ("flags", TOR_SRC)
        ),
    ),
    # registered_country fallback; the cloud list covers only the upper half of the /24.
    "8.8.8.8": IntelFacts(
        country="US",
        asn=15169,
        as_org="Google LLC",
        network="8.8.8.0-8.8.8.127",
        provenance=_prov(("location", CITY), ("asn", ASN)),
    ),
    "8.8.8.200": IntelFacts(
        country="US",
        asn=15169,
        as_org="Google LLC",
        flags=NetworkFlag.HOSTING,
        network="8.8.8.128-8.8.8.255",
        provenance=_prov(("location", CITY), ("asn", ASN), ("flags", CLOUD_SRC)),
    ),
    # The ASN line for 9.9.9.0/24 is bad and skipped: no ASN, location from flat.
    "9.9.9.9": IntelFacts(
        country="CH", network="9.9.9.0-9.9.9.255", provenance=_prov(("location", FLAT))
    ),
    # flat files 10.0.0.0/8 under AU; the build blanks special-purpose blocks.
    "10.1.1.1": IntelFacts.unknown(),
    "2001:db9::5": IntelFacts(
        country="DE",
        asn=3320,
        as_org="Deutsche Telekom AG",
        flags=NetworkFlag.TOR,
        network="2001:db9::5-2001:db9::5",
        provenance=_prov(("location", CITY), ("asn", ASN), ("flags", TOR_SRC)),
    ),
    "2001:db9:1::1": IntelFacts(
        country="DE",
        asn=3320,
        as_org="Deutsche Telekom AG",
        flags=NetworkFlag.HOSTING,
        network="2001:db9:1::-2001:db9:1:ffff:ffff:ffff:ffff:ffff",
        provenance=_prov(("location", CITY), ("asn", ASN), ("flags", CLOUD_SRC)),
    ),
    # Sevastopol filed under RU maps to UA-40.
    "2a02:6b8::1": IntelFacts(
        country="RU",
        subdivision="UA-40",
        network="2a02:6b8::-2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff",
        provenance=_prov(("location", CITY), ("subdivision", CITY)),
    ),
    "::ffff:5.8.1.1": IntelFacts(
        country="RU",
        subdivision="UA-43",
        alt_country="UA",
        asn=48330,
        as_org="Crimea ISP",
        network="5.8.0.0-5.8.3.255",
        provenance=_prov(
            ("location", CITY),
            ("subdivision", CITY),
            ("alt_country", FLAT),
            ("asn", ASN),
        ),
    ),
    "203.0.113.9": IntelFacts.unknown(),
}


@pytest.fixture
def built(tmp_path: Path, tiny_sources: dict[str, Any]) -> tuple[Snapshot, BuildReport, Path]:
    write_mmdb(tmp_path / "city.mmdb", tiny_sources["city"])
    write_mmdb(tmp_path / "flat.mmdb", tiny_sources["flat"])
    (tmp_path / "asn.csv").write_text(ASN_CSV)
    (tmp_path / "tor.txt").write_text(TOR)
    (tmp_path / "cloud.json").write_text(CLOUD)
    (tmp_path / "hosting.csv").write_text(HOSTING)
    (tmp_path / "build.toml").write_text(CONFIG)
    report = BuildReport()
    snapshot = build_snapshot(load_build_config(tmp_path / "build.toml"), report=report)
    return snapshot, report, tmp_path


@pytest.mark.parametrize("ip", sorted(EXPECTED))
def test_every_field_and_provenance(built: tuple[Snapshot, BuildReport, Path], ip: str) -> None:
    snapshot, _, _ = built
    assert snapshot.lookup(ip) == EXPECTED[ip]


def test_saved_and_loaded_snapshot_answers_the_same(
    built: tuple[Snapshot, BuildReport, Path],
) -> None:
    snapshot, _, tmp_path = built
    snapshot.save(tmp_path / "tiny.snapshot")
    loaded = Snapshot.load(tmp_path / "tiny.snapshot")
    assert loaded.meta == snapshot.meta
    for ip, facts in EXPECTED.items():
        assert loaded.lookup(ip) == facts
    assert loaded.locate_many(list(EXPECTED)).tolist() == [snapshot.locate(ip) for ip in EXPECTED]


def test_bad_lines_are_reported_with_file_and_line(
    built: tuple[Snapshot, BuildReport, Path],
) -> None:
    _, report, _ = built
    lines = report.problems.lines
    assert any(line.startswith("asn.csv:5: not an IP address") for line in lines), lines
    assert any(line.startswith("asn.csv:6: not an AS number") for line in lines), lines
    assert any(line.startswith("tor.txt:4: not an address") for line in lines), lines
    assert any(line.startswith("cloud.json: $.ipv6_prefixes[1].ipv6_prefix") for line in lines), (
        lines
    )
    assert any(line.startswith("hosting.csv:4: not an AS number") for line in lines), lines
    assert report.problems.total == 5


def test_meta_records_sources_and_precedence(built: tuple[Snapshot, BuildReport, Path]) -> None:
    snapshot, report, _ = built
    meta = snapshot.meta
    assert [s.name for s in meta.sources] == ["city", "flat", "asn", "tor", "cloud", "hosting"]
    city = meta.sources[0]
    assert (city.kind, city.date, city.license, city.attribution) == (
        "mmdb",
        "2026-06-05",
        "CC-BY-4.0",
        "City test data",
    )
    assert city.ranges == 6  # six networks, none adjacent with equal values
    assert meta.precedence["location"] == ("city", "flat")
    assert meta.precedence["asn"] == ("asn",)
    assert meta.precedence["flags"] == ("tor", "cloud", "hosting")
    assert meta.v4_ranges == snapshot.n4 == report.v4_ranges
    # every range is either a real change of values or a boundary of the space
    assert snapshot.locate("0.0.0.0") == 0
    assert snapshot.locate("::") == snapshot.n4


def test_mmdb_layouts_are_detected(tmp_path: Path, tiny_sources: dict[str, Any]) -> None:
    asn_db = MmdbSource(write_mmdb(tmp_path / "asn.mmdb", tiny_sources["asn"]), name="asn")
    ipinfo = MmdbSource(write_mmdb(tmp_path / "ii.mmdb", tiny_sources["ipinfo"]), name="ii")
    got = [(r.first, r.asn, r.as_org, r.country) for r in asn_db.ranges(ProblemLog())]
    assert got == [
        (0x01000000, 13335, "Cloudflare, Inc.", None),
        (0x20010DB9 << 96, 3320, "Deutsche Telekom AG", None),
    ]
    rows = [(r.asn, r.as_org, r.country) for r in ipinfo.ranges(ProblemLog())]
    assert rows == [(15169, "Google LLC", "US"), (None, None, "CH")]
    assert ipinfo.lookup("8.8.8.8").asn == 15169
    assert asn_db.lookup("::ffff:1.0.0.1").asn == 13335
    assert asn_db.lookup("9.9.9.9") == IntelFacts.unknown()
