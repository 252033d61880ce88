"""The notice outbox port and the delivery loop that drains it.

Notices are queued in the account store's outbox in the same transaction as the state change
that causes them; :func:`deliver_pending` later renders each due notice, hands it to every
notifier that accepts it and records the outcome. A failed attempt is retried on a fixed,
deterministic schedule (no jitter: the schedule is part of what operators and tests can rely
on) until ``max_attempts``, after which the notice is ``failed`` for good.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from geogate.clock import Clock
from geogate.errors import ConfigError, NotifyError
from geogate.notify.language import pick_language
from geogate.notify.notifier import Notifier, OutgoingNotice
from geogate.notify.render import NoticeKind, NoticeRenderer

_log = logging.getLogger(__name__)

# Longest error text stored with a notice; SMTP replies and tracebacks can be long.
MAX_ERROR_CHARS = 500


class NoticeRecord(Protocol):
    """What the delivery loop reads from an outbox row (the store's ``NoticeRow`` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def account(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def policy_version(self) -> str: ...
    @property
    def language(self) -> str | None: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...
    @property
    def attempts(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...


class Outbox(Protocol):
    """The four outbox methods of the account store that notices need.

    ``enqueue_notice`` is idempotent per (account, kind, policy_version) and returns False for
    a duplicate. ``pending_notices`` returns pending notices due at ``now``, oldest due first.
    ``mark_notice_failed`` with ``next_attempt_at=None`` gives up on the notice (state
    ``failed``); with a time it stays pending until then.
    """

    def enqueue_notice(
        self,
        account: str,
        kind: str,
        policy_version: str,
        language: str | None,
        payload: Mapping[str, Any],
    ) -> bool: ...

    def pending_notices(self, now: datetime, limit: int) -> Sequence[NoticeRecord]: ...

    def mark_notice_sent(self, id: int, at: datetime) -> None: ...

    def mark_notice_failed(
        self, id: int, at: datetime, error: str, next_attempt_at: datetime | None
    ) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When to try a failed notice again.

    After failed attempt ``n`` (counting from 1) the next one is due
    ``first_delay_seconds * factor ** (n - 1)`` later, capped at ``max_delay_seconds``: with the
    defaults 1 min, 5 min, 25 min, 2 h 5 min, then every 6 h. After ``max_attempts`` attempts
    the notice is given up.
    """

    max_attempts: int = 8
    first_delay_seconds: float = 60.0
    factor: float = 5.0
    max_delay_seconds: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("must be at least 1", key="notify.retry.max_attempts")
        if self.first_delay_seconds <= 0:
            raise ConfigError("must be positive", key="notify.retry.first_delay_seconds")
        if self.factor < 1:
            raise ConfigError("must be at least 1", key="notify.retry.factor")
        if self.max_delay_seconds < self.first_delay_seconds:
            raise ConfigError(
                "must be at least first_delay_seconds", key="notify.retry.max_delay_seconds"
            )

    def delay_after(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1 = the first attempt)."""
        exponent = max(attempt, 1) - 1
        try:
            seconds = self.first_delay_seconds * self.factor**exponent
        except OverflowError:  # a float power past ~1e308: long past the cap anyway
            seconds = self.max_delay_seconds
        return timedelta(seconds=min(seconds, self.max_delay_seconds))

    def next_attempt_at(self, attempt: int, *, at: datetime) -> datetime | None:
        """When to retry after failed attempt ``attempt`` at ``at``; None to give up."""
        if attempt >= self.max_attempts:
            return None
        return at + self.delay_after(attempt)


class Outcome(enum.StrEnum):
    """What one delivery attempt led to."""

    SENT = "sent"
    RETRY = "retry"  # failed, another attempt is scheduled
    FAILED = "failed"  # failed for good (permanent error or attempts exhausted)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOutcome:
    """One notice's attempt: its id, account, kind, attempt number, outcome, the channels it
    went to, the error (when it failed) and when it is retried."""

    notice_id: int
    account: str
    kind: str
    attempt: int
    outcome: Outcome
    channels: tuple[str, ...] = ()
    error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport:
    """The result of one :func:`deliver_pending` run, one outcome per notice attempted."""

    outcomes: tuple[DeliveryOutcome, ...] = ()

    @property
    def sent(self) -> int:
        """Notices delivered in this run."""
        return self._count(Outcome.SENT)

    @property
    def retrying(self) -> int:
        """Notices that failed and will be tried again."""
        return self._count(Outcome.RETRY)

    @property
    def failed(self) -> int:
        """Notices given up in this run."""
        return self._count(Outcome.FAILED)

    def _count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome is outcome)

    def summary(self) -> str:
        """One line: ``3 notices: 2 sent, 1 to retry, 0 failed``."""
        count = len(self.outcomes)
        return (
            f"{count} notice{'' if count == 1 else 's'}: {self.sent} sent, "
            f"{self.retrying} to retry, {self.failed} failed"
        )


def deliver_pending(
    outbox: Outbox,
    notifiers: Sequence[Notifier],
    *,
    clock: Clock,
    limit: int = 100,
    renderer: NoticeRenderer | None = None,
    retry: RetryPolicy | None = None,
) -> DeliveryReport:
    """Deliver up to ``limit`` notices that are due now; record each outcome in ``outbox``.

    Each notice goes to every notifier that accepts it and counts as sent only when all of
    them succeed; if one fails, the whole notice is retried, so a receiver may see the same
    notice twice and should deduplicate on its id (the e-mail Message-ID and the webhook's
    ``X-Geogate-Delivery`` header stay the same across attempts). A payload that cannot be
    rendered, or a notice no notifier accepts, fails for good at once. An unexpected
    exception from a notifier is logged and treated as a retryable failure, so that one bad
    notice cannot stop the outbox.

    Runs are not meant to overlap: two concurrent runs over the same outbox may both send a
    notice that is due. Raises ConfigError when ``notifiers`` is empty.
    """
    if not notifiers:
        raise ConfigError("no notifier configured: set [notify.smtp] or [notify.webhook]")
    if limit < 1:
        raise ConfigError("must be at least 1", key="limit")
    renderer = renderer or NoticeRenderer()
    retry = retry or RetryPolicy()
    outcomes: list[DeliveryOutcome] = []
    for row in outbox.pending_notices(clock.now(), limit):
        attempt = row.attempts + 1
        channels: tuple[str, ...] = ()
        try:
            notice = _outgoing(row, renderer=renderer, attempt=attempt, at=clock.now())
            targets = [n for n in notifiers if n.accepts(notice)]
            channels = tuple(n.name for n in targets)
            if not targets:
                raise NotifyError(
                    "no configured notifier accepts this notice (an e-mail notice needs "
                    "'email' in its payload)",
                    notice_id=row.id,
                    is_permanent=True,
                )
            for notifier in targets:
                notifier.send(notice)
        except Exception as exc:
            # A NotifyError is the expected failure. Anything else is a bug in a channel, but
            # letting it escape would leave this notice due and first in line on every run,
            # stopping the whole outbox; so it is logged with its traceback and retried on
            # the normal schedule, which ends by giving the notice up.
            if isinstance(exc, NotifyError):
                is_permanent, error = exc.is_permanent, exc.one_line()
            else:
                _log.exception("unexpected error delivering notice %s", row.id)
                is_permanent, error = False, f"internal error: {type(exc).__name__}: {exc}"
            at = clock.now()
            next_at = None if is_permanent else retry.next_attempt_at(attempt, at=at)
            error = error[:MAX_ERROR_CHARS]
            outbox.mark_notice_failed(row.id, at, error, next_at)
            outcomes.append(
                DeliveryOutcome(
                    notice_id=row.id,
                    account=row.account,
                    kind=row.kind,
                    attempt=attempt,
                    outcome=Outcome.FAILED if next_at is None else Outcome.RETRY,
                    channels=channels,
                    error=error,
                    next_attempt_at=next_at,
                )
            )
        else:
            outbox.mark_notice_sent(row.id, clock.now())
            outcomes.append(
                DeliveryOutcome(
                    notice_id=row.id,
                    account=row.account,
                    kind=row.kind,
                    attempt=attempt,
                    outcome=Outcome.SENT,
                    channels=channels,
                )
            )
    return DeliveryReport(outcomes=tuple(outcomes))


def notice_reference(notice_id: int) -> str:
    """The reference printed in a notice and quoted in appeals (``GN-000042``)."""
    return f"GN-{notice_id:06d}"


def _outgoing(
    row: NoticeRecord, *, renderer: NoticeRenderer, attempt: int, at: datetime
) -> OutgoingNotice:
    kind = NoticeKind.parse(row.kind)
    context = renderer.context(
        row.payload,
        kind=kind,
        account=row.account,
        policy_version=row.policy_version,
        reference=notice_reference(row.id),
    )
    rendered = renderer.render(context, language=pick_language(row.language))
    return OutgoingNotice(
        notice_id=row.id,
        account=row.account,
        kind=kind,
        policy_version=row.policy_version,
        language=rendered.language,
        recipient=context.email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        payload=dict(row.payload),
        attempt=attempt,
        at=at,
    )
