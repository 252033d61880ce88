"""Places: what a snapshot records below the country for a range.

A place names one or more ISO 3166-2 subdivisions (a MaxMind record may give two levels, e.g.
England and a London borough; a territory rule on any of them matches) and, only where the
build kept city precision (``city_regions``), the city the location source gave, with its
GeoNames id when the source has one. The snapshot's ``subdivision_idx`` column indexes a table
of places, so the per-range columns keep their size and a decision is still computed once per
distinct (country, place, alternative country, flags) combination.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from geogate.policy.cities import city_key
from geogate.policy.model import Policy, Region, Rule

if TYPE_CHECKING:
    from geogate.intel.snapshot import Snapshot

MAX_PLACE_SUBDIVISIONS: Final = 4
"""Most subdivisions one place may name (MaxMind records carry at most two levels)."""


@dataclass(frozen=True, slots=True, order=True)
class Place:
    """Subdivisions (ISO 3166-2 codes, most general first) and an optional city.

    The empty place (no subdivision) is index 0 of every place table. ``city`` is the
    canonical name kept by the build (see :func:`geogate.policy.cities.canonical_city`);
    ``geoname_id`` is the source's GeoNames id of the city, or None.
    """

    subdivisions: tuple[str, ...] = ()
    city: str | None = None
    geoname_id: int | None = None

    @property
    def subdivision(self) -> str | None:
        """The first (most general) subdivision, or None."""
        return self.subdivisions[0] if self.subdivisions else None

    @property
    def label(self) -> str:
        """``"UA-23"``, ``"GB-ENG+GB-BEN"`` or ``"UA-23/Zaporizhzhia"``: for reports and
        the ``region`` of a decision that matched the place as a whole."""
        text = "+".join(self.subdivisions)
        return f"{text}/{self.city}" if self.city else text

    def to_json(self) -> Any:
        """The form stored in the snapshot metadata: a plain code for a one-subdivision place
        (as format 2 stored every place), else ``[subdivisions, city, geoname_id]``."""
        if len(self.subdivisions) <= 1 and self.city is None and self.geoname_id is None:
            return self.subdivision or ""
        return [list(self.subdivisions), self.city, self.geoname_id]

    @classmethod
    def from_json(cls, raw: object) -> Place:
        """Read :meth:`to_json`'s form; ValueError when malformed."""
        if isinstance(raw, str):
            return cls((raw,) if raw else ())
        if not isinstance(raw, list) or len(raw) != 3:
            raise ValueError(f"place must be a code or [subdivisions, city, geoname_id]: {raw!r}")
        subs, city, gid = raw
        if not isinstance(subs, list) or not all(isinstance(s, str) and s for s in subs):
            raise ValueError(f"place subdivisions must be codes: {subs!r}")
        if len(subs) > MAX_PLACE_SUBDIVISIONS:
            raise ValueError(f"place names more than {MAX_PLACE_SUBDIVISIONS} subdivisions")
        if city is not None and (not isinstance(city, str) or not city or not subs):
            raise ValueError(f"place city must be a name inside a subdivision: {city!r}")
        if gid is not None and (not isinstance(gid, int) or isinstance(gid, bool) or gid < 0):
            raise ValueError(f"place geoname_id must be a non-negative integer: {gid!r}")
        return cls(tuple(subs), city, gid)


EMPTY_PLACE: Final = Place()


def place_table(raw: Sequence[object]) -> tuple[Place, ...]:
    """Places from their stored forms (or ready :class:`Place` values); index 0 must be the
    empty place. ValueError when malformed."""
    places = tuple(p if isinstance(p, Place) else Place.from_json(p) for p in raw)
    if not places or places[0] != EMPTY_PLACE:
        raise ValueError("place table must start with the empty place")
    return places


class PlaceTable(Protocol):
    """What :func:`city_region_warnings` needs of a snapshot: its place table."""

    @property
    def places(self) -> tuple[Place, ...]: ...


def city_region_warnings(policy: Policy, snapshot: PlaceTable) -> list[tuple[Rule, Region, str]]:
    """City regions of ``policy`` that can never match in ``snapshot``, each with its rule and a
    one-line reason: the snapshot keeps no city in that subdivision (it was built without
    ``city_regions`` covering it), or no place there has that city (a misspelling, or a city
    the location source does not name). A city rule that never matches leaves the
    subdivision's or country's rule in force.
    """
    cities: dict[str, set[str]] = {}
    names: dict[str, dict[str, str]] = {}
    for place in snapshot.places:
        if place.city is None:
            continue
        for sub in place.subdivisions:
            keys = cities.setdefault(sub, set())
            keys.add(city_key(sub, place.city))
            names.setdefault(sub, {}).setdefault(city_key(sub, place.city), place.city)
            if place.geoname_id is not None:
                keys.add(f"geonames:{place.geoname_id}")
    out: list[tuple[Rule, Region, str]] = []
    for rule, region in policy.city_regions():
        sub = region.subdivision or ""
        city = region.city or ""
        known = cities.get(sub)
        if not known:
            out.append(
                (
                    rule,
                    region,
                    f"the snapshot keeps no cities in {sub} (build it with city_regions "
                    f"naming {sub}); the rule on {region.code} never matches",
                )
            )
        elif city_key(sub, city) not in known:
            # The closest spellings first, as a hint for a typo.
            by_key = names[sub]
            close = difflib.get_close_matches(city_key(sub, city), list(by_key), n=5, cutoff=0.0)
            near = [by_key[k] for k in close]
            out.append(
                (
                    rule,
                    region,
                    f"no range of the snapshot is in {city!r} of {sub} (cities there include "
                    f"{', '.join(near)}); the rule on {region.code} never matches",
                )
            )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CityShare:
    """How much of a subdivision's IPv4 space a snapshot places in one city (``city`` None:
    the ranges the source files under the subdivision without a city, or with one the build
    did not keep). ``ipv6_ranges`` counts IPv6 ranges (their sizes mean little)."""

    city: str | None
    ipv4_ranges: int
    ipv4_addresses: int
    ipv6_ranges: int


def city_shares(snapshot: Snapshot, subdivision: str) -> tuple[CityShare, ...]:
    """The cities of ``subdivision`` in ``snapshot`` with their ranges and IPv4 addresses,
    most addresses first (what ``city_regions`` buys: how precisely the data places networks
    in cities)."""
    n4 = snapshot.n4
    idx = snapshot.subdivision_idx
    starts = snapshot.v4_starts.astype(np.int64)
    sizes4 = np.diff(np.append(starts, np.int64(1 << 32)))
    out: list[CityShare] = []
    cities: dict[str | None, list[int]] = {}
    for i in snapshot.place_indices(subdivision):
        cities.setdefault(snapshot.places[i].city, []).append(i)
    for city, indices in cities.items():
        hit = np.isin(idx, np.array(indices, dtype=idx.dtype))
        v4 = hit[:n4]
        out.append(
            CityShare(
                city=city,
                ipv4_ranges=int(v4.sum()),
                ipv4_addresses=int(sizes4[v4].sum()),
                ipv6_ranges=int(hit[n4:].sum()),
            )
        )
    return tuple(sorted(out, key=lambda c: (-c.ipv4_addresses, c.city or "")))
