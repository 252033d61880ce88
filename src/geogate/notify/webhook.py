"""Webhook delivery: each notice is POSTed as JSON, signed with HMAC-SHA256.

The receiver recomputes ``HMAC-SHA256(secret, raw request body)`` and compares it with the
``X-Geogate-Signature: sha256=<hex>`` header (see :func:`verify_signature`). The body holds the
attempt time (``sent_at``), so a receiver can also refuse old replays.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from geogate import __version__
from geogate.errors import ConfigError, NotifyError
from geogate.notify.notifier import OutgoingNotice
from geogate.secret import Secret

SIGNATURE_HEADER = "X-Geogate-Signature"
DELIVERY_HEADER = "X-Geogate-Delivery"
EVENT_HEADER = "X-Geogate-Event"
SIGNATURE_PREFIX = "sha256="

# Statuses after which the same request may succeed later (RFC 9110 15.5.9, RFC 6585 4).
_RETRYABLE_4XX = frozenset({408, 425, 429})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """Where to POST notices and the key to sign them with.

    ``url`` must be https, or http to a loopback address (or anywhere with ``allow_http``):
    notices carry e-mail addresses. ``timeout_seconds`` bounds connect, write and read.
    """

    url: str
    secret: Secret
    timeout_seconds: float = 10.0
    allow_http: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"{self.url!r} is not an http(s) URL", key="notify.webhook.url")
        if parts.scheme == "http" and not (self.allow_http or _is_loopback(parts.hostname)):
            raise ConfigError(
                "use https (notices carry e-mail addresses) or set allow_http = true",
                key="notify.webhook.url",
            )
        if not self.secret:
            raise ConfigError("must not be empty", key="notify.webhook.secret")
        if self.timeout_seconds <= 0:
            raise ConfigError("must be positive", key="notify.webhook.timeout_seconds")


def sign_body(secret: Secret, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    digest = hmac.new(secret.reveal().encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: Secret, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant time)."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(secret, body).encode(), header.strip().encode())


def notice_body(notice: OutgoingNotice) -> bytes:
    """The JSON body POSTed for ``notice`` (UTF-8, keys sorted, no extra whitespace)."""
    document: dict[str, Any] = {
        "id": notice.notice_id,
        "kind": notice.kind.value,
        "account": notice.account,
        "policy_version": notice.policy_version,
        "language": notice.language.value,
        "recipient": notice.recipient,
        "subject": notice.subject,
        "text": notice.text,
        "html": notice.html,
        "payload": dict(notice.payload),
        "attempt": notice.attempt,
        "sent_at": notice.at.isoformat(),
    }
    return json.dumps(
        document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    ).encode("utf-8")


class WebhookNotifier:
    """POSTs every notice to one URL. Any 2xx is success. Other 4xx replies are permanent
    errors (except 408, 425 and 429); 3xx, 5xx, timeouts and connection errors are retried.
    Redirects are not followed: the signature is meant for the configured receiver only."""

    name = "webhook"

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    def accepts(self, notice: OutgoingNotice) -> bool:
        """A webhook takes every notice."""
        return True

    def send(self, notice: OutgoingNotice) -> None:
        """Deliver one notice; NotifyError (channel ``webhook``) on failure."""
        cfg = self.config
        body = notice_body(notice)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"geogate/{__version__}",
            SIGNATURE_HEADER: sign_body(cfg.secret, body),
            DELIVERY_HEADER: str(notice.notice_id),
            EVENT_HEADER: f"notice.{notice.kind.value}",
        }
        try:
            with httpx.Client(timeout=cfg.timeout_seconds, follow_redirects=False) as client:
                response = client.post(cfg.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise self._error(f"timed out after {cfg.timeout_seconds:g} s", notice) from exc
        except httpx.HTTPError as exc:
            raise self._error(f"{type(exc).__name__}: {exc}", notice) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
        snippet = " ".join(response.text[:200].split())
        raise self._error(
            f"HTTP {status} from receiver{': ' + snippet if snippet else ''}",
            notice,
            is_permanent=permanent,
        )

    def _error(
        self, message: str, notice: OutgoingNotice, *, is_permanent: bool = False
    ) -> NotifyError:
        return NotifyError(
            message, channel=self.name, notice_id=notice.notice_id, is_permanent=is_permanent
        )
