"""A tiny real Snapshot for account tests, built from a table of ranges in this file.

Each named network is a /24 whose facts are set here, so tests read like the scenario they
describe ("a German datacenter") instead of depending on which addresses a data vendor put
where. The snapshot is a real :class:`geogate.intel.snapshot.Snapshot`, looked up the same way
as the shipped one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import FORMAT_VERSION, Snapshot, SnapshotMeta, SourceInfo

H = int(NetworkFlag.HOSTING)
V = int(NetworkFlag.VPN)
R = int(NetworkFlag.RELAY)
T = int(NetworkFlag.TOR)


@dataclass(frozen=True)
class Net:
    cidr: str
    country: str
    subdivision: str = ""
    asn: int = 0
    flags: int = 0

    def host(self, i: int) -> str:
        """The ``i``-th host address of the /24 (1..254)."""
        net = ipaddress.ip_network(self.cidr)
        return str(net.network_address + 1 + (i % 254))


NETS: dict[str, Net] = {
    "us_home": Net("11.1.1.0/24", "US", asn=7922),
    "us_home2": Net("11.1.2.0/24", "US", asn=7018),
    "de_home": Net("11.2.1.0/24", "DE", asn=3320),
    "gb_home": Net("11.3.1.0/24", "GB", asn=2856),
    "cn_home": Net("11.4.1.0/24", "CN", asn=4134),
    "cn_home2": Net("11.4.2.0/24", "CN", asn=4837),
    "ru_home": Net("11.5.1.0/24", "RU", asn=12389),
    "crimea": Net("11.5.2.0/24", "RU", subdivision="UA-43", asn=12389),
    "us_cloud": Net("11.6.1.0/24", "US", asn=16509, flags=H),
    "de_cloud": Net("11.7.1.0/24", "DE", asn=24940, flags=H),
    "nl_cloud": Net("11.8.1.0/24", "NL", asn=14061, flags=H),
    "us_vpn": Net("11.9.1.0/24", "US", asn=9009, flags=H | V),
    "us_relay": Net("11.10.1.0/24", "US", asn=36183, flags=R),
    "cn_relay": Net("11.10.2.0/24", "CN", asn=36183, flags=R),
    "tor": Net("11.11.1.0/24", "", asn=0, flags=T),
}


def build_snapshot() -> Snapshot:
    """The snapshot holding :data:`NETS` (everything else unknown)."""
    countries = sorted({n.country for n in NETS.values() if n.country})
    subs = sorted({n.subdivision for n in NETS.values() if n.subdivision})
    country_codes = ("", *countries)
    sub_codes = ("", *subs)
    starts = [0]
    rows: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)]
    for net in sorted(
        NETS.values(), key=lambda n: int(ipaddress.ip_network(n.cidr).network_address)
    ):
        first = int(ipaddress.ip_network(net.cidr).network_address)
        last = int(ipaddress.ip_network(net.cidr).broadcast_address)
        if starts[-1] == first:
            rows.pop()
            starts.pop()
        starts.append(first)
        rows.append(
            (
                country_codes.index(net.country) if net.country else 0,
                sub_codes.index(net.subdivision) if net.subdivision else 0,
                net.asn,
                net.flags,
            )
        )
        starts.append(last + 1)
        rows.append((0, 0, 0, 0))
    n4 = len(starts)
    n = n4 + 1
    col = {name: np.zeros(n, dtype) for name, dtype in _dtypes().items()}
    for i, (ci, si, asn, flags) in enumerate(rows):
        col["country_idx"][i] = ci
        col["subdivision_idx"][i] = si
        col["asn"][i] = asn
        col["flags"][i] = flags
        col["location_src"][i] = 1 if ci else 0
        col["subdivision_src"][i] = 1 if si else 0
        col["asn_src"][i] = 1 if asn else 0
        col["flags_src"][i] = 1 if flags else 0
    meta = SnapshotMeta(
        format_version=FORMAT_VERSION,
        built_at=datetime(2024, 1, 1, tzinfo=UTC),
        sources=(SourceInfo(name="test-table", kind="test", date="2024-01-01"),),
        v4_ranges=n4,
        v6_ranges=1,
    )
    return Snapshot(
        meta=meta,
        v4_starts=np.array(starts, dtype=np.uint32),
        v6_starts_hi=np.zeros(1, np.uint64),
        v6_starts_lo=np.zeros(1, np.uint64),
        columns=col,
        country_codes=country_codes,
        subdivision_codes=sub_codes,
    )


def _dtypes() -> dict[str, type[np.generic]]:
    return {
        "country_idx": np.uint16,
        "subdivision_idx": np.uint16,
        "alt_country_idx": np.uint16,
        "asn": np.uint32,
        "flags": np.uint8,
        "location_src": np.uint8,
        "subdivision_src": np.uint8,
        "alt_country_src": np.uint8,
        "asn_src": np.uint8,
        "flags_src": np.uint16,
    }
