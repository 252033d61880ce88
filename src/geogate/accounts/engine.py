"""Account enforcement over a :class:`Store`: ingestion, scheduled enforcement, operator actions.

:class:`Enforcer` is the one place where events, evidence, rules and the state machine meet
the store. It stays free of I/O of its own: the store does the persistence, the locator the
IP intelligence, and time is always passed in (an event's own timestamp on ingestion, the
``at`` of an enforcement run).

Each ingestion batch is one store transaction: events, evidence, states, transitions, notices
and audit records commit together or not at all, so a crash loses only an unacknowledged batch
and re-reading the file skips what was stored (idempotent event ids).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from geogate.accounts.config import AccountsConfig
from geogate.accounts.events import Event, EventKind
from geogate.accounts.evidence import (
    DAY_SECONDS,
    AccountEvidence,
    BinTable,
    Located,
    Locator,
    apply_event,
)
from geogate.accounts.rules import (
    Assessment,
    GroupStats,
    Verdict,
    assess,
    group_stats,
)
from geogate.accounts.states import (
    AccountState,
    Move,
    OperatorAction,
    next_state,
    operator_move,
)
from geogate.errors import StateConflict
from geogate.policy.model import Action, Mode, Policy, PolicySet
from geogate.store.protocol import (
    AccountRow,
    EgressStats,
    ScanRow,
    Store,
    StoredEvent,
    StoreTx,
    TransitionRow,
)

_APPEAL = EventKind.APPEAL
_EXEMPTION = EventKind.EXEMPTION
WARNING_NOTICE = "warning"
BLOCKED_NOTICE = "blocked"
REINSTATED_NOTICE = "reinstated"


def effective_for(policy: Policy, regions: Iterable[str]) -> datetime | None:
    """When blocking starts for evidence pointing to ``regions`` under ``policy``: the
    earliest enforcement date of the deny rules naming them (the policy's own date for
    regions left unlisted in allow-list mode, or when no region is known). None: immediately.
    """
    dates: list[datetime | None] = []
    for region in regions:
        if "-" in region:
            rule = policy.rule_for(country=region[:2], subdivision=region)
        else:
            rule = policy.rule_for(country=region, subdivision=None)
        if rule is not None and rule.action is Action.DENY:
            dates.append(rule.effective_at)
        elif rule is None and policy.mode is Mode.ALLOW_LIST:
            dates.append(policy.effective_at)
    if not dates:
        return policy.effective_at
    if any(d is None for d in dates):
        return None
    return min(d for d in dates if d is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchReport:
    """What one ingestion batch did: events received, newly stored, already known, and the
    state transitions it caused."""

    received: int
    inserted: int
    duplicates: int
    transitions: tuple[TransitionRow, ...] = ()
    notices: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One state change an enforcement run makes (or would make, in a dry run)."""

    account: str
    from_state: AccountState
    to_state: AccountState
    rules: tuple[str, ...]
    regions: tuple[str, ...]
    policy_version: str
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnforceReport:
    """Outcome of :meth:`Enforcer.enforce`: accounts evaluated, changes, and counts of the
    changes by reason (fired rule), by region and by target state."""

    at: datetime
    dry_run: bool
    evaluated: int
    changes: tuple[Change, ...]
    by_reason: Mapping[str, int] = field(default_factory=dict)
    by_region: Mapping[str, int] = field(default_factory=dict)
    by_state: Mapping[str, int] = field(default_factory=dict)
    review: tuple[str, ...] = ()


_STATES: dict[str, AccountState] = {s.value: s for s in AccountState}  # AccountState(x) is slow


class _Work:
    """One account's state while a batch is applied."""

    __slots__ = ("evidence", "points", "row", "state", "state_since", "transitions")

    def __init__(self, row: AccountRow | None, evidence: AccountEvidence | None = None) -> None:
        self.row = row
        if evidence is None:
            evidence = AccountEvidence.from_dict(row.evidence if row else None)
        self.evidence = evidence
        self.state = _STATES[row.state] if row else AccountState.ACTIVE
        self.state_since = row.state_since if row else None
        self.points = row.points_unsupported if row else False
        self.transitions: list[TransitionRow] = []


class _Batch:
    """The accounts of one ingestion batch and what it changed but has not written yet."""

    __slots__ = ("new_egress", "work")

    def __init__(self, work: dict[str, _Work]) -> None:
        self.work = work
        self.new_egress: set[str] = set()


class Enforcer:
    """Runs account enforcement against a store.

    ``policies`` are the policy versions (each one's ``[accounts]`` table configures the rules
    while it is in force); ``locator`` turns addresses into regions (see
    :class:`geogate.accounts.evidence.DeciderLocator`); ``bins`` an optional card BIN table.
    ``log_events=False`` keeps ingested events out of the store's event log: for a throwaway
    store whose caller gives every event a new id (the log scan's account preview), which
    would otherwise fill a disk with events nothing reads again; evidence and states are the
    same, but re-reading a file is no longer recognised.
    """

    def __init__(
        self,
        store: Store,
        *,
        policies: PolicySet,
        locator: Locator,
        bins: BinTable | None = None,
        cache_accounts: int = 50_000,
        log_events: bool = True,
    ) -> None:
        self.store = store
        self.log_events = log_events
        self.policies = policies
        self.locator = locator
        self.bins = bins
        self.cache_accounts = cache_accounts
        # Accounts written by earlier batches of this process, with their evidence: re-used
        # when the stored version still matches, which saves decoding their JSON again.
        self._cache: dict[str, AccountRow] = {}
        self._evidence: dict[str, AccountEvidence] = {}
        self._cache_pending: tuple[list[AccountRow], dict[str, _Work]] | None = None
        # Accounts whose latest UTC day is still open (more of its events may follow in the
        # next batch): judged when a later event closes the day, or at the end of the run.
        self._open: set[str] = set()

    # ----- ingestion -------------------------------------------------------------------

    def ingest(
        self,
        events: Iterable[Event],
        *,
        batch_size: int = 5_000,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> BatchReport:
        """Ingest events in batches of ``batch_size`` (one transaction each); ``on_batch`` is
        called after each commit, i.e. when the batch is acknowledged. Returns the totals."""
        received = inserted = duplicates = notices = 0
        transitions: list[TransitionRow] = []
        batch: list[Event] = []

        def flush() -> None:
            nonlocal received, inserted, duplicates, notices
            report = self.ingest_batch(batch)
            received += report.received
            inserted += report.inserted
            duplicates += report.duplicates
            notices += report.notices
            transitions.extend(report.transitions)
            batch.clear()
            if on_batch is not None:
                on_batch(report)

        for event in events:
            batch.append(event)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        closed = self.close_open_days()
        notices += closed.notices
        transitions.extend(closed.transitions)
        return BatchReport(
            received=received,
            inserted=inserted,
            duplicates=duplicates,
            transitions=tuple(transitions),
            notices=notices,
        )

    def ingest_batch(self, events: Sequence[Event]) -> BatchReport:
        """Ingest one batch in one transaction (see the module docstring)."""
        unique: dict[str, Event] = {}
        for e in events:
            unique.setdefault(e.id, e)
        with self.store.transaction() as tx:
            if self.log_events:
                inserted = tx.insert_events(
                    [StoredEvent(e.id, e.kind, e.account, e.ts, e.record) for e in unique.values()]
                )
            else:
                inserted = set(unique)
            fresh = [e for e in unique.values() if e.id in inserted]
            if not fresh:
                return BatchReport(received=len(events), inserted=0, duplicates=len(events))
            accounts = sorted({e.account for e in fresh})
            work = self._load_work(tx, accounts)
            batch = _Batch(work)
            segments: dict[int, list[Event]] = {}
            for e in fresh:
                segments.setdefault(self.policies.segment(e.ts), []).append(e)
            notices = 0
            for seg in sorted(segments):
                notices += self._apply_segment(tx, batch, segments[seg])
            all_transitions = self._write(tx, batch, list(work))
        self._remember()
        return BatchReport(
            received=len(events),
            inserted=len(fresh),
            duplicates=len(events) - len(fresh),
            transitions=tuple(all_transitions),
            notices=notices,
        )

    def close_open_days(self) -> BatchReport:
        """Judge the accounts whose latest UTC day was left open by the last batch, as of their
        latest event (what the end of an ingestion run does). Judging a day only once all of
        its events are in is what makes the states independent of the batch boundaries."""
        pending = sorted(self._open)
        self._open.clear()
        notices = 0
        transitions: list[TransitionRow] = []
        # In chunks: a file of one day's traffic leaves every account open until the end, and
        # memory must stay bounded by the chunk, not by the number of accounts.
        for i in range(0, len(pending), self._CLOSE_CHUNK):
            done = self._close(pending[i : i + self._CLOSE_CHUNK])
            notices += done.notices
            transitions.extend(done.transitions)
        return BatchReport(
            received=0,
            inserted=0,
            duplicates=0,
            transitions=tuple(transitions),
            notices=notices,
        )

    _CLOSE_CHUNK = 5_000

    def _close(self, pending: list[str]) -> BatchReport:
        with self.store.transaction() as tx:
            work = self._load_work(tx, pending)
            batch = _Batch(work)
            by_segment: dict[int, dict[str, datetime]] = {}
            for account, w in work.items():
                last = w.evidence.last_seen
                if last is None or w.evidence.assessed_day >= last // DAY_SECONDS:
                    continue
                at = datetime.fromtimestamp(last, tz=UTC)
                by_segment.setdefault(self.policies.segment(at), {})[account] = at
            notices = 0
            for seg in sorted(by_segment):
                due = by_segment[seg]
                policy = self.policies.in_force(next(iter(due.values())))
                config = AccountsConfig.from_policy(policy)
                notices += self._assess(tx, batch, due, config, policy)
            all_transitions = self._write(
                tx, batch, [a for due in by_segment.values() for a in due]
            )
        self._remember()
        return BatchReport(
            received=0,
            inserted=0,
            duplicates=0,
            transitions=tuple(all_transitions),
            notices=notices,
        )

    def _write(self, tx: StoreTx, batch: _Batch, changed: list[str]) -> list[TransitionRow]:
        """Save the ``changed`` accounts, their new egress and group links and every transition
        of the batch; the saved rows are cached once the transaction commits
        (:meth:`_remember`). Links are written once here, not as each account-day is judged:
        nothing reads them before :meth:`enforce`, and an account's keys only grow, so the
        links are the same and one statement replaces one per account-day."""
        work = batch.work
        self._link(tx, batch)
        transitions = [t for w in work.values() for t in w.transitions]
        saved = [self._row(a, work[a]) for a in changed]
        if saved:
            tx.save_accounts(saved)
        if transitions:
            tx.add_transitions(transitions)
        self._cache_pending = (saved, work)
        return transitions

    def _load_work(self, tx: StoreTx, accounts: list[str]) -> dict[str, _Work]:
        """The batch's accounts: from the cache of earlier batches when the stored version
        still matches (no JSON to decode), else from the store."""
        self._cache_pending = None
        cache = self._cache
        known = [a for a in accounts if a in cache]
        work: dict[str, _Work] = {}
        if known:
            versions = tx.account_versions(known, lock=True)
            for a in known:
                row = cache[a]
                if versions.get(a) == row.version:
                    work[a] = _Work(row, self._evidence[a])
        missing = [a for a in accounts if a not in work]
        if missing:
            rows = tx.load_accounts(missing, lock=True)
            for a in missing:
                work[a] = _Work(rows.get(a))
        # Uncommitted changes must never be cached: forget these accounts until the commit.
        for a in work:
            cache.pop(a, None)
        return work

    def _remember(self) -> None:
        """After a commit: keep the batch's accounts for the next batch."""
        pending = self._cache_pending
        self._cache_pending = None
        if pending is None:
            return
        saved, work = pending
        excess = len(self._cache) + len(saved) - self.cache_accounts
        if excess > 0:
            # Forget the accounts cached longest ago (dicts keep insertion order), never all at
            # once: memory stays bounded by the cache size whatever the number of accounts an
            # ingestion touches, and the accounts of recent batches stay warm.
            drop = min(len(self._cache), max(excess, self.cache_accounts // 4))
            for account in list(self._cache)[:drop]:
                del self._cache[account]
                self._evidence.pop(account, None)
        for row in saved:
            self._cache[row.account] = row
            self._evidence[row.account] = work[row.account].evidence

    def _apply_segment(self, tx: StoreTx, batch: _Batch, events: list[Event]) -> int:
        policy = self.policies.in_force(events[0].ts)
        config = AccountsConfig.from_policy(policy)
        switch_seconds = config.rule("vpn_switching").window_minutes * 60
        locator = _SegmentLocator(self.locator)
        bins = self.bins
        work = batch.work
        new_egress = batch.new_egress
        notices = 0
        # An account is judged at the end of each UTC day it has events in, once the day is
        # complete: when its next event falls on a later day, when the batch holds later days
        # (input is in time order), or at the end of the run. So a file holding weeks of
        # traffic is judged day by day, as live ingestion would have judged it, and the same
        # events give the same states whatever the batch size.
        touched: set[str] = set()
        last_day = -1
        for e in events:
            account = e.account
            w = work[account]
            ev = w.evidence
            day = e.epoch // DAY_SECONDS
            last_day = max(last_day, day)
            seen = ev.last_seen
            if seen is not None:
                open_day = seen // DAY_SECONDS
                if day > open_day and ev.assessed_day < open_day:
                    notices += self._assess(
                        tx, batch, {account: datetime.fromtimestamp(seen, tz=UTC)}, config, policy
                    )
            kind = e.kind
            if kind is _APPEAL or kind is _EXEMPTION:
                notices += self._operator_event(tx, w, e, policy)
            elif apply_event(
                ev, e, locator=locator, bins=bins, switch_window_seconds=switch_seconds
            ):
                new_egress.add(account)
            if ev.orgs or ev.api_keys:
                new_egress.add(account)
            touched.add(account)
        complete: dict[str, datetime] = {}
        for account in touched:
            ev = work[account].evidence
            seen = ev.last_seen
            if seen is None or ev.assessed_day >= seen // DAY_SECONDS:
                self._open.discard(account)
                continue
            if seen // DAY_SECONDS < last_day:
                complete[account] = datetime.fromtimestamp(seen, tz=UTC)
                self._open.discard(account)
            else:
                self._open.add(account)
        return notices + self._assess(tx, batch, complete, config, policy)

    @staticmethod
    def _link(tx: StoreTx, batch: _Batch) -> None:
        """Link the accounts whose egress or groups may have grown to their keys."""
        work = batch.work
        links = [
            (k, a)
            for a in sorted(batch.new_egress)
            for k in (*work[a].evidence.egress, *work[a].evidence.group_keys())
            if not k.startswith("asn:")
        ]
        if links:
            tx.link_egress(links)
        batch.new_egress.clear()

    def _assess(
        self,
        tx: StoreTx,
        batch: _Batch,
        candidates: Mapping[str, datetime],
        config: AccountsConfig,
        policy: Policy,
    ) -> int:
        """Judge ``candidates`` (account -> time) on their own evidence. Cross-account evidence
        (egress concentration, org and API-key relays) is left to :meth:`enforce`, which sees
        every account at one time: judged here it would depend on which accounts happened to
        be committed first."""
        work = batch.work
        # Only accounts whose verdict may have changed are assessed: an event carried evidence,
        # the state depends on time (flagged, warned), or a new UTC day began since the last
        # assessment (slow patterns: clock, relay; decay of old evidence).
        notices = 0
        for account, at in candidates.items():
            w = work[account]
            ev = w.evidence
            ev.prune(retention_days=config.retention_days)
            day = int(at.timestamp()) // DAY_SECONDS
            if not (
                ev.notable
                or w.state not in (AccountState.ACTIVE, AccountState.REINSTATED)
                or ev.assessed_day != day
            ):
                continue
            ev.assessed_day = day
            ev.notable = False
            if w.state in (AccountState.EXEMPT, AccountState.APPEALED, AccountState.BLOCKED):
                continue
            assessment = assess(
                ev,
                at=at,
                config=config,
                effective_of=_effective_of(policy),
                uniform_effective=uniform_effective(policy),
                explain=False,
            )
            w.points = assessment.points_unsupported
            w.row = _with_assessment(w.row, account, assessment, policy.label)
            move = next_state(
                w.state, assessment.verdict, at=at, effective_at=assessment.effective_at
            )
            if move is not None:
                full = self._explained(ev, at, config, policy, None, None)
                notices += self._move(tx, w, account, move, full, policy, config, at=at)
        return notices

    @staticmethod
    def _explained(
        ev: AccountEvidence,
        at: datetime,
        config: AccountsConfig,
        policy: Policy,
        stats: Mapping[str, EgressStats] | None,
        groups: Mapping[str, GroupStats] | None,
    ) -> Assessment:
        """The assessment with every rule's explanation (for transitions and reports)."""
        return assess(
            ev,
            at=at,
            config=config,
            egress=stats,
            groups=groups,
            effective_of=_effective_of(policy),
        )

    def _move(
        self,
        tx: StoreTx,
        w: _Work,
        account: str,
        move: Move,
        assessment: Assessment | None,
        policy: Policy,
        config: AccountsConfig,
        *,
        at: datetime,
        actor: str = "engine",
        note: str = "",
    ) -> int:
        evidence = w.evidence.summary(at, window_days=config.window_days)
        snapshot: dict[str, Any] = {"evidence": evidence}
        if assessment is not None:
            snapshot["assessment"] = assessment.to_dict()
        rules = assessment.rule_names if assessment is not None else ()
        w.transitions.append(
            TransitionRow(
                account=account,
                at=at,
                from_state=w.state.value,
                to_state=move.to.value,
                rules=rules or (move.rule,),
                policy_version=policy.label,
                evidence=snapshot,
                actor=actor,
                note=note or move.rule,
            )
        )
        w.state = move.to
        w.state_since = at
        kind = None
        if move.to is AccountState.WARNED:
            kind = WARNING_NOTICE
        elif move.to is AccountState.BLOCKED and actor == "engine" and config.notify_blocked:
            kind = BLOCKED_NOTICE
        if kind is None:
            return 0
        eff = effective_for(policy, assessment.regions if assessment else ())
        payload = {
            "account": account,
            "state": move.to.value,
            "policy": policy.label,
            "effective_at": eff.isoformat() if eff else None,
            "regions": list(assessment.regions) if assessment else [],
            "rules": list(rules),
            "categories": list(evidence_categories(rules)),
            "reasons": [s.text for s in assessment.fired] if assessment else [],
            "at": at.isoformat(),
        }
        return _queue_notice(tx, w, account, kind, policy, payload, at=at)

    def _operator_event(self, tx: StoreTx, w: _Work, e: Event, policy: Policy) -> int:
        if e.kind is EventKind.EXEMPTION:
            action = OperatorAction.UNEXEMPT if e.revoke else OperatorAction.EXEMPT
        elif e.outcome == "reinstated":
            action = OperatorAction.REINSTATE
        elif e.outcome == "rejected":
            action = OperatorAction.REJECT_APPEAL
        else:
            action = OperatorAction.APPEAL
        try:
            move = operator_move(w.state, action, account=e.account)
        except StateConflict:
            return 0  # e.g. an appeal for an account already reinstated: stored, no effect
        return self._operator_apply(
            tx, w, e.account, move, action, policy, at=e.ts, operator=e.operator, note=e.note
        )

    def _operator_apply(
        self,
        tx: StoreTx,
        w: _Work,
        account: str,
        move: Move,
        action: OperatorAction,
        policy: Policy,
        *,
        at: datetime,
        operator: str | None,
        note: str | None,
    ) -> int:
        config = AccountsConfig.from_policy(policy)
        if action is OperatorAction.REINSTATE:
            # Start afresh: the evidence behind the block must not block again.
            w.evidence.reset_windowed()
        actor = f"operator:{operator}" if operator else "operator"
        w.transitions.append(
            TransitionRow(
                account=account,
                at=at,
                from_state=w.state.value,
                to_state=move.to.value,
                rules=(move.rule,),
                policy_version=policy.label,
                evidence={"evidence": w.evidence.summary(at, window_days=config.window_days)},
                actor=actor,
                note=note or "",
            )
        )
        w.state = move.to
        w.state_since = at
        w.row = _with_assessment(w.row, account, None)
        if action is OperatorAction.BLOCK and config.notify_blocked:
            own = assess(
                w.evidence,
                at=at,
                config=config,
                effective_of=_effective_of(policy),
                uniform_effective=uniform_effective(policy),
                explain=False,
            )
            block_payload: dict[str, Any] = {
                "account": account,
                "state": move.to.value,
                "policy": policy.label,
                "regions": list(own.regions),
                "rules": list(own.rule_names),
                "categories": list(evidence_categories(own.rule_names)),
                "at": at.isoformat(),
                "note": note or "",
            }
            return _queue_notice(tx, w, account, BLOCKED_NOTICE, policy, block_payload, at=at)
        if action is not OperatorAction.REINSTATE:
            return 0
        payload = {"account": account, "state": move.to.value, "policy": policy.label}
        payload |= {"at": at.isoformat(), "note": note or ""}
        return _queue_notice(tx, w, account, REINSTATED_NOTICE, policy, payload, at=at)

    def _row(self, account: str, w: _Work) -> AccountRow:
        base = w.row
        last = w.evidence.last_seen
        return AccountRow(
            account=account,
            state=w.state.value,
            state_since=w.state_since,
            policy_version=base.policy_version if base else None,
            reasons=base.reasons if base else (),
            score=base.score if base else 0.0,
            points_unsupported=w.points,
            language=w.evidence.language,
            evidence=w.evidence.to_dict(),
            last_seen=datetime.fromtimestamp(last, tz=UTC) if last is not None else None,
            version=(base.version if base else 0) + 1,
        )

    # ----- operator actions ------------------------------------------------------------

    def operate(
        self,
        account: str,
        action: OperatorAction,
        *,
        at: datetime,
        operator: str | None = None,
        note: str | None = None,
    ) -> TransitionRow:
        """Apply an operator action now (exempt, unexempt, appeal, reinstate, reject_appeal);
        raises :class:`StateConflict` when it does not apply to the account's state."""
        policy = self.policies.in_force(at)
        with self.store.transaction() as tx:
            rows = tx.load_accounts([account], lock=True)
            row = rows.get(account)
            w = _Work(row)
            move = operator_move(w.state, action, account=account)
            self._operator_apply(
                tx, w, account, move, action, policy, at=at, operator=operator, note=note
            )
            tx.save_accounts([self._row(account, w)])
            tx.add_transitions(w.transitions)
        return w.transitions[-1]

    # ----- evaluation ------------------------------------------------------------------

    def assess_account(
        self, account: str, *, at: datetime
    ) -> tuple[AccountRow | None, Assessment | None]:
        """The account's row and a fresh assessment as of ``at``, with its egress and group
        evidence (None when unknown)."""
        row = self.store.get_account(account)
        if row is None:
            return None, None
        policy = self.policies.in_force(at)
        config = AccountsConfig.from_policy(policy)
        ev = AccountEvidence.from_dict(row.evidence)
        stats, groups = self.cross_evidence(ev, at=at, config=config)
        return row, assess(
            ev,
            at=at,
            config=config,
            egress=stats,
            groups=groups,
            effective_of=_effective_of(policy),
        )

    def enforce(self, at: datetime, *, dry_run: bool = False, chunk: int = 1_000) -> EnforceReport:
        """Re-evaluate every account as of ``at`` and apply (or, with ``dry_run``, only report)
        the moves: before the effective date accounts that would be blocked are warned; on or
        after it, accounts whose evidence from on or after the date blocks them are blocked.

        This is the one pass that sees every account at the same time, so it is where the
        cross-account evidence is judged: egress concentration, and org and API-key groups
        that relay access (:class:`GroupStats`). Blocked accounts whose evidence has gone are
        listed in :attr:`EnforceReport.review` for an operator, never released silently.
        """
        policy = self.policies.in_force(at)
        config = AccountsConfig.from_policy(policy)
        conc = config.rule("egress_concentration")
        relay = config.rule("relay_egress")
        org = config.rule("org_relay")
        min_accounts = max(
            2, min(conc.min_accounts + 1, relay.min_accounts, max(2, org.min_accounts))
        )
        members = self.store.egress_members(min_accounts=min_accounts)
        account_keys: dict[str, list[str]] = {}
        for key, accts in members.items():
            for a in accts:
                account_keys.setdefault(a, []).append(key)
        effective_of = _effective_of(policy)
        uniform = uniform_effective(policy)
        skip_frozen = {AccountState.EXEMPT.value, AccountState.APPEALED.value}
        evaluated = 0
        changes: list[Change] = []
        pending: list[tuple[Change, Assessment]] = []
        review: list[str] = []
        stash: dict[str, tuple[AccountRow, AccountEvidence, bool]] = {}
        stats: dict[str, EgressStats] = {}
        groups: dict[str, GroupStats] = {}

        def decide(row: AccountRow, ev: AccountEvidence, cross: bool) -> None:
            assessment = assess(
                ev,
                at=at,
                config=config,
                egress=stats if cross else None,
                groups=groups if cross else None,
                effective_of=effective_of,
                uniform_effective=uniform,
                explain=False,
            )
            state = AccountState(row.state)
            if state is AccountState.BLOCKED:
                if assessment.verdict is not Verdict.BLOCK:
                    review.append(row.account)
                return
            move = next_state(
                state, assessment.verdict, at=at, effective_at=assessment.effective_at
            )
            if move is None:
                return
            change = Change(
                account=row.account,
                from_state=state,
                to_state=move.to,
                rules=assessment.rule_names,
                regions=assessment.regions,
                policy_version=policy.label,
                note=move.rule,
            )
            changes.append(change)
            if dry_run:
                return
            # Applied in chunks as they are found: the explained assessments (several KB each)
            # are never all held at once.
            full = self._explained(
                ev, at, config, policy, stats if cross else None, groups if cross else None
            )
            pending.append((change, full))
            if len(pending) >= chunk:
                self._apply_changes(pending, at=at, policy=policy, config=config)
                pending.clear()

        skippable = {AccountState.ACTIVE.value, AccountState.REINSTATED.value}
        for scan in self.store.scan_accounts():
            evaluated += 1
            in_egress = scan.account in account_keys
            if scan.state in skip_frozen and not in_egress:
                continue
            if (
                scan.state in skippable
                and not scan.reasons
                and not in_egress
                and scan.policy_version == policy.label
                and scan.last_seen is not None
                and scan.last_seen <= at
            ):
                # Nothing fired when its last day was judged, under this same policy, and
                # without new events windowed evidence only fades: nothing can fire now.
                continue
            row = _scan_row(scan)
            ev = AccountEvidence.from_dict(row.evidence)
            if not in_egress:
                decide(row, ev, False)
                continue
            points = assess(
                ev,
                at=at,
                config=config,
                effective_of=effective_of,
                uniform_effective=uniform,
                explain=False,
            ).points_unsupported
            stash[row.account] = (row, ev, points)
        # Cross-account evidence, from every member as of the same time.
        cross = _cross_stats(
            members,
            {a: v[1] for a, v in stash.items()},
            {a: v[2] for a, v in stash.items()},
            at=at,
            config=config,
        )
        stats.update(cross[0])
        groups.update(cross[1])
        for account in sorted(stash):
            row, ev, _points = stash[account]
            if row.state in skip_frozen:
                continue
            decide(row, ev, True)

        if pending:
            self._apply_changes(pending, at=at, policy=policy, config=config)
        by_reason: Counter[str] = Counter()
        by_region: Counter[str] = Counter()
        by_state: Counter[str] = Counter()
        for change in changes:
            by_reason.update(change.rules or (change.note,))
            by_region.update(change.regions or ("(none)",))
            by_state[change.to_state.value] += 1
        return EnforceReport(
            at=at,
            dry_run=dry_run,
            evaluated=evaluated,
            changes=tuple(changes),
            by_reason=dict(by_reason.most_common()),
            by_region=dict(by_region.most_common()),
            by_state=dict(by_state.most_common()),
            review=tuple(sorted(review)),
        )

    def assess_rows(self, rows: Sequence[AccountRow], *, at: datetime) -> dict[str, Assessment]:
        """Fresh assessments of ``rows`` as of ``at``, cross-account evidence included (what
        ``accounts list`` shows beside the state each account was frozen in)."""
        policy = self.policies.in_force(at)
        config = AccountsConfig.from_policy(policy)
        evs = {r.account: AccountEvidence.from_dict(r.evidence) for r in rows}
        stats, groups = self._cross(list(evs.values()), at=at, config=config)
        effective_of = _effective_of(policy)
        return {
            a: assess(
                ev,
                at=at,
                config=config,
                egress=stats,
                groups=groups,
                effective_of=effective_of,
                explain=False,
            )
            for a, ev in evs.items()
        }

    def cross_evidence(
        self, ev: AccountEvidence, *, at: datetime, config: AccountsConfig
    ) -> tuple[dict[str, EgressStats], dict[str, GroupStats]]:
        """The egress and group evidence of one account as of ``at`` (for explanations): the
        same figures :meth:`enforce` computes, from the committed members."""
        return self._cross([ev], at=at, config=config)

    def _cross(
        self, subjects: Sequence[AccountEvidence], *, at: datetime, config: AccountsConfig
    ) -> tuple[dict[str, EgressStats], dict[str, GroupStats]]:
        keys = sorted(
            {
                k
                for ev in subjects
                for k in (*ev.egress, *ev.group_keys())
                if not k.startswith("asn:")
            }
        )
        members = self.store.egress_accounts(keys) if keys else {}
        everyone = sorted({a for accts in members.values() for a in accts})
        rows: dict[str, AccountRow] = {}
        if everyone:
            with self.store.transaction() as tx:
                rows = tx.load_accounts(everyone, lock=False)
        evs = {a: AccountEvidence.from_dict(r.evidence) for a, r in rows.items()}
        policy = self.policies.in_force(at)
        effective_of = _effective_of(policy)
        uniform = uniform_effective(policy)
        points = {
            a: assess(
                e,
                at=at,
                config=config,
                effective_of=effective_of,
                uniform_effective=uniform,
                explain=False,
            ).points_unsupported
            for a, e in evs.items()
        }
        return _cross_stats(members, evs, points, at=at, config=config)

    def _apply_changes(
        self,
        changes: Sequence[tuple[Change, Assessment]],
        *,
        at: datetime,
        policy: Policy,
        config: AccountsConfig,
    ) -> None:
        with self.store.transaction() as tx:
            rows = tx.load_accounts([c.account for c, _ in changes], lock=True)
            work: dict[str, _Work] = {}
            for change, assessment in changes:
                row = rows.get(change.account)
                if row is None or row.state != change.from_state.value:
                    continue  # changed since it was read: the next run decides again
                w = _Work(row)
                w.row = _with_assessment(row, change.account, assessment, policy.label)
                self._move(
                    tx,
                    w,
                    change.account,
                    Move(to=change.to_state, rule=change.note),
                    assessment,
                    policy,
                    config,
                    at=at,
                )
                work[change.account] = w
            if work:
                tx.save_accounts([self._row(a, w) for a, w in work.items()])
                tx.add_transitions([t for w in work.values() for t in w.transitions])


def uniform_effective(policy: Policy) -> datetime | None:
    """The enforcement date shared by every deny of ``policy`` (and its own date), or None when
    they differ or one denies immediately."""
    dates = {r.effective_at for r in policy.rules if r.action is Action.DENY}
    if policy.mode is Mode.ALLOW_LIST or not dates:
        dates.add(policy.effective_at)
    if len(dates) != 1:
        return None
    return next(iter(dates))


def _queue_notice(
    tx: StoreTx,
    w: _Work,
    account: str,
    kind: str,
    policy: Policy,
    payload: dict[str, Any],
    *,
    at: datetime,
) -> int:
    """Queue a notice in the account's language, to the signup's address when there is one;
    1 when queued (at most one of each kind per account and policy version), else 0."""
    email = (w.evidence.signup or {}).get("email")
    if email:
        payload["email"] = email
    return int(tx.enqueue_notice(account, kind, policy.label, w.evidence.language, payload, at=at))


def _cross_stats(
    members: Mapping[str, list[str]],
    evidence: Mapping[str, AccountEvidence],
    points: Mapping[str, bool],
    *,
    at: datetime,
    config: AccountsConfig,
) -> tuple[dict[str, EgressStats], dict[str, GroupStats]]:
    """Egress stats and org/API-key group stats from the members behind each key, as of ``at``
    (the same figures for ``enforce`` and for one account's explanation)."""
    stats: dict[str, EgressStats] = {}
    groups: dict[str, GroupStats] = {}
    min_members = max(2, config.rule("org_relay").min_accounts)
    for key, accts in members.items():
        if key.startswith(("org:", "key:")):
            evs = [evidence[a] for a in accts if a in evidence]
            if len(evs) >= min_members:
                groups[key] = group_stats(key, evs, at=at, config=config)
        else:
            stats[key] = EgressStats(
                key=key, accounts=len(accts), unsupported=sum(points.get(a, False) for a in accts)
            )
    return stats, groups


def _effective_of(policy: Policy) -> Callable[[tuple[str, ...]], datetime | None]:
    def effective(regions: tuple[str, ...]) -> datetime | None:
        return effective_for(policy, regions)

    return effective


#: Rule -> the evidence category a notice names.
_CATEGORIES: Mapping[str, str] = {
    "payment_unsupported": "payment",
    "direct_unsupported": "direct_access",
    "continued_unsupported": "continued_use_through_anonymizers",
    "vpn_switching": "continued_use_through_anonymizers",
    "forwarded_unsupported": "relay",
    "org_relay": "relay",
    "egress_concentration": "relay",
    "signup_unsupported": "signup",
}


def evidence_categories(rules: Iterable[str]) -> tuple[str, ...]:
    """The evidence categories (payment, direct access, continued use through anonymizers,
    relay, signup) of the fired rules, in that order of weight."""
    order = (
        "payment",
        "direct_access",
        "continued_use_through_anonymizers",
        "relay",
        "signup",
    )
    found = {_CATEGORIES[r] for r in rules if r in _CATEGORIES}
    return tuple(c for c in order if c in found)


class _SegmentLocator:
    """The locator for the events of one policy segment: each address and region is looked
    up once per batch. Within a segment a location cannot change (the locator memoises per
    address and segment too), but finding the segment is a bisect per call, and real traffic
    repeats its addresses."""

    __slots__ = ("_inner", "_located", "_regions")

    def __init__(self, inner: Locator) -> None:
        self._inner = inner
        self._located: dict[str, Located] = {}
        self._regions: dict[str, bool] = {}

    def locate(self, ip: str, at: datetime) -> Located:
        found = self._located.get(ip)
        if found is None:
            found = self._located[ip] = self._inner.locate(ip, at)
        return found

    def is_unsupported(self, region: str, at: datetime) -> bool:
        found = self._regions.get(region)
        if found is None:
            found = self._regions[region] = self._inner.is_unsupported(region, at)
        return found


def _with_assessment(
    row: AccountRow | None,
    account: str,
    assessment: Assessment | None,
    policy_version: str | None = None,
) -> AccountRow:
    base = row or AccountRow(
        account=account,
        state=AccountState.ACTIVE.value,
        state_since=None,
        policy_version=None,
        reasons=(),
        score=0.0,
        points_unsupported=False,
        language=None,
        evidence={},
        last_seen=None,
    )
    if assessment is None:
        return base
    # Built field by field: dataclasses.replace() introspects the fields on every call, and
    # this runs for every account assessed on ingestion.
    return AccountRow(
        account=base.account,
        state=base.state,
        state_since=base.state_since,
        policy_version=policy_version or base.policy_version,
        reasons=assessment.rule_names,
        score=round(assessment.score, 4),
        points_unsupported=base.points_unsupported,
        language=base.language,
        evidence=base.evidence,
        last_seen=base.last_seen,
        version=base.version,
    )


def _scan_row(scan: ScanRow) -> AccountRow:
    return AccountRow(
        account=scan.account,
        state=scan.state,
        state_since=None,
        policy_version=scan.policy_version,
        reasons=scan.reasons,
        score=0.0,
        points_unsupported=False,
        language=None,
        evidence=_loads_json(scan.evidence_json),
        last_seen=scan.last_seen,
    )


def _loads_json(text: str) -> Any:
    """Stored evidence decoded by orjson (about twice as fast as :mod:`json`, which a run over
    a million accounts notices); the standard decoder for anything orjson refuses."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
