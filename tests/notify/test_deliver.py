"""The delivery loop end to end: outbox -> templates -> real SMTP / webhook receivers, with the
retry schedule, giving up, idempotency and the report. Runs on every outbox implementation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geogate.errors import ConfigError
from geogate.notify.notifier import Notifier, OutgoingNotice
from geogate.notify.outbox import (
    DeliveryOutcome,
    DeliveryReport,
    Outcome,
    RetryPolicy,
    deliver_pending,
)
from geogate.notify.render import NoticeDefaults, NoticeRenderer
from geogate.notify.smtp import SmtpConfig, SmtpNotifier
from geogate.notify.webhook import WebhookConfig, WebhookNotifier, verify_signature
from geogate.secret import Secret
from geogate.store.protocol import NoticeState

from .conftest import StartSmtp
from .receivers import (
    LOOPBACK,
    T0,
    InspectableOutbox,
    ManualClock,
    SmtpServer,
    WebhookServer,
    free_port,
)

FROM = "Acme API <no-reply@acme.example>"
RENDERER = NoticeRenderer(
    defaults=NoticeDefaults(service_name="Acme API", appeal_url="https://acme.example/appeal")
)
SECRET = Secret("whsec-deliver-test")


def warning_payload(email: str = "dev@example.com", **extra: object) -> dict[str, object]:
    return {"email": email, "region": "CN", "effective_at": "2026-03-01T00:00:00Z", **extra}


def smtp(port: int) -> SmtpNotifier:
    return SmtpNotifier(
        SmtpConfig(host=LOOPBACK, port=port, from_address=FROM, timeout_seconds=2.0)
    )


def deliver(
    outbox: InspectableOutbox,
    notifiers: Sequence[Notifier],
    clock: ManualClock,
    **options: object,
) -> DeliveryReport:
    return deliver_pending(outbox, notifiers, clock=clock, renderer=RENDERER, **options)  # type: ignore[arg-type]


def test_warning_in_english_and_chinese_reaches_the_mailbox(
    outbox: InspectableOutbox, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    outbox.enqueue_notice("acct_en", "warning", "p@1", "en-US", warning_payload("en@example.com"))
    outbox.enqueue_notice(
        "acct_zh", "warning", "p@1", "zh-CN,zh;q=0.9", warning_payload("zh@example.com")
    )

    report = deliver(outbox, [smtp(smtp_server.port)], clock)

    assert (report.sent, report.retrying, report.failed) == (2, 0, 0)
    assert report.summary() == "2 notices: 2 sent, 0 to retry, 0 failed"
    by_rcpt = {r.rcpt_tos[0]: r.message for r in smtp_server.received}
    assert by_rcpt["en@example.com"]["Content-Language"] == "en"
    assert "Acme API" in by_rcpt["en@example.com"]["Subject"]
    zh = by_rcpt["zh@example.com"]
    assert zh["Content-Language"] == "zh-Hans"
    assert zh["Subject"].startswith("重要提醒")
    body = zh.get_body(preferencelist=("plain",))
    assert body is not None
    assert "曾在中国使用" in body.get_content()
    assert "https://acme.example/appeal" in body.get_content()
    for account in ("acct_en", "acct_zh"):
        [row] = outbox.notices(account)
        assert row.state == NoticeState.SENT
        assert row.attempts == 1
        assert row.sent_at == T0


def test_enqueue_twice_and_deliver_twice_sends_one_email(
    outbox: InspectableOutbox, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    assert outbox.enqueue_notice("acct_1", "warning", "p@1", "en", warning_payload())
    assert not outbox.enqueue_notice("acct_1", "warning", "p@1", "en", warning_payload())

    first = deliver(outbox, [smtp(smtp_server.port)], clock)
    clock.advance(hours=1)
    second = deliver(outbox, [smtp(smtp_server.port)], clock)

    assert first.sent == 1
    assert second.outcomes == ()
    assert len(smtp_server.received) == 1


def test_server_down_is_retried_on_schedule_then_delivered(
    outbox: InspectableOutbox, clock: ManualClock, start_smtp: StartSmtp
) -> None:
    port = free_port()  # nothing listens here yet
    outbox.enqueue_notice("acct_1", "warning", "p@1", "ru", warning_payload())
    notifiers = [smtp(port)]

    report = deliver(outbox, notifiers, clock)
    [outcome] = report.outcomes
    assert outcome.outcome is Outcome.RETRY
    assert outcome.attempt == 1
    assert outcome.next_attempt_at == T0 + timedelta(minutes=1)
    assert outcome.error is not None
    assert "cannot deliver" in outcome.error
    [row] = outbox.notices("acct_1")
    assert row.state == NoticeState.PENDING
    assert row.attempts == 1
    assert row.last_error == outcome.error

    clock.advance(seconds=59)  # not due yet
    assert deliver(outbox, notifiers, clock).outcomes == ()

    clock.advance(seconds=1)  # due; still down -> 5 minutes
    [outcome] = deliver(outbox, notifiers, clock).outcomes
    assert (outcome.outcome, outcome.attempt) == (Outcome.RETRY, 2)
    assert outcome.next_attempt_at == clock.now() + timedelta(minutes=5)

    server = start_smtp(port=port)  # the server comes back
    clock.advance(minutes=5)
    [outcome] = deliver(outbox, notifiers, clock).outcomes
    assert (outcome.outcome, outcome.attempt) == (Outcome.SENT, 3)
    assert outcome.channels == ("smtp",)
    [got] = server.received
    assert got.message["Content-Language"] == "ru"
    [row] = outbox.notices("acct_1")
    assert row.state == NoticeState.SENT
    assert row.attempts == 3


def test_gives_up_after_max_attempts(outbox: InspectableOutbox, clock: ManualClock) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", "en", warning_payload())
    notifiers = [smtp(free_port())]
    retry = RetryPolicy(max_attempts=3, first_delay_seconds=60, factor=5)

    outcomes: list[DeliveryOutcome] = []
    for _ in range(5):
        outcomes += deliver(outbox, notifiers, clock, retry=retry).outcomes
        clock.advance(hours=1)

    assert [o.outcome for o in outcomes] == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED]
    [row] = outbox.notices("acct_1")
    assert row.state == NoticeState.FAILED
    assert row.attempts == 3


def test_refused_recipient_fails_at_once_and_others_still_go(
    outbox: InspectableOutbox, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refuse.add("gone@example.com")
    outbox.enqueue_notice("acct_gone", "warning", "p@1", "en", warning_payload("gone@example.com"))
    outbox.enqueue_notice("acct_ok", "warning", "p@1", "en", warning_payload("ok@example.com"))

    report = deliver(outbox, [smtp(smtp_server.port)], clock)

    assert (report.sent, report.failed) == (1, 1)
    [gone] = outbox.notices("acct_gone")
    assert gone.state == NoticeState.FAILED
    assert gone.last_error is not None
    assert "550" in gone.last_error
    assert [r.rcpt_tos for r in smtp_server.received] == [["ok@example.com"]]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"email": "dev@example.com", "effective_at": "next spring"}, "effective_at"),
        ({"region": "CN", "effective_at": "2026-03-01T00:00:00Z"}, "no configured notifier"),
    ],
)
def test_undeliverable_notices_fail_at_once_with_the_reason(
    outbox: InspectableOutbox,
    clock: ManualClock,
    smtp_server: SmtpServer,
    payload: dict[str, object],
    message: str,
) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", "en", payload)
    [outcome] = deliver(outbox, [smtp(smtp_server.port)], clock).outcomes
    assert outcome.outcome is Outcome.FAILED
    assert outcome.error is not None
    assert message in outcome.error
    assert smtp_server.received == []


def test_unknown_kind_in_outbox_fails_at_once(
    outbox: InspectableOutbox, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    outbox.enqueue_notice("acct_1", "promotion", "p@1", "en", warning_payload())
    [outcome] = deliver(outbox, [smtp(smtp_server.port)], clock).outcomes
    assert outcome.outcome is Outcome.FAILED
    assert outcome.error is not None
    assert "promotion" in outcome.error


def test_webhook_gets_a_verifiable_notice_and_retries_on_5xx(
    outbox: InspectableOutbox, clock: ManualClock, webhook_server: WebhookServer
) -> None:
    hook = WebhookNotifier(WebhookConfig(url=webhook_server.url, secret=SECRET))
    outbox.enqueue_notice("acct_1", "blocked", "p@1", "zh-TW", {"region": "HK", "crm": "x1"})
    webhook_server.statuses.append(503)

    [first] = deliver(outbox, [hook], clock).outcomes
    assert first.outcome is Outcome.RETRY
    clock.advance(minutes=1)
    [second] = deliver(outbox, [hook], clock).outcomes
    assert second.outcome is Outcome.SENT

    assert len(webhook_server.requests) == 2
    for request in webhook_server.requests:
        assert verify_signature(SECRET, request.body, request.headers["x-geogate-signature"])
    ids = {r.headers["x-geogate-delivery"] for r in webhook_server.requests}
    assert len(ids) == 1  # same delivery id on the retry: receivers can deduplicate
    document = json.loads(webhook_server.requests[-1].body)
    assert document["attempt"] == 2
    assert document["language"] == "zh-Hant"
    assert document["recipient"] is None
    assert document["payload"] == {"region": "HK", "crm": "x1"}
    assert "帳戶 acct_1 已被停用" in document["subject"]


def test_email_and_webhook_both_get_the_notice(
    outbox: InspectableOutbox,
    clock: ManualClock,
    smtp_server: SmtpServer,
    webhook_server: WebhookServer,
) -> None:
    hook = WebhookNotifier(WebhookConfig(url=webhook_server.url, secret=SECRET))
    outbox.enqueue_notice("acct_1", "reinstated", "p@1", "en", {"email": "dev@example.com"})

    [outcome] = deliver(outbox, [smtp(smtp_server.port), hook], clock).outcomes

    assert outcome.outcome is Outcome.SENT
    assert outcome.channels == ("smtp", "webhook")
    assert len(smtp_server.received) == 1
    assert len(webhook_server.requests) == 1


def test_one_failing_channel_retries_the_notice_with_a_stable_message_id(
    outbox: InspectableOutbox,
    clock: ManualClock,
    smtp_server: SmtpServer,
    webhook_server: WebhookServer,
) -> None:
    hook = WebhookNotifier(WebhookConfig(url=webhook_server.url, secret=SECRET))
    outbox.enqueue_notice("acct_1", "reinstated", "p@1", "en", {"email": "dev@example.com"})
    webhook_server.statuses.append(500)

    assert deliver(outbox, [smtp(smtp_server.port), hook], clock).retrying == 1
    clock.advance(minutes=1)
    assert deliver(outbox, [smtp(smtp_server.port), hook], clock).sent == 1

    # Documented at-least-once behaviour: the mail went out twice, as the same message.
    ids = [r.message["Message-ID"] for r in smtp_server.received]
    assert len(ids) == 2
    assert ids[0] == ids[1]


def test_limit_bounds_one_run(
    outbox: InspectableOutbox, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    for n in range(5):
        outbox.enqueue_notice(f"acct_{n}", "warning", "p@1", "en", warning_payload())
    assert deliver(outbox, [smtp(smtp_server.port)], clock, limit=2).sent == 2
    assert deliver(outbox, [smtp(smtp_server.port)], clock, limit=10).sent == 3


def test_no_notifier_is_a_config_error(outbox: InspectableOutbox, clock: ManualClock) -> None:
    with pytest.raises(ConfigError, match="no notifier"):
        deliver_pending(outbox, [], clock=clock)


def test_default_schedule_is_1_5_25_minutes_then_capped() -> None:
    retry = RetryPolicy()
    delays = [retry.delay_after(n) for n in range(1, 8)]
    assert delays[:4] == [
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=25),
        timedelta(minutes=125),
    ]
    assert delays[4:] == [timedelta(hours=6)] * 3
    assert retry.next_attempt_at(retry.max_attempts, at=T0) is None
    assert RetryPolicy().delay_after(10_000) == timedelta(hours=6)  # no float overflow
    assert RetryPolicy(factor=1).delay_after(500) == timedelta(minutes=1)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"first_delay_seconds": 0},
        {"factor": 0.5},
        {"first_delay_seconds": 600, "max_delay_seconds": 60},
    ],
)
def test_bad_retry_policy_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**options)  # type: ignore[arg-type]


@given(
    max_attempts=st.integers(min_value=1, max_value=50),
    first=st.floats(min_value=1, max_value=3600),
    factor=st.floats(min_value=1, max_value=100),
    cap_factor=st.floats(min_value=1, max_value=1000),
)
def test_any_schedule_grows_never_exceeds_its_cap_and_ends(
    max_attempts: int, first: float, factor: float, cap_factor: float
) -> None:
    retry = RetryPolicy(
        max_attempts=max_attempts,
        first_delay_seconds=first,
        factor=factor,
        max_delay_seconds=first * cap_factor,
    )
    cap = timedelta(seconds=retry.max_delay_seconds)
    delays = [retry.delay_after(n) for n in range(1, max_attempts + 5)]
    assert all(a <= b for a, b in pairwise(delays))
    assert all(timedelta(seconds=first) <= d <= cap for d in delays)
    due = [retry.next_attempt_at(n, at=T0) for n in range(1, max_attempts + 5)]
    assert all(d is not None for d in due[: max_attempts - 1])
    assert all(d is None for d in due[max_attempts - 1 :])


class ExplodingNotifier:
    """A channel with a bug: raises something other than NotifyError. (A real, if broken,
    implementation of the Notifier port, not a mock.)"""

    name = "exploding"

    def accepts(self, notice: OutgoingNotice) -> bool:
        return True

    def send(self, notice: OutgoingNotice) -> None:
        raise RuntimeError(f"bug while sending {notice.notice_id}")


def test_a_buggy_channel_cannot_stop_the_outbox(
    outbox: InspectableOutbox,
    clock: ManualClock,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox.enqueue_notice("acct_1", "warning", "p@1", "en", warning_payload())
    outbox.enqueue_notice("acct_2", "warning", "p@1", "en", warning_payload())
    retry = RetryPolicy(max_attempts=2)

    first = deliver(outbox, [ExplodingNotifier()], clock, retry=retry)
    assert [o.outcome for o in first.outcomes] == [Outcome.RETRY, Outcome.RETRY]
    assert first.outcomes[0].error == "internal error: RuntimeError: bug while sending 1"
    assert "unexpected error delivering notice 1" in caplog.text
    clock.advance(minutes=1)
    second = deliver(outbox, [ExplodingNotifier()], clock, retry=retry)
    assert [o.outcome for o in second.outcomes] == [Outcome.FAILED, Outcome.FAILED]
