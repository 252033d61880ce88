"""The outbox contract: every implementation (in memory, SQLite store) keeps these promises."""

from __future__ import annotations

from datetime import timedelta

from geogate.store.protocol import NoticeState

from .receivers import T0, InspectableOutbox, ManualClock

PAYLOAD = {"email": "dev@example.com", "region": "CN", "effective_at": "2026-03-01T00:00:00Z"}


def test_enqueue_is_idempotent_per_account_kind_and_policy_version(
    outbox: InspectableOutbox,
) -> None:
    assert outbox.enqueue_notice("acct_1", "warning", "p@1", "zh-CN", PAYLOAD)
    assert not outbox.enqueue_notice("acct_1", "warning", "p@1", "en", {"other": True})
    # A different kind, policy version or account is a different notice.
    assert outbox.enqueue_notice("acct_1", "blocked", "p@1", "zh-CN", PAYLOAD)
    assert outbox.enqueue_notice("acct_1", "warning", "p@2", "zh-CN", PAYLOAD)
    assert outbox.enqueue_notice("acct_2", "warning", "p@1", None, PAYLOAD)
    rows = outbox.notices("acct_1")
    assert [(r.kind, r.policy_version) for r in rows] == [
        ("warning", "p@1"),
        ("blocked", "p@1"),
        ("warning", "p@2"),
    ]
    # The duplicate did not overwrite the first notice.
    assert rows[0].language == "zh-CN"
    assert dict(rows[0].payload) == PAYLOAD


def test_new_notice_is_pending_and_due_now(outbox: InspectableOutbox) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", None, PAYLOAD)
    [row] = outbox.pending_notices(T0, 10)
    assert row.state == NoticeState.PENDING
    assert row.attempts == 0
    assert row.last_error is None
    assert row.language is None
    assert row.next_attempt_at == T0


def test_pending_respects_due_time_limit_and_order(
    outbox: InspectableOutbox, clock: ManualClock
) -> None:
    for n in range(5):
        outbox.enqueue_notice(f"acct_{n}", "warning", "p@1", "en", PAYLOAD)
        clock.advance(seconds=1)
    # The first notice fails and is due again later than the others.
    first = outbox.notices("acct_0")[0]
    outbox.mark_notice_failed(first.id, T0, "boom", T0 + timedelta(minutes=10))

    due_now = outbox.pending_notices(clock.now(), 10)
    assert [r.account for r in due_now] == ["acct_1", "acct_2", "acct_3", "acct_4"]
    assert [r.account for r in outbox.pending_notices(clock.now(), 2)] == ["acct_1", "acct_2"]
    # Nothing is due before it was queued.
    assert outbox.pending_notices(T0 - timedelta(seconds=1), 10) == []
    later = outbox.pending_notices(T0 + timedelta(minutes=10), 10)
    assert [r.account for r in later][-1] == "acct_0"


def test_failed_attempt_records_error_and_schedules_the_next(outbox: InspectableOutbox) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", "en", PAYLOAD)
    [row] = outbox.pending_notices(T0, 10)
    retry_at = T0 + timedelta(minutes=1)
    outbox.mark_notice_failed(row.id, T0, "smtp: connection refused", retry_at)

    after = outbox.get_notice(row.id)
    assert after is not None
    assert after.state == NoticeState.PENDING
    assert after.attempts == 1
    assert after.last_error == "smtp: connection refused"
    assert after.next_attempt_at == retry_at
    assert outbox.pending_notices(retry_at - timedelta(seconds=1), 10) == []
    assert [r.id for r in outbox.pending_notices(retry_at, 10)] == [row.id]


def test_giving_up_leaves_the_notice_failed_and_never_due(outbox: InspectableOutbox) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", "en", PAYLOAD)
    [row] = outbox.pending_notices(T0, 10)
    outbox.mark_notice_failed(row.id, T0, "recipient refused", None)

    after = outbox.get_notice(row.id)
    assert after is not None
    assert after.state == NoticeState.FAILED
    assert after.attempts == 1
    assert after.last_error == "recipient refused"
    assert outbox.pending_notices(T0 + timedelta(days=365), 10) == []


def test_sent_notice_is_never_due_again(outbox: InspectableOutbox) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", "en", PAYLOAD)
    [row] = outbox.pending_notices(T0, 10)
    outbox.mark_notice_failed(row.id, T0, "timeout", T0 + timedelta(minutes=1))
    outbox.mark_notice_sent(row.id, T0 + timedelta(minutes=1))

    after = outbox.get_notice(row.id)
    assert after is not None
    assert after.state == NoticeState.SENT
    assert after.attempts == 2
    assert after.sent_at == T0 + timedelta(minutes=1)
    assert outbox.pending_notices(T0 + timedelta(days=365), 10) == []
    # Sending is recorded once: enqueueing the same notice again is still refused.
    assert not outbox.enqueue_notice("acct_1", "warning", "p@1", "en", PAYLOAD)


def test_payload_keeps_unicode_and_nesting(outbox: InspectableOutbox) -> None:
    payload = {"email": "用户@example.com", "display_name": "王小明", "extra": {"ids": [1, 2]}}
    outbox.enqueue_notice("acct_1", "warning", "p@1", "zh", payload)
    [row] = outbox.pending_notices(T0, 10)
    assert dict(row.payload) == payload


def test_unknown_get_notice_is_none(outbox: InspectableOutbox) -> None:
    assert outbox.get_notice(12345) is None
    assert outbox.notices("nobody") == []
