"""Vendor layouts a new user points `kind = "mmdb"` at, read as the vendor means them.

Found by building every MaxMind published test database and IPinfo-layout files as a new
user would (one `[[sources]]` entry, no `fields`): MaxMind's Residential Proxy database
failed the build (its records carry no ``is_*`` key), GeoIP2 Enterprise lost every AS number
(kept under ``traits``), IPinfo's ASN database lost the organisation (``name``), an IPinfo
Core network both anonymous and hosting lost ``anonymous`` (and was allowed as a plain
datacenter), and IPinfo's GeoNames ids (text) never reached a ``geonames:`` city rule.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from geogate.decide import Reason, decide
from geogate.decide import RequestContext as Req
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import Action
from geogate.policy.parse import load_policy_set, parse_policy, resolve_policy_path

from .conftest import DATA, write_mmdb

F = NetworkFlag
SPECS: dict[str, Any] = json.loads((DATA / "vendor-layouts.json").read_text())
AT = datetime(2026, 11, 1, tzinfo=UTC)
HEAD = '[policy]\nid = "t"\nversion = "1"\neffective = 2024-07-09T00:00:00Z\n'


def _build(tmp_path: Path, source: str, extra: str = "") -> Snapshot:
    write_mmdb(tmp_path / f"{source}.mmdb", SPECS[source])
    (tmp_path / "build.toml").write_text(
        f'{extra}[[sources]]\nname = "{source.replace("_", "-")}"\nkind = "mmdb"\n'
        f'path = "{source}.mmdb"\ndate = "2026-06-01"\n'
    )
    return build_snapshot(load_build_config(tmp_path / "build.toml"))


@pytest.fixture(scope="module")
def snaps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Snapshot]:
    extra = {"ipinfo_location": '[build]\ncity_regions = ["UA-23", "UA-65"]\n'}
    return {
        name: _build(tmp_path_factory.mktemp(name), name, extra.get(name, ""))
        for name in SPECS
        if name != "_comment"
    }


@pytest.mark.parametrize(
    ("ip", "provider", "confidence"),
    [
        ("1.2.0.4", "quickshift", 82),
        ("6.0.42.17", "novada", 95),
        ("21.4.181.221", "geonode", 1),
        ("2a0b:4342:1a20::1", "netnut", 90),
    ],
)
def test_residential_proxy_database_flags_every_network(
    snaps: dict[str, Snapshot], ip: str, provider: str, confidence: int
) -> None:
    facts = snaps["maxmind_residential_proxy"].lookup(ip)
    assert facts.flags == F.RESIDENTIAL_PROXY
    assert (facts.anonymizer_provider, facts.anonymizer_confidence) == (provider, confidence)
    assert snaps["maxmind_residential_proxy"].lookup("1.2.0.5").flags == F.NONE


def test_enterprise_keeps_the_as_number_from_traits(snaps: dict[str, Snapshot]) -> None:
    snap = snaps["maxmind_enterprise"]
    crimea = snap.lookup("1.231.232.7")
    assert (crimea.country, crimea.subdivision, crimea.asn, crimea.as_org) == (
        "UA",
        "UA-43",
        28761,
        "CrimeaCom South LLC",
    )
    assert (snap.lookup("65.116.3.81").asn, snap.lookup("65.116.3.81").as_org) == (
        209,
        "Qwest Communications Company, LLC",
    )
    vpn = snap.lookup("2.20.32.111")
    assert (vpn.asn, vpn.as_org, vpn.flags) == (8517, None, F.VPN)


def test_ipinfo_asn_database_keeps_the_organisation(snaps: dict[str, Snapshot]) -> None:
    for ip in ("8.8.8.8", "2a00:1450:4001::1"):
        facts = snaps["ipinfo_asn"].lookup(ip)
        assert (facts.asn, facts.as_org) == (15169, "Google LLC"), ip
        assert facts.flags == F.NONE  # the AS type is the AS's, not a network flag


def test_ipinfo_core_anonymous_datacenter_is_both(snaps: dict[str, Snapshot]) -> None:
    snap = snaps["ipinfo_core"]
    assert snap.lookup("7.1.0.1").flags == F.HOSTING | F.ANONYMOUS
    assert snap.lookup("7.2.0.1").flags == F.NONE
    assert snap.lookup("7.3.0.1").flags == F.HOSTING
    policy = parse_policy(HEAD + '[anonymizers]\nhosting = "allow"\nanonymous = "deny"\n')
    d = decide(policy, snap, Req(ip="7.1.0.1"), at=AT)
    assert d.action is Action.DENY
    assert Reason.ANONYMOUS_NETWORK in d.reasons


def test_maxmind_hosting_still_explains_is_anonymous(tmp_path: Path) -> None:
    """MaxMind sets is_anonymous for every hosting provider: that alone is not anonymous."""
    spec = {
        "database_type": "GeoIP2-Anonymous-IP",
        "ip_version": 6,
        "networks": [["71.160.223.0/24", {"is_anonymous": True, "is_hosting_provider": True}]],
    }
    SPECS["maxmind_hosting"] = spec
    try:
        snap = _build(tmp_path, "maxmind_hosting")
    finally:
        del SPECS["maxmind_hosting"]
    assert snap.lookup("71.160.223.1").flags == F.HOSTING


def test_ipinfo_location_geonames_ids_reach_city_rules(snaps: dict[str, Snapshot]) -> None:
    snap = snaps["ipinfo_location"]
    city = snap.lookup("5.1.0.1")
    assert (city.subdivision, city.city, city.city_geoname_id) == ("UA-23", "Zaporizhzhia", 687700)
    assert snap.lookup("5.4.0.1").subdivision == "UA-43"
    assert snap.lookup("2a02:2770::1").subdivision == "UA-09"
    by_id = parse_policy(
        HEAD + '[[rules]]\nid = "occupied"\nregions = ["UA-23", "UA-65", "UA-43"]\n\n'
        '[[rules]]\nid = "free"\naction = "allow"\nregions = ["UA-23/geonames:687700"]\n'
    )
    assert decide(by_id, snap, Req(ip="5.1.0.1"), at=AT).action is Action.ALLOW
    assert decide(by_id, snap, Req(ip="5.2.0.1"), at=AT).action is Action.DENY
    preset = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    for ip, action in (("5.1.0.1", Action.ALLOW), ("5.3.0.1", Action.ALLOW)):
        assert decide(preset, snap, Req(ip=ip), at=AT).action is action, ip
    for ip in ("5.2.0.1", "5.4.0.1", "2a02:2770::1"):
        assert decide(preset, snap, Req(ip=ip), at=AT).action is Action.DENY, ip


def test_flags_in_a_nested_object(snaps: dict[str, Snapshot]) -> None:
    snap = snaps["nested"]
    vpn = snap.lookup("8.1.0.1")
    assert (vpn.country, vpn.flags, vpn.anonymizer_provider) == ("US", F.VPN | F.HOSTING, "NordVPN")
    assert snap.lookup("8.2.0.1").flags == F.TOR
    assert snap.lookup("8.3.0.1").flags == F.HOSTING


def test_ipinfo_residential_proxy_database(snaps: dict[str, Snapshot]) -> None:
    facts = snaps["ipinfo_residential_proxy"].lookup("9.10.0.1")
    assert (facts.flags, facts.anonymizer_provider) == (F.RESIDENTIAL_PROXY, "Bright Data")
    assert snaps["ipinfo_residential_proxy"].lookup("9.10.0.2").flags == F.NONE


def test_flat_text_where_geoip2_has_maps_is_read_not_refused(snaps: dict[str, Snapshot]) -> None:
    """The whole-file check refuses a wrong type only where the build reads the key."""
    assert snaps["converted"].lookup("8.10.0.1").country == "DE"


def test_ipv6_tree_without_an_ipv4_subtree_is_read(tmp_path: Path) -> None:
    """A valid IPv6 database whose all-zero path ends above ``::/96`` (MaxMind's
    MaxMind-DB-no-ipv4-search-tree layout): maxminddb's own iterator fails on it, so it was
    refused as corrupt. Its ``::/64`` record answers every IPv4 address."""
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-Country", ipv4_compatible=False)
    writer.insert_network(IPSet(["::/64"]), {"country": {"iso_code": "AU"}})
    writer.insert_network(IPSet(["2a00::/16"]), {"country": {"iso_code": "DE"}})
    writer.insert_network(IPSet(["2a01:4f8::/32"]), {"country": {"iso_code": "FI"}})
    path = tmp_path / "nov4.mmdb"
    writer.to_db_file(str(path))
    with maxminddb.open_database(str(path)) as reader:
        with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
            list(reader)  # the library's iterator; if it is ever fixed, this test says so
        (tmp_path / "build.toml").write_text(
            '[[sources]]\nname = "nov4"\nkind = "mmdb"\npath = "nov4.mmdb"\ndate = "2026-06-01"\n'
        )
        snap = build_snapshot(load_build_config(tmp_path / "build.toml"))
        for ip in ("1.2.3.4", "8.8.8.8", "223.255.255.1", "2a00::1", "2a01:4f8::9", "2a02::1"):
            expected = reader.get(ip)
            got = snap.lookup(ip).country
            assert got == (expected["country"]["iso_code"] if expected else None), ip
    assert snap.lookup("2a01:4f8::9").country == "FI"
    assert snap.lookup("1.2.3.4").country == "AU"
