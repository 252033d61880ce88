"""Anonymizer databases in the vendors' layouts become flags, with provider and confidence.

The databases are written by the test with mmdb-writer from
tests/intel/data/anonymizer-sources.json (MaxMind Anonymous-IP and Anonymous-Plus, IPinfo
privacy, ``is_*`` layouts); every network's flags are asserted after a real build, and a
source that gives nothing for the fields asked of it fails the build with one line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from geogate.decide import Reason, decide
from geogate.decide import RequestContext as Req
from geogate.errors import IntelDataError
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources import ProblemLog
from geogate.intel.sources.mmdb import MmdbSource
from geogate.policy.model import Action, Anonymizer
from geogate.policy.parse import parse_policy

from .conftest import DATA, write_mmdb

F = NetworkFlag
SPECS: dict[str, Any] = json.loads((DATA / "anonymizer-sources.json").read_text())

# (source, address) -> flags every vendor record above must give.
EXPECTED_FLAGS = {
    ("maxmind_anonymous_ip", "1.2.3.4"): F.VPN,
    ("maxmind_anonymous_ip", "81.2.69.160"): F.VPN
    | F.HOSTING
    | F.PROXY
    | F.RESIDENTIAL_PROXY
    | F.TOR,
    ("maxmind_anonymous_ip", "186.30.236.1"): F.PROXY,
    ("maxmind_anonymous_ip", "65.4.3.2"): F.TOR,
    ("maxmind_anonymous_ip", "71.160.223.9"): F.HOSTING,
    ("maxmind_anonymous_ip", "50.0.1.1"): F.RESIDENTIAL_PROXY,
    ("maxmind_anonymous_ip", "93.184.216.34"): F.ANONYMOUS,
    ("maxmind_anonymous_ip", "2a02:2770::1"): F.VPN,
    ("maxmind_anonymous_plus", "1.2.3.4"): F.VPN | F.RESIDENTIAL_PROXY,
    ("maxmind_anonymous_plus", "81.2.69.1"): F.VPN,
    ("maxmind_anonymous_plus", "2a02:2770::1"): F.PROXY,
    ("ipinfo_privacy", "1.2.3.4"): F.VPN,
    ("ipinfo_privacy", "1.3.0.1"): F.HOSTING,
    ("ipinfo_privacy", "1.4.0.1"): F.PROXY,
    ("ipinfo_privacy", "1.5.0.1"): F.TOR,
    ("ipinfo_privacy", "172.224.1.1"): F.RELAY,
    ("ipinfo_privacy", "1.6.0.1"): F.NONE,
    ("ipinfo_privacy", "2a05:b0c0::1"): F.VPN | F.HOSTING,
    ("is_layout", "9.1.0.1"): F.VPN,
    ("is_layout", "9.2.0.1"): F.PROXY,
    ("is_layout", "9.3.0.1"): F.TOR,
    ("is_layout", "9.4.0.1"): F.HOSTING,
    ("is_layout", "9.5.0.1"): F.HOSTING,
    ("is_layout", "9.6.0.1"): F.RELAY,
    ("is_layout", "9.7.0.1"): F.RESIDENTIAL_PROXY,
    ("is_layout", "9.8.0.1"): F.ANONYMOUS,
    ("is_layout", "9.9.0.1"): F.NONE,
}
# (source, address) -> (provider, confidence) kept as evidence.
EXPECTED_EVIDENCE = {
    ("maxmind_anonymous_plus", "1.2.3.4"): ("foo", 30),
    ("maxmind_anonymous_plus", "81.2.69.1"): ("NordVPN", 99),
    ("maxmind_anonymous_plus", "2a02:2770::1"): ("bar", 60),
    ("ipinfo_privacy", "1.2.3.4"): ("ExpressVPN", None),
    ("ipinfo_privacy", "172.224.1.1"): ("iCloud Private Relay", None),
    ("ipinfo_privacy", "2a05:b0c0::1"): ("Mullvad", None),
    ("maxmind_anonymous_ip", "1.2.3.4"): (None, None),
}


def _build_one(tmp_path: Path, source: str, extra: str = 'fields = ["flags"]\n') -> Snapshot:
    write_mmdb(tmp_path / f"{source}.mmdb", SPECS[source])
    (tmp_path / "build.toml").write_text(
        f'[[sources]]\nname = "{source.replace("_", "-")}"\nkind = "mmdb"\n'
        f'path = "{source}.mmdb"\ndate = "2026-06-01"\n{extra}'
    )
    return build_snapshot(load_build_config(tmp_path / "build.toml"))


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Snapshot]:
    return {
        name: _build_one(tmp_path_factory.mktemp(name), name)
        for name in (
            "maxmind_anonymous_ip",
            "maxmind_anonymous_plus",
            "ipinfo_privacy",
            "is_layout",
        )
    }


@pytest.mark.parametrize(("source", "ip"), sorted(EXPECTED_FLAGS))
def test_every_vendor_flag_reaches_the_snapshot(
    snapshots: dict[str, Snapshot], source: str, ip: str
) -> None:
    facts = snapshots[source].lookup(ip)
    assert facts.flags == EXPECTED_FLAGS[(source, ip)]
    if facts.flags:
        assert [p.field for p in facts.provenance] == ["flags"]


@pytest.mark.parametrize(("source", "ip"), sorted(EXPECTED_EVIDENCE))
def test_provider_and_confidence_are_kept_as_evidence(
    snapshots: dict[str, Snapshot], source: str, ip: str
) -> None:
    facts = snapshots[source].lookup(ip)
    provider, confidence = EXPECTED_EVIDENCE[(source, ip)]
    assert facts.anonymizer_provider == provider
    assert facts.anonymizer_confidence == confidence
    shown = facts.to_dict()
    assert shown.get("anonymizer_provider") == provider
    assert shown.get("anonymizer_confidence") == confidence


def test_evidence_survives_save_and_load(snapshots: dict[str, Snapshot], tmp_path: Path) -> None:
    snapshots["maxmind_anonymous_plus"].save(tmp_path / "plus.snapshot")
    again = Snapshot.load(tmp_path / "plus.snapshot")
    facts = again.lookup("81.2.69.1")
    assert (facts.flags, facts.anonymizer_provider, facts.anonymizer_confidence) == (
        F.VPN,
        "NordVPN",
        99,
    )


@pytest.mark.parametrize("source", sorted(SPECS.keys() - {"_comment"}))
def test_direct_reader_agrees_with_the_build(
    snapshots: dict[str, Snapshot], source: str, tmp_path: Path
) -> None:
    path = write_mmdb(tmp_path / "x.mmdb", SPECS[source])
    reader = MmdbSource(path, name="x", fields=["flags"])
    try:
        for (src, ip), flags in EXPECTED_FLAGS.items():
            if src == source:
                assert reader.lookup(ip).flags == flags, ip
        assert sum(1 for _ in reader.ranges(ProblemLog())) > 0
    finally:
        reader.close()


def test_anonymous_ip_database_with_default_fields_builds(tmp_path: Path) -> None:
    """Without `fields`, a source gives whatever it has: here only flags."""
    snap = _build_one(tmp_path, "maxmind_anonymous_ip", extra="")
    assert snap.lookup("65.4.3.2").flags == F.TOR
    assert snap.lookup("65.4.3.2").country is None


def test_a_source_giving_nothing_asked_of_it_fails_the_build(tmp_path: Path) -> None:
    with pytest.raises(IntelDataError) as info:
        _build_one(tmp_path, "maxmind_anonymous_ip", extra='fields = ["location", "asn"]\n')
    message = str(info.value)
    assert "\n" not in message
    assert "maxmind-anonymous-ip" in message
    assert "location" in message


def test_city_database_asked_for_flags_fails(tmp_path: Path, city_mmdb: Path) -> None:
    (tmp_path / "build.toml").write_text(
        '[[sources]]\nname = "city"\nkind = "mmdb"\npath = "city.mmdb"\ndate = "2026-06-01"\n'
        'fields = ["flags"]\n'
    )
    with pytest.raises(IntelDataError, match="no usable networks for flags"):
        build_snapshot(load_build_config(tmp_path / "build.toml"))


def test_csv_where_every_row_is_bad_fails(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("start,end,country\nx,y,CN\n1.2.3.4,1.2.3.1,CN\n")
    (tmp_path / "build.toml").write_text(
        '[[sources]]\nname = "c"\nkind = "csv-country"\npath = "c.csv"\ndate = "2026-06-01"\n'
    )
    with pytest.raises(IntelDataError, match="no usable networks") as info:
        build_snapshot(load_build_config(tmp_path / "build.toml"))
    assert info.value.path == str(tmp_path / "c.csv")


def test_min_networks_zero_allows_an_empty_feed(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("# no exits today\nbogus\n")
    (tmp_path / "build.toml").write_text(
        '[[sources]]\nname = "t"\nkind = "tor"\npath = "t.txt"\ndate = "2026-06-01"\n'
        "min_networks = 0\n"
    )
    snap = build_snapshot(load_build_config(tmp_path / "build.toml"))
    assert snap.lookup("1.1.1.1").flags == F.NONE


def test_min_networks_floor(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("5.8.4.10\n5.8.4.11\n")
    (tmp_path / "build.toml").write_text(
        '[[sources]]\nname = "t"\nkind = "tor"\npath = "t.txt"\ndate = "2026-06-01"\n'
        "min_networks = 1000\n"
    )
    with pytest.raises(IntelDataError, match="fewer than min_networks = 1000"):
        build_snapshot(load_build_config(tmp_path / "build.toml"))


POLICY = """
[policy]
id = "anon"
[anonymizers]
tor = "deny"
vpn = "deny"
proxy = "deny"
residential_proxy = "deny"
anonymous = "deny"
hosting = "warn"
relay = "allow"
"""

REASONS = {
    "9.1.0.1": Reason.ANONYMIZER_VPN,
    "9.2.0.1": Reason.ANONYMIZER_PROXY,
    "9.3.0.1": Reason.ANONYMIZER_TOR,
    "9.4.0.1": Reason.HOSTING_NETWORK,
    "9.6.0.1": Reason.RELAY_NETWORK,
    "9.7.0.1": Reason.ANONYMIZER_RESIDENTIAL_PROXY,
    "9.8.0.1": Reason.ANONYMOUS_NETWORK,
}
ACTIONS = {
    "9.1.0.1": Action.DENY,
    "9.2.0.1": Action.DENY,
    "9.3.0.1": Action.DENY,
    "9.4.0.1": Action.WARN,
    "9.6.0.1": Action.WARN,  # unknown location warns; the relay itself adds nothing
    "9.7.0.1": Action.DENY,
    "9.8.0.1": Action.DENY,
}


@pytest.mark.parametrize("ip", sorted(REASONS))
def test_policy_anonymizers_table_covers_every_kind(
    snapshots: dict[str, Snapshot], ip: str
) -> None:
    decision = decide(
        parse_policy(POLICY),
        snapshots["is_layout"],
        Req(ip=ip),
        at=datetime(2026, 7, 1, tzinfo=UTC),
    )
    assert REASONS[ip] in decision.reasons
    assert decision.action is ACTIONS[ip]


def test_default_actions_for_the_new_kinds() -> None:
    policy = parse_policy('[policy]\nid = "p"\n')
    assert policy.anonymizers[Anonymizer.RESIDENTIAL_PROXY] is Action.WARN
    assert policy.anonymizers[Anonymizer.ANONYMOUS] is Action.WARN
