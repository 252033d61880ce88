"""Real receivers for the notice tests (used by the fixtures in conftest.py): an SMTP handler
that records messages, an AUTH check, a self-signed certificate made with the openssl
command, and a clock the tests move by hand."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from aiosmtpd.smtp import AuthResult, LoginPassword

from geogate.notify.outbox import Outbox
from geogate.store.protocol import NoticeRow

LOOPBACK = "127.0.0.1"
T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
SMTP_USER = "geogate"
SMTP_PASSWORD = "s3cret-pässword"


class InspectableOutbox(Outbox, Protocol):
    """An outbox the tests can also read back (both implementations have these)."""

    def get_notice(self, id: int) -> NoticeRow | None: ...

    def notices(self, account: str) -> list[NoticeRow]: ...


class ManualClock:
    """A clock that only moves when the test says so."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def free_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """One message as the SMTP server got it: envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class RecordingHandler:
    """aiosmtpd handler that keeps every message and refuses recipients listed in ``refuse``."""

    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        if not isinstance(parsed, EmailMessage):  # the default policy always gives one
            return "554 unparseable"
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
            )
        )
        return "250 Message accepted"


def authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """aiosmtpd authenticator accepting exactly SMTP_USER / SMTP_PASSWORD."""
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == SMTP_USER
        and auth_data.password.decode() == SMTP_PASSWORD
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    """A running aiosmtpd server: where it listens and what it received."""

    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate (also its own CA) and its key, PEM files."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_self_signed(folder: Path) -> TlsFiles:
    """Write a P-256 certificate for 127.0.0.1 and localhost, valid two days."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(cert=cert, key=key)


@dataclass
class WebhookRequest:
    """One POST the webhook server received."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """A threaded HTTP server that records POSTs and answers with queued statuses (204 when
    the queue is empty)."""

    url: str
    requests: list[WebhookRequest]
    statuses: deque[int]
