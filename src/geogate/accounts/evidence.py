"""Per-account evidence, updated incrementally one event at a time.

:class:`AccountEvidence` is the running aggregate the store keeps for each account: request
counts per UTC day (by resolved region class and network kind), region shares, payment and
signup regions, Accept-Language tags, the hourly activity histogram, user agents, switching
between unsupported residential networks and supported-country datacenters, forwarded-chain
regions and the flagged egress networks the account uses. Day buckets make every count
answerable "as of" any evaluation time within the retention period, which is how old evidence
stops counting (a traveller who came home no longer shows it).

Where an address is depends on IP intelligence and the policy in force; that comes in through
the :class:`Locator` port (:class:`DeciderLocator` adapts :class:`geogate.decide.Decider`).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import numpy as np

from geogate.accounts.events import Event, EventKind
from geogate.decide import Decider, Reason
from geogate.intel.facts import NetworkFlag
from geogate.policy.model import Action, Mode, Policy, PolicySet

DAY_SECONDS: Final = 86_400

# Day bucket counters.
REQUESTS: Final = 0
SUPPORTED: Final = 1  # located (not through an anonymizer) in a supported region
UNSUPPORTED: Final = 2  # located (not through an anonymizer) in an unsupported region
UNKNOWN: Final = 3
TOR: Final = 4
VPN: Final = 5
PROXY: Final = 6
HOSTING: Final = 7
RELAY: Final = 8
SWITCHES: Final = 9
FORWARDED_UNSUPPORTED: Final = 10
LANGUAGE_UNSUPPORTED: Final = 11
LANGUAGE_ANY: Final = 12
HIDDEN: Final = 13  # through a network that hides where the user is (see Located.hides)
N_COUNTERS: Final = 14

COUNTER_NAMES: Final = (
    "requests",
    "supported",
    "unsupported",
    "unknown",
    "tor",
    "vpn",
    "proxy",
    "hosting",
    "relay",
    "switches",
    "forwarded_unsupported",
    "language_unsupported",
    "language_any",
    "hidden",
)

# Plain ints: enum attribute access costs about a microsecond on Python 3.11's hot path.
_F_TOR: Final = int(NetworkFlag.TOR)
_F_VPN: Final = int(NetworkFlag.VPN)
# Public and residential proxies, and "anonymous" networks of no named kind, count as proxies.
_F_PROXY: Final = int(NetworkFlag.PROXY | NetworkFlag.RESIDENTIAL_PROXY | NetworkFlag.ANONYMOUS)
_F_HOSTING: Final = int(NetworkFlag.HOSTING)
_F_RELAY: Final = int(NetworkFlag.RELAY)
# Networks whose exit says nothing about where the user is: Tor, VPNs, public proxies,
# residential proxy networks (someone else's home line) and networks a vendor calls anonymous
# without naming the kind.
_ANONYMIZING: Final = int(
    NetworkFlag.TOR
    | NetworkFlag.VPN
    | NetworkFlag.PROXY
    | NetworkFlag.RESIDENTIAL_PROXY
    | NetworkFlag.ANONYMOUS
)
_DATACENTER: Final = _ANONYMIZING | int(NetworkFlag.HOSTING)
_EGRESS_FLAGS: Final = _DATACENTER  # location-preserving relays are shared by unrelated users

MAX_REGIONS: Final = 64
MAX_LANGUAGES: Final = 16
MAX_USER_AGENTS: Final = 64
MAX_EGRESS: Final = 48
MAX_PAYMENT_KEYS: Final = 32
MAX_API_KEYS: Final = 8
MAX_ORGS: Final = 8

_CLASS_OTHER: Final = 0
_CLASS_UNSUPPORTED_RESIDENTIAL: Final = 1
_CLASS_SUPPORTED_DATACENTER: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Located:
    """Where one address is, as far as account evidence cares.

    ``unsupported``: the policy in force treats the location as unsupported. ``unknown``: no
    source knows the address. ``exempt``: it lies in an exempt network (never evidence).
    """

    region: str | None
    unsupported: bool
    unknown: bool
    flags: int
    asn: int | None
    exempt: bool = False


class Locator(Protocol):
    """Port: locate an address, and classify a country code, under the policy in force."""

    def locate(self, ip: str, at: datetime) -> Located: ...

    def is_unsupported(self, region: str, at: datetime) -> bool: ...


def region_unsupported(policy: Policy, region: str) -> bool:
    """True when ``policy`` treats the country or subdivision code as unsupported (a deny rule
    names it, or allow-list mode leaves it unlisted)."""
    code = region.upper()
    if "-" in code:
        rule = policy.rule_for(country=code[:2], subdivision=code)
    else:
        rule = policy.rule_for(country=code, subdivision=None)
    if rule is not None:
        return rule.action is Action.DENY
    return policy.mode is Mode.ALLOW_LIST


class DeciderLocator:
    """:class:`Locator` over the request decision core: an address is unsupported when the
    decision for it carries ``region_unsupported``; anonymizer flags come from the snapshot."""

    def __init__(self, decider: Decider, *, cache_size: int = 200_000) -> None:
        self.decider = decider
        self.policies: PolicySet = decider.policies
        self._cache: dict[tuple[str, int], Located] = {}
        self._cache_size = cache_size
        self._regions: dict[tuple[str, int], bool] = {}

    def locate(self, ip: str, at: datetime) -> Located:
        """Locate ``ip`` under the policy in force at ``at`` (memoised per address and policy
        segment). Raises ``ClientIPError`` for a malformed address."""
        segment = self.policies.segment(at)
        cached = self._cache.get((ip, segment))
        if cached is not None:
            return cached
        decision = self.decider.decide(ip, at=at)
        facts = decision.facts
        located = Located(
            region=decision.region or facts.subdivision or facts.country,
            unsupported=Reason.REGION_UNSUPPORTED in decision.reasons and decision.path != "exempt",
            unknown=Reason.REGION_UNKNOWN in decision.reasons,
            flags=int(facts.flags),
            asn=facts.asn,
            exempt=decision.path == "exempt",
        )
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[(ip, segment)] = located
        return located

    def is_unsupported(self, region: str, at: datetime) -> bool:
        """True when the policy in force at ``at`` treats the region code as unsupported."""
        key = (region, self.policies.segment(at))
        known = self._regions.get(key)
        if known is None:
            known = region_unsupported(self.policies.in_force(at), region)
            self._regions[key] = known
        return known


class BinTable:
    """Card BIN (IIN) prefix -> issuing country, longest prefix first.

    geogate ships no BIN table (no openly licensed one is published in a package registry; see
    ``docs/accounts.md``); an operator may load their own CSV of ``prefix,country`` rows.
    """

    def __init__(self, rows: Iterable[tuple[str, str]] = ()) -> None:
        self._table: dict[str, str] = {}
        for prefix, country in rows:
            p = prefix.strip()
            c = country.strip().upper()
            if p.isdigit() and 4 <= len(p) <= 8 and len(c) == 2 and c.isalpha():
                self._table[p] = c

    def __len__(self) -> int:
        return len(self._table)

    def country_of(self, card_bin: str) -> str | None:
        """Issuing country of the longest known prefix of ``card_bin`` (None when unknown)."""
        table = self._table
        for n in range(min(8, len(card_bin)), 3, -1):
            country = table.get(card_bin[:n])
            if country is not None:
                return country
        return None


def language_tag(accept_language: str) -> str | None:
    """The preferred tag of an Accept-Language header (highest q, first on ties), normalised
    to ``ll`` or ``ll-RR`` (``"zh-CN"``); None for ``*`` or an empty header."""
    best: tuple[float, str] | None = None
    for i, part in enumerate(accept_language.split(",")[:16]):
        pieces = part.strip().split(";")
        tag = pieces[0].strip()
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        score = q - i * 1e-6
        if best is None or score > best[0]:
            best = (score, tag)
    if best is None:
        return None
    subtags = best[1].replace("_", "-").split("-")
    lang = subtags[0].lower()
    if not lang.isalpha() or len(lang) > 8:
        return None
    region = next((s.upper() for s in subtags[1:] if len(s) == 2 and s.isalpha()), None)
    return f"{lang}-{region}" if region else lang


_TAG_CACHE: dict[str, str | None] = {}


def _language_tag_cached(header: str) -> str | None:
    tag = _TAG_CACHE.get(header, "")
    if tag == "":
        tag = language_tag(header)
        if len(_TAG_CACHE) > 10_000:
            _TAG_CACHE.clear()
        _TAG_CACHE[header] = tag
    return tag


def language_region(tag: str) -> str | None:
    """The country a normalised language tag names (``"zh-CN"`` -> ``"CN"``), else None."""
    _, _, region = tag.partition("-")
    return region or None


def key_digest(secret: str) -> str:
    """A short stable digest of an API key: accounts sharing a key are grouped by it, and the
    key itself is never stored."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:20]


def egress_keys(ip: str, asn: int | None = None) -> tuple[str, ...]:
    """The egress keys of an address: the address and its /24 (IPv4) or /48 (IPv6).

    Never the AS number: a cloud or hosting AS carries millions of unrelated customers, so
    "most accounts on this AS point to unsupported regions" says nothing about one of them.
    ``asn`` is accepted for callers of the earlier signature and ignored.
    """
    del asn
    if ":" in ip:
        net = str(ipaddress.IPv6Network(f"{ip}/48", strict=False))
    else:
        net = ip.rsplit(".", 1)[0] + ".0/24"
    return (f"ip:{ip}", f"net:{net}")


# Typical shares of a person's activity by local hour (0-23); only their shapes matter. A day
# is explained by the best mixture of three shapes, so that an office worker (busy 9-17, quiet
# evenings) is not pushed an hour or two east to fit the evening peak of a home user: a single
# "typical day" put German office hours at UTC+3 with confidence 0.98.
_PROFILES: Final = (
    # at home and at work: quiet at night, busy in office hours, a second evening peak
    (2.0, 1.2, 0.8, 0.6, 0.5, 0.6, 1.0, 2.0, 3.5, 5.0, 6.0, 6.3,
     6.0, 6.0, 6.3, 6.3, 6.0, 5.5, 5.0, 5.0, 5.0, 4.6, 3.8, 2.8),
    # office hours only, a lunch dip
    (0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 1.5, 5.0, 8.0, 8.5, 8.0,
     5.5, 7.5, 8.5, 8.0, 7.0, 4.5, 2.0, 1.2, 0.9, 0.7, 0.5, 0.4),
    # evenings and late nights (students, side projects)
    (4.0, 2.5, 1.5, 0.8, 0.5, 0.4, 0.5, 0.8, 1.2, 1.8, 2.2, 2.6,
     2.8, 2.8, 3.0, 3.2, 3.6, 4.2, 5.5, 6.5, 7.0, 7.2, 6.5, 5.5),
)  # fmt: skip
_OFFSETS: Final = tuple(range(-11, 13))
# _SHIFTED[p][i] holds profile p's log-shares as seen in UTC hours by someone at _OFFSETS[i].
_SHIFTED: Final = np.stack(
    [
        np.array(
            [
                [float(np.log(prof[(u + off) % 24] / sum(prof))) for u in range(24)]
                for off in _OFFSETS
            ]
        )
        for prof in _PROFILES
    ]
)
_EFFECTIVE_EVENTS: Final = 100.0
_RANGE_MASS: Final = 0.8


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockEstimate:
    """The UTC offsets (hours east) that explain an hourly activity histogram.

    ``offset_hours`` is the best offset; ``low``..``high`` the narrowest run of offsets around
    it holding 80% of the posterior (a wide range means the day is ambiguous: office hours fit
    UTC+1 to UTC+3 about equally, and a summer and a winter clock blur into each other).
    ``confidence`` is the posterior mass within one hour of the best offset under a tempered
    likelihood (as if from at most 100 events): about 0.125 for flat round-the-clock traffic,
    near 1 for a clear human day. ``posterior`` maps offsets -11..+12 to their mass. ``events``
    is the histogram total.
    """

    offset_hours: int
    confidence: float
    events: int
    low: int = 0
    high: int = 0
    posterior: tuple[float, ...] = ()

    def mass(self, offsets: Iterable[float]) -> float:
        """Posterior mass on the whole-hour offsets in ``offsets`` (half-hour zones round to
        the nearer whole hours both ways)."""
        if not self.posterior:
            return 0.0
        post = self.posterior
        return float(sum(post[i] for i in _offset_indices(tuple(offsets))))

    @property
    def range_text(self) -> str:
        """``"UTC+1..+3"`` or ``"UTC+8"``."""
        if self.low == self.high:
            return f"UTC{self.low:+d}"
        return f"UTC{self.low:+d}..{self.high:+d}"


@functools.lru_cache(maxsize=64)
def _offset_indices(offsets: tuple[float, ...]) -> tuple[int, ...]:
    picked = {o for off in offsets for o in _OFFSETS if abs(o - off) <= 0.5}
    return tuple(sorted(o - _OFFSETS[0] for o in picked))


def infer_clock(hours: Iterable[int]) -> ClockEstimate | None:
    """Estimate the account's UTC offset from its UTC hourly histogram (None when empty)."""
    h = np.fromiter(hours, dtype=np.float64, count=24)
    total = float(h.sum())
    if total <= 0:
        return None
    per_profile = (_SHIFTED @ h) * min(1.0, _EFFECTIVE_EVENTS / total)  # (profiles, offsets)
    top = float(per_profile.max())
    scores = np.log(np.exp(per_profile - top).sum(axis=0)) + top
    best = int(np.argmax(scores))
    weights = np.exp(scores - scores[best])
    post = weights / weights.sum()
    n = len(_OFFSETS)
    near = float(post[[(best - 1) % n, best, (best + 1) % n]].sum())
    lo = hi = best
    mass = float(post[best])
    while mass < _RANGE_MASS and hi - lo < n - 1:
        left = float(post[(lo - 1) % n])
        right = float(post[(hi + 1) % n])
        if right >= left:
            hi += 1
            mass += right
        else:
            lo -= 1
            mass += left

    def wrap(i: int) -> int:
        return _OFFSETS[i % n]

    return ClockEstimate(
        offset_hours=_OFFSETS[best],
        confidence=round(near, 4),
        events=int(total),
        low=wrap(lo),
        high=wrap(hi),
        posterior=tuple(np.round(post, 4).tolist()),
    )


class AccountEvidence:
    """The running evidence of one account (mutable while a batch is applied; serialised as a
    compact JSON-ready dict by :meth:`to_dict`). All times are Unix seconds (UTC)."""

    __slots__ = (
        "api_keys",
        "assessed_day",
        "clock_cache",
        "days",
        "egress",
        "first_seen",
        "forwarded",
        "hours",
        "languages",
        "languages_unsupported",
        "last_class",
        "last_seen",
        "last_ts",
        "notable",
        "org",
        "orgs",
        "payments",
        "regions",
        "requests",
        "signup",
        "user_agents",
    )

    def __init__(self) -> None:
        self.first_seen: int | None = None
        self.last_seen: int | None = None
        self.requests = 0
        self.days: dict[int, list[int]] = {}
        self.regions: dict[str, list[int]] = {}  # region -> [count, last_ts, unsupported]
        self.hours: list[int] = [0] * 24
        self.languages: dict[str, int] = {}
        self.languages_unsupported: set[str] = set()  # tags naming an unsupported region
        self.user_agents: set[int] = set()
        self.last_ts = 0
        self.last_class = _CLASS_OTHER
        self.payments: dict[str, list[Any]] = {}  # "CN:card" -> [count, first, last, unsupported]
        self.signup: dict[str, Any] | None = None
        self.egress: dict[str, int] = {}
        self.forwarded: dict[str, list[int]] = {}  # region -> [count, last_ts]
        self.assessed_day = -1  # UTC day of the last assessment (see the engine)
        self.clock_cache: ClockEstimate | None = None  # not stored: cheap to recompute
        self.notable = False  # not stored: an event since loading could change the verdict
        self.org: str | None = None  # the latest org the account's requests named
        # Every org it named (first MAX_ORGS): an account that moves between orgs belongs to
        # each group, whichever batch its requests arrived in.
        self.orgs: set[str] = set()
        self.api_keys: set[str] = set()  # API keys its requests used (first MAX_API_KEYS)

    # ----- serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form (what the store keeps)."""
        return {
            "v": 1,
            "f": self.first_seen,
            "l": self.last_seen,
            "n": self.requests,
            "d": [[day, *counts] for day, counts in sorted(self.days.items())],
            "r": self.regions,
            "h": self.hours,
            "g": self.languages,
            "gu": sorted(self.languages_unsupported),
            "u": sorted(self.user_agents),
            "lt": self.last_ts,
            "lc": self.last_class,
            "p": self.payments,
            "s": self.signup,
            "e": self.egress,
            "x": self.forwarded,
            "ad": self.assessed_day,
            "og": self.org,
            "ogs": sorted(self.orgs),
            "ks": sorted(self.api_keys),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AccountEvidence:
        """Rebuild from :meth:`to_dict` output (an empty aggregate for None or ``{}``)."""
        ev = cls()
        if not data:
            return ev
        ev.first_seen = data.get("f")
        ev.last_seen = data.get("l")
        ev.requests = int(data.get("n", 0))
        ev.days = {int(row[0]): list(row[1:]) for row in data.get("d", ())}
        for counts in ev.days.values():
            if len(counts) < N_COUNTERS:
                counts.extend([0] * (N_COUNTERS - len(counts)))
        ev.regions = dict(data.get("r") or {})
        hours = data.get("h")
        ev.hours = list(hours) if hours else [0] * 24
        ev.languages = dict(data.get("g") or {})
        ev.languages_unsupported = set(data.get("gu") or ())
        ev.user_agents = set(data.get("u") or ())
        ev.last_ts = int(data.get("lt", 0))
        ev.last_class = int(data.get("lc", 0))
        ev.payments = dict(data.get("p") or {})
        ev.signup = data.get("s")
        ev.egress = dict(data.get("e") or {})
        ev.forwarded = dict(data.get("x") or {})
        ev.assessed_day = int(data.get("ad", -1))
        ev.org = data.get("og")
        ev.orgs = set(data.get("ogs") or ((ev.org,) if ev.org else ()))
        ev.api_keys = set(data.get("ks") or ())
        return ev

    # ----- queries ----------------------------------------------------------------------

    def window(self, at: datetime, days: int, *, since: int | None = None) -> list[int]:
        """Counter sums over the UTC days in ``(at - days, at]`` (day granularity)."""
        last_day = int(at.timestamp()) // DAY_SECONDS
        first_day = last_day - days + 1
        if since is not None:
            first_day = max(first_day, since // DAY_SECONDS)
        sums = [0] * N_COUNTERS
        for day, counts in self.days.items():
            if first_day <= day <= last_day:
                for i, c in enumerate(counts):
                    sums[i] += c
        return sums

    @property
    def language(self) -> str | None:
        """The account's most used language tag (for notices), or None."""
        if not self.languages:
            return None
        langs = self.languages
        if len(langs) == 1:
            return next(iter(langs))
        return max(langs.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def clock(self) -> ClockEstimate | None:
        """:func:`infer_clock` of the hourly histogram, memoised in the evidence (it changes
        only when requests are added, and a scan over every account would redo it)."""
        total = sum(self.hours)
        cached = self.clock_cache
        if cached is not None and cached.events == total:
            return cached
        est = infer_clock(self.hours)
        self.clock_cache = est
        return est

    def active_hours(self) -> int:
        """UTC hours of the day holding at least half the mean hourly activity."""
        total = sum(self.hours)
        if not total:
            return 0
        floor = total / 48.0
        return sum(1 for c in self.hours if c >= floor)

    def group_keys(self) -> tuple[str, ...]:
        """Keys of the account groups it belongs to: its org and the API keys it used
        (``org:NAME``, ``key:KEY``). A reseller's customers share both."""
        orgs = [f"org:{o if len(o) <= 100 else '#' + key_digest(o)}" for o in sorted(self.orgs)]
        return (*orgs, *(f"key:{k}" for k in sorted(self.api_keys)))

    def located_days(self, *, before: int | None = None) -> tuple[int | None, int | None, int, int]:
        """Direct location observations in the UTC days up to ``before`` (exclusive): the
        latest day with a supported and with an unsupported one, and how many of each
        ``(supported_day, unsupported_day, supported, unsupported)``."""
        sup: int | None = None
        uns: int | None = None
        n_sup = n_uns = 0
        for day, counts in self.days.items():
            if before is not None and day >= before:
                continue
            if counts[SUPPORTED]:
                n_sup += counts[SUPPORTED]
                if sup is None or day > sup:
                    sup = day
            if counts[UNSUPPORTED]:
                n_uns += counts[UNSUPPORTED]
                if uns is None or day > uns:
                    uns = day
        return sup, uns, n_sup, n_uns

    # ----- updates ----------------------------------------------------------------------

    def _bucket(self, epoch: int) -> list[int]:
        day = epoch // DAY_SECONDS
        bucket = self.days.get(day)
        if bucket is None:
            bucket = [0] * N_COUNTERS
            self.days[day] = bucket
        return bucket

    def _seen(self, epoch: int) -> None:
        if self.first_seen is None or epoch < self.first_seen:
            self.first_seen = epoch
        if self.last_seen is None or epoch > self.last_seen:
            self.last_seen = epoch

    def add_request(
        self,
        event: Event,
        located: Located,
        *,
        locator: Locator,
        switch_window_seconds: int,
    ) -> tuple[str, ...]:
        """Count one request; returns the egress keys it used (flagged networks only).

        An event with ``repeat`` n > 1 (see :class:`~geogate.accounts.events.Event`) counts as
        n identical requests from ``event.ts`` to ``event.last_epoch``: every counter gains n,
        the switching detector compares only the first with what came before (the others have
        its class, so they can never switch), and the last sets the latest times. That is
        exact when the n share the UTC hour and the policy segment, as the caller guarantees.
        """
        epoch = event.epoch
        n = event.repeat
        self._seen(epoch)
        if n == 1:
            last = epoch
        else:
            last = event.last_epoch if event.last_epoch is not None else epoch
            self._seen(last)
        self.requests += n
        b = self._bucket(epoch)
        b[REQUESTS] += n
        self.hours[(epoch // 3600) % 24] += n
        flags = located.flags
        # Tor, VPNs and proxies say nothing about where the user is, and nor does a datacenter
        # in a supported country (a VPS, a relay, corporate egress): those requests are
        # "hidden". A datacenter in an unsupported region is still a use from there.
        hidden = bool(flags & _ANONYMIZING) or bool(flags & _F_HOSTING and not located.unsupported)
        if located.unsupported or flags & _DATACENTER:
            self.notable = True
        if hidden:
            b[HIDDEN] += n
        if flags:
            if flags & _F_TOR:
                b[TOR] += n
            if flags & _F_VPN:
                b[VPN] += n
            if flags & _F_PROXY:
                b[PROXY] += n
            if flags & _F_HOSTING:
                b[HOSTING] += n
            if flags & _F_RELAY:
                b[RELAY] += n
        if located.unknown and not hidden:
            b[UNKNOWN] += n
        elif not hidden:
            b[UNSUPPORTED if located.unsupported else SUPPORTED] += n
            region = located.region
            if region:
                entry = self.regions.get(region)
                if entry is None:
                    if len(self.regions) < MAX_REGIONS:
                        self.regions[region] = [n, last, int(located.unsupported)]
                else:
                    entry[0] += n
                    if last > entry[1]:  # noqa: PLR1730 - hot path: max() costs a call
                        entry[1] = last
                    entry[2] = int(located.unsupported)

        # Switching: an unsupported residential network and a supported-country datacenter or
        # VPN alternating within minutes means one person toggling a VPN.
        if located.unsupported and not flags & _DATACENTER:
            cls = _CLASS_UNSUPPORTED_RESIDENTIAL
        elif flags & _DATACENTER and not located.unsupported:
            cls = _CLASS_SUPPORTED_DATACENTER
        else:
            cls = _CLASS_OTHER
        if (
            cls != _CLASS_OTHER
            and self.last_class not in (_CLASS_OTHER, cls)
            and abs(epoch - self.last_ts) <= switch_window_seconds
        ):
            b[SWITCHES] += 1
            self.notable = True
        if cls != _CLASS_OTHER:
            self.last_class = cls
            self.last_ts = last

        if event.accept_language:
            tag = _language_tag_cached(event.accept_language)
            if tag:
                b[LANGUAGE_ANY] += n
                if tag in self.languages or len(self.languages) < MAX_LANGUAGES:
                    self.languages[tag] = self.languages.get(tag, 0) + n
                region = language_region(tag)
                if region and locator.is_unsupported(region, event.ts):
                    b[LANGUAGE_UNSUPPORTED] += n
                    self.notable = True
                    if len(self.languages_unsupported) < MAX_LANGUAGES:
                        self.languages_unsupported.add(tag)
        org = event.org
        if org is not None:
            self.org = org
            if org and org not in self.orgs and len(self.orgs) < MAX_ORGS:
                self.orgs.add(org)
        api_key = event.api_key
        if api_key is not None and len(self.api_keys) < MAX_API_KEYS:
            self.api_keys.add(key_digest(api_key))
        if event.user_agent and len(self.user_agents) < MAX_USER_AGENTS:
            self.user_agents.add(zlib.crc32(event.user_agent.encode("utf-8", "replace")))

        if event.forwarded:
            hit: str | None = None
            for hop in event.forwarded:
                if hop == event.ip:
                    continue
                where = locator.locate(hop, event.ts)
                if where.unsupported and not where.flags & _ANONYMIZING and where.region:
                    hit = where.region
                    break
            if hit is not None:
                self.notable = True
                b[FORWARDED_UNSUPPORTED] += n
                entry = self.forwarded.get(hit)
                if entry is None:
                    if len(self.forwarded) < MAX_REGIONS:
                        self.forwarded[hit] = [n, last]
                else:
                    entry[0] += n
                    if last > entry[1]:  # noqa: PLR1730 - hot path: max() costs a call
                        entry[1] = last

        if flags & _EGRESS_FLAGS and event.ip:
            keys = egress_keys(event.ip, located.asn)
            for key in keys:
                if key in self.egress:
                    self.egress[key] += n
                elif len(self.egress) < MAX_EGRESS:
                    self.egress[key] = n
            return keys
        return ()

    def add_payment(self, event: Event, *, locator: Locator, bins: BinTable | None) -> None:
        """Count one payment by the card's issuing country (BIN table, else ``card_country``)
        and by the billing country."""
        epoch = event.epoch
        self._seen(epoch)
        self.notable = True
        sources: list[tuple[str, str]] = []
        card = bins.country_of(event.card_bin) if bins is not None and event.card_bin else None
        if card is not None:
            sources.append((card, "card_bin"))
        elif event.card_country:
            sources.append((event.card_country, "card_country"))
        if event.billing_country:
            sources.append((event.billing_country, "billing_country"))
        for country, source in sources:
            key = f"{country}:{source}"
            entry = self.payments.get(key)
            unsupported = int(locator.is_unsupported(country, event.ts))
            if entry is None:
                if len(self.payments) < MAX_PAYMENT_KEYS:
                    self.payments[key] = [1, epoch, epoch, unsupported]
            else:
                entry[0] += 1
                entry[1] = min(entry[1], epoch)
                entry[2] = max(entry[2], epoch)
                entry[3] = unsupported

    def add_signup(self, event: Event, located: Located | None, *, locator: Locator) -> None:
        """Record the signup: where its address is, and the phone number's country."""
        epoch = event.epoch
        self._seen(epoch)
        self.notable = True
        phone = event.phone_country
        self.signup = {
            "ts": epoch,
            "ip": event.ip,
            "region": located.region if located else None,
            "unsupported": bool(
                located and located.unsupported and not located.flags & _ANONYMIZING
            ),
            "anonymized": bool(located and located.flags & _ANONYMIZING),
            "hidden": bool(
                located
                and (
                    located.flags & _ANONYMIZING
                    or (located.flags & _F_HOSTING and not located.unsupported)
                )
            ),
            "phone_country": phone,
            "phone_unsupported": bool(phone and locator.is_unsupported(phone, event.ts)),
            "email": event.email,
        }

    def prune(self, *, retention_days: int) -> None:
        """Drop day buckets older than ``retention_days`` before the newest one."""
        if not self.days:
            return
        newest = max(self.days)
        cutoff = newest - retention_days
        for day in [d for d in self.days if d < cutoff]:
            del self.days[day]

    def reset_windowed(self) -> None:
        """Forget windowed evidence (day buckets, payments, forwarded regions, switching
        state): what an operator's reinstatement does, so old evidence cannot block again."""
        self.days.clear()
        self.payments.clear()
        self.forwarded.clear()
        self.last_class = _CLASS_OTHER
        self.last_ts = 0

    def summary(self, at: datetime, *, window_days: int) -> dict[str, Any]:
        """A JSON-ready snapshot of the evidence as of ``at`` (for transitions and explain)."""
        recent = self.window(at, window_days)
        clock = infer_clock(self.hours)
        return {
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "requests_total": self.requests,
            "window_days": window_days,
            "recent": dict(zip(COUNTER_NAMES, recent, strict=True)),
            "regions": {
                k: {"requests": v[0], "unsupported": bool(v[2])} for k, v in self.regions.items()
            },
            "payments": {
                k: {"count": v[0], "first": v[1], "last": v[2], "unsupported": bool(v[3])}
                for k, v in self.payments.items()
            },
            "signup": (
                {k: v for k, v in self.signup.items() if k != "email"} if self.signup else None
            ),
            "languages": dict(self.languages),
            "clock": (
                {"offset_hours": clock.offset_hours, "confidence": clock.confidence}
                if clock
                else None
            ),
            "user_agents": len(self.user_agents),
            "active_hours": self.active_hours(),
            "egress": dict(self.egress),
            "forwarded_regions": {k: v[0] for k, v in self.forwarded.items()},
        }


_REQUEST: Final = EventKind.REQUEST
_PAYMENT: Final = EventKind.PAYMENT
_SIGNUP: Final = EventKind.SIGNUP


def apply_event(
    evidence: AccountEvidence,
    event: Event,
    *,
    locator: Locator,
    bins: BinTable | None = None,
    switch_window_seconds: int = 900,
) -> tuple[str, ...]:
    """Fold one request, payment or signup event into ``evidence``; returns egress keys used.

    Operator events (appeal, exemption) change state, not evidence, and are ignored here.
    """
    kind = event.kind
    if kind is _REQUEST and event.ip is not None:
        located = locator.locate(event.ip, event.ts)
        return evidence.add_request(
            event, located, locator=locator, switch_window_seconds=switch_window_seconds
        )
    if kind is _PAYMENT:
        evidence.add_payment(event, locator=locator, bins=bins)
    elif kind is _SIGNUP:
        where = locator.locate(event.ip, event.ts) if event.ip else None
        evidence.add_signup(event, where, locator=locator)
    return ()
