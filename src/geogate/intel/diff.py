"""What changed between two snapshots, weighted by addresses: for review and as a build gate.

A bad upstream day can move a country: a feed that files a large block under the wrong
country would, after the nightly build, deny or allow a whole population. :func:`diff_snapshots`
compares two snapshots range by range (IPv4 by addresses, IPv6 by /64 networks, since IPv6
ranges are counted in /64s by every operator) and says how many addresses changed country,
subdivision or network flags, and which (old, new) pairs moved the most. ``geogate data
diff`` prints it; ``geogate data build`` refuses to replace a snapshot when more than
``max_country_change`` of the addresses would change country, or more than
``max_subdivision_change`` of those with a subdivision would change it, or more than
``max_flag_change`` of the addresses carrying a network flag would gain or lose it (unless
``--force``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot

DEFAULT_MAX_COUNTRY_CHANGE: Final = 0.02
"""Share of located IPv4 addresses allowed to change country in one update (2 %)."""
DEFAULT_MAX_SUBDIVISION_CHANGE: Final = 0.10
"""Share of IPv4 addresses with a subdivision allowed to change it in one update (10 %): a
feed that drops or moves the occupied territories' subdivisions changes no country."""

DEFAULT_MAX_FLAG_CHANGE: Final = 0.25
"""Share of the IPv4 addresses carrying a network flag (in either snapshot) allowed to gain or
lose it in one update (25 %): a VPN or hosting feed cut short, or swapped for another kind,
changes no country or subdivision."""
MIN_GATED_FLAG_UNITS: Final = 65_536
"""Flags carried by fewer IPv4 addresses (one /16) are not gated: Tor exits and other small
lists churn by more than the share between builds, and are few addresses either way."""

_TOP: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagChange:
    """One network flag across an update: ``carried`` units have it in either snapshot,
    ``changed`` of them gained or lost it."""

    flag: str
    carried: int
    changed: int

    @property
    def share(self) -> float:
        """``changed / carried`` (0.0 when no unit carries the flag)."""
        return self.changed / self.carried if self.carried else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Mover:
    """Addresses that moved from ``old`` to ``new`` (a country or subdivision code, "" for
    none); ``units`` counts IPv4 addresses or IPv6 /64 networks, ``ranges`` the pieces."""

    old: str
    new: str
    units: int
    ranges: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FamilyDiff:
    """The changes in one address family. ``unit`` is ``"addresses"`` (IPv4) or ``"/64s"``."""

    unit: str
    located: int  # units with a country in either snapshot
    subdivided: int  # units with a subdivision in either snapshot
    country_changed: int
    subdivision_changed: int
    flags_changed: int
    country_movers: tuple[Mover, ...]
    subdivision_movers: tuple[Mover, ...]
    flag_movers: tuple[Mover, ...]
    flag_changes: tuple[FlagChange, ...] = ()  # per flag, those carried by any unit

    @property
    def country_change_share(self) -> float:
        """``country_changed / located`` (0.0 when nothing is located)."""
        return self.country_changed / self.located if self.located else 0.0

    @property
    def subdivision_change_share(self) -> float:
        """``subdivision_changed / subdivided`` (0.0 when nothing has a subdivision)."""
        return self.subdivision_changed / self.subdivided if self.subdivided else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotDiff:
    """:func:`diff_snapshots` result: one :class:`FamilyDiff` per family."""

    v4: FamilyDiff
    v6: FamilyDiff

    def lines(self) -> list[str]:
        """A plain-text report."""
        out: list[str] = []
        for name, fam in (("IPv4", self.v4), ("IPv6", self.v6)):
            out.append(
                f"{name}: {fam.country_changed:,} of {fam.located:,} located {fam.unit} changed "
                f"country ({100 * fam.country_change_share:.3f} %), "
                f"{fam.subdivision_changed:,} of {fam.subdivided:,} subdivision "
                f"({100 * fam.subdivision_change_share:.3f} %), {fam.flags_changed:,} flags"
            )
            for fc in fam.flag_changes:
                out.append(
                    f"  flag {fc.flag}: {fc.changed:,} of {fc.carried:,} {fam.unit} gained or "
                    f"lost it ({100 * fc.share:.3f} %)"
                )
            for title, movers in (
                ("country", fam.country_movers),
                ("subdivision", fam.subdivision_movers),
                ("flags", fam.flag_movers),
            ):
                for m in movers:
                    out.append(
                        f"  {title} {m.old or '-'} -> {m.new or '-'}: {m.units:,} {fam.unit} "
                        f"in {m.ranges:,} ranges"
                    )
        return out

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""

        def fam(f: FamilyDiff) -> dict[str, object]:
            def movers(ms: tuple[Mover, ...]) -> list[dict[str, object]]:
                return [
                    {"old": m.old, "new": m.new, "units": m.units, "ranges": m.ranges} for m in ms
                ]

            return {
                "unit": f.unit,
                "located": f.located,
                "subdivided": f.subdivided,
                "country_changed": f.country_changed,
                "country_change_share": f.country_change_share,
                "subdivision_changed": f.subdivision_changed,
                "subdivision_change_share": f.subdivision_change_share,
                "flags_changed": f.flags_changed,
                "country_movers": movers(f.country_movers),
                "subdivision_movers": movers(f.subdivision_movers),
                "flag_movers": movers(f.flag_movers),
                "flag_changes": [
                    {"flag": c.flag, "carried": c.carried, "changed": c.changed, "share": c.share}
                    for c in f.flag_changes
                ],
            }

        return {"ipv4": fam(self.v4), "ipv6": fam(self.v6)}


def _common(
    old: tuple[str, ...], new: tuple[str, ...]
) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    codes = sorted(set(old) | set(new))
    index = {c: i for i, c in enumerate(codes)}
    return (
        codes,
        np.array([index[c] for c in old], dtype=np.int64),
        np.array([index[c] for c in new], dtype=np.int64),
    )


def _movers(
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    weight: npt.NDArray[np.int64],
    names: list[str] | None,
) -> tuple[int, tuple[Mover, ...]]:
    changed = a != b
    total = int(weight[changed].sum())
    if not changed.any():
        return 0, ()
    base = int(max(a.max(), b.max())) + 1
    pair = a[changed] * base + b[changed]
    uniq, inverse = np.unique(pair, return_inverse=True)
    units = np.bincount(inverse, weights=weight[changed].astype(np.float64))
    counts = np.bincount(inverse)
    order = np.argsort(-units, kind="stable")[:_TOP]

    def name(i: int) -> str:
        if names is not None:
            return names[i]
        return "|".join(NetworkFlag(i).names()) or "none"

    return total, tuple(
        Mover(
            old=name(int(uniq[k]) // base),
            new=name(int(uniq[k]) % base),
            units=int(units[k]),
            ranges=int(counts[k]),
        )
        for k in order
    )


def _family(
    old: Snapshot,
    new: Snapshot,
    keys_old: npt.NDArray[np.int64],
    keys_new: npt.NDArray[np.int64],
    weight: npt.NDArray[np.int64],
    unit: str,
) -> FamilyDiff:
    countries, c_old, c_new = _common(old.country_codes, new.country_codes)
    # Subdivisions of each place, without the city: a city kept or dropped moves nothing.
    subs, s_old, s_new = _common(
        tuple("+".join(p.subdivisions) for p in old.places),
        tuple("+".join(p.subdivisions) for p in new.places),
    )
    ca = c_old[old.country_idx[keys_old].astype(np.int64)]
    cb = c_new[new.country_idx[keys_new].astype(np.int64)]
    sa = s_old[old.subdivision_idx[keys_old].astype(np.int64)]
    sb = s_new[new.subdivision_idx[keys_new].astype(np.int64)]
    fa = old.flags[keys_old].astype(np.int64)
    fb = new.flags[keys_new].astype(np.int64)
    blank = countries.index("")
    located = int(weight[(ca != blank) | (cb != blank)].sum())
    no_sub = subs.index("") if "" in subs else -1
    subdivided = int(weight[(sa != no_sub) | (sb != no_sub)].sum())
    country_changed, country_movers = _movers(ca, cb, weight, countries)
    sub_changed, sub_movers = _movers(sa, sb, weight, subs)
    flags_changed, flag_movers = _movers(fa, fb, weight, None)
    flag_changes = []
    for flag in NetworkFlag:
        if not flag.value:
            continue
        ha, hb = (fa & flag.value) != 0, (fb & flag.value) != 0
        carried = int(weight[ha | hb].sum())
        if carried:
            changed = int(weight[ha != hb].sum())
            flag_changes.append(
                FlagChange(flag=str(flag.name).lower(), carried=carried, changed=changed)
            )
    return FamilyDiff(
        unit=unit,
        located=located,
        subdivided=subdivided,
        country_changed=country_changed,
        subdivision_changed=sub_changed,
        flags_changed=flags_changed,
        country_movers=country_movers,
        subdivision_movers=sub_movers,
        flag_movers=flag_movers,
        flag_changes=tuple(flag_changes),
    )


def diff_snapshots(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    """Compare ``old`` and ``new`` over the whole address space (see the module doc).

    IPv4 is exact (every address counted once). IPv6 is compared at /64 granularity: each
    /64 that starts a range in either snapshot counts as one unit of that range.
    """
    starts = np.union1d(old.v4_starts.astype(np.int64), new.v4_starts.astype(np.int64))
    weight4 = np.diff(np.append(starts, np.int64(1 << 32))).astype(np.int64)
    q4 = starts.astype(np.uint32)
    v4 = _family(old, new, old.locate_many_v4(q4), new.locate_many_v4(q4), weight4, "addresses")
    his = np.union1d(old.v6_starts[0], new.v6_starts[0])
    top = np.uint64((1 << 64) - 1)
    # /64 counts; the last range runs to the top of the space (2**64 /64s in all).
    ends = np.append(his[1:], top)
    weight6 = (ends - his).astype(np.float64)
    weight6[-1] += 1.0
    lo = np.zeros(len(his), dtype=np.uint64)
    keys_old = old.locate_many_v6(his, lo)
    keys_new = new.locate_many_v6(his, lo)
    # Embedded-IPv4 forms (6to4, Teredo, NAT64 ...) are looked up as IPv4: leave them out.
    own = (keys_old >= old.n4) & (keys_new >= new.n4)
    v6 = _family(
        old,
        new,
        keys_old[own],
        keys_new[own],
        np.minimum(weight6[own], float(1 << 62)).astype(np.int64),
        "/64s",
    )
    return SnapshotDiff(v4=v4, v6=v6)
