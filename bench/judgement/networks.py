"""Real address ranges for the generated traffic, chosen from an IP intelligence snapshot.

The benchmark's traffic must come from where real users' traffic comes from: home ISPs, mobile
carriers, clouds and VPN hosts, with the country, subdivision and network flags the snapshot
gives them. Ranges are therefore *queried* from the snapshot's tables (by ASN, country,
subdivision and flags) each time traffic is generated, never hard-coded, so the generator keeps
working when the embedded data is rebuilt (for instance once it flags VPN exits). Every address
handed out is looked up again through :meth:`Snapshot.lookup` and checked against what was
asked for.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot

HOSTING = int(NetworkFlag.HOSTING)
VPN = int(NetworkFlag.VPN)
PROXY = int(NetworkFlag.PROXY)
TOR = int(NetworkFlag.TOR)
RELAY = int(NetworkFlag.RELAY)
#: Flags of networks that are not somebody's own line at home or on the move.
NOT_RESIDENTIAL = HOSTING | VPN | PROXY | TOR | RELAY


class NoRangeError(LookupError):
    """The snapshot holds no range matching a query (the message says which)."""


@dataclass(frozen=True, slots=True)
class Query:
    """What a pool of addresses must be: any of ``asns`` (empty: any ASN), in ``country``
    and/or ``subdivision``, with at least one of ``flags_any`` set (0: no requirement) and none
    of ``flags_none``."""

    asns: tuple[int, ...] = ()
    country: str | None = None
    subdivision: str | None = None
    flags_any: int = 0
    flags_none: int = 0

    def describe(self) -> str:
        """Plain words for error messages."""
        parts = []
        if self.asns:
            parts.append("AS" + "/".join(str(a) for a in self.asns))
        if self.country:
            parts.append(self.country)
        if self.subdivision:
            parts.append(self.subdivision)
        if self.flags_any:
            parts.append("flags " + "|".join(NetworkFlag(self.flags_any).names()))
        if self.flags_none:
            parts.append("not " + "|".join(NetworkFlag(self.flags_none).names()))
        return " ".join(parts) or "any range"


class RangeIndex:
    """The IPv4 ranges of a snapshot as arrays that can be filtered by ASN, place and flags."""

    def __init__(self, snapshot: Snapshot) -> None:
        n4 = snapshot.n4
        self.snapshot = snapshot
        self.starts: npt.NDArray[np.int64] = np.asarray(snapshot.v4_starts, dtype=np.int64)
        self.sizes: npt.NDArray[np.int64] = np.diff(np.append(self.starts, np.int64(2**32)))
        self.asn = np.asarray(snapshot.asn[:n4])
        self.flags = np.asarray(snapshot.flags[:n4]).astype(np.int64)
        self.country = np.asarray(snapshot.country_idx[:n4])
        self.subdivision = np.asarray(snapshot.subdivision_idx[:n4])
        self.country_codes = snapshot.country_codes
        self.subdivision_codes = snapshot.subdivision_codes

    def select(self, query: Query, *, min_size: int = 64) -> npt.NDArray[np.int64]:
        """Keys (range indexes) matching ``query`` with at least ``min_size`` addresses, in
        address order."""
        mask = self.sizes >= min_size
        if query.asns:
            mask &= np.isin(self.asn, np.array(query.asns, dtype=self.asn.dtype))
        if query.country is not None:
            if query.country not in self.country_codes:
                return np.zeros(0, dtype=np.int64)
            mask &= self.country == self.country_codes.index(query.country)
        if query.subdivision is not None:
            if query.subdivision not in self.subdivision_codes:
                return np.zeros(0, dtype=np.int64)
            mask &= self.subdivision == self.subdivision_codes.index(query.subdivision)
        if query.flags_any:
            mask &= (self.flags & query.flags_any) != 0
        if query.flags_none:
            mask &= (self.flags & query.flags_none) == 0
        return np.nonzero(mask)[0].astype(np.int64)


@dataclass(frozen=True, slots=True)
class Pool:
    """Ranges an address may be drawn from, all matching ``query``."""

    name: str
    query: Query
    keys: tuple[int, ...]
    index: RangeIndex

    def range_of(self, rng: random.Random) -> int:
        """One of the pool's ranges (a key)."""
        return self.keys[rng.randrange(len(self.keys))]

    def address(self, rng: random.Random, key: int | None = None) -> str:
        """A host address of range ``key`` (default: a random range of the pool), checked
        against the snapshot."""
        k = self.range_of(rng) if key is None else key
        first = int(self.index.starts[k])
        size = int(self.index.sizes[k])
        # Skip the first and last address of the range (network/broadcast in small blocks).
        offset = 1 + rng.randrange(max(1, size - 2)) if size > 2 else 0
        ip = str(ipaddress.IPv4Address(first + offset))
        self.check(ip)
        return ip

    def check(self, ip: str) -> None:
        """Raise ``NoRangeError`` unless the snapshot says ``ip`` is what the pool promises."""
        facts = self.index.snapshot.lookup(ip)
        q = self.query
        flags = int(facts.flags)
        ok = (
            (not q.asns or facts.asn in q.asns)
            and (q.country is None or facts.country == q.country)
            and (q.subdivision is None or facts.subdivision == q.subdivision)
            and (not q.flags_any or flags & q.flags_any)
            and not flags & q.flags_none
        )
        if not ok:
            raise NoRangeError(
                f"{ip} from pool {self.name} ({q.describe()}) looks up as {facts.country} "
                f"{facts.subdivision} AS{facts.asn} flags {flags}"
            )


class Networks:
    """Named pools of real ranges, queried from one snapshot (results memoised)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.index = RangeIndex(snapshot)
        self._pools: dict[tuple[str, Query], Pool] = {}

    def pool(self, name: str, *queries: Query, min_size: int = 64) -> Pool:
        """The first of ``queries`` that matches any range (fallbacks in order of preference);
        ``NoRangeError`` when none does."""
        for q in queries:
            cached = self._pools.get((name, q))
            if cached is not None:
                return cached
            keys = self.index.select(q, min_size=min_size)
            if len(keys):
                pool = Pool(name, q, tuple(int(k) for k in keys), self.index)
                self._pools[(name, q)] = pool
                return pool
        tried = "; ".join(q.describe() for q in queries)
        raise NoRangeError(f"no range in the snapshot for {name}: tried {tried}")

    # ----- the kinds of network the traffic uses ----------------------------------------

    def residential(self, country: str, asns: Sequence[int] = ()) -> Pool:
        """Home or mobile lines of ``asns`` in ``country`` (any such ISP if none matches)."""
        return self.pool(
            f"residential {country}",
            Query(asns=tuple(asns), country=country, flags_none=NOT_RESIDENTIAL),
            Query(country=country, flags_none=NOT_RESIDENTIAL),
        )

    def subdivision(self, code: str, asns: Sequence[int] = ()) -> Pool:
        """Residential lines in an ISO 3166-2 subdivision (Kyiv is UA-30, Lviv UA-46)."""
        return self.pool(
            f"residential {code}",
            Query(asns=tuple(asns), subdivision=code, flags_none=NOT_RESIDENTIAL),
            Query(subdivision=code, flags_none=NOT_RESIDENTIAL),
        )

    def cloud(self, country: str, asns: Sequence[int]) -> Pool:
        """Datacenter ranges of cloud providers ``asns`` in ``country``."""
        return self.pool(
            f"cloud {country}",
            Query(asns=tuple(asns), country=country, flags_any=HOSTING, flags_none=TOR | RELAY),
            Query(country=country, flags_any=HOSTING, flags_none=TOR | RELAY),
        )

    def vpn(self, country: str, hosts: Sequence[int]) -> Pool:
        """Commercial VPN exits in ``country``: ranges the snapshot flags VPN when it has any
        there, else datacenter ranges of the hosts VPN services rent from (``hosts``)."""
        return self.pool(
            f"vpn {country}",
            Query(country=country, flags_any=VPN, flags_none=TOR | RELAY),
            Query(asns=tuple(hosts), country=country, flags_any=HOSTING, flags_none=TOR | RELAY),
        )

    def relay(self, country: str, operators: Sequence[int]) -> Pool:
        """Location-preserving relay egress (iCloud Private Relay style) in ``country``: ranges
        flagged RELAY when the snapshot has them, else ranges of the relay's operators."""
        return self.pool(
            f"relay {country}",
            Query(country=country, flags_any=RELAY),
            Query(asns=tuple(operators), country=country, flags_none=TOR | VPN | PROXY),
        )


# ----- how people use their networks ------------------------------------------------------


class Line:
    """A residential line: an address from one range of the ISP's pool that changes every one
    to three weeks (DHCP lease or PPPoE reconnect), as home addresses do."""

    def __init__(self, rng: random.Random, pool: Pool, *, start: datetime) -> None:
        self.rng = rng
        self.pool = pool
        self.key = pool.range_of(rng)
        self.ip = pool.address(rng, self.key)
        self.until = start + timedelta(days=rng.uniform(0, 21))

    def at(self, t: datetime) -> str:
        """The line's address at time ``t`` (times must not go backwards much)."""
        while t >= self.until:
            self.ip = self.pool.address(self.rng, self.key)
            self.until += timedelta(days=self.rng.uniform(7, 21))
        return self.ip


class Shared:
    """A handful of addresses many people share (mobile carrier CGNAT, a relay's egress)."""

    def __init__(self, rng: random.Random, pool: Pool, size: int) -> None:
        self.ips = [pool.address(rng) for _ in range(size)]

    def pick(self, rng: random.Random) -> str:
        """One of the shared addresses."""
        return self.ips[rng.randrange(len(self.ips))]
