"""Fixtures for the intel tests: tiny MaxMind DBs written from tests/intel/data/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet

DATA = Path(__file__).parent / "data"


def write_mmdb(path: Path, spec: dict[str, Any]) -> Path:
    """Write one MaxMind DB described by ``spec`` (database_type, ip_version, networks)."""
    version = int(spec["ip_version"])
    writer = MMDBWriter(
        ip_version=version,
        database_type=spec["database_type"],
        ipv4_compatible=version == 6,
    )
    for cidr, record in spec["networks"]:
        net = IPNetwork(cidr)
        if version == 6 and net.version == 4:
            net = IPNetwork(f"::{net.network}/{net.prefixlen + 96}")
        writer.insert_network(IPSet([net]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_sources() -> dict[str, Any]:
    """The JSON source of the tiny databases."""
    data: dict[str, Any] = json.loads((DATA / "tiny-sources.json").read_text())
    return data


@pytest.fixture
def city_mmdb(tmp_path: Path, tiny_sources: dict[str, Any]) -> Path:
    """A GeoIP2-City-like IPv6 database with IPv4 networks under ::/96."""
    return write_mmdb(tmp_path / "city.mmdb", tiny_sources["city"])


@pytest.fixture
def flat_mmdb(tmp_path: Path, tiny_sources: dict[str, Any]) -> Path:
    """An ip-location-db flat-layout IPv4 database."""
    return write_mmdb(tmp_path / "flat.mmdb", tiny_sources["flat"])
