"""What the console pages show, computed from the running service (no HTTP here).

Each function returns plain values for a template: the overview's counters, an account's
timeline, a lookup with every hop of a forwarded chain, the policy versions and their regions.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import orjson
from prometheus_client.parser import text_string_to_metric_families

from geogate.client_ip import TrustedProxies, parse_ip, resolve_client_ip
from geogate.decide import Decision
from geogate.errors import ClientIPError
from geogate.intel.facts import NetworkFlag
from geogate.policy.model import Action, Policy
from geogate.service.engine import Engine
from geogate.service.metrics import ServiceMetrics

ACTIONS: Final = ("allow", "warn", "deny")
ANONYMIZING: Final = NetworkFlag.TOR | NetworkFlag.VPN | NetworkFlag.PROXY


def country_of(region: str) -> str:
    """``UA-43`` -> ``UA``; a country code stays as it is."""
    return region.split("-", 1)[0]


def decision_totals(metrics: ServiceMetrics) -> dict[tuple[str, str], float]:
    """(action, region) -> decisions counted so far by the service, every endpoint summed."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    # The exposition text, not the counter object: with several worker processes it holds the
    # sum over all of them (prometheus-client's multiprocess mode).
    text = metrics.render().decode("utf-8", "replace")
    for family in text_string_to_metric_families(text):
        if family.name != "geogate_decisions":
            continue
        for sample in family.samples:
            if sample.name == "geogate_decisions_total":
                out[(sample.labels["action"], sample.labels["region"])] += sample.value
    return out


class DecisionRates:
    """Decisions per minute by action, from the service's own counters.

    A sample of the counters is taken whenever the overview asks (every few seconds while it
    is open) and at start; the rate is the change over the last minute (or since the oldest
    sample when the console has run for less than a minute).
    """

    def __init__(self, metrics: ServiceMetrics, *, clock: Any = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque()
        self._lock = threading.Lock()
        self.sample()

    def _by_action(self) -> dict[str, float]:
        totals: dict[str, float] = dict.fromkeys(ACTIONS, 0.0)
        for (action, _), value in decision_totals(self._metrics).items():
            totals[action] = totals.get(action, 0.0) + value
        return totals

    def sample(self) -> tuple[dict[str, float], dict[str, float], float]:
        """(per-minute rate by action, totals by action, seconds the rate covers)."""
        now = self._clock()
        totals = self._by_action()
        with self._lock:
            self._samples.append((now, totals))
            while len(self._samples) > 2 and self._samples[1][0] <= now - 60:
                self._samples.popleft()
            then, before = self._samples[0]
        span = now - then
        if span <= 0:
            return dict.fromkeys(totals, 0.0), totals, 0.0
        rates = {a: (totals[a] - before.get(a, 0.0)) * 60.0 / span for a in totals}
        return rates, totals, span


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficByRegion:
    """Denied and warned decisions by region since the service started."""

    denied: dict[str, float]
    warned: dict[str, float]

    def map_values(self) -> dict[str, float]:
        """Denied + warned per country (subdivisions folded into their country)."""
        out: dict[str, float] = defaultdict(float)
        for source in (self.denied, self.warned):
            for region, n in source.items():
                if region != "unknown":
                    out[country_of(region)] += n
        return dict(out)

    def top(self, limit: int = 10) -> list[tuple[str, float, float]]:
        """(region, denied, warned), most first."""
        regions = set(self.denied) | set(self.warned)
        rows = [(r, self.denied.get(r, 0.0), self.warned.get(r, 0.0)) for r in regions]
        return sorted(rows, key=lambda r: (-(r[1] + r[2]), r[0]))[:limit]


def traffic_by_region(metrics: ServiceMetrics) -> TrafficByRegion:
    """Denied and warned decisions per region from the service's counters."""
    denied: dict[str, float] = defaultdict(float)
    warned: dict[str, float] = defaultdict(float)
    for (action, region), n in decision_totals(metrics).items():
        if action == "deny":
            denied[region] += n
        elif action == "warn":
            warned[region] += n
    return TrafficByRegion(denied=dict(denied), warned=dict(warned))


# ----- account timeline -------------------------------------------------------------------


@dataclass(slots=True)
class Day:
    """One UTC day of an account's events."""

    day: str
    requests: int = 0
    anonymized: int = 0
    regions: Counter[str] = field(default_factory=Counter)
    payments: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def anonymized_share(self) -> float:
        """Share of the day's requests through Tor, a VPN or a proxy (0..1)."""
        return self.anonymized / self.requests if self.requests else 0.0


def timeline(engine: Engine, records: Iterable[tuple[str, datetime, str]]) -> list[Day]:
    """Days of an account's events (newest first): requests by located region, anonymizer
    share, payments (card and billing country) and other events, each located with the
    policy and snapshot in force now, at the event's own time."""
    days: dict[str, Day] = {}
    decider = engine.decider
    for kind, ts, data in records:
        key = ts.astimezone(UTC).strftime("%Y-%m-%d")
        day = days.get(key)
        if day is None:
            day = days[key] = Day(day=key)
        try:
            rec = orjson.loads(data)
        except orjson.JSONDecodeError:
            rec = {}
        if not isinstance(rec, dict):
            rec = {}
        if kind == "request":
            day.requests += 1
            ip = rec.get("ip")
            if decider is not None and isinstance(ip, str):
                try:
                    decision = decider.decide(ip, at=ts)
                except (ClientIPError, ValueError):
                    day.regions["invalid"] += 1
                    continue
                day.regions[decision.region or "unknown"] += 1
                if decision.facts.flags & ANONYMIZING:
                    day.anonymized += 1
            else:
                day.regions["unknown"] += 1
        elif kind == "payment":
            parts = [
                f"{label} {rec[k]}"
                for k, label in (("card_country", "card"), ("billing_country", "billing"))
                if isinstance(rec.get(k), str)
            ]
            amount = rec.get("amount")
            if isinstance(amount, int | float) and not isinstance(amount, bool):
                parts.append(f"amount {amount:g}")
            day.payments.append(", ".join(parts) or "payment")
        else:
            day.other.append(kind)
    return [days[k] for k in sorted(days, reverse=True)]


# ----- lookup -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hop:
    """One address of a forwarded chain, with what the data says about it."""

    ip: str
    role: str  # "client", "trusted proxy", "peer", "not reached"
    decision: Decision | None
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """A lookup's result: the decision for the resolved client address, and every hop."""

    client_ip: str | None
    decision: Decision | None
    hops: list[Hop]
    problem: str | None
    source: str


def _split_chain(text: str) -> list[str]:
    parts = [p.strip() for p in text.replace("\n", ",").split(",")]
    return [p for p in parts if p]


def lookup(engine: Engine, text: str, *, at: datetime, peer: str | None = None) -> Lookup:
    """Decide an address, or an ``X-Forwarded-For`` chain as it appeared in a header
    (oldest first). Without ``peer`` the chain's last address is taken as the connection's
    peer. The chain is walked exactly as the service does (right to left past the configured
    trusted proxies); every hop is located and decided too."""
    nodes = _split_chain(text)
    if not nodes:
        return Lookup(client_ip=None, decision=None, hops=[], problem="no address", source="")
    peer_ip = peer.strip() if peer and peer.strip() else nodes[-1]
    chain = nodes if peer else nodes[:-1]
    trusted: TrustedProxies = engine.trusted
    try:
        client = resolve_client_ip(
            peer_ip, x_forwarded_for=", ".join(chain) if chain else None, trusted=trusted
        )
    except ClientIPError as exc:
        return Lookup(
            client_ip=None, decision=None, hops=[], problem=exc.one_line(), source="invalid"
        )
    decider = engine.decider
    client_text = str(client.ip)

    def decide(ip: str) -> tuple[Decision | None, str | None]:
        if decider is None:
            return None, engine.snapshot_problem or "no snapshot loaded"
        try:
            parse_ip(ip)
            return decider.decide(ip, at=at), None
        except (ClientIPError, ValueError) as exc:
            return None, str(exc)

    hops: list[Hop] = []
    all_nodes = [*chain, peer_ip]
    proxies = {str(p) for p in client.proxies}
    reached = False
    for i, node in enumerate(all_nodes):
        is_peer = i == len(all_nodes) - 1
        node_ip = node.split("]")[0].lstrip("[") if node.startswith("[") else node
        if node_ip == client_text and not reached:
            role = "client"
            reached = True
        elif is_peer:
            role = "peer" if node_ip not in proxies else "peer, trusted proxy"
        elif not reached:
            role = "not reached (left of the client: not believed)"
        else:
            role = "trusted proxy"
        decision, problem = decide(node_ip)
        hops.append(Hop(ip=node_ip, role=role, decision=decision, problem=problem))
    decision, problem = decide(client_text)
    return Lookup(
        client_ip=client_text,
        decision=decision,
        hops=hops,
        problem=problem,
        source=client.source,
    )


# ----- policy -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyView:
    """A policy version and whether it is past, in force or scheduled."""

    policy: Policy
    status: str  # "in force", "scheduled", "superseded"
    starts: datetime | None


def policy_views(engine: Engine, now: datetime) -> list[PolicyView]:
    """Every loaded policy version, with its status at ``now``."""
    current = engine.policies.in_force(now)
    out = []
    for p in engine.policies.versions:
        start = p.valid_from or p.effective_at
        if p is current:
            status = "in force"
        elif start is not None and start > now:
            status = "scheduled"
        else:
            status = "superseded"
        out.append(PolicyView(policy=p, status=status, starts=start))
    return out


def policy_map_classes(policy: Policy, now: datetime) -> dict[str, str]:
    """Country -> CSS class for the policy map: ``deny`` where a rule denies now, ``pending``
    where a rule will deny from a later date, ``warn`` where a rule warns."""
    out: dict[str, str] = {}
    rank = {"warn": 1, "pending": 2, "deny": 3}
    for rule in policy.rules:
        if rule.action is Action.DENY:
            css = "deny" if rule.effective_at is None or rule.effective_at <= now else "pending"
        elif rule.action is Action.WARN:
            css = "warn"
        else:
            continue
        for region in rule.regions:
            code = country_of(region.code)
            if rank.get(out.get(code, ""), 0) < rank[css]:
                out[code] = css
    return out


def ages(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` (for templates that must not mutate the service's status)."""
    return dict(values)


# ----- impact preview ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Impact:
    """What a candidate policy would change on a set of stored requests, both judged at
    ``at``: counts by action under each, the moves between them, the regions and accounts of
    the requests that would newly be denied or warned."""

    requests: int
    truncated: bool
    at: datetime
    current_label: str
    candidate_label: str
    current: dict[str, int]
    candidate: dict[str, int]
    moves: list[tuple[str, str, int]]
    newly_denied_regions: list[tuple[str, int]]
    newly_denied_accounts: int
    newly_warned_accounts: int


def impact(
    engine: Engine,
    candidate: Policy,
    requests: list[tuple[str, str | None]],
    *,
    at: datetime,
    truncated: bool,
) -> Impact:
    """Judge ``requests`` ((address, account) pairs) with the policy in force at ``at`` and
    with ``candidate``, vectorised (:meth:`geogate.decide.Decider.decide_many`), on the same
    snapshot and exemptions of accounts."""
    from geogate.decide import Decider  # noqa: PLC0415
    from geogate.policy.model import PolicySet  # noqa: PLC0415

    decider = engine.decider
    if decider is None:
        raise ValueError(engine.snapshot_problem or "no snapshot loaded")
    ips = [ip for ip, _ in requests]
    accounts = [a for _, a in requests]
    other = Decider(PolicySet.of([candidate]), decider.intel, trusted=engine.trusted)
    before = decider.decide_many(ips, at=at, accounts=accounts)
    after = other.decide_many(ips, at=at, accounts=accounts)
    names = {a.value: a.label for a in Action}

    def label(v: int) -> str:
        return names.get(int(v), "invalid")

    b = before.actions.astype(np.int32)
    a = after.actions.astype(np.int32)
    pairs, counts = np.unique(b * 256 + a, return_counts=True)
    moves = [(label(p // 256), label(p % 256), int(n)) for p, n in zip(pairs, counts, strict=True)]
    deny, warn = int(Action.DENY), int(Action.WARN)
    newly_denied = (a == deny) & (b != deny)
    newly_warned = (a == warn) & (b != warn) & (b != deny)
    codes, region_counts = np.unique(after.regions[newly_denied], return_counts=True)
    regions = Counter(
        {
            (after.region_codes[int(c)] if int(c) else "unknown"): int(n)
            for c, n in zip(codes, region_counts, strict=True)
        }
    )
    named = np.array([x or "" for x in accounts], dtype=object)
    denied = set(named[newly_denied].tolist()) - {""}
    warned = set(named[newly_warned].tolist()) - {""}
    return Impact(
        requests=len(ips),
        truncated=truncated,
        at=at,
        current_label=engine.policies.in_force(at).label,
        candidate_label=candidate.label,
        current=before.counts(),
        candidate=after.counts(),
        moves=sorted(moves, key=lambda m: -m[2]),
        newly_denied_regions=regions.most_common(10),
        newly_denied_accounts=len(denied),
        newly_warned_accounts=len(warned),
    )
