"""SMTP delivery with the standard library's smtplib: plain, STARTTLS or implicit TLS, with
optional AUTH. Certificates are always verified; STARTTLS never falls back to plain text."""

from __future__ import annotations

import base64
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses
from pathlib import Path

from geogate.errors import ConfigError, NotifyError
from geogate.notify.notifier import OutgoingNotice
from geogate.secret import Secret

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _one_address(value: str, *, key: str) -> Address:
    """Parse ``Name <user@example.com>`` or ``user@example.com``; ConfigError otherwise."""
    if "\r" in value or "\n" in value:
        raise ConfigError("must not contain line breaks", key=key)
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise ConfigError(f"{value!r} is not one e-mail address", key=key)
    name, spec = pairs[0]
    try:
        return Address(display_name=name, addr_spec=spec)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{value!r} is not one e-mail address: {exc}", key=key) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """How to reach the mail server.

    ``starttls`` upgrades a plain connection (usually port 587); ``ssl`` connects with TLS
    from the start (usually port 465); at most one may be set. ``ca_file`` adds trusted CA
    certificates (PEM) to the system ones, e.g. for an internal relay. AUTH (``username`` and
    ``password``) needs TLS unless ``allow_plaintext_auth`` is set (loopback relays).
    """

    host: str
    port: int
    from_address: str
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: Secret | None = None
    reply_to: str | None = None
    timeout_seconds: float = 10.0
    ca_file: Path | None = None
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("is required", key="notify.smtp.host")
        if not 0 < self.port < 65536:
            raise ConfigError(f"{self.port} is not a TCP port", key="notify.smtp.port")
        if self.starttls and self.ssl:
            raise ConfigError(
                "set starttls (port 587) or ssl (port 465), not both", key="notify.smtp"
            )
        if (self.username is None) != (self.password is None):
            raise ConfigError("username and password go together", key="notify.smtp")
        if (
            self.username is not None
            and not (self.starttls or self.ssl)
            and not self.allow_plaintext_auth
            and self.host not in _LOOPBACK
        ):
            raise ConfigError(
                "AUTH over an unencrypted connection would expose the password; set starttls "
                "or ssl (or allow_plaintext_auth for a trusted relay)",
                key="notify.smtp",
            )
        if self.timeout_seconds <= 0:
            raise ConfigError("must be positive", key="notify.smtp.timeout_seconds")
        _one_address(self.from_address, key="notify.smtp.from_address")
        if self.reply_to is not None:
            _one_address(self.reply_to, key="notify.smtp.reply_to")


def build_message(
    notice: OutgoingNotice, *, from_address: str, reply_to: str | None
) -> EmailMessage:
    """The e-mail for ``notice``: multipart/alternative (text, HTML), UTF-8, with a
    Message-ID that stays the same on every attempt so that receivers can drop duplicates."""
    if notice.recipient is None:
        raise NotifyError(
            "notice has no e-mail address",
            channel="smtp",
            notice_id=notice.notice_id,
            is_permanent=True,
        )
    sender = _one_address(from_address, key="notify.smtp.from_address")
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = notice.subject
    message["From"] = sender
    message["To"] = notice.recipient
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(notice.at)
    message["Message-ID"] = f"<geogate-notice-{notice.notice_id}@{sender.domain}>"
    # RFC 3834: tells auto-responders (vacation replies) not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Geogate-Notice"] = notice.kind.value
    message["X-Geogate-Notice-Id"] = str(notice.notice_id)
    message.set_content(notice.text, charset="utf-8")
    message.add_alternative(notice.html, subtype="html", charset="utf-8")
    # After the bodies: set_content() and add_alternative() move or drop Content-* headers.
    message["Content-Language"] = notice.language.value
    return message


class SmtpNotifier:
    """Sends notices by e-mail to the address in the payload (key ``email``).

    One connection per notice: delivery runs are small and infrequent, and a fresh session
    keeps one failing notice from poisoning the next. Refused recipients and rejected
    messages (5xx) are permanent errors; connection problems, timeouts, TLS and AUTH failures
    and 4xx replies are retried.
    """

    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def accepts(self, notice: OutgoingNotice) -> bool:
        """True when the notice has an e-mail address."""
        return notice.recipient is not None

    def send(self, notice: OutgoingNotice) -> None:
        """Deliver one notice; NotifyError (channel ``smtp``) on failure."""
        cfg = self.config
        message = build_message(notice, from_address=cfg.from_address, reply_to=cfg.reply_to)
        try:
            with self._connect() as client:
                if cfg.starttls:
                    client.starttls(context=self._tls_context())
                if cfg.username is not None and cfg.password is not None:
                    _login(client, cfg.username, cfg.password)
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise self._error(
                f"recipient refused: {_reply(exc.recipients)}",
                notice,
                is_permanent=all(code >= 500 for code in codes),
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(f"server does not support {exc}", notice) from exc
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            is_permanent = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
            raise self._error(
                f"{exc.smtp_code} {_text(exc.smtp_error)}", notice, is_permanent=is_permanent
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise self._error(f"{exc.smtp_code} {_text(exc.smtp_error)}", notice) from exc
        except ssl.SSLError as exc:
            raise self._error(f"TLS failed: {exc.reason or exc}", notice) from exc
        except TimeoutError as exc:
            raise self._error(
                f"timed out after {cfg.timeout_seconds:g} s talking to {cfg.host}:{cfg.port}",
                notice,
            ) from exc
        except (OSError, smtplib.SMTPException, UnicodeError) as exc:
            raise self._error(
                f"cannot deliver via {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}", notice
            ) from exc

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.ssl:
            return smtplib.SMTP_SSL(
                cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=self._tls_context()
            )
        return smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.config.ca_file is not None:
            context.load_verify_locations(cafile=str(self.config.ca_file))
        return context

    def _error(
        self, message: str, notice: OutgoingNotice, *, is_permanent: bool = False
    ) -> NotifyError:
        return NotifyError(
            message, channel=self.name, notice_id=notice.notice_id, is_permanent=is_permanent
        )


def _login(client: smtplib.SMTP, username: str, password: Secret) -> None:
    """AUTH with smtplib, except for non-ASCII credentials: smtplib encodes those as ASCII
    and fails, so send AUTH PLAIN ourselves in UTF-8 as RFC 4616 specifies."""
    secret = password.reveal()
    if username.isascii() and secret.isascii():
        client.login(username, secret)
        return
    client.ehlo_or_helo_if_needed()
    mechanisms = client.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" not in mechanisms:
        raise smtplib.SMTPNotSupportedError(
            "AUTH PLAIN, needed for a non-ASCII user name or password"
        )
    token = base64.b64encode(f"\0{username}\0{secret}".encode()).decode("ascii")
    code, reply = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _reply(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{code} {_text(text)}" for code, text in recipients.values())
