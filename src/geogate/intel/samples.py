"""Sample addresses picked from a snapshot's own data, for the demo and for golden tests."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import numpy as np

from geogate.intel.snapshot import Snapshot


def _first_public(snap: Snapshot, keys: Iterable[int]) -> str | None:
    for key in keys:
        first, last = snap.network_of(int(key))
        lo = ipaddress.ip_address(first)
        hi = ipaddress.ip_address(last)
        if int(hi) - int(lo) < 2 or not lo.is_global:
            continue
        # The middle of the range: far from the edges where sources tend to disagree.
        return str(ipaddress.ip_address(int(lo) + (int(hi) - int(lo) + 1) // 2 + 1))
    return None


def sample_addresses(snap: Snapshot, regions: Iterable[str], *, ipv6: bool = True) -> list[str]:
    """For each region (country ``"CN"`` or subdivision ``"UA-43"``), the middle address of its
    largest public IPv4 range in ``snap`` on which the location sources agree and, with
    ``ipv6``, of its largest such IPv6 range. A country matches only ranges without a
    subdivision; name subdivisions (``"UA-30"``) or cities (``"UA-23/Zaporizhzhia"``) to
    sample them (a subdivision includes its cities).

    Regions the data does not have are skipped. Deterministic for a given snapshot.
    """
    out: list[str] = []
    n4 = snap.n4
    for region in regions:
        if "-" in region:
            sub, _, city = region.partition("/")
            if not snap.place_indices(sub, city=city or None):
                continue
            mask = snap.subdivision_mask(sub, city=city or None)
        else:
            if region not in snap.country_codes:
                continue
            mask = (snap.country_idx == snap.country_codes.index(region)) & (
                snap.subdivision_idx == 0
            )
        # Only ranges where the location sources agree: an address a user can verify elsewhere.
        keys = np.flatnonzero(mask & (snap.alt_country_idx == 0))
        for family in (keys[keys < n4], keys[keys >= n4] if ipv6 else keys[:0]):
            sizes = [_size(snap, int(k)) for k in family]
            ordered = [int(family[i]) for i in np.argsort(sizes)[::-1]]
            ip = _first_public(snap, ordered[:50])
            if ip is not None:
                out.append(ip)
    return out


def _size(snap: Snapshot, key: int) -> int:
    first, last = snap.network_of(key)
    return int(ipaddress.ip_address(last)) - int(ipaddress.ip_address(first))
