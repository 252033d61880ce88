"""Golden facts from the embedded default snapshot (src/geogate/intel/data/default.snapshot).

How the addresses were picked: for each country, the largest range of the embedded snapshot
(built from the ip-location-db 2026-06 packages) whose country is that country, whose
alt_country is empty (DB-IP and the CC0 registry file agree) and whose ASN is known, once for
IPv4 and once for IPv6 (2002::/16 6to4 excluded); the address is a point well inside it. For
Crimea and Sevastopol, the largest range DB-IP files under RU with state "Crimea" /
"Sebastopol City"; for Donetsk and Kyiv City, the largest UA range with that subdivision.
8.8.8.8 and 1.1.1.1 check the hosting-ASN flags (Google is on X4BNet's datacenter list,
Cloudflare only on geogate's supplement). When the embedded data is rebuilt, review the changes
here like code.
"""

from __future__ import annotations

import numpy as np
import pytest

from geogate.intel.facts import IntelFacts, NetworkFlag
from geogate.intel.snapshot import Snapshot, embedded_ipv4_arrays

H = NetworkFlag.HOSTING
N = NetworkFlag.NONE

GOLDEN: list[tuple[str, str, str | None, int, NetworkFlag]] = [
    # ip, country, subdivision, asn, flags
    ("59.224.0.1", "CN", None, 37937, N),
    ("240a:c800::1", "CN", None, 137726, N),
    ("113.254.0.1", "HK", None, 9304, N),
    ("2a07:f244::1", "HK", None, 9304, N),
    ("178.68.0.1", "RU", None, 12389, N),
    ("2a00:1b7c::1", "RU", None, 39087, N),
    ("5.120.0.1", "IR", None, 44244, N),
    ("2a0e:20::1", "IR", None, 31549, N),
    ("29.0.0.1", "US", None, 749, N),
    ("2601:d800::1", "US", None, 29992, N),
    ("53.128.0.1", "DE", None, 31399, N),
    ("2a00:200::1", "DE", None, 3209, N),
    ("46.172.208.1", "RU", "UA-43", 48330, N),
    ("2001:678:128::1", "RU", "UA-43", 205236, N),
    ("78.30.224.1", "RU", "UA-40", 35816, N),
    ("2a02:2b18::1", "RU", "UA-40", 35816, N),
    ("91.250.32.1", "UA", "UA-14", 6712, N),
    ("5.207.128.1", "UA", "UA-30", 21497, N),
    ("8.8.8.8", "US", None, 15169, H),
    ("1.1.1.1", "AU", None, 13335, H),
]


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.embedded()


@pytest.mark.parametrize(("ip", "country", "subdivision", "asn", "flags"), GOLDEN)
def test_golden_facts(
    snap: Snapshot, ip: str, country: str, subdivision: str | None, asn: int, flags: NetworkFlag
) -> None:
    facts = snap.lookup(ip)
    got = (facts.country, facts.subdivision, facts.alt_country, facts.asn, facts.flags)
    assert got == (country, subdivision, None, asn, flags)
    assert facts.as_org
    sources = {p.field: p.source for p in facts.provenance}
    assert sources["location"] == "dbip-city"
    assert sources["asn"] == "asn"
    if subdivision:
        assert sources["subdivision"] == "dbip-city"
    flag_sources = {p.source for p in facts.provenance if p.field == "flags"}
    if flags:
        assert flag_sources & {"hosting-asns", "hosting-asns-extra"}
    else:
        assert not flag_sources


def test_mapped_ipv6_is_ipv4(snap: Snapshot) -> None:
    assert snap.lookup("::ffff:59.224.0.1") == snap.lookup("59.224.0.1")


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "192.168.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::5",
        "2001:db8::1",
        "ff02::1",
    ],
)
def test_special_purpose_addresses_are_unknown(snap: Snapshot, ip: str) -> None:
    assert snap.lookup(ip) == IntelFacts.unknown()


def test_meta_names_the_shipped_sources(snap: Snapshot) -> None:
    meta = snap.meta
    assert [(s.name, s.license) for s in meta.sources] == [
        ("dbip-city", "CC-BY-4.0"),
        ("geo-whois-asn-country", "CC0-1.0"),
        ("asn", "CC-BY-4.0"),
        ("hosting-asns", "MIT"),
        ("x4bnet-datacenter", "MIT"),
        ("x4bnet-vpn", "MIT"),
        ("icloud-relay", "MIT"),
        ("hosting-asns-extra", "Apache-2.0"),
    ]
    assert all(s.origin for s in meta.sources)
    assert "db-ip.com" in meta.sources[0].attribution.lower()
    assert meta.precedence["location"] == ("dbip-city", "geo-whois-asn-country")
    assert (meta.v4_ranges, meta.v6_ranges) == (snap.n4, snap.n6)
    assert meta.built_at.tzinfo is not None
    assert {"UA-43", "UA-40"} <= set(snap.subdivision_codes)
    assert (snap.country_codes[0], snap.subdivision_codes[0]) == ("", "")


def test_every_ukrainian_region_is_present(snap: Snapshot) -> None:
    ua = {c for c in snap.subdivision_codes if c.startswith("UA-")}
    assert len(ua) == 27


def test_single_and_batch_lookups_agree(snap: Snapshot) -> None:
    """locate, locate_many, locate_many_v4 and a plain searchsorted give the same keys."""
    rng = np.random.default_rng(11)
    q = rng.integers(0, 1 << 32, 20_000, dtype=np.uint64).astype(np.uint32)
    ref = np.searchsorted(snap.v4_starts, q, side="right").astype(np.int64) - 1
    assert np.array_equal(snap.locate_many_v4(q), ref)
    texts = [".".join(str(b) for b in int(x).to_bytes(4, "big")) for x in q[:2000]]
    assert [snap.locate(t) for t in texts] == ref[:2000].tolist()
    assert snap.locate_many(texts).tolist() == ref[:2000].tolist()
    hi, lo = snap.v6_starts
    pick = rng.integers(0, snap.n6, 2000)
    own, _ = embedded_ipv4_arrays(hi[pick], lo[pick])  # 6to4, Teredo ... are located as IPv4
    pick = pick[~own]
    assert snap.locate_many_v6(hi[pick], lo[pick]).tolist() == (pick + snap.n4).tolist()


def test_columns_are_read_only(snap: Snapshot) -> None:
    for col in (snap.country_idx, snap.subdivision_idx, snap.alt_country_idx, snap.asn, snap.flags):
        assert len(col) == snap.n4 + snap.n6
        with pytest.raises(ValueError, match="read-only"):
            col[0] = 1


VPN = NetworkFlag.VPN
RELAY = NetworkFlag.RELAY


@pytest.mark.parametrize(
    ("ip", "flags", "source"),
    [
        # X4BNet output/vpn: M247 and Datacamp VPN egress (NordVPN, Surfshark ... servers)
        ("2.58.44.1", H | VPN, "x4bnet-vpn"),
        # iCloud Private Relay egress (Akamai, Cloudflare): relay, never vpn or hosting
        ("172.224.226.1", RELAY, "icloud-relay"),
        ("104.28.28.1", RELAY, "icloud-relay"),
        # a cloud range: AWS
        ("3.5.140.1", H, "hosting-asns"),
    ],
)
def test_anonymizer_flags_of_the_default(
    snap: Snapshot, ip: str, flags: NetworkFlag, source: str
) -> None:
    facts = snap.lookup(ip)
    assert facts.flags == flags
    assert source in {p.source for p in facts.provenance if p.field == "flags"}
