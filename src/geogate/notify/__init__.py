"""Notices to account holders: templates, the outbox delivery loop, SMTP and webhook delivery.

A state change queues a notice in the store's outbox; :func:`deliver_pending` renders due
notices in the account's language and hands them to the configured :class:`Notifier`\\ s.
"""

from __future__ import annotations

from geogate.notify.config import NotifyConfig, load_notify_config, parse_notify_config
from geogate.notify.language import Language, pick_language
from geogate.notify.memory import MemoryOutbox
from geogate.notify.notifier import Notifier, OutgoingNotice
from geogate.notify.outbox import (
    DeliveryOutcome,
    DeliveryReport,
    NoticeRecord,
    Outbox,
    Outcome,
    RetryPolicy,
    deliver_pending,
    notice_reference,
)
from geogate.notify.render import (
    NoticeContext,
    NoticeDefaults,
    NoticeKind,
    NoticeRenderer,
    RenderedNotice,
    sample_payload,
)
from geogate.notify.smtp import SmtpConfig, SmtpNotifier
from geogate.notify.webhook import WebhookConfig, WebhookNotifier, sign_body, verify_signature
from geogate.secret import Secret

__all__ = [
    "DeliveryOutcome",
    "DeliveryReport",
    "Language",
    "MemoryOutbox",
    "NoticeContext",
    "NoticeDefaults",
    "NoticeKind",
    "NoticeRecord",
    "NoticeRenderer",
    "Notifier",
    "NotifyConfig",
    "Outbox",
    "Outcome",
    "OutgoingNotice",
    "RenderedNotice",
    "RetryPolicy",
    "Secret",
    "SmtpConfig",
    "SmtpNotifier",
    "WebhookConfig",
    "WebhookNotifier",
    "deliver_pending",
    "load_notify_config",
    "notice_reference",
    "parse_notify_config",
    "pick_language",
    "sample_payload",
    "sign_body",
    "verify_signature",
]
