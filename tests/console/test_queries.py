"""The console's read queries and event index on both store backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from tests.console.conftest import _events

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, read_json_payload
from geogate.accounts.evidence import DeciderLocator
from geogate.console import queries
from geogate.console.index import EventIndex
from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import builtin_policy_path, load_policy
from geogate.store.sql import SqlStore


@pytest.fixture
def seeded(store_url: str) -> Iterator[SqlStore]:
    store = SqlStore.open(store_url)
    policies = PolicySet.of([load_policy(builtin_policy_path("unsupported-regions"))])
    enforcer = Enforcer(
        store,
        policies=policies,
        locator=DeciderLocator(Decider(policies, Snapshot.embedded())),
    )
    text = "".join(json.dumps(e) + "\n" for e in _events())
    events = [e for e in read_json_payload(text, source="seed") if isinstance(e, Event)]
    enforcer.ingest(events)
    try:
        yield store
    finally:
        store.close()


def test_lists_counts_and_windows(seeded: SqlStore) -> None:
    store = seeded
    assert queries.accounts_by_state(store) == store.count_accounts()
    queue = queries.review_queue(store)
    assert [s.account for s in queue] == ["acct-flagged"]
    assert queries.count_flagged(store) == 1
    assert [s.account for s in queries.accounts_with_prefix(store, "acct-c")] == ["acct-cn"]
    assert queries.accounts_with_prefix(store, "zzz") == []
    (one,) = queries.accounts_by_id(store, ["acct-de", "nobody"], with_last_seen=True)
    assert one.last_seen is not None
    assert all(not k.startswith(("org:", "key:")) for k, _ in queries.top_egress(store))
    rows, truncated = queries.request_window(
        store,
        start=datetime(2024, 7, 10, tzinfo=UTC),
        end=datetime(2024, 7, 11, tzinfo=UTC),
        limit=10,
    )
    assert len(rows) == 10
    assert truncated
    last = queries.last_event_time(store)
    assert last is not None
    assert last.tzinfo is not None
    audit = queries.recent_audit(store, account="acct-cn")
    assert audit
    assert audit[0].detail["to"] == "blocked"


def test_the_event_index_finds_accounts_by_org_and_address(seeded: SqlStore) -> None:
    index = EventIndex(seeded)
    index.catch_up()
    assert index.ready
    assert index.accounts_of_org("org-resell") == ["acct-cn", "acct-flagged"]
    assert index.orgs_like("org-") == ["org-acme", "org-resell"]
    assert index.accounts_at("59.224.0.1") == ["acct-cn", "acct-flagged"]
    assert index.org("acct-de") == "org-acme"
    seqs = index.recent_seqs("acct-cn", 2)
    assert len(seqs) == 2
    records = queries.events_by_seq(seeded, seqs)
    assert [kind for kind, _, _ in records] == ["request", "request"]
    before = index.events
    index.catch_up()  # nothing new: nothing read twice
    assert index.events == before
