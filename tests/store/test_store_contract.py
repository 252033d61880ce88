"""The Store contract: every test runs on SQLite and on PostgreSQL (see ``store_url``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from geogate.errors import ConfigError, StoreError, StoreUnavailable
from geogate.store import migrate
from geogate.store.protocol import AccountRow, NoticeState, StoredEvent, TransitionRow
from geogate.store.sql import SqlStore, normalise_url

T0 = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def _event(i: int, account: str = "a1") -> StoredEvent:
    return StoredEvent(f"id-{i}", "request", account, T0 + timedelta(seconds=i), '{"x": 1}')


def _row(account: str, state: str = "active", **kw: object) -> AccountRow:
    base: dict[str, object] = {
        "account": account,
        "state": state,
        "state_since": T0,
        "policy_version": "p@1",
        "reasons": ("direct_unsupported",),
        "score": 1.5,
        "points_unsupported": True,
        "language": "zh-CN",
        "evidence": {"n": 3, "d": [[19900, 1, 2]]},
        "last_seen": T0 + timedelta(hours=1),
        "version": 1,
    }
    base.update(kw)
    return AccountRow(**base)  # type: ignore[arg-type]


def _transition(account: str, to: str = "warned", at: datetime = T0) -> TransitionRow:
    return TransitionRow(
        account=account,
        at=at,
        from_state="active",
        to_state=to,
        rules=("payment_unsupported",),
        policy_version="p@1",
        evidence={"assessment": {"score": 1.0}},
    )


def test_events_are_stored_once_per_id(store: SqlStore) -> None:
    with store.transaction() as tx:
        assert tx.insert_events([_event(i) for i in range(5)]) == {f"id-{i}" for i in range(5)}
    with store.transaction() as tx:
        # Re-sending known events inserts only the new one.
        assert tx.insert_events([_event(i) for i in range(6)]) == {"id-5"}
    assert store.count_events() == 6
    stored = list(store.iter_events(batch_size=4))
    assert [e.id for e in stored] == [f"id-{i}" for i in range(6)]
    assert stored[2].ts == T0 + timedelta(seconds=2)
    assert stored[2].ts.tzinfo is not None


def test_a_failed_transaction_writes_nothing(store: SqlStore) -> None:
    def crash_mid_batch() -> None:
        with store.transaction() as tx:
            tx.insert_events([_event(1)])
            tx.save_accounts([_row("a1")])
            raise RuntimeError("crash in the middle of a batch")

    with pytest.raises(RuntimeError):
        crash_mid_batch()
    assert store.count_events() == 0
    assert store.get_account("a1") is None


def test_account_rows_round_trip_and_upsert(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.save_accounts([_row("a1"), _row("a2", state="blocked")])
    got = store.get_account("a1")
    assert got == _row("a1")
    with store.transaction() as tx:
        tx.save_accounts([_row("a1", state="warned", version=2, evidence={"n": 9})])
        assert tx.load_accounts(["a1", "nobody"], lock=True)["a1"].state == "warned"
    assert store.get_account("a1") == _row("a1", state="warned", version=2, evidence={"n": 9})
    assert store.count_accounts() == {"warned": 1, "blocked": 1}


def test_account_status_port(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.save_accounts([_row("a1"), _row("a2", state="blocked")])
    assert store.is_blocked("a2")
    assert not store.is_blocked("a1")
    assert not store.is_blocked("never-seen")
    assert store.account_status("a1") == "active"
    assert store.account_status("never-seen") is None
    assert store.blocked_accounts() == frozenset({"a2"})


def test_iter_accounts_pages_in_key_order_and_filters(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.save_accounts(
            [_row(f"a{i:02d}", state="blocked" if i % 3 else "active") for i in range(25)]
        )
    names = [r.account for r in store.iter_accounts(batch_size=7)]
    assert names == sorted(names)
    assert len(names) == 25
    active = [r.account for r in store.iter_accounts(state="active", batch_size=2)]
    assert active == [f"a{i:02d}" for i in range(0, 25, 3)]


def test_egress_links_and_counts(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.save_accounts([_row("a1"), _row("a2", points_unsupported=False)])
        tx.link_egress([("ip:1.2.3.4", "a1"), ("ip:1.2.3.4", "a2"), ("ip:1.2.3.4", "a3")])
        tx.link_egress([("ip:1.2.3.4", "a1"), ("net:1.2.3.0/24", "a1")])  # known pair ignored
        stats = tx.egress_stats(["ip:1.2.3.4", "net:1.2.3.0/24", "ip:9.9.9.9"])
    assert stats["ip:1.2.3.4"].accounts == 3  # a3 has no row yet: counted, not unsupported
    assert stats["ip:1.2.3.4"].unsupported == 1
    assert stats["net:1.2.3.0/24"].accounts == 1
    assert "ip:9.9.9.9" not in stats
    members = store.egress_members(min_accounts=2)
    assert sorted(members) == ["ip:1.2.3.4"]
    assert sorted(members["ip:1.2.3.4"]) == ["a1", "a2", "a3"]


def test_transitions_are_kept_in_order_with_their_evidence(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_transitions(
            [_transition("a1"), _transition("a1", to="blocked", at=T0 + timedelta(days=9))]
        )
    rows = store.transitions("a1")
    assert [(t.from_state, t.to_state) for t in rows] == [
        ("active", "warned"),
        ("active", "blocked"),
    ]
    assert rows[0].rules == ("payment_unsupported",)
    assert rows[0].policy_version == "p@1"
    assert rows[0].evidence == {"assessment": {"score": 1.0}}
    assert [e.action for e in store.audit_entries(account="a1")] == ["transition", "transition"]


def test_notice_outbox_is_idempotent_and_tracks_delivery(store: SqlStore) -> None:
    assert store.enqueue_notice("a1", "warning", "p@1", "zh-CN", {"regions": ["CN"]})
    assert not store.enqueue_notice("a1", "warning", "p@1", "en", {})
    assert store.enqueue_notice("a1", "blocked", "p@1", None, {})
    due = store.pending_notices(datetime.now(UTC) + timedelta(seconds=5), 10)
    assert [n.kind for n in due] == ["warning", "blocked"]
    first = due[0]
    assert first.language == "zh-CN"
    assert dict(first.payload) == {"regions": ["CN"]}
    later = datetime.now(UTC) + timedelta(hours=1)
    store.mark_notice_failed(first.id, datetime.now(UTC), "421 try later", later)
    assert [
        n.kind for n in store.pending_notices(datetime.now(UTC) + timedelta(seconds=5), 10)
    ] == ["blocked"]
    retry = store.get_notice(first.id)
    assert retry is not None
    assert retry.attempts == 1
    assert retry.last_error == "421 try later"
    store.mark_notice_sent(first.id, later)
    sent = store.get_notice(first.id)
    assert sent is not None
    assert sent.state is NoticeState.SENT
    assert sent.attempts == 2
    store.mark_notice_failed(due[1].id, later, "550 no such user", None)
    gave_up = store.get_notice(due[1].id)
    assert gave_up is not None
    assert gave_up.state is NoticeState.FAILED


def test_audit_chain_verifies_and_the_log_is_append_only(store: SqlStore) -> None:
    with store.transaction() as tx:
        for i in range(3):
            tx.append_audit(
                at=T0 + timedelta(minutes=i), account="a1", action="test", detail={"i": i}
            )
    report = store.verify_audit()
    assert report.ok
    assert report.records == 3
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.conn.execute(text("UPDATE audit SET action = 'x' WHERE seq = 2"))
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.conn.execute(text("DELETE FROM audit WHERE seq = 3"))
    assert store.verify_audit().ok


def _drop_append_only_guard(store: SqlStore) -> None:
    with store.transaction() as tx:
        if store.is_postgres:
            tx.conn.execute(text("DROP TRIGGER audit_append_only ON audit"))
        else:
            tx.conn.execute(text("DROP TRIGGER audit_no_update"))
            tx.conn.execute(text("DROP TRIGGER audit_no_delete"))


@pytest.mark.parametrize(
    ("tamper", "broken_at"),
    [
        ("UPDATE audit SET body = replace(body, '\"i\":1', '\"i\":7') WHERE seq = 2", 2),
        ("UPDATE audit SET account = 'someone-else' WHERE seq = 2", 2),
        ("DELETE FROM audit WHERE seq = 2", 2),
        ("DELETE FROM audit WHERE seq = 4", 4),
    ],
)
def test_verify_audit_finds_tampering(store: SqlStore, tamper: str, broken_at: int) -> None:
    """Even someone who can drop the append-only triggers cannot edit or remove records
    without breaking the chain (or the head, for the last record)."""
    with store.transaction() as tx:
        for i in range(4):
            tx.append_audit(at=T0, account="a1", action="test", detail={"i": i})
    _drop_append_only_guard(store)
    with store.transaction() as tx:
        tx.conn.exec_driver_sql(tamper)
    report = store.verify_audit()
    assert not report.ok
    assert report.broken_at == broken_at
    assert report.problem


def test_migrations_go_down_and_up_again(store: SqlStore) -> None:
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    migrate.downgrade(store.engine, "base")
    assert migrate.current_revision(store.engine) is None
    migrate.upgrade(store.engine)
    assert store.count_events() == 0


def test_opening_twice_is_idempotent(store_url: str) -> None:
    SqlStore.open(store_url).close()
    again = SqlStore.open(store_url)
    assert again.count_accounts() == {}
    again.close()


def test_database_urls() -> None:
    assert normalise_url("accounts.db") == "sqlite:///accounts.db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ConfigError):
        normalise_url("mysql://u@h/db")


def test_unreachable_postgres_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        SqlStore.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_concurrent_writers_on_a_fresh_store_keep_one_audit_chain(store_url: str) -> None:
    """Two writers appending at once, before any audit record exists, must neither collide on
    record 1 nor fork the chain (two `geogate ingest` runs, or ingest beside the service)."""
    import threading  # noqa: PLC0415

    first = SqlStore.open(store_url)
    second = SqlStore.open(store_url)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(s: SqlStore, who: str) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(20):
                with s.transaction() as tx:
                    tx.append_audit(at=T0, account=who, action="test", detail={"i": i})
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(s, n)) for s, n in ((first, "a"), (second, "b"))
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        report = first.verify_audit()
        assert report.ok, report
        assert len(first.audit_entries()) == 40
    finally:
        first.close()
        second.close()
