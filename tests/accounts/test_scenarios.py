"""The scenario suite: generated traffic for typical and evasive users, on SQLite and
PostgreSQL, with the resulting states and reasons asserted.

Traffic is in :mod:`traffic` (read it with this file); the enforcement date is 2024-07-09.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, parse_record
from geogate.store.sql import SqlStore

from . import traffic
from .conftest import make_enforcer
from .traffic import D


def _events(records: list[dict[str, object]]) -> list[Event]:
    return [parse_record(r, text=json.dumps(r, sort_keys=True)) for r in records]


@pytest.fixture
def before_and_after() -> tuple[list[Event], list[Event]]:
    events = _events(traffic.all_events())
    return [e for e in events if e.ts < D], [e for e in events if e.ts >= D]


def _state(store: SqlStore, account: str) -> str:
    row = store.get_account(account)
    assert row is not None, account
    return row.state


def _moves(store: SqlStore, account: str) -> list[tuple[str, str]]:
    return [(t.from_state, t.to_state) for t in store.transitions(account)]


def _rules_of(store: SqlStore, account: str, to_state: str) -> set[str]:
    return {r for t in store.transitions(account) if t.to_state == to_state for r in t.rules}


def test_scenarios_before_the_date_only_warn(
    enforcer: Enforcer, store: SqlStore, before_and_after: tuple[list[Event], list[Event]]
) -> None:
    before, _ = before_and_after
    enforcer.ingest(before, batch_size=3_000)
    # Cross-account evidence (egress, org and API-key groups) is judged by the scheduled run,
    # which sees every account at one time.
    enforcer.enforce(D - timedelta(minutes=1))
    # Nothing is blocked before the enforcement date: would-be blocks are warnings.
    assert store.count_accounts().get("blocked", 0) == 0
    assert _state(store, "acct-home") == "active"
    assert _state(store, "acct-private-relay") == "active"
    assert _state(store, "acct-traveller") == "warned"
    assert "direct_unsupported" in _rules_of(store, "acct-traveller", "warned")
    assert _state(store, "acct-vpn") == "warned"
    assert "vpn_switching" in _rules_of(store, "acct-vpn", "warned")
    assert _state(store, "acct-card") == "warned"
    assert _rules_of(store, "acct-card", "warned") == {"payment_unsupported"}
    assert _state(store, "acct-reseller") == "warned"
    assert "forwarded_unsupported" in _rules_of(store, "acct-reseller", "warned")
    reseller = store.get_account("acct-reseller")
    assert reseller is not None
    assert {"forwarded_unsupported", "relay_client", "egress_concentration"} <= set(
        reseller.reasons
    )
    for c in range(8):
        assert _state(store, f"acct-resold-{c}") == "warned"
        # Signed up from China with a Chinese phone, then only ever seen through the relay.
        assert "continued_unsupported" in _rules_of(store, f"acct-resold-{c}", "warned")
    # Every warning queued exactly one notice, in the account's language.
    notices = store.notices("acct-vpn")
    assert [(n.kind, n.language) for n in notices] == [("warning", "zh-CN")]
    assert notices[0].payload["effective_at"] == D.isoformat()
    assert store.notices("acct-traveller")[0].language == "de-DE"
    # The signup's email address goes with the notice, for delivery.
    assert store.notices("acct-reseller")[0].payload["email"] == "ops@relay.example"
    assert store.notices("acct-home") == []


def test_evidence_from_before_the_date_never_blocks(
    enforcer: Enforcer, store: SqlStore, before_and_after: tuple[list[Event], list[Event]]
) -> None:
    """At the date, with no traffic after it yet, nobody is blocked: every warned account is
    still only warned, whatever it did before."""
    before, _ = before_and_after
    enforcer.ingest(before, batch_size=5_000)
    enforcer.enforce(D - timedelta(minutes=1))
    warned = {r.account for r in store.iter_accounts(state="warned")}
    assert {"acct-vpn", "acct-card", "acct-traveller", "acct-reseller"} <= warned
    at_date = enforcer.enforce(D, dry_run=True)
    assert [c for c in at_date.changes if c.to_state.value == "blocked"] == []


def test_enforce_after_the_date_blocks_on_evidence_from_after_it(
    enforcer: Enforcer, store: SqlStore, before_and_after: tuple[list[Event], list[Event]]
) -> None:
    before, after = before_and_after
    enforcer.ingest(before, batch_size=5_000)
    enforcer.enforce(D - timedelta(minutes=1))
    first_days = [e for e in after if e.ts < D + timedelta(days=3)]  # a card payment on D+2
    enforcer.ingest(first_days, batch_size=5_000)
    at = D + timedelta(days=3)
    # Ingestion already blocked the accounts whose own evidence after the date blocks them.
    own = {r.account for r in store.iter_accounts(state="blocked")}
    assert {"acct-vpn", "acct-card"} <= own
    dry = enforcer.enforce(at, dry_run=True)
    blocked = own | {c.account for c in dry.changes if c.to_state.value == "blocked"}
    assert blocked == {"acct-vpn", "acct-card", "acct-reseller"} | {
        f"acct-resold-{c}" for c in range(8)
    }
    # The traveller came home two weeks before the date: warned, not blocked.
    assert "acct-traveller" not in blocked
    # Corporate NAT users may be flagged (relay egress plus language), never blocked.
    assert set(dry.by_state) <= {"blocked", "flagged"}
    assert store.count_accounts().get("blocked", 0) == len(own)  # a dry run changes nothing
    done = enforcer.enforce(at, dry_run=False)
    assert {c.account for c in done.changes if c.to_state.value == "blocked"} == blocked - own
    assert _state(store, "acct-card") == "blocked"
    assert _moves(store, "acct-card") == [("active", "warned"), ("warned", "blocked")]
    assert enforcer.enforce(at, dry_run=True).changes == ()  # idempotent
    assert store.verify_audit().ok


def test_scenarios_after_the_date(
    enforcer: Enforcer, store: SqlStore, before_and_after: tuple[list[Event], list[Event]]
) -> None:
    before, after = before_and_after
    enforcer.ingest(before + after, batch_size=4_000)
    enforcer.enforce(traffic.END)
    expected = {
        "acct-home": "active",
        "acct-private-relay": "active",
        "acct-traveller": "warned",
        "acct-vpn": "blocked",
        "acct-card": "blocked",
        "acct-reseller": "blocked",
    }
    for account, state in expected.items():
        assert _state(store, account) == state, account
    for c in range(8):
        assert _state(store, f"acct-resold-{c}") == "blocked"
        assert "continued_unsupported" in _rules_of(store, f"acct-resold-{c}", "blocked")
    assert "egress_concentration" in _rules_of(store, "acct-reseller", "blocked")
    # The corporate users share one cloud egress with their colleagues: never warned or
    # blocked. The one with a Chinese language preference is at most flagged for review.
    for e in range(12):
        assert _state(store, f"acct-corp-{e}") in ("active", "flagged"), e
    assert _rules_of(store, "acct-corp-0", "flagged") <= {
        "language",
        "relay_egress",
        "activity_clock",
    }
    # Blocks after the date follow a warning, and every transition records its policy.
    assert _moves(store, "acct-vpn") == [("active", "warned"), ("warned", "blocked")]
    assert {t.policy_version for t in store.transitions("acct-vpn")} == {
        "unsupported-regions@2024-07-09"
    }
    snapshot = store.transitions("acct-card")[-1].evidence
    assert snapshot["assessment"]["verdict"] == "block"
    assert snapshot["evidence"]["payments"]["CN:card_country"]["unsupported"] is True
    assert [n.kind for n in store.notices("acct-card")] == ["warning", "blocked"]
    blocked_notice = store.notices("acct-card")[-1]
    assert blocked_notice.payload["categories"] == ["payment"]
    assert store.verify_audit().ok


def test_traveller_stays_warned_after_returning(
    enforcer: Enforcer, store: SqlStore, before_and_after: tuple[list[Event], list[Event]]
) -> None:
    before, after = before_and_after
    enforcer.ingest(before, batch_size=10_000)
    enforcer.enforce(D, dry_run=False)
    enforcer.ingest(after, batch_size=10_000)
    enforcer.enforce(D + timedelta(days=10), dry_run=False)
    assert _state(store, "acct-traveller") == "warned"
    moves = _moves(store, "acct-traveller")
    assert moves[-1][1] == "warned"
    assert all(to != "blocked" for _, to in moves)


def test_batch_size_does_not_change_the_outcome(
    sqlite_store: SqlStore, policies: object, snapshot: object, tmp_path: object
) -> None:
    """One transaction for the whole file judges the traffic day by day, like small batches."""
    events = _events(traffic.all_events())
    make_enforcer(sqlite_store, policies, snapshot).ingest(events, batch_size=100_000)  # type: ignore[arg-type]
    states = {r.account: r.state for r in sqlite_store.iter_accounts()}
    assert states["acct-traveller"] == "warned"
    assert states["acct-vpn"] == "blocked"
    assert states["acct-resold-3"] == "blocked"
    assert states["acct-home"] == "active"
