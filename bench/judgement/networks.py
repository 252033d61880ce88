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
    of ``flags_none``, of address ``family`` 4 or 6."""

    asns: tuple[int, ...] = ()
    country: str | None = None
    subdivision: str | None = None
    flags_any: int = 0
    flags_none: int = 0
    family: int = 4

    def describe(self) -> str:
        """Plain words for error messages."""
        parts = [f"IPv{self.family}"]
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
        return " ".join(parts)


class RangeIndex:
    """The ranges of a snapshot as arrays that can be filtered by ASN, place and flags. Keys
    are the snapshot's range keys: IPv4 ranges first, then IPv6."""

    def __init__(self, snapshot: Snapshot) -> None:
        n4 = snapshot.n4
        self.n4 = n4
        self.snapshot = snapshot
        self.starts: npt.NDArray[np.int64] = np.asarray(snapshot.v4_starts, dtype=np.int64)
        self.sizes: npt.NDArray[np.int64] = np.diff(np.append(self.starts, np.int64(2**32)))
        hi, lo = snapshot.v6_starts
        self.hi6 = np.asarray(hi, dtype=np.uint64)
        self.lo6 = np.asarray(lo, dtype=np.uint64)
        # Whole /64 networks in each IPv6 range (ranges rarely start inside a /64).
        nxt = np.append(self.hi6[1:], np.uint64(2**64 - 1))
        self.nets64: npt.NDArray[np.int64] = (nxt - self.hi6).astype(np.int64)
        self.asn = np.asarray(snapshot.asn)
        self.flags = np.asarray(snapshot.flags).astype(np.int64)
        self.country = np.asarray(snapshot.country_idx)
        self.subdivision = np.asarray(snapshot.subdivision_idx)
        self.country_codes = snapshot.country_codes
        self.subdivision_codes = snapshot.subdivision_codes

    def first6(self, key: int) -> int:
        """First address of IPv6 range ``key`` as an integer."""
        i = key - self.n4
        return (int(self.hi6[i]) << 64) | int(self.lo6[i])

    def select(self, query: Query, *, min_size: int = 64) -> npt.NDArray[np.int64]:
        """Keys matching ``query`` with at least ``min_size`` addresses (IPv4) or one whole /64
        (IPv6), in address order."""
        if query.family == 6:
            part = slice(self.n4, None)
            mask = (self.nets64 >= 1) & (self.lo6 == 0)
        else:
            part = slice(0, self.n4)
            mask = self.sizes >= min_size
        mask = mask.copy()
        if query.asns:
            mask &= np.isin(self.asn[part], np.array(query.asns, dtype=self.asn.dtype))
        if query.country is not None:
            if query.country not in self.country_codes:
                return np.zeros(0, dtype=np.int64)
            mask &= self.country[part] == self.country_codes.index(query.country)
        if query.subdivision is not None:
            if query.subdivision not in self.subdivision_codes:
                return np.zeros(0, dtype=np.int64)
            mask &= self.subdivision[part] == self.subdivision_codes.index(query.subdivision)
        if query.flags_any:
            mask &= (self.flags[part] & query.flags_any) != 0
        if query.flags_none:
            mask &= (self.flags[part] & query.flags_none) == 0
        keys = np.nonzero(mask)[0].astype(np.int64)
        return keys + self.n4 if query.family == 6 else keys


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
        against the snapshot. IPv6: a random interface of a random /64 of the range."""
        k = self.range_of(rng) if key is None else key
        if self.query.family == 6:
            return self.host64(rng, self.prefix64(rng, k))
        first = int(self.index.starts[k])
        size = int(self.index.sizes[k])
        # Skip the first and last address of the range (network/broadcast in small blocks).
        offset = 1 + rng.randrange(max(1, size - 2)) if size > 2 else 0
        ip = str(ipaddress.IPv4Address(first + offset))
        self.check(ip)
        return ip

    def prefix64(self, rng: random.Random, key: int | None = None) -> int:
        """A /64 network (its first address as an integer) of IPv6 range ``key``."""
        k = self.range_of(rng) if key is None else key
        nets = int(self.index.nets64[k - self.index.n4])
        return self.index.first6(k) + (rng.randrange(min(nets, 1 << 40)) << 64)

    def host64(self, rng: random.Random, prefix: int) -> str:
        """A random (privacy-extension style) interface address in the /64 ``prefix``."""
        ip = str(ipaddress.IPv6Address(prefix | rng.randrange(1, 1 << 64)))
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

    def residential(self, country: str, asns: Sequence[int] = (), *, family: int = 4) -> Pool:
        """Home or mobile lines of ``asns`` in ``country`` (any such ISP if none matches)."""
        return self.pool(
            f"residential {country}",
            Query(asns=tuple(asns), country=country, flags_none=NOT_RESIDENTIAL, family=family),
            Query(country=country, flags_none=NOT_RESIDENTIAL, family=family),
        )

    def residential6(
        self, country: str, asns: Sequence[int], *, subdivision: str | None = None
    ) -> Pool | None:
        """IPv6 lines of exactly ``asns`` in ``country`` (and ``subdivision``), or None when the
        snapshot has none (the ISP does not deploy IPv6 there, or the data does not say)."""
        q = Query(
            asns=tuple(asns),
            country=country,
            subdivision=subdivision,
            flags_none=NOT_RESIDENTIAL,
            family=6,
        )
        try:
            return self.pool(f"residential6 {country} {subdivision}", q)
        except NoRangeError:
            return None

    def subdivision(self, code: str, asns: Sequence[int] = ()) -> Pool:
        """Residential lines in an ISO 3166-2 subdivision (Kyiv is UA-30, Lviv UA-46)."""
        return self.pool(
            f"residential {code}",
            Query(asns=tuple(asns), subdivision=code, flags_none=NOT_RESIDENTIAL),
            Query(subdivision=code, flags_none=NOT_RESIDENTIAL),
        )

    def cloud(self, country: str, asns: Sequence[int], *, family: int = 4) -> Pool:
        """Datacenter ranges of cloud providers ``asns`` in ``country``."""
        flags = {"flags_any": HOSTING, "flags_none": TOR | RELAY, "family": family}
        return self.pool(
            f"cloud {country}",
            Query(asns=tuple(asns), country=country, **flags),
            Query(country=country, **flags),
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


class Line6:
    """A household's IPv6: a /64 from one range of the ISP, kept for one to three weeks (some
    ISPs renew it daily: ``daily_prefix``), and one to three devices whose privacy addresses
    change every day."""

    def __init__(
        self, rng: random.Random, pool: Pool, *, start: datetime, daily_prefix: bool = False
    ) -> None:
        self.rng = rng
        self.pool = pool
        self.key = pool.range_of(rng)
        self.daily_prefix = daily_prefix
        self.devices = rng.randint(1, 3)
        self.prefix = pool.prefix64(rng, self.key)
        self.until = start + timedelta(days=rng.uniform(0, 21))
        self.day: tuple[int, int, int] | None = None
        self.hosts: list[str] = []

    def at(self, t: datetime) -> str:
        """The address of one of the household's devices at ``t``."""
        day = (t.year, t.month, t.day)
        if day != self.day:
            renew = self.daily_prefix or t >= self.until
            while t >= self.until:
                self.until += timedelta(days=self.rng.uniform(7, 21))
            if renew:
                self.prefix = self.pool.prefix64(self.rng, self.key)
            self.hosts = [self.pool.host64(self.rng, self.prefix) for _ in range(self.devices)]
            self.day = day
        return self.hosts[self.rng.randrange(len(self.hosts))]


class DualStack:
    """A line with IPv4 and, when the ISP has IPv6 in the data, IPv6 too: a share of the
    requests (happy eyeballs prefers IPv6 where it works) goes over IPv6."""

    def __init__(self, v4: Line, v6: Line6 | None, share6: float) -> None:
        self.v4 = v4
        self.v6 = v6
        self.share6 = share6 if v6 is not None else 0.0

    def at(self, t: datetime) -> str:
        """The address a request at ``t`` comes from."""
        if self.v6 is not None and self.v4.rng.random() < self.share6:
            return self.v6.at(t)
        return self.v4.at(t)


def home_line(
    rng: random.Random,
    nets: Networks,
    country: str,
    asns: Sequence[int],
    *,
    start: datetime,
    subdivision: str | None = None,
) -> DualStack:
    """A residential line of one of ``asns`` in ``country`` (or ``subdivision``); about half
    of such lines are dual-stack when the ISP has IPv6 ranges in the data."""
    pool = nets.subdivision(subdivision, asns) if subdivision else nets.residential(country, asns)
    v4 = Line(rng, start=start, pool=pool)
    isp = nets.index.asn[v4.key]
    dual = rng.random() < 0.5
    v6_pool = nets.residential6(country, (int(isp),), subdivision=subdivision) if dual else None
    if v6_pool is None:
        return DualStack(v4, None, 0.0)
    v6 = Line6(rng, v6_pool, start=start, daily_prefix=rng.random() < 0.3)
    return DualStack(v4, v6, rng.uniform(0.3, 0.8))
