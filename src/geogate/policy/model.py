"""The policy model: regions, rules with an enforcement schedule, exemptions, and policy versions.

Everything here is a frozen value. A :class:`Policy` answers "what does this policy do to a
request located in region R at time T"; :class:`PolicySet` holds several versions and picks the
one in force at a timestamp, so that past events are judged by the policy of their time.
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from geogate.errors import PolicyError
from geogate.policy.cities import MAX_CITY_CHARS, city_key


class Action(enum.IntEnum):
    """What to do with a request. Ordered by severity: the strictest applicable action wins."""

    ALLOW = 0
    WARN = 1  # allowed, but flagged (and the account may be warned)
    DENY = 2

    @property
    def label(self) -> str:
        """Lower-case name used in files, JSON and headers (``"allow"``, ``"warn"``, ``"deny"``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Action:
        """Parse ``allow``/``warn``/``deny`` (case-insensitive); ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"expected one of allow, warn, deny, got {text!r}") from None


class Mode(enum.StrEnum):
    """Deny-list: listed regions are unsupported. Allow-list: only listed regions are supported."""

    DENY_LIST = "deny-list"
    ALLOW_LIST = "allow-list"


_COUNTRY = re.compile(r"^[A-Z]{2}$")
_SUBDIVISION = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")


def _geonames_ref(text: str, name: str) -> str:
    """``geonames:ID`` in its one spelling (lower case, no leading zeros); ValueError for a
    reference whose id is not a GeoNames id, which would otherwise be taken for a city name
    that never matches."""
    _, colon, number = name.partition(":")
    number = number.strip()
    if not colon or not (number.isdigit() and len(number) <= 10 and int(number) < 1 << 32):
        raise ValueError(
            f"{text!r}: a GeoNames reference is geonames: and the city's GeoNames id in "
            "digits (e.g. 'UA-23/geonames:687700')"
        )
    return f"geonames:{int(number)}"


@dataclass(frozen=True, slots=True, order=True)
class Region:
    """An ISO 3166-1 alpha-2 country (``"CN"``), an ISO 3166-2 subdivision (``"UA-43"``) or a
    city inside a subdivision (``"UA-23/Zaporizhzhia"``, or ``"UA-23/geonames:687700"`` by
    GeoNames id).

    A city is named as the location source spells it; spellings are matched after folding
    (:func:`geogate.policy.cities.city_key`), so ``"UA-23/zaporizhzhya"`` is the same city.
    """

    code: str

    @classmethod
    def parse(cls, text: str) -> Region:
        """Parse and normalise a region code; ValueError names what is wrong."""
        area, slash, city = text.strip().partition("/")
        code = area.strip().upper()
        if slash:
            name = " ".join(city.split())
            if not _SUBDIVISION.match(code):
                raise ValueError(
                    f"{text!r}: a city needs its ISO 3166-2 subdivision before the '/' "
                    "(e.g. 'UA-23/Zaporizhzhia')"
                )
            if not name or len(name) > MAX_CITY_CHARS or not city_key(code, name):
                raise ValueError(
                    f"{text!r}: the city after '/' must be a name of 1 to {MAX_CITY_CHARS} "
                    "characters or geonames:ID"
                )
            if any(ch in name for ch in '/\\"\n') or not name.isprintable():
                raise ValueError(f"{text!r}: the city name has a character a name cannot have")
            if not name.isascii():  # it travels in x-geogate-region headers and metric labels
                raise ValueError(
                    f"{text!r}: write the city in ASCII, as the location source's English name "
                    "(accents are ignored when matching)"
                )
            if name.casefold().startswith("geonames:"):
                name = _geonames_ref(text, name)
            return cls(f"{code}/{name}")
        if not (_COUNTRY.match(code) or _SUBDIVISION.match(code)):
            raise ValueError(
                f"{text!r} is not an ISO 3166-1 alpha-2 country, an ISO 3166-2 subdivision "
                "code or SUBDIVISION/City"
            )
        return cls(code)

    @property
    def is_subdivision(self) -> bool:
        """True for an ISO 3166-2 code such as ``UA-43`` and for a city inside one."""
        return "-" in self.code

    @property
    def is_city(self) -> bool:
        """True for a city region such as ``UA-23/Zaporizhzhia``."""
        return "/" in self.code

    @property
    def subdivision(self) -> str | None:
        """The subdivision part (``"UA-23"`` of ``"UA-23/Zaporizhzhia"``), None for a country."""
        return self.code.partition("/")[0] if self.is_subdivision else None

    @property
    def city(self) -> str | None:
        """The city as written in the policy, None unless :attr:`is_city`."""
        return self.code.partition("/")[2] or None

    @property
    def country(self) -> str:
        """The country part of the code (``"UA"`` for ``"UA-43"``)."""
        return self.code[:2]

    @property
    def key(self) -> str:
        """What the policy matches on: the code, with a city folded to its matching key."""
        sub, slash, city = self.code.partition("/")
        return f"{sub}/{city_key(sub, city)}" if slash else self.code

    def __str__(self) -> str:
        return self.code


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A set of regions and what the policy does to them.

    A ``deny`` rule warns before ``effective_at`` and denies from it on (immediately when
    ``effective_at`` is None). An ``allow`` rule marks regions as supported (allow-list mode, or
    exceptions inside a denied country).
    """

    id: str
    regions: frozenset[Region]
    action: Action
    effective_at: datetime | None = None
    note: str = ""

    def action_at(self, at: datetime) -> Action:
        """The action this rule gives at ``at`` (a scheduled deny is a warn before its date)."""
        if self.action is Action.DENY and self.effective_at is not None and at < self.effective_at:
            return Action.WARN
        return self.action


@dataclass(frozen=True, slots=True, kw_only=True)
class Exemptions:
    """Accounts and client networks the policy never blocks."""

    accounts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def covers_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """True when ``ip`` lies in an exempt network."""
        return any(ip.version == n.version and ip in n for n in self.networks)


class Anonymizer(enum.StrEnum):
    """Network kinds the policy can act on, matching :class:`geogate.intel.facts.NetworkFlag`."""

    TOR = "tor"
    VPN = "vpn"
    PROXY = "proxy"
    HOSTING = "hosting"
    RELAY = "relay"
    RESIDENTIAL_PROXY = "residential_proxy"
    ANONYMOUS = "anonymous"


DEFAULT_ANONYMIZER_ACTIONS: Mapping[Anonymizer, Action] = MappingProxyType(
    {
        # Tor exits hide the location completely; VPN and proxy egress usually do.
        Anonymizer.TOR: Action.DENY,
        Anonymizer.VPN: Action.WARN,
        Anonymizer.PROXY: Action.WARN,
        # A datacenter address alone is not evidence of evasion: companies egress from clouds.
        Anonymizer.HOSTING: Action.ALLOW,
        # Location-preserving relays keep the user's region: never evidence on their own.
        Anonymizer.RELAY: Action.ALLOW,
        # Paid proxies through home and mobile lines: the exit's location is not the user's.
        Anonymizer.RESIDENTIAL_PROXY: Action.WARN,
        # A vendor says "anonymous" without naming the kind (MaxMind is_anonymous alone).
        Anonymizer.ANONYMOUS: Action.WARN,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """One version of a provider's geographic policy.

    ``valid_from`` is when this version takes over from the previous one in a :class:`PolicySet`
    (None: from the beginning of time). ``effective_at`` is the default enforcement date of its
    deny rules and of the implicit deny of unlisted regions in allow-list mode.
    """

    id: str
    version: str
    mode: Mode
    rules: tuple[Rule, ...]
    effective_at: datetime | None = None
    valid_from: datetime | None = None
    on_unknown: Action = Action.WARN
    on_disputed: Action = Action.WARN
    anonymizers: Mapping[Anonymizer, Action] = field(
        default_factory=lambda: DEFAULT_ANONYMIZER_ACTIONS
    )
    exemptions: Exemptions = field(default_factory=Exemptions)
    description: str = ""
    source: str | None = None  # file it was read from, for messages
    accounts: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    _by_region: Mapping[str, Rule] = field(default_factory=dict, repr=False, compare=False)
    _has_cities: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Rule] = {}
        for rule in self.rules:
            for region in rule.regions:
                if region.key in index:
                    other = index[region.key].id
                    raise PolicyError(
                        f"{self.source or self.id}: region {region.code} is in rules "
                        f"{other!r} and {rule.id!r}; a region may appear in one rule only"
                    )
                index[region.key] = rule
        object.__setattr__(self, "_by_region", MappingProxyType(index))
        object.__setattr__(self, "_has_cities", any(k.find("/") > 0 for k in index))

    @property
    def label(self) -> str:
        """``id@version``, used in decisions and the audit log."""
        return f"{self.id}@{self.version}"

    def rule_for(
        self,
        *,
        country: str | None,
        subdivision: str | None,
        more_subdivisions: Iterable[str] = (),
        city: str | None = None,
        city_geoname_id: int | None = None,
    ) -> Rule | None:
        """The most specific rule naming the location: a city rule, then a rule on any of the
        subdivisions (in the order given), then the country's (see :meth:`match`)."""
        found = self.match(
            country=country,
            subdivision=subdivision,
            more_subdivisions=more_subdivisions,
            city=city,
            city_geoname_id=city_geoname_id,
        )
        return found[0] if found is not None else None

    def match(
        self,
        *,
        country: str | None,
        subdivision: str | None,
        more_subdivisions: Iterable[str] = (),
        city: str | None = None,
        city_geoname_id: int | None = None,
    ) -> tuple[Rule, str] | None:
        """The most specific rule naming the location and the region code it matched on.

        A city rule (``"UA-23/Zaporizhzhia"``: by name or GeoNames id, in any of the location's
        subdivisions) wins over a subdivision rule, which wins over the country's rule; among
        several subdivisions the first named one that has a rule wins. None when no rule names
        the location.
        """
        by_region = self._by_region
        subs = (subdivision, *more_subdivisions) if subdivision is not None else ()
        if subs and self._has_cities and (city is not None or city_geoname_id is not None):
            for sub in subs:
                keys = []
                if city_geoname_id is not None:
                    keys.append(f"{sub}/geonames:{city_geoname_id}")
                if city is not None:
                    keys.append(f"{sub}/{city_key(sub, city)}")
                for key in keys:
                    rule = by_region.get(key)
                    if rule is not None:
                        return rule, _code_of(rule, key)
        for sub in subs:
            rule = by_region.get(sub)
            if rule is not None:
                return rule, sub
        if country is not None:
            rule = by_region.get(country)
            if rule is not None:
                return rule, country
        return None

    def city_regions(self) -> tuple[tuple[Rule, Region], ...]:
        """Every city region the policy names, with its rule (for checks against the data)."""
        return tuple(
            (rule, region)
            for rule in self.rules
            for region in sorted(rule.regions)
            if region.is_city
        )

    def unlisted_action_at(self, at: datetime) -> Action:
        """What happens to a known region no rule names: allowed in deny-list mode, denied
        (warned before ``effective_at``) in allow-list mode."""
        if self.mode is Mode.DENY_LIST:
            return Action.ALLOW
        if self.effective_at is not None and at < self.effective_at:
            return Action.WARN
        return Action.DENY

    def scheduled(self, action: Action, at: datetime) -> Action:
        """A policy-level deny (unknown location, anonymizers) follows the policy's date too."""
        if action is Action.DENY and self.effective_at is not None and at < self.effective_at:
            return Action.WARN
        return action

    def boundaries(self) -> tuple[datetime, ...]:
        """Every instant at which this policy's outcome for some region changes."""
        times = {r.effective_at for r in self.rules if r.effective_at is not None}
        if self.effective_at is not None:
            times.add(self.effective_at)
        return tuple(sorted(times))

    def regions(self, action: Action) -> frozenset[Region]:
        """All regions named by rules with the given base action."""
        return frozenset(r for rule in self.rules if rule.action is action for r in rule.regions)


def _code_of(rule: Rule, key: str) -> str:
    """The region code as the policy wrote it, for the matching ``key``."""
    return next((r.code for r in rule.regions if r.key == key), key)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Several versions of a policy; the one in force at a time is used.

    Versions are ordered by ``valid_from``; a version without one is in force from the beginning
    of time, and at most one version may lack it.
    """

    versions: tuple[Policy, ...]
    _starts: tuple[datetime, ...] = field(default=(), repr=False, compare=False)
    _segments: tuple[datetime, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.versions:
            raise PolicyError("a policy set needs at least one policy")
        undated = [p for p in self.versions if p.valid_from is None]
        if len(undated) > 1:
            names = ", ".join(p.source or p.label for p in undated)
            raise PolicyError(f"only one policy version may omit valid_from; these do: {names}")
        ordered = tuple(
            sorted(self.versions, key=lambda p: (p.valid_from is not None, p.valid_from or 0))
        )
        seen: set[datetime | None] = set()
        for p in ordered:
            if p.valid_from in seen:
                raise PolicyError(f"two policy versions have the same valid_from {p.valid_from}")
            seen.add(p.valid_from)
        object.__setattr__(self, "versions", ordered)
        starts = tuple(p.valid_from for p in ordered if p.valid_from is not None)
        object.__setattr__(self, "_starts", starts)
        segments = set(starts)
        for p in ordered:
            segments.update(p.boundaries())
        object.__setattr__(self, "_segments", tuple(sorted(segments)))

    @classmethod
    def of(cls, policies: Iterable[Policy]) -> PolicySet:
        """Build a set from any iterable of policies."""
        return cls(tuple(policies))

    def in_force(self, at: datetime) -> Policy:
        """The policy version in force at ``at``.

        Before the first dated version, the undated one (or else the earliest) applies.
        """
        has_undated = self.versions[0].valid_from is None
        i = bisect.bisect_right(self._starts, at)
        if i == 0:
            return self.versions[0]
        return self.versions[i - (0 if has_undated else 1)]

    def segment(self, at: datetime) -> int:
        """Index of the time segment holding ``at``: within one segment every decision is the
        same for the same location, which is what makes decisions cacheable."""
        return bisect.bisect_right(self._segments, at)

    @property
    def boundaries(self) -> tuple[datetime, ...]:
        """All instants at which some outcome changes (version changes and enforcement dates)."""
        return self._segments

    @property
    def latest(self) -> Policy:
        """The newest version."""
        return self.versions[-1]
