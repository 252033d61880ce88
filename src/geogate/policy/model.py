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


@dataclass(frozen=True, slots=True, order=True)
class Region:
    """An ISO 3166-1 alpha-2 country (``"CN"``) or ISO 3166-2 subdivision (``"UA-43"``)."""

    code: str

    @classmethod
    def parse(cls, text: str) -> Region:
        """Parse and normalise a region code; ValueError names what is wrong."""
        code = text.strip().upper()
        if not (_COUNTRY.match(code) or _SUBDIVISION.match(code)):
            raise ValueError(
                f"{text!r} is not an ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision code"
            )
        return cls(code)

    @property
    def is_subdivision(self) -> bool:
        """True for an ISO 3166-2 code such as ``UA-43``."""
        return "-" in self.code

    @property
    def country(self) -> str:
        """The country part of the code (``"UA"`` for ``"UA-43"``)."""
        return self.code[:2]

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

    def __post_init__(self) -> None:
        index: dict[str, Rule] = {}
        for rule in self.rules:
            for region in rule.regions:
                if region.code in index:
                    other = index[region.code].id
                    raise PolicyError(
                        f"{self.source or self.id}: region {region.code} is in rules "
                        f"{other!r} and {rule.id!r}; a region may appear in one rule only"
                    )
                index[region.code] = rule
        object.__setattr__(self, "_by_region", MappingProxyType(index))

    @property
    def label(self) -> str:
        """``id@version``, used in decisions and the audit log."""
        return f"{self.id}@{self.version}"

    def rule_for(self, *, country: str | None, subdivision: str | None) -> Rule | None:
        """The most specific rule naming the location: subdivision first, then country."""
        by_region = self._by_region
        if subdivision is not None:
            rule = by_region.get(subdivision)
            if rule is not None:
                return rule
        if country is not None:
            return by_region.get(country)
        return None

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
