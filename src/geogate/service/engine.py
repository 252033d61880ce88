"""The decision state every enforcement point shares, and the one function they all call.

An :class:`Engine` is one immutable bundle: the policy set, the snapshot (through a
:class:`~geogate.decide.Decider`), the trusted proxies and the fail mode. :class:`EngineRef`
holds the current one; a reload builds a complete new Engine off to the side and then swaps one
reference, so a request, which reads the reference once, sees the old or the new data, never a
mix. :func:`enforce` turns (engine, peer, forwarding headers, account) into a :class:`Verdict`:
the decision plus the HTTP status every enforcement point answers with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from geogate.client_ip import TrustedProxies, parse_ip, resolve_client_ip
from geogate.clock import Clock, SystemClock
from geogate.decide import Decider, Decision, Reason
from geogate.errors import ClientIPError, IntelDataError, PolicySyntaxError, StoreError
from geogate.intel.snapshot import Snapshot, SnapshotMeta
from geogate.policy.model import Action, PolicySet
from geogate.policy.parse import load_policy_set, resolve_policy_path, with_line
from geogate.service.config import ClientIPHeader, FailMode, ServiceConfig
from geogate.service.ports import AccountStatusPort
from geogate.service.responses import status_of


@dataclass(frozen=True, slots=True, kw_only=True)
class Engine:
    """Everything needed to decide, bound once; replaced whole on reload.

    ``decider`` is None when no snapshot could be loaded: decisions then follow ``fail_mode``
    and ``snapshot_problem`` says why (one line). ``client_header`` is the only forwarding
    header believed. ``generation`` counts successful loads.
    """

    policies: PolicySet
    decider: Decider | None
    trusted: TrustedProxies
    fail_mode: FailMode
    client_header: ClientIPHeader
    clock: Clock
    snapshot_meta: SnapshotMeta | None
    snapshot_source: str
    snapshot_problem: str | None
    loaded_at: datetime
    generation: int = 1

    @property
    def is_ready(self) -> bool:
        """True when a snapshot and a policy are loaded."""
        return self.decider is not None

    @property
    def policy_label(self) -> str:
        """``id@version`` of the policy version in force now."""
        return self.policies.in_force(self.clock.now()).label


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A decision and how to answer it: ``status`` is 200, 403, 503 or 400 (see
    :func:`geogate.service.responses.status_of`); ``client_ip`` is the resolved address (None
    when it could not be resolved); ``problem`` is a one-line explanation for 400 and 503."""

    decision: Decision
    client_ip: str | None
    status: int
    problem: str | None = None


def load_snapshot(spec: str | None) -> Snapshot:
    """The snapshot file ``spec``, or the embedded data for None. Raises IntelDataError."""
    return Snapshot.embedded() if spec is None else Snapshot.load(spec)


def build_engine(
    policies: PolicySet,
    snapshot: Snapshot | None,
    *,
    trusted: TrustedProxies = TrustedProxies(),  # noqa: B008 - immutable value
    fail_mode: FailMode = FailMode.CLOSED,
    client_header: ClientIPHeader = ClientIPHeader.X_FORWARDED_FOR,
    clock: Clock | None = None,
    snapshot_source: str = "embedded",
    snapshot_problem: str | None = None,
    generation: int = 1,
) -> Engine:
    """An Engine from already loaded parts (``snapshot`` None: decide by the fail mode)."""
    the_clock: Clock = clock or SystemClock()
    decider = (
        Decider(policies, snapshot, trusted=trusted, clock=the_clock)
        if snapshot is not None
        else None
    )
    return Engine(
        policies=policies,
        decider=decider,
        trusted=trusted,
        fail_mode=fail_mode,
        client_header=client_header,
        clock=the_clock,
        snapshot_meta=snapshot.meta if snapshot is not None else None,
        snapshot_source=snapshot_source,
        snapshot_problem=snapshot_problem,
        loaded_at=the_clock.now(),
        generation=generation,
    )


def load_engine(
    config: ServiceConfig, *, previous: Engine | None = None, clock: Clock | None = None
) -> Engine:
    """Load the policies and the snapshot named by ``config`` into a new Engine.

    A policy that fails to load raises (PolicyError): it is a configuration error. A snapshot
    that fails to load gives a not-ready Engine deciding by the fail mode, unless ``previous``
    had a snapshot: then IntelDataError is raised so that a reload never replaces good data by
    nothing (the caller keeps ``previous``).
    """
    policies = load_policy_set([resolve_policy_path(p) for p in config.policies])
    validate_accounts_tables(policies)
    source = config.snapshot or "embedded"
    try:
        snapshot: Snapshot | None = load_snapshot(config.snapshot)
        problem = None
    except IntelDataError as exc:
        if previous is not None and previous.is_ready:
            raise
        snapshot, problem = None, exc.one_line()
    return build_engine(
        policies,
        snapshot,
        trusted=config.trusted_proxies,
        fail_mode=config.fail_mode,
        client_header=config.client_ip_header,
        clock=clock or (previous.clock if previous else None),
        snapshot_source=source,
        snapshot_problem=problem,
        generation=(previous.generation + 1) if previous else 1,
    )


def validate_accounts_tables(policies: PolicySet) -> None:
    """Parse the ``[accounts]`` table of every version with the code ingestion uses, so a
    policy that would break the account API is refused when loaded, not at the first event.
    Raises PolicySyntaxError."""
    from geogate.accounts.config import AccountsConfig  # noqa: PLC0415 - not on the hot path

    for policy in policies.versions:
        try:
            AccountsConfig.from_policy(policy)
        except PolicySyntaxError as exc:
            raise with_line(exc) from None


class EngineRef:
    """The current Engine. Reading :attr:`current` is one attribute load (atomic under the GIL);
    :meth:`reload` builds the next Engine outside any request and swaps it in, one reload at a
    time."""

    def __init__(self, engine: Engine, *, loader: Callable[[Engine], Engine] | None = None) -> None:
        self._current = engine
        self._loader = loader
        self._lock = threading.Lock()

    @property
    def current(self) -> Engine:
        """The Engine in use now."""
        return self._current

    def swap(self, engine: Engine) -> Engine:
        """Make ``engine`` current; returns the previous one."""
        with self._lock:
            old, self._current = self._current, engine
        return old

    def reload(self) -> Engine:
        """Load a new Engine with the loader and make it current; returns it.

        On error (PolicyError, IntelDataError ...) the current Engine stays and the error
        propagates. Raises ConfigError when no loader was given.
        """
        if self._loader is None:
            from geogate.errors import ConfigError  # noqa: PLC0415 - rare path

            raise ConfigError("this engine has no configuration to reload from")
        with self._lock:
            new = self._loader(self._current)
            self._current = new
        return new


def _fail_decision(engine: Engine, ip: str | None, account: str | None, at: datetime) -> Decision:
    """The decision when there is no snapshot: exemptions still apply (they need no data),
    then the fail mode decides."""
    policy = engine.policies.in_force(at)
    if account is not None and account in policy.exemptions.accounts:
        reasons: tuple[Reason, ...] = (Reason.EXEMPT_ACCOUNT, Reason.INTEL_UNAVAILABLE)
        return Decision(
            action=Action.ALLOW, reasons=reasons, region=None, rule_id=None,
            policy=policy.label, path="exempt",
        )  # fmt: skip
    if ip is not None and policy.exemptions.networks and policy.exemptions.covers_ip(parse_ip(ip)):
        reasons = (Reason.EXEMPT_NETWORK, Reason.INTEL_UNAVAILABLE)
        return Decision(
            action=Action.ALLOW, reasons=reasons, region=None, rule_id=None,
            policy=policy.label, path="exempt",
        )  # fmt: skip
    closed = engine.fail_mode is FailMode.CLOSED
    return Decision(
        action=Action.DENY if closed else Action.ALLOW,
        reasons=(Reason.INTEL_UNAVAILABLE,),
        region=None,
        rule_id=None,
        policy=policy.label,
        path="fail_closed" if closed else "fail_open",
    )


def _blocked(geo: Decision) -> Decision:
    kept = tuple(r for r in geo.reasons if r not in (Reason.EXEMPT_ACCOUNT, Reason.EXEMPT_NETWORK))
    return Decision(
        action=Action.DENY,
        reasons=(Reason.ACCOUNT_BLOCKED, *kept),
        region=geo.region,
        rule_id=geo.rule_id,
        policy=geo.policy,
        effective_at=geo.effective_at,
        facts=geo.facts,
        path="account",
    )


def _store_failed(engine: Engine, geo: Decision) -> Decision:
    """The account store could not answer: ``closed`` refuses, ``open`` keeps the location
    decision. Either way the decision says so."""
    closed = engine.fail_mode is FailMode.CLOSED
    return Decision(
        action=Action.DENY if closed else geo.action,
        reasons=(*geo.reasons, Reason.INTEL_UNAVAILABLE),
        region=geo.region,
        rule_id=geo.rule_id,
        policy=geo.policy,
        effective_at=geo.effective_at,
        facts=geo.facts,
        path="fail_closed" if closed else "fail_open",
    )


def invalid_decision(engine: Engine, at: datetime | None = None) -> Decision:
    """The decision for a request whose client address cannot be determined."""
    when = at or engine.clock.now()
    return Decision(
        action=Action.DENY,
        reasons=(Reason.INVALID_ADDRESS,),
        region=None,
        rule_id=None,
        policy=engine.policies.in_force(when).label,
        path="invalid",
    )


def enforce(
    engine: Engine,
    *,
    peer: str,
    x_forwarded_for: str | Sequence[str] | None = None,
    forwarded: str | Sequence[str] | None = None,
    account: str | None = None,
    accounts: AccountStatusPort | None = None,
    at: datetime | None = None,
) -> Verdict:
    """Decide one request as every enforcement point does.

    Resolves the client address from ``peer`` and the engine's forwarding header (the other
    one is ignored) with the engine's trusted proxies, decides by location (or by the fail
    mode when there is no snapshot), then denies with ``account_blocked`` when ``accounts``
    says the named account is blocked.
    Never raises for bad input: a malformed address or header gives status 400.
    """
    when = at if at is not None else engine.clock.now()
    try:
        client = resolve_client_ip(
            peer,
            x_forwarded_for=x_forwarded_for,
            forwarded=forwarded,
            trusted=engine.trusted,
            header=engine.client_header,
        )
    except ClientIPError as exc:
        return Verdict(
            decision=invalid_decision(engine, when),
            client_ip=None,
            status=400,
            problem=exc.one_line(),
        )
    ip = str(client.ip)
    decider = engine.decider
    if decider is None:
        decision = _fail_decision(engine, ip, account, when)
        return Verdict(
            decision=decision,
            client_ip=ip,
            status=status_of(decision),
            problem=engine.snapshot_problem,
        )
    decision = decider.decide(ip, account=account, at=when)
    if account is not None and accounts is not None:
        try:
            if accounts.is_blocked(account):
                decision = _blocked(decision)
        except StoreError as exc:
            decision = _store_failed(engine, decision)
            return Verdict(
                decision=decision, client_ip=ip, status=status_of(decision), problem=exc.one_line()
            )
    return Verdict(decision=decision, client_ip=ip, status=status_of(decision))


def engine_for(
    *,
    policy: str | Sequence[str],
    snapshot: str | Snapshot | None,
    trusted_proxies: Sequence[str] = (),
    fail_mode: str = "closed",
    client_ip_header: str = "x-forwarded-for",
    clock: Clock | None = None,
) -> Engine:
    """An Engine for an in-process middleware, from plain arguments.

    ``policy`` is a file or ``builtin:NAME`` (or several versions); ``snapshot`` a file, a
    loaded :class:`Snapshot`, or None for the embedded data. A snapshot that cannot be loaded
    gives a not-ready Engine that decides by ``fail_mode`` (logged once). Raises
    PolicyError/ConfigError for bad arguments.
    """
    from geogate.errors import ConfigError  # noqa: PLC0415

    specs = [policy] if isinstance(policy, str) else list(policy)
    policies = load_policy_set([resolve_policy_path(p) for p in specs])
    try:
        trusted = TrustedProxies.parse(trusted_proxies)
        mode = FailMode.parse(fail_mode)
        header = ClientIPHeader(client_ip_header.lower())
    except (ClientIPError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    problem = None
    loaded: Snapshot | None
    if isinstance(snapshot, Snapshot):
        loaded, source = snapshot, "given"
    else:
        source = str(snapshot) if snapshot is not None else "embedded"
        try:
            loaded = load_snapshot(str(snapshot) if snapshot is not None else None)
        except IntelDataError as exc:
            loaded, problem = None, exc.one_line()
    return build_engine(
        policies,
        loaded,
        trusted=trusted,
        fail_mode=mode,
        client_header=header,
        clock=clock,
        snapshot_source=source,
        snapshot_problem=problem,
    )
