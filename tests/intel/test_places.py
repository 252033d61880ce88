"""Places below the country: every subdivision of a record, and the city where the build keeps
city precision, carried from the vendor file through the snapshot file to the decision.

The MaxMind DBs are written by the test (mmdb_writer) in the GeoIP2-City layout (two
subdivision levels, city with GeoNames id) and in ip-location-db's flat layout (DB-IP's city
names, districts in parentheses and oblast-named "cities" included, as the 2026-06 release
spells them).
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geogate.decide import Decider, Reason, RequestContext, decide
from geogate.errors import ClientIPError, ConfigError, IntelDataError
from geogate.intel.build import build_snapshot, load_build_config, verify_written
from geogate.intel.places import Place, city_region_warnings, city_shares
from geogate.intel.snapshot import Snapshot, _content_digest
from geogate.intel.sources.mmdb import MmdbSource
from geogate.policy.model import Action
from geogate.policy.parse import load_policy_set, parse_policy, resolve_policy_path

from .conftest import write_mmdb

AFTER = datetime(2024, 7, 10, tzinfo=UTC)

CITY = {
    "database_type": "GeoIP2-City",
    "ip_version": 6,
    "networks": [
        [
            "2.0.0.0/24",
            {
                "country": {"iso_code": "GB"},
                "subdivisions": [{"iso_code": "ENG"}, {"iso_code": "BEN"}],
                "city": {"geoname_id": 2654993, "names": {"en": "Brent"}},
            },
        ],
        [
            "2.0.1.0/24",
            {
                "country": {"iso_code": "GB"},
                "subdivisions": [{"iso_code": "ENG"}, {"iso_code": "CMD"}],
                "city": {"geoname_id": 2653822, "names": {"en": "Camden Town"}},
            },
        ],
        ["2.0.2.0/24", {"country": {"iso_code": "GB"}, "subdivisions": [{"iso_code": "ENG"}]}],
    ],
}

# DB-IP's spellings in UA-23 / UA-65 (2026-06): transliterations, districts, an oblast as city.
FLAT = {
    "database_type": "ip-location-db-flat",
    "ip_version": 4,
    "networks": [
        ["5.0.0.0/24", {"country_code": "UA", "state1": "Zaporizhzhia", "city": "Zaporizhzhya"}],
        [
            "5.0.1.0/24",
            {
                "country_code": "UA",
                "state1": "Zaporizhzhia",
                "city": "Zaporizhzhya (Shevchenkovskiy raion)",
            },
        ],
        ["5.0.2.0/24", {"country_code": "UA", "state1": "Zaporizhia", "city": "Zaporizhia"}],
        ["5.0.3.0/24", {"country_code": "UA", "state1": "Zaporizhzhia", "city": "Enerhodar"}],
        [
            "5.0.4.0/24",
            {"country_code": "UA", "state1": "Zaporizhzhia", "city": "Zaporizhzhia Oblast"},
        ],
        [
            "5.0.5.0/24",
            {"country_code": "UA", "state1": "Zaporizhzhia", "city": "Nove Zaporizhzhya"},
        ],
        [
            "5.0.6.0/24",
            {"country_code": "UA", "state1": "Kherson", "city": "Kherson (Korabelnyi district)"},
        ],
        ["5.0.7.0/24", {"country_code": "UA", "state1": "Kherson", "city": "Kakhovka"}],
        ["5.0.8.0/24", {"country_code": "UA", "state1": "Kyiv City", "city": "Kyiv"}],
        ["5.0.9.0/24", {"country_code": "RU", "state1": "Crimea", "city": "Simferopol"}],
        ["5.0.10.0/24", {"country_code": "UA", "state1": "Donetsk", "city": "Kramatorsk"}],
    ],
}


def _build(tmp_path: Path, spec: dict[str, object], build: str) -> Snapshot:
    write_mmdb(tmp_path / "loc.mmdb", spec)
    (tmp_path / "build.toml").write_text(
        f"[build]\nblank_special_purpose = false\n{build}\n"
        '[[sources]]\nname = "loc"\nkind = "mmdb"\npath = "loc.mmdb"\ndate = "2026-06-05"\n'
        'fields = ["location", "subdivision"]\n'
    )
    snap = build_snapshot(load_build_config(tmp_path / "build.toml"))
    snap.save(tmp_path / "s.snapshot")
    return verify_written(snap, tmp_path / "s.snapshot")


@pytest.fixture
def gb(tmp_path: Path) -> Snapshot:
    return _build(tmp_path, CITY, "")


@pytest.fixture
def ua(tmp_path: Path) -> Snapshot:
    return _build(
        tmp_path, FLAT, 'subdivision_countries = ["UA"]\ncity_regions = ["UA-23", "UA-65"]'
    )


def test_a_record_keeps_every_subdivision(gb: Snapshot) -> None:
    facts = gb.lookup("2.0.0.1")
    assert (facts.subdivision, facts.more_subdivisions) == ("GB-ENG", ("GB-BEN",))
    assert facts.subdivisions == ("GB-ENG", "GB-BEN")
    assert facts.to_dict()["subdivisions"] == ["GB-ENG", "GB-BEN"]
    assert facts.city is None  # no city_regions: no city kept
    one = gb.lookup("2.0.2.1")
    assert one.subdivisions == ("GB-ENG",)
    assert "subdivisions" not in one.to_dict()


def test_a_rule_on_the_second_subdivision_matches(gb: Snapshot) -> None:
    policy = parse_policy(
        '[policy]\nid = "t"\n[[rules]]\nid = "brent"\nregions = ["GB-BEN"]\n'
        '[[rules]]\nid = "uk"\naction = "allow"\nregions = ["GB"]\n'
    )
    d = decide(policy, gb, RequestContext(ip="2.0.0.1"), at=AFTER)
    assert (d.action, d.rule_id, d.region) == (Action.DENY, "brent", "GB-BEN")
    other = decide(policy, gb, RequestContext(ip="2.0.1.1"), at=AFTER)
    assert (other.action, other.rule_id) == (Action.ALLOW, "uk")
    _same_as_batch(policy=policy, snap=gb, ips=["2.0.0.1", "2.0.1.1", "2.0.2.1"])


def test_geonames_ids_are_kept_and_matched(tmp_path: Path) -> None:
    snap = _build(tmp_path, CITY, 'city_regions = ["GB-BEN"]')
    facts = snap.lookup("2.0.0.1")
    assert (facts.city, facts.city_geoname_id) == ("Brent", 2654993)
    assert snap.lookup("2.0.1.1").city is None  # GB-CMD is not a city region
    policy = parse_policy(
        '[policy]\nid = "t"\n[[rules]]\nid = "city"\nregions = ["GB-BEN/geonames:2654993"]\n'
    )
    d = decide(policy, snap, RequestContext(ip="2.0.0.1"), at=AFTER)
    assert (d.action, d.region) == (Action.DENY, "GB-BEN/geonames:2654993")


def test_cities_are_kept_only_in_city_regions_and_folded(ua: Snapshot) -> None:
    got = {ip: (ua.lookup(ip).subdivision, ua.lookup(ip).city) for ip in _ips(11)}
    assert got == {
        "5.0.0.1": ("UA-23", "Zaporizhzhia"),
        "5.0.1.1": ("UA-23", "Zaporizhzhia"),  # a district of the city
        "5.0.2.1": ("UA-23", "Zaporizhzhia"),  # another transliteration
        "5.0.3.1": ("UA-23", "Enerhodar"),
        "5.0.4.1": ("UA-23", None),  # the "city" names the oblast: not a city
        "5.0.5.1": ("UA-23", "Nove Zaporizhzhya"),  # a village, not the city
        "5.0.6.1": ("UA-65", "Kherson"),
        "5.0.7.1": ("UA-65", "Kakhovka"),
        "5.0.8.1": ("UA-30", None),  # Kyiv is not a city region
        "5.0.9.1": ("UA-43", None),
        "5.0.10.1": ("UA-14", None),
    }
    # The three spellings of the city are one place: adjacent ranges merged.
    assert ua.locate("5.0.0.1") == ua.locate("5.0.2.200")
    assert ua.lookup("5.0.6.1").to_dict()["city"] == "Kherson"


@pytest.mark.parametrize("preset", ["unsupported-regions", "supported-countries"])
def test_presets_carve_the_free_capitals_out(ua: Snapshot, preset: str) -> None:
    policies = load_policy_set([resolve_policy_path(f"builtin:{preset}")])
    decider = Decider(policies, ua)
    want = {
        "5.0.0.1": ("allow", "UA-23/Zaporizhzhia"),
        "5.0.1.1": ("allow", "UA-23/Zaporizhzhia"),
        "5.0.2.1": ("allow", "UA-23/Zaporizhzhia"),
        "5.0.3.1": ("deny", "UA-23"),  # Enerhodar: occupied
        "5.0.4.1": ("deny", "UA-23"),  # the oblast, no city: stays denied
        "5.0.5.1": ("deny", "UA-23"),
        "5.0.6.1": ("allow", "UA-65/Kherson"),
        "5.0.7.1": ("deny", "UA-65"),
        "5.0.9.1": ("deny", "UA-43"),
    }
    for ip, (action, region) in want.items():
        d = decider.decide(ip, at=AFTER)
        assert (d.action.label, d.region) == (action, region), ip
        if action == "allow":
            assert d.rule_id == "ua-free-cities"
    _same_as_batch(policy=policies, snap=ua, ips=_ips(11))


def test_city_spelling_in_a_policy_is_folded(ua: Snapshot) -> None:
    policy = parse_policy(
        '[policy]\nid = "t"\n[[rules]]\nid = "occ"\nregions = ["UA-23"]\n'
        '[[rules]]\nid = "free"\naction = "allow"\nregions = ["ua-23/ZAPORIZHZHYA"]\n'
    )
    assert decide(policy, ua, RequestContext(ip="5.0.1.9"), at=AFTER).rule_id == "free"
    assert decide(policy, ua, RequestContext(ip="5.0.3.9"), at=AFTER).rule_id == "occ"


def test_decide_many_equals_decide_with_city_places(ua: Snapshot) -> None:
    policy = parse_policy(
        '[policy]\nid = "t"\nmode = "allow-list"\n[[rules]]\nid = "ua"\nregions = ["UA"]\n'
        '[[rules]]\nid = "occ"\naction = "deny"\nregions = ["UA-23", "UA-65", "UA-43"]\n'
        '[[rules]]\nid = "free"\naction = "allow"\n'
        'regions = ["UA-23/Zaporizhzhia", "UA-65/Kherson"]\n'
        '[[rules]]\nid = "deny-city"\naction = "deny"\nregions = ["UA-23/Nove Zaporizhzhya"]\n'
    )
    rng = np.random.default_rng(7)
    ips = [f"5.0.{int(a)}.{int(b)}" for a, b in rng.integers(0, 12, size=(300, 2))]
    _same_as_batch(policy=policy, snap=ua, ips=[*ips, "::1", "bad"])


def _same_as_batch(*, policy: object, snap: Snapshot, ips: list[str]) -> None:
    """decide_many gives every address the action, reasons and region decide gives it."""
    decider = Decider(policy, snap)  # type: ignore[arg-type]
    batch = decider.decide_many(ips, at=AFTER)
    for i, ip in enumerate(ips):
        try:
            d = decider.decide(ip, at=AFTER)
        except ClientIPError:  # a malformed address is marked invalid in the batch
            assert batch.region_of(i) is None
            continue
        assert batch.actions[i] == int(d.action), ip
        assert batch.reasons_of(i) == d.reasons, ip
        assert batch.region_of(i) == d.region, ip


def _ips(n: int) -> list[str]:
    return [f"5.0.{i}.1" for i in range(n)]


def test_places_survive_save_and_load(ua: Snapshot, tmp_path: Path) -> None:
    ua.save(tmp_path / "again.snapshot")
    loaded = Snapshot.load(tmp_path / "again.snapshot")
    assert loaded.places == ua.places
    assert Place(("UA-23",), "Zaporizhzhia") in loaded.places
    assert loaded.subdivision_mask("UA-23").sum() == ua.subdivision_mask("UA-23").sum()
    assert len(loaded.place_indices("UA-23", city="zaporizhzhya")) == 1


def test_format_2_snapshots_still_load(tmp_path: Path) -> None:
    """A version-2 file (subdivision codes, no place table) loads with one-subdivision places;
    saving it writes version 3."""
    snap = _build(tmp_path, FLAT, 'subdivision_countries = ["UA"]')  # no cities: plain places
    snap.save(tmp_path / "v3.snapshot")
    with np.load(tmp_path / "v3.snapshot", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(bytes(arrays.pop("meta")).decode())
    places = meta.pop("places")
    assert all(isinstance(p, str) for p in places)
    meta["format_version"] = 2
    meta["subdivision_codes"] = places
    meta["content_sha256"] = _content_digest(arrays, meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with (tmp_path / "v2.snapshot").open("wb") as fh:
        np.savez_compressed(fh, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    old = Snapshot.load(tmp_path / "v2.snapshot")
    assert old.meta.format_version == 2
    assert old.subdivision_codes == tuple(places)
    for ip in _ips(11):
        assert old.lookup(ip) == snap.lookup(ip)
    old.save(tmp_path / "again.snapshot")
    assert Snapshot.load(tmp_path / "again.snapshot").meta.format_version == 3


def test_unknown_format_versions_are_refused_in_one_line(tmp_path: Path) -> None:
    snap = Snapshot.embedded()
    snap.save(tmp_path / "s.snapshot")
    with np.load(tmp_path / "s.snapshot", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(bytes(arrays.pop("meta")).decode())
    meta["format_version"] = 9
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with (tmp_path / "v9.snapshot").open("wb") as fh:
        np.savez_compressed(fh, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    with pytest.raises(IntelDataError) as info:
        Snapshot.load(tmp_path / "v9.snapshot")
    line = info.value.one_line()
    assert "format version 9" in line
    assert "reads 2 and 3" in line


def test_bad_city_regions_and_place_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _build(tmp_path, FLAT, 'city_regions = ["Ukraine"]')
    assert info.value.key == "build.city_regions"
    for bad in ([["UA-23"], 5, None], [[], "Kherson", None], [["UA-65"], "Kherson", -1], 7):
        with pytest.raises(ValueError, match="place"):
            Place.from_json(bad)


def test_city_warnings_name_what_never_matches(ua: Snapshot) -> None:
    policy = parse_policy(
        '[policy]\nid = "t"\n[[rules]]\nid = "r"\n'
        'regions = ["UA-23/Zaporozhe", "UA-23/Atlantis",'
        ' "UA-14/Kramatorsk"]\n'
    )
    got = {region.code: why for _, region, why in city_region_warnings(policy, ua)}
    assert set(got) == {"UA-23/Atlantis", "UA-14/Kramatorsk"}
    assert "no range of the snapshot is in 'Atlantis' of UA-23" in got["UA-23/Atlantis"]
    assert "keeps no cities in UA-14" in got["UA-14/Kramatorsk"]


def test_city_shares_measure_the_data(ua: Snapshot) -> None:
    shares = {c.city: (c.ipv4_ranges, c.ipv4_addresses) for c in city_shares(ua, "UA-23")}
    assert shares == {
        "Zaporizhzhia": (1, 768),  # three /24s under three spellings, merged
        "Enerhodar": (1, 256),
        None: (1, 256),
        "Nove Zaporizhzhya": (1, 256),
    }


def _middle(snap: Snapshot, keys: np.ndarray) -> list[str]:
    out = []
    for key in keys:
        first, last = snap.network_of(int(key))
        a, b = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
        out.append(str(ipaddress.ip_address(a + (b - a) // 2)))
    return out


@pytest.mark.parametrize("preset", ["unsupported-regions", "supported-countries"])
def test_embedded_default_carves_out_the_free_capitals(preset: str) -> None:
    """On the shipped data: addresses the data places in the cities of Zaporizhzhia and
    Kherson are allowed, the rest of both oblasts (other cities, no city) is denied, and the
    batch path agrees address by address."""
    snap = Snapshot.embedded()
    decider = Decider(load_policy_set([resolve_policy_path(f"builtin:{preset}")]), snap)
    v4 = np.arange(len(snap)) < snap.n4
    seen = 0
    for sub, city in (("UA-23", "Zaporizhzhia"), ("UA-65", "Kherson")):
        inside = snap.subdivision_mask(sub, city=city)
        rest = snap.subdivision_mask(sub) & ~inside
        assert inside[v4].any()
        assert rest[v4].any()
        city_ips = _middle(snap, np.flatnonzero(inside)[:40])
        rest_ips = _middle(snap, np.flatnonzero(rest)[:40])
        for ip in city_ips:
            d = decider.decide(ip, at=AFTER)
            assert d.region == f"{sub}/{city}", ip
            assert d.facts.city == city
            assert d.rule_id == "ua-free-cities", ip
            assert d.reasons[0] is Reason.REGION_SUPPORTED
            # Allowed unless the registry data puts the network in Russia (disputed: warn).
            disputed = Reason.LOCATION_DISPUTED in d.reasons
            assert d.action is (Action.WARN if disputed else Action.ALLOW), ip
        for ip in rest_ips:
            d = decider.decide(ip, at=AFTER)
            assert (d.action, d.rule_id, d.region) == (Action.DENY, "ua-occupied", sub), ip
        _same_as_batch(policy=decider.policies, snap=snap, ips=city_ips + rest_ips)
        seen += len(city_ips) + len(rest_ips)
    assert seen >= 100


@pytest.fixture(scope="module")
def ua_shared(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return _build(
        tmp_path_factory.mktemp("ua"),
        FLAT,
        'subdivision_countries = ["UA"]\ncity_regions = ["UA-23", "UA-65"]',
    )


_POOL = (
    "UA",
    "RU",
    "UA-23",
    "UA-65",
    "UA-43",
    "UA-23/Zaporizhzhia",
    "UA-23/Enerhodar",
    "UA-65/Kherson",
)


@given(
    rules=st.lists(
        st.tuples(st.sampled_from(_POOL), st.sampled_from(["allow", "deny"])),
        max_size=6,
        unique_by=lambda r: r[0],
    ),
    allow_list=st.booleans(),
    city=st.sampled_from(["UA-23/Zaporizhzhia", "UA-23/Nove Zaporizhzhya", "UA-65/Kakhovka"]),
)
def test_city_rules_change_only_their_city_and_batches_agree(
    ua_shared: Snapshot, rules: list[tuple[str, str]], allow_list: bool, city: str
) -> None:
    """For any policy over countries, oblasts and cities: decide_many equals decide address by
    address, and adding a rule on a city changes decisions only for addresses in that city."""

    def policy(extra: list[tuple[str, str]]) -> str:
        mode = "allow-list" if allow_list else "deny-list"
        text = f'[policy]\nid = "t"\nmode = "{mode}"\n'
        for i, (region, action) in enumerate(rules + extra):
            text += f'[[rules]]\nid = "r{i}"\naction = "{action}"\nregions = ["{region}"]\n'
        return text

    base = parse_policy(policy([]))
    ips = _ips(11)
    _same_as_batch(policy=base, snap=ua_shared, ips=ips)
    if any(r[0].lower() == city.lower() for r in rules):
        return
    sub, _, name = city.partition("/")
    for action in ("allow", "deny"):
        more = parse_policy(policy([(city, action)]))
        _same_as_batch(policy=more, snap=ua_shared, ips=ips)
        for ip in ips:
            facts = ua_shared.lookup(ip)
            if facts.subdivision == sub and facts.city == name:
                continue
            a = decide(base, ua_shared, RequestContext(ip=ip), at=AFTER)
            b = decide(more, ua_shared, RequestContext(ip=ip), at=AFTER)
            assert a == b, ip


def test_the_vendor_file_and_the_snapshot_agree_on_places(tmp_path: Path) -> None:
    """MmdbSource.lookup (the file itself) and the compiled snapshot give the same place."""
    for spec, regions, ips in (
        (CITY, ["GB-BEN"], ["2.0.0.1", "2.0.1.1", "2.0.2.1"]),
        (FLAT, ["UA-23", "UA-65"], _ips(11)),
    ):
        where = tmp_path / spec["database_type"]  # type: ignore[operator]
        where.mkdir()
        snap = _build(where, spec, f"city_regions = {json.dumps(regions)}")
        source = MmdbSource(where / "loc.mmdb", name="loc", city_regions=regions)
        for ip in ips:
            a, b = source.lookup(ip), snap.lookup(ip)
            assert (a.subdivisions, a.city, a.city_geoname_id) == (
                b.subdivisions,
                b.city,
                b.city_geoname_id,
            ), ip
        source.close()
