"""Fixtures shared by the whole suite."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from geogate.client_ip import parse_ip
from geogate.intel.facts import IntelFacts


@dataclass
class TableLookup:
    """An IntelLookup over a small CIDR -> facts table: the simplest real implementation of the
    port, for tests of the pure decision rule."""

    table: dict[str, IntelFacts] = field(default_factory=dict)

    def lookup(self, ip: str) -> IntelFacts:
        addr = parse_ip(ip)
        best: tuple[int, IntelFacts] | None = None
        for cidr, facts in self.table.items():
            net = ipaddress.ip_network(cidr)
            if (
                addr.version == net.version
                and addr in net
                and (best is None or net.prefixlen > best[0])
            ):
                best = (net.prefixlen, facts)
        return best[1] if best else IntelFacts.unknown()


@pytest.fixture
def table_lookup() -> TableLookup:
    return TableLookup()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files from the current code; review the diff like code",
    )
