"""The IntelLookup contract, run against every implementation in geogate.intel:
the embedded Snapshot, a Snapshot built from a tiny database, and MmdbSource itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from geogate.errors import ClientIPError
from geogate.intel.build import BuildConfig, SourceConfig, build_snapshot
from geogate.intel.facts import IntelFacts, IntelLookup
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources.mmdb import MmdbSource


def _embedded(city: Path) -> IntelLookup:
    return Snapshot.embedded()


def _built(city: Path) -> IntelLookup:
    config = BuildConfig(
        sources=(
            SourceConfig(
                name="city",
                kind="mmdb",
                paths=(city,),
                date="2026-06-05",
                fields=("location", "subdivision"),
            ),
        )
    )
    return build_snapshot(config)


def _mmdb(city: Path) -> IntelLookup:
    return MmdbSource(city, name="city", date="2026-06-05")


# Each implementation, and an address it knows to be in Germany over IPv6.
IMPLEMENTATIONS: dict[str, tuple[Callable[[Path], IntelLookup], str, str]] = {
    "embedded": (_embedded, "2a00:200::1", "53.128.0.1"),
    "built": (_built, "2001:db9::1", "8.8.8.8"),
    "mmdb": (_mmdb, "2001:db9::1", "8.8.8.8"),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest, city_mmdb: Path) -> tuple[IntelLookup, str, str]:
    factory, v6_known, v4_known = IMPLEMENTATIONS[request.param]
    return factory(city_mmdb), v6_known, v4_known


@pytest.mark.parametrize("bad", ["", "1.2.3", "not an ip", "1.2.3.4/24", "fe80::1%eth0", "::g"])
def test_malformed_address_raises_client_ip_error(
    impl: tuple[IntelLookup, str, str], bad: str
) -> None:
    lookup, _, _ = impl
    with pytest.raises(ClientIPError):
        lookup.lookup(bad)


def test_unknown_address_is_a_fact_not_an_error(impl: tuple[IntelLookup, str, str]) -> None:
    lookup, _, _ = impl
    assert lookup.lookup("2001:db8::1") == IntelFacts.unknown()
    assert lookup.lookup("192.0.2.1") == IntelFacts.unknown()


def test_known_addresses_carry_network_and_provenance(
    impl: tuple[IntelLookup, str, str],
) -> None:
    lookup, v6, v4 = impl
    for ip in (v6, v4):
        facts = lookup.lookup(ip)
        assert facts.is_known
        assert facts.network is not None
        assert "-" in facts.network
        assert any(p.field == "location" for p in facts.provenance)
    assert lookup.lookup(v6).country == "DE"


def test_ipv4_mapped_ipv6_is_the_ipv4_answer(impl: tuple[IntelLookup, str, str]) -> None:
    lookup, _, v4 = impl
    assert lookup.lookup("::ffff:" + v4) == lookup.lookup(v4)
