"""Scoring: every rule looks at an account's evidence as of a time and says, in plain language,
whether it fires and why. The weighted sums of fired rules give a :class:`Verdict`.

A verdict of ``BLOCK`` needs the *strong* rules alone to reach ``block_score``: weak rules
(activity clock, language, relay and anonymizer patterns) add to the review score and can flag
an account, but never move it over the block threshold. From the enforcement date on, the rules
are evaluated on evidence from on or after that date only (:func:`assess`): evidence from
before it can warn, never block, so a traveller who came home before the date is not blocked by
their trip. Weights and thresholds come from :class:`AccountsConfig` (the policy's
``[accounts]``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geogate.accounts.config import RULES, AccountsConfig, Strength
from geogate.accounts.evidence import (
    DAY_SECONDS,
    FORWARDED_UNSUPPORTED,
    HIDDEN,
    LANGUAGE_ANY,
    LANGUAGE_UNSUPPORTED,
    PROXY,
    REQUESTS,
    SUPPORTED,
    SWITCHES,
    TOR,
    UNSUPPORTED,
    VPN,
    AccountEvidence,
    language_region,
)
from geogate.store.protocol import EgressStats


class Verdict(enum.IntEnum):
    """What the evidence supports: nothing, a review flag, or a block (a warning before the
    effective date)."""

    NONE = 0
    FLAG = 1
    BLOCK = 2

    @property
    def label(self) -> str:
        """Lower-case name."""
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """One rule's outcome: whether it fired, its weight and strength, the regions it points to,
    and a sentence explaining the numbers against the thresholds."""

    rule: str
    fired: bool
    weight: float
    strength: Strength
    text: str
    regions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "rule": self.rule,
            "fired": self.fired,
            "weight": self.weight,
            "strength": self.strength.value,
            "regions": list(self.regions),
            "text": self.text,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupStats:
    """What the accounts of one group (an org, or one shared API key) do together, as of a time.

    ``members``: accounts in the group; ``pointing``: members whose own strong evidence (signup
    address or phone, a card or billing country, a direct location observation) points to
    unsupported regions, with those ``regions``; ``user_agents`` and ``active_hours`` of the
    group's traffic together; ``hidden_share``: share of its recent requests through hiding
    networks; ``exits``: datacenter /24 (/48) networks carrying its traffic and ``exit_share``
    the share of its egress requests on the top ``max_exits`` of them.
    """

    key: str
    members: int
    pointing: int
    regions: tuple[str, ...]
    user_agents: int
    active_hours: int
    hidden_share: float
    requests: int
    exits: tuple[str, ...]
    exit_share: float

    def is_relay(self, config: AccountsConfig) -> bool:
        """True when the group looks like a resale relay under ``config`` (``org_relay``)."""
        rc = config.rule("org_relay")
        return (
            self.members >= max(2, rc.min_accounts)
            and self.requests > 0
            and self.hidden_share >= rc.min_hidden_share
            and bool(self.exits)
            and self.exit_share >= 0.8
            and (self.user_agents >= rc.min_user_agents or self.active_hours >= rc.min_active_hours)
            and self.pointing >= 2
            and self.pointing / self.members >= rc.min_share
        )

    def describe(self) -> str:
        """One sentence for explanations."""
        kind, _, name = self.key.partition(":")
        label = "org" if kind == "org" else "API key"
        return (
            f"{label} {name}: {self.members} accounts, {self.pointing} of them with their own "
            f"evidence pointing to unsupported regions{_regions_text(self.regions)}; "
            f"{self.hidden_share:.0%} of its recent requests through datacenter or anonymizer "
            f"networks, {self.exit_share:.0%} of them via {', '.join(self.exits[:3]) or 'none'}; "
            f"{self.user_agents} client strings; active in {self.active_hours} of 24 hours"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """The outcome of all rules for one account at one time.

    ``score`` sums every fired rule (the review score); ``strong_score`` only the strong ones
    (what a block needs). ``region_score`` sums the fired strong region-pointing rules: an
    account ``points_unsupported`` when it reaches ``egress_concentration.account_score`` (weak
    signals never make an account, or its neighbours, "point" anywhere). ``effective_at`` is
    the enforcement date for the regions the evidence points to; ``post_date`` says the rules
    were evaluated on evidence from on or after it only.
    """

    verdict: Verdict
    score: float
    signals: tuple[Signal, ...]
    regions: tuple[str, ...]
    region_score: float
    points_unsupported: bool
    at: datetime
    strong_score: float = 0.0
    effective_at: datetime | None = None
    post_date: bool = False

    @property
    def fired(self) -> tuple[Signal, ...]:
        """The rules that fired."""
        return tuple(s for s in self.signals if s.fired)

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Names of the fired rules."""
        return tuple(s.rule for s in self.signals if s.fired)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (stored with transitions)."""
        return {
            "verdict": self.verdict.label,
            "score": round(self.score, 4),
            "regions": list(self.regions),
            "region_score": round(self.region_score, 4),
            "points_unsupported": self.points_unsupported,
            "strong_score": round(self.strong_score, 4),
            "effective_at": self.effective_at.isoformat() if self.effective_at else None,
            "post_date": self.post_date,
            "at": self.at.isoformat(),
            "signals": [s.to_dict() for s in self.signals],
        }


def _pct(part: float, whole: float) -> str:
    return f"{(100.0 * part / whole):.0f}%" if whole else "0%"


def _regions_text(regions: tuple[str, ...]) -> str:
    return f" ({', '.join(regions)})" if regions else ""


def _signal(
    name: str, fired: bool, text: str, config: AccountsConfig, regions: tuple[str, ...] = ()
) -> Signal:
    rc = config.rule(name)
    return Signal(
        rule=name,
        fired=fired and rc.enabled,
        weight=rc.weight,
        strength=RULES[name][0],
        text=text if rc.enabled else f"disabled by the policy. {text}",
        regions=regions if fired and rc.enabled else (),
    )


class _Signals(list[Signal]):
    """Collects rule outcomes. Without ``explain`` only fired rules are kept and no text is
    written: that is what a scan over a million accounts needs, and several times cheaper."""

    def __init__(self, config: AccountsConfig, *, explain: bool) -> None:
        super().__init__()
        self.config = config
        self.explain = explain

    def append_signal(self, signal: Signal) -> None:
        if self.explain or signal.fired:
            self.append(signal)

    def add(
        self, name: str, fired: bool, text: Callable[[], str], regions: tuple[str, ...] = ()
    ) -> None:
        if self.explain:
            self.append(_signal(name, fired, text(), self.config, regions))
            return
        rc = self.config.rules[name]
        if fired and rc.enabled:
            self.append(
                Signal(
                    rule=name,
                    fired=True,
                    weight=rc.weight,
                    strength=RULES[name][0],
                    text="",
                    regions=regions,
                )
            )


def base_signals(
    ev: AccountEvidence,
    *,
    at: datetime,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None = None,
    since: int | None = None,
    explain: bool = True,
    clock: bool = True,
) -> list[Signal]:
    """Every rule except egress concentration, evaluated as of ``at``.

    With ``explain`` (the default) every rule is returned with its explanation; without, only
    the fired ones, without text (same verdict, a fraction of the cost).
    """
    at_epoch = int(at.timestamp())
    days = config.window_days
    w = ev.window(at, days, since=since)
    window_start = at_epoch - days * DAY_SECONDS
    out = _Signals(config, explain=explain)
    if not explain:
        period = ""
    elif since is not None and since > window_start:
        period = (
            f"since {datetime.fromtimestamp(since, tz=at.tzinfo or None):%Y-%m-%d} "
            f"(the last {days} days, on or after the enforcement date)"
        )
    else:
        period = f"in the last {days} days"

    # direct access from unsupported regions
    rc = config.rule("direct_unsupported")
    located = w[SUPPORTED] + w[UNSUPPORTED]
    unsup = w[UNSUPPORTED]
    fired = unsup >= max(1, rc.min_requests) and located > 0 and unsup / located >= rc.min_share
    regions = (
        tuple(
            sorted(
                r
                for r, v in ev.regions.items()
                if v[2] and window_start < v[1] <= at_epoch + DAY_SECONDS
            )
        )
        if fired or explain
        else ()
    )
    out.add(
        "direct_unsupported",
        fired,
        lambda: (
            f"{unsup} of {located} located requests {period} ({_pct(unsup, located)}) came "
            f"directly from unsupported regions{_regions_text(regions)}; fires at "
            f"{rc.min_requests} requests and {rc.min_share:.0%}."
        ),
        regions,
    )

    # payments from unsupported regions
    rc = config.rule("payment_unsupported")
    pay_start = at_epoch - config.payment_window_days * DAY_SECONDS
    bad = sorted(
        (k, v)
        for k, v in ev.payments.items()
        if v[3] and v[1] <= at_epoch and v[2] > pay_start and (since is None or v[2] >= since)
    )
    pay_regions = tuple(sorted({k.split(":", 1)[0] for k, _ in bad}))

    def described() -> str:
        return ", ".join(
            f"{v[0]} by {k.split(':', 1)[1].replace('_', ' ')} {k.split(':', 1)[0]}" for k, v in bad
        )

    total_payments = sum(v[0] for v in ev.payments.values()) if explain else 0
    out.add(
        "payment_unsupported",
        bool(bad),
        lambda: (
            (
                f"payments from unsupported regions in the last {config.payment_window_days} "
                f"days: {described()}."
                if bad
                else f"no payment from an unsupported region in the last "
                f"{config.payment_window_days} days ({total_payments} payment records seen)."
            )
            + " Card country is taken from the card BIN when a BIN table is loaded, else from "
            "card_country as given."
        ),
        pay_regions,
    )

    # location continuity: last seen directly in an unsupported region, hidden since
    out.append_signal(
        continuity_signal(ev, w, at=at, config=config, explain=explain, period=period)
    )

    # VPN switching
    rc = config.rule("vpn_switching")
    switches = w[SWITCHES]
    out.add(
        "vpn_switching",
        switches >= max(1, rc.min_switches),
        lambda: (
            f"{switches} switches {period} between an unsupported-region residential network "
            f"and a supported-country datacenter or VPN within {rc.window_minutes} minutes; "
            f"fires at {rc.min_switches}."
        ),
    )

    # forwarded chain pointing to unsupported regions
    rc = config.rule("forwarded_unsupported")
    fwd = w[FORWARDED_UNSUPPORTED]
    fwd_regions = tuple(
        sorted(r for r, v in ev.forwarded.items() if window_start < v[1] <= at_epoch + DAY_SECONDS)
    )
    out.add(
        "forwarded_unsupported",
        fwd >= max(1, rc.min_requests) and w[REQUESTS] > 0 and fwd / w[REQUESTS] >= rc.min_share,
        lambda: (
            f"{fwd} of {w[REQUESTS]} requests {period} ({_pct(fwd, w[REQUESTS])}) carried a "
            f"forwarded address in an unsupported region{_regions_text(fwd_regions)}; fires at "
            f"{rc.min_requests} requests and {rc.min_share:.0%}."
        ),
        fwd_regions,
    )

    # signup
    su = ev.signup
    if su and su.get("ts", 0) <= at_epoch and (since is None or su.get("ts", 0) >= since):
        parts = []
        su_regions: list[str] = []
        if su.get("unsupported"):
            parts.append(f"the signup address was in {su.get('region')}, an unsupported region")
            if su.get("region"):
                su_regions.append(str(su["region"]))
        if su.get("phone_unsupported"):
            parts.append(
                f"the phone number is from {su.get('phone_country')}, an unsupported region"
            )
            su_regions.append(str(su.get("phone_country")))
        fired = bool(parts)
        text = (
            "; ".join(parts) + "."
            if fired
            else f"signed up from {su.get('region') or 'an unknown location'}"
            + (f" with a {su.get('phone_country')} phone number" if su.get("phone_country") else "")
            + ", a supported region."
        )
        out.add("signup_unsupported", fired, lambda: text, tuple(sorted(set(su_regions))))
    else:
        out.add("signup_unsupported", False, lambda: "no signup event seen.")

    # anonymizers
    rc = config.rule("anonymizer_use")
    anon = w[TOR] + w[VPN] + w[PROXY]
    req = w[REQUESTS]
    out.add(
        "anonymizer_use",
        req >= max(1, rc.min_requests) and anon / req >= rc.min_share,
        lambda: (
            f"{anon} of {req} requests {period} ({_pct(anon, req)}) came through Tor, VPN or "
            f"public proxies (Tor {w[TOR]}, VPN {w[VPN]}, proxy {w[PROXY]}); fires at "
            f"{rc.min_requests} requests and {rc.min_share:.0%}. Location-preserving relays "
            "are not counted."
        ),
    )

    # relay egress: a datacenter egress carrying many accounts
    rc = config.rule("relay_egress")
    crowded = []
    for key, count in ev.egress.items():
        if key.startswith("asn:") or count < rc.min_requests:
            continue
        stats = egress.get(key) if egress else None
        if stats is not None and stats.accounts >= rc.min_accounts:
            crowded.append(f"{key.split(':', 1)[1]} ({stats.accounts} accounts)")
    out.add(
        "relay_egress",
        bool(crowded),
        lambda: (
            f"uses datacenter egress shared by many accounts: {', '.join(sorted(crowded))}; "
            f"fires at {rc.min_accounts} accounts."
            if crowded
            else f"no datacenter egress it uses carries {rc.min_accounts} or more accounts."
        ),
    )

    # relay client: many user agents, round-the-clock traffic
    rc = config.rule("relay_client")
    uas = len(ev.user_agents)
    busy = uas >= rc.min_user_agents and ev.requests >= rc.min_requests
    hours = ev.active_hours() if busy or explain else 0
    out.add(
        "relay_client",
        busy and hours >= rc.min_active_hours,
        lambda: (
            f"{uas} distinct user agents, active in {hours} of 24 hours, {ev.requests} requests "
            f"in all; fires at {rc.min_user_agents} user agents, {rc.min_active_hours} hours and "
            f"{rc.min_requests} requests (a resold proxy looks like this)."
        ),
    )

    # language
    rc = config.rule("language")
    lang_any = w[LANGUAGE_ANY]
    lang_bad = w[LANGUAGE_UNSUPPORTED]

    def tags() -> str:
        top = sorted(ev.languages.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{t} ({n})" for t, n in top) or "none"

    lang_fired = lang_any >= max(1, rc.min_requests) and lang_bad / lang_any >= rc.min_share
    lang_regions = (
        tuple(sorted({r for t in ev.languages_unsupported if (r := language_region(t))}))
        if lang_fired
        else ()
    )
    out.add(
        "language",
        lang_fired,
        lambda: (
            f"{lang_bad} of {lang_any} requests {period} ({_pct(lang_bad, lang_any)}) preferred a "
            f"language tag naming an unsupported region; most used tags: {tags()}; fires at "
            f"{rc.min_requests} requests and {rc.min_share:.0%} (weak: can only flag)."
        ),
        lang_regions,
    )

    # activity clock
    if clock or explain:
        out.append_signal(clock_signal(ev, config=config, explain=explain))
    return out


def clock_signal(ev: AccountEvidence, *, config: AccountsConfig, explain: bool = True) -> Signal:
    """The activity clock rule (weak): most of the account's UTC-offset estimate lies on the
    unsupported offsets."""
    rc = config.rule("activity_clock")
    est = ev.clock() if explain or sum(ev.hours) >= rc.min_requests else None
    if est is None:
        return _signal("activity_clock", False, "no activity to infer a clock from.", config)
    mass = est.mass(rc.unsupported_offsets)
    fired = est.events >= rc.min_requests and mass >= rc.min_confidence
    if not explain:
        return _signal("activity_clock", fired, "", config)
    offsets = ", ".join(f"{o:+g}" for o in rc.unsupported_offsets)
    return _signal(
        "activity_clock",
        fired,
        f"the hourly activity of {est.events} requests fits a day at {est.range_text} "
        f"(best UTC{est.offset_hours:+d}); {mass:.0%} of the estimate lies on the "
        f"offsets {offsets}; fires at {rc.min_confidence:.0%} over at least "
        f"{rc.min_requests} requests (weak: can flag for review, never block; many "
        "supported countries share these offsets, some only in summer).",
        config,
    )


def continuity_signal(
    ev: AccountEvidence,
    w: list[int],
    *,
    at: datetime,
    config: AccountsConfig,
    explain: bool = True,
    period: str = "recently",
) -> Signal:
    """Location continuity: an account last observed directly in an unsupported region (an
    established location, not a one-off) whose recent traffic is hidden behind datacenters,
    VPNs, proxies or Tor, with no direct observation in a supported region since, is still used
    from there. A traveller who came home shows home observations after the trip and does not
    fire; neither does an account that only ever used hiding networks (nothing to continue)."""
    rc = config.rule("continued_unsupported")
    req = w[REQUESTS]
    hidden = w[HIDDEN]
    at_epoch = int(at.timestamp())
    at_day = at_epoch // DAY_SECONDS
    sup_day, uns_day, sup_all, uns_all = ev.located_days(before=at_day + 1)
    located_all = uns_all + sup_all
    # The signup is an observation too: from a residential address in an unsupported region
    # it places the account there, corroborated by the phone number, a card or a direct leak.
    su = ev.signup if ev.signup and int(ev.signup.get("ts", 0)) <= at_epoch else None
    su_corroborated = False
    if su is not None and not su.get("hidden") and not su.get("anonymized") and su.get("region"):
        su_day = int(su.get("ts", 0)) // DAY_SECONDS
        if su.get("unsupported"):
            uns_day = su_day if uns_day is None else max(uns_day, su_day)
            pay_start = at_epoch - config.payment_window_days * DAY_SECONDS
            su_corroborated = bool(
                su.get("phone_unsupported")
                or uns_all > 0
                or any(v[3] and v[2] > pay_start for v in ev.payments.values())
            )
        else:
            sup_day = su_day if sup_day is None else max(sup_day, su_day)
    hidden_ok = req >= max(1, rc.min_requests) and hidden / req >= rc.min_hidden_share
    anchored = uns_day is not None and (sup_day is None or uns_day > sup_day)
    established = su_corroborated or (
        uns_all >= max(1, rc.min_observations)
        and located_all > 0
        and uns_all / located_all >= rc.min_share
    )
    fired = hidden_ok and anchored and established
    regions: tuple[str, ...] = ()
    if fired or explain:
        latest = max((v[1] for v in ev.regions.values() if v[2]), default=None)
        found = {
            r
            for r, v in ev.regions.items()
            if v[2] and latest is not None and v[1] >= latest - 30 * DAY_SECONDS
        }
        if su is not None and su.get("unsupported") and su.get("region") and not found:
            found.add(str(su["region"]))
        regions = tuple(sorted(found))

    def text() -> str:
        def day_text(day: int | None) -> str:
            return (
                "never"
                if day is None
                else f"{datetime.fromtimestamp(day * DAY_SECONDS, tz=at.tzinfo):%Y-%m-%d}"
            )

        return (
            f"{hidden} of {req} requests {period} ({_pct(hidden, req)}) went through networks "
            f"that hide the user's location; last observed directly in an unsupported region "
            f"on {day_text(uns_day)}{_regions_text(regions)}, in a supported one on "
            f"{day_text(sup_day)} (signup included); {uns_all} of {located_all} direct request "
            f"observations ({_pct(uns_all, located_all)}) were in unsupported regions"
            + (", and the signup there is corroborated" if su_corroborated else "")
            + f". Fires when at least "
            f"{rc.min_hidden_share:.0%} of {rc.min_requests}+ recent requests are hidden, the "
            f"latest direct observation is unsupported with no supported one since, and at "
            f"least {rc.min_observations} observations ({rc.min_share:.0%}), or a signup there "
            "corroborated by the phone, a card or a direct leak, establish it "
            "(someone who came home is seen at home; someone who hides after being told is not)."
        )

    if not explain:
        return _signal("continued_unsupported", fired, "", config, regions)
    return _signal("continued_unsupported", fired, text(), config, regions)


def region_score(signals: list[Signal], config: AccountsConfig) -> float:
    """Sum of the fired *strong* region-pointing rules' weights: what makes an account "point to
    unsupported regions" for its egress neighbours. Language and clock never count."""
    return sum(
        s.weight for s in signals if s.fired and RULES[s.rule][1] and s.strength is Strength.STRONG
    )


def concentration_signal(
    ev: AccountEvidence,
    *,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None,
    self_points: bool,
    recent_hidden: int | None = None,
) -> Signal:
    """Egress concentration: the account uses an egress address or /24 (/48) where most *other*
    accounts' strong evidence points to unsupported regions. ``recent_hidden`` (requests through
    hiding networks in the evaluated period) must reach ``min_requests`` when given: a block
    after the enforcement date needs the account to use such an egress after it."""
    rc = config.rule("egress_concentration")
    worst: tuple[float, str, int, int] | None = None
    for key, count in ev.egress.items():
        if count < rc.min_requests or not egress or key.startswith("asn:"):
            continue
        stats = egress.get(key)
        if stats is None:
            continue
        others = stats.accounts - 1
        others_bad = stats.unsupported - int(self_points)
        if others < max(1, rc.min_accounts):
            continue
        share = max(0, others_bad) / others
        if worst is None or share > worst[0]:
            worst = (share, key, others_bad, others)
    if worst is None:
        text = (
            f"no egress network it uses has {rc.min_accounts} or more other accounts to compare "
            "with."
        )
        return _signal("egress_concentration", False, text, config)
    share, key, bad, others = worst
    recent_ok = recent_hidden is None or recent_hidden >= rc.min_requests
    return _signal(
        "egress_concentration",
        share >= rc.min_share and recent_ok,
        f"behind egress {key.split(':', 1)[1]}, {bad} of {others} other accounts "
        f"({share:.0%}) have strong evidence pointing to unsupported regions; fires at "
        f"{rc.min_share:.0%} with at least {rc.min_accounts} accounts"
        + ("" if recent_ok else ", but the account has not used such networks in the period")
        + ".",
        config,
    )


def group_signal(
    ev: AccountEvidence,
    *,
    config: AccountsConfig,
    groups: Mapping[str, GroupStats] | None,
    recent_hidden: int,
) -> Signal:
    """Org relay: the account belongs to an org (or shares an API key with accounts) that looks
    like a resale relay (:meth:`GroupStats.is_relay`) and itself sent requests through hiding
    networks in the evaluated period. The group's evidence is named in the explanation."""
    rc = config.rule("org_relay")
    mine = [groups[k] for k in ev.group_keys() if groups and k in groups]
    relays = [g for g in mine if g.is_relay(config)]
    active = recent_hidden >= max(1, rc.min_requests)
    if relays:
        g = max(relays, key=lambda g: (g.pointing, g.members))
        fired = active
        text = f"{g.describe()}. The group relays access for accounts in unsupported regions; " + (
            f"this account sent {recent_hidden} requests through it in the period."
            if active
            else f"but this account sent only {recent_hidden} requests through hiding "
            f"networks in the period (fires at {rc.min_requests})."
        )
        return _signal("org_relay", fired, text, config, g.regions)
    if mine:
        g = max(mine, key=lambda g: (g.pointing, g.members))
        return _signal(
            "org_relay",
            False,
            f"{g.describe()}; a relay needs {rc.min_accounts}+ accounts, "
            f"{rc.min_hidden_share:.0%} hidden traffic on at most {rc.max_exits} exits, "
            f"{rc.min_user_agents}+ client strings or {rc.min_active_hours}+ active hours, and "
            f"{rc.min_share:.0%} (at least 2) of its members pointing to unsupported regions.",
            config,
        )
    return _signal(
        "org_relay", False, "not in an org or API-key group with other accounts.", config
    )


def member_points(ev: AccountEvidence, *, at: datetime, config: AccountsConfig) -> tuple[str, ...]:
    """The unsupported regions an account's own *strong, persistent* evidence points to: its
    signup address or phone, an unsupported card or billing country in the payment window, a
    direct observation in an unsupported region in the retained days. Empty when none (weak
    signals never count)."""
    at_epoch = int(at.timestamp())
    regions: set[str] = set()
    su = ev.signup
    if su and su.get("ts", 0) <= at_epoch:
        if su.get("unsupported") and su.get("region"):
            regions.add(str(su["region"]))
        if su.get("phone_unsupported") and su.get("phone_country"):
            regions.add(str(su["phone_country"]))
    pay_start = at_epoch - config.payment_window_days * DAY_SECONDS
    for key, v in ev.payments.items():
        if v[3] and v[1] <= at_epoch and v[2] > pay_start:
            regions.add(key.split(":", 1)[0])
    for region, v in ev.regions.items():
        if v[2] and v[1] <= at_epoch + DAY_SECONDS:
            regions.add(region)
    return tuple(sorted(regions))


def group_stats(
    key: str,
    members: list[AccountEvidence],
    *,
    at: datetime,
    config: AccountsConfig,
    since: int | None = None,
) -> GroupStats:
    """Aggregate the evidence of a group's members as of ``at`` (pure; the same members give
    the same stats in any order, whatever the ingestion batches were)."""
    rc = config.rule("org_relay")
    pointing = 0
    regions: set[str] = set()
    agents: set[int] = set()
    hours = [0] * 24
    req = hidden = 0
    exits: Counter[str] = Counter()
    for ev in members:
        mine = member_points(ev, at=at, config=config)
        if mine:
            pointing += 1
            regions.update(mine)
        agents.update(ev.user_agents)
        for i, c in enumerate(ev.hours):
            hours[i] += c
        w = ev.window(at, config.window_days, since=since)
        req += w[REQUESTS]
        hidden += w[HIDDEN]
        for k, n in ev.egress.items():
            if k.startswith("net:"):
                exits[k.split(":", 1)[1]] += n
    total_hours = sum(hours)
    active = sum(1 for c in hours if c >= total_hours / 48.0) if total_hours else 0
    top = exits.most_common(max(1, rc.max_exits))
    egress_total = sum(exits.values())
    return GroupStats(
        key=key,
        members=len(members),
        pointing=pointing,
        regions=tuple(sorted(regions)),
        user_agents=len(agents),
        active_hours=active,
        hidden_share=hidden / req if req else 0.0,
        requests=req,
        exits=tuple(k for k, _ in top),
        exit_share=sum(n for _, n in top) / egress_total if egress_total else 0.0,
    )


def assess(
    ev: AccountEvidence,
    *,
    at: datetime,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None = None,
    groups: Mapping[str, GroupStats] | None = None,
    effective_of: Callable[[tuple[str, ...]], datetime | None] | None = None,
    since: int | None = None,
    explain: bool = True,
    uniform_effective: datetime | None = None,
) -> Assessment:
    """All rules for one account as of ``at``.

    ``egress`` holds the account counts behind the egress keys the account uses and ``groups``
    the stats of its org and API-key groups (None: those cross-account rules are not
    evaluated). ``effective_of`` gives the enforcement date for the regions the evidence
    points to: from that date on the rules look only at evidence from on or after it, so old
    evidence can warn but never block. ``uniform_effective``: the one date every region of the
    policy shares, when it has one; from it on the evaluation goes straight to the evidence
    from on or after it (the regions cannot change the date), which halves the work of a run
    over every account.
    """
    if uniform_effective is not None and at >= uniform_effective:
        return _after_date(
            ev, uniform_effective, at=at, config=config, egress=egress, groups=groups,
            since=since, explain=explain, points=None,
        )  # fmt: skip
    signals, rscore = _evaluate(
        ev, at=at, config=config, egress=egress, groups=groups, since=since, explain=explain
    )
    regions = tuple(sorted({r for s in signals if s.fired for r in s.regions}))
    effective = effective_of(regions) if effective_of is not None else None
    if effective is None or at < effective:
        return finish(
            signals, at=at, config=config, region_score_value=rscore, effective_at=effective
        )
    return _after_date(
        ev, effective, at=at, config=config, egress=egress, groups=groups, since=since,
        explain=explain, points=rscore,
    )  # fmt: skip


def _after_date(
    ev: AccountEvidence,
    effective: datetime,
    *,
    at: datetime,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None,
    groups: Mapping[str, GroupStats] | None,
    since: int | None,
    explain: bool,
    points: float | None,
) -> Assessment:
    """The rules on evidence from on or after ``effective`` only (and after ``since``)."""
    post_since = int(effective.timestamp())
    if since is not None:
        post_since = max(post_since, since)
    post, rs = _evaluate(
        ev,
        at=at,
        config=config,
        egress=egress,
        groups=groups,
        since=post_since,
        explain=explain,
        points=points,
    )
    return finish(
        post,
        at=at,
        config=config,
        region_score_value=rs,
        effective_at=effective,
        post_date=True,
    )


def _evaluate(
    ev: AccountEvidence,
    *,
    at: datetime,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None,
    groups: Mapping[str, GroupStats] | None,
    since: int | None,
    explain: bool,
    points: float | None = None,
) -> tuple[list[Signal], float]:
    # Without explanations the clock (the costliest rule, and weak) is evaluated last and only
    # when it can change the verdict: turning a review score just below flag_score into a flag.
    signals = base_signals(
        ev, at=at, config=config, egress=egress, since=since, explain=explain, clock=explain
    )
    rscore = region_score(signals, config) if points is None else points
    own_points = rscore >= config.rule("egress_concentration").account_score
    recent_hidden = ev.window(at, config.window_days, since=since)[HIDDEN]
    signals.append(
        concentration_signal(
            ev,
            config=config,
            egress=egress,
            self_points=own_points,
            recent_hidden=recent_hidden if since is not None else None,
        )
    )
    if groups is not None or explain:
        sig = group_signal(ev, config=config, groups=groups, recent_hidden=recent_hidden)
        if explain or sig.fired:
            signals.append(sig)
    if not explain:
        rc = config.rule("activity_clock")
        score = sum(s.weight for s in signals if s.fired)
        if rc.enabled and score < config.flag_score <= score + rc.weight:
            sig = clock_signal(ev, config=config, explain=False)
            if sig.fired:
                signals.append(sig)
    return signals, rscore


def finish(
    signals: list[Signal],
    *,
    at: datetime,
    config: AccountsConfig,
    region_score_value: float,
    effective_at: datetime | None = None,
    post_date: bool = False,
) -> Assessment:
    """Combine signals into an :class:`Assessment`: block when the strong rules alone reach
    ``block_score``, flag when all fired rules reach ``flag_score``."""
    fired = [s for s in signals if s.fired]
    score = sum(s.weight for s in fired)
    strong = sum(s.weight for s in fired if s.strength is Strength.STRONG)
    if strong >= config.block_score and strong > 0:
        verdict = Verdict.BLOCK
    elif score >= config.flag_score and fired:
        verdict = Verdict.FLAG
    else:
        verdict = Verdict.NONE
    regions = tuple(sorted({r for s in fired for r in s.regions}))
    return Assessment(
        verdict=verdict,
        score=score,
        signals=tuple(signals),
        regions=regions,
        region_score=region_score_value,
        points_unsupported=region_score_value >= config.rule("egress_concentration").account_score,
        at=at,
        strong_score=strong,
        effective_at=effective_at,
        post_date=post_date,
    )
