"""Scoring: every rule looks at an account's evidence as of a time and says, in plain language,
whether it fires and why. The weighted sum of fired rules gives a :class:`Verdict`.

A verdict of ``BLOCK`` needs ``block_score`` *and* at least one strong rule: weak rules
(activity clock, language, relay and anonymizer patterns) can only ever flag an account for
review. Weights and thresholds come from :class:`AccountsConfig` (the policy's ``[accounts]``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geogate.accounts.config import RULES, AccountsConfig, Strength
from geogate.accounts.evidence import (
    DAY_SECONDS,
    FORWARDED_UNSUPPORTED,
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
class Assessment:
    """The outcome of all rules for one account at one time.

    ``region_score`` sums the fired region-pointing rules (not egress concentration): an account
    ``points_unsupported`` when it reaches ``egress_concentration.account_score``.
    """

    verdict: Verdict
    score: float
    signals: tuple[Signal, ...]
    regions: tuple[str, ...]
    region_score: float
    points_unsupported: bool
    at: datetime

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
    rc = config.rule("activity_clock")
    est = ev.clock() if explain or sum(ev.hours) >= rc.min_requests else None
    if est is None:
        out.add("activity_clock", False, lambda: "no activity to infer a clock from.")
    else:
        matches = any(abs(est.offset_hours - o) <= 0.5 for o in rc.unsupported_offsets)
        offsets = ", ".join(f"{o:+g}" for o in rc.unsupported_offsets)
        out.add(
            "activity_clock",
            est.events >= rc.min_requests and est.confidence >= rc.min_confidence and matches,
            lambda: (
                f"the hourly activity of {est.events} requests fits a day at UTC"
                f"{est.offset_hours:+d} best (confidence {est.confidence:.2f}); fires when the "
                f"offset is one of {offsets} with confidence {rc.min_confidence:.2f} over at least "
                f"{rc.min_requests} requests (weak: can only flag)."
            ),
        )
    return out


def region_score(signals: list[Signal], config: AccountsConfig) -> float:
    """Sum of the fired region-pointing rules' weights."""
    return sum(s.weight for s in signals if s.fired and RULES[s.rule][1])


def concentration_signal(
    ev: AccountEvidence,
    *,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None,
    self_points: bool,
) -> Signal:
    """Egress concentration: the account uses an egress network where most *other* accounts'
    evidence points to unsupported regions."""
    rc = config.rule("egress_concentration")
    worst: tuple[float, str, int, int] | None = None
    for key, count in ev.egress.items():
        if count < rc.min_requests or not egress:
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
    return _signal(
        "egress_concentration",
        share >= rc.min_share,
        f"behind egress {key.split(':', 1)[1]}, {bad} of {others} other accounts "
        f"({share:.0%}) have evidence pointing to unsupported regions; fires at "
        f"{rc.min_share:.0%} with at least {rc.min_accounts} accounts.",
        config,
    )


def assess(
    ev: AccountEvidence,
    *,
    at: datetime,
    config: AccountsConfig,
    egress: Mapping[str, EgressStats] | None = None,
    since: int | None = None,
    explain: bool = True,
) -> Assessment:
    """All rules for one account as of ``at``; ``egress`` holds the account counts behind the
    egress keys the account uses (None: concentration and relay egress are not evaluated)."""
    signals = base_signals(ev, at=at, config=config, egress=egress, since=since, explain=explain)
    rscore = region_score(signals, config)
    points = rscore >= config.rule("egress_concentration").account_score
    signals.append(concentration_signal(ev, config=config, egress=egress, self_points=points))
    return finish(signals, at=at, config=config, region_score_value=rscore)


def finish(
    signals: list[Signal], *, at: datetime, config: AccountsConfig, region_score_value: float
) -> Assessment:
    """Combine signals into an :class:`Assessment`."""
    fired = [s for s in signals if s.fired]
    score = sum(s.weight for s in fired)
    strong = any(s.strength is Strength.STRONG for s in fired)
    if score >= config.block_score and strong:
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
    )
