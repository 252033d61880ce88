"""SMTP delivery against a real aiosmtpd server on loopback: what arrives, in English and
Chinese; STARTTLS, implicit TLS and AUTH with a self-signed certificate; and which failures
are retried."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from geogate.errors import ConfigError, NotifyError
from geogate.notify.language import Language
from geogate.notify.notifier import OutgoingNotice
from geogate.notify.render import NoticeDefaults, NoticeKind, NoticeRenderer, sample_payload
from geogate.notify.smtp import SmtpConfig, SmtpNotifier
from geogate.secret import Secret

from .conftest import StartSmtp
from .receivers import (
    LOOPBACK,
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServer,
    TlsFiles,
    authenticate,
    free_port,
)

FROM = "Acme API <no-reply@acme.example>"
AT = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def outgoing(
    language: str = "en",
    *,
    kind: NoticeKind = NoticeKind.WARNING,
    recipient: str = "dev@example.com",
    notice_id: int = 7,
) -> OutgoingNotice:
    renderer = NoticeRenderer(defaults=NoticeDefaults(service_name="Acme API"))
    payload = sample_payload(kind) | {"email": recipient}
    context = renderer.context(
        payload, kind=kind, account="acct_42", policy_version="deny@1", reference="GN-000007"
    )
    rendered = renderer.render(context, language=language)
    return OutgoingNotice(
        notice_id=notice_id,
        account="acct_42",
        kind=kind,
        policy_version="deny@1",
        language=rendered.language,
        recipient=recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        payload=payload,
        attempt=1,
        at=AT,
    )


def config(server: SmtpServer, **overrides: object) -> SmtpConfig:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "from_address": FROM,
        "timeout_seconds": 5.0,
    }
    values.update(overrides)
    return SmtpConfig(**values)  # type: ignore[arg-type]


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


def test_english_warning_arrives_with_envelope_headers_and_both_bodies(
    smtp_server: SmtpServer,
) -> None:
    SmtpNotifier(config(smtp_server)).send(outgoing("en"))

    [got] = smtp_server.received
    assert got.mail_from == "no-reply@acme.example"
    assert got.rcpt_tos == ["dev@example.com"]
    msg = got.message
    assert msg["Subject"] == (
        "Action required: Acme API access from unsupported regions ends on 1 March 2026"
    )
    assert msg["From"] == FROM
    assert msg["To"] == "dev@example.com"
    assert msg["Message-ID"] == "<geogate-notice-7@acme.example>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "en"
    assert msg["X-Geogate-Notice"] == "warning"
    assert msg["X-Geogate-Notice-Id"] == "7"
    assert msg["Date"] == "Sun, 01 Feb 2026 12:00:00 +0000"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    assert "has been used from China" in text
    assert "From 1 March 2026, 00:00 UTC" in text
    assert "<strong>China</strong>" in html


def test_chinese_warning_arrives_as_utf8_and_decodes(smtp_server: SmtpServer) -> None:
    SmtpNotifier(config(smtp_server)).send(outgoing("zh-CN"))

    [got] = smtp_server.received
    # On the wire the headers are 7-bit (RFC 2047 encoded words), the bodies declare UTF-8.
    head = got.raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")
    assert b"=?utf-8?" in head.lower()
    msg = got.message
    assert msg["Subject"] == (
        "重要提醒：自 2026年3月1日 起，Acme API 将停止在不受支持的地区提供服务"
    )
    assert msg["Content-Language"] == "zh-Hans"
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"
    text, html = parts(msg)
    assert "您的 Acme API 账户 acct_42 曾在中国使用" in text
    assert "自 2026年3月1日 00:00（UTC） 起" in text
    assert '<html lang="zh-Hans">' in html


def test_long_lines_survive_transport_unchanged(smtp_server: SmtpServer) -> None:
    notice = outgoing("ru")
    SmtpNotifier(config(smtp_server)).send(notice)
    text, html = parts(smtp_server.received[0].message)
    assert text.replace("\r\n", "\n") == notice.text
    assert html.replace("\r\n", "\n") == notice.html


def test_reply_to_is_set_when_configured(smtp_server: SmtpServer) -> None:
    SmtpNotifier(config(smtp_server, reply_to="appeals@acme.example")).send(outgoing())
    assert smtp_server.received[0].message["Reply-To"] == "appeals@acme.example"


def test_starttls_with_auth_delivers(start_smtp: StartSmtp, tls_files: TlsFiles) -> None:
    server = start_smtp(
        tls_context=tls_files.server_context(),
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    notifier = SmtpNotifier(
        config(
            server,
            starttls=True,
            ca_file=tls_files.cert,
            username=SMTP_USER,
            password=Secret(SMTP_PASSWORD),
        )
    )
    notifier.send(outgoing("zh-TW"))
    [got] = server.received
    assert got.message["Content-Language"] == "zh-Hant"


def test_wrong_password_is_a_retryable_error(start_smtp: StartSmtp, tls_files: TlsFiles) -> None:
    server = start_smtp(
        tls_context=tls_files.server_context(),
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    notifier = SmtpNotifier(
        config(
            server,
            starttls=True,
            ca_file=tls_files.cert,
            username=SMTP_USER,
            password=Secret("wrong"),
        )
    )
    with pytest.raises(NotifyError) as caught:
        notifier.send(outgoing())
    # A fixed configuration makes the next attempt succeed: not permanent.
    assert not caught.value.is_permanent
    assert "535" in str(caught.value)
    assert "wrong" not in str(caught.value)
    assert server.received == []


def test_starttls_refuses_a_certificate_it_cannot_verify(
    start_smtp: StartSmtp, tls_files: TlsFiles
) -> None:
    server = start_smtp(tls_context=tls_files.server_context(), require_starttls=True)
    notifier = SmtpNotifier(config(server, starttls=True))  # no ca_file: self-signed fails
    with pytest.raises(NotifyError, match="TLS failed") as caught:
        notifier.send(outgoing())
    assert not caught.value.is_permanent
    assert server.received == []


def test_starttls_never_falls_back_to_plain_text(smtp_server: SmtpServer) -> None:
    # The plain server offers no STARTTLS; the notifier must not send the mail anyway.
    with pytest.raises(NotifyError, match="STARTTLS"):
        SmtpNotifier(config(smtp_server, starttls=True)).send(outgoing())
    assert smtp_server.received == []


def test_implicit_tls_delivers(start_smtp: StartSmtp, tls_files: TlsFiles) -> None:
    server = start_smtp(ssl_context=tls_files.server_context())
    SmtpNotifier(config(server, ssl=True, ca_file=tls_files.cert)).send(outgoing("ru"))
    assert server.received[0].message["Content-Language"] == "ru"


def test_refused_recipient_is_permanent(smtp_server: SmtpServer) -> None:
    smtp_server.handler.refuse.add("gone@example.com")
    with pytest.raises(NotifyError, match="recipient refused: 550") as caught:
        SmtpNotifier(config(smtp_server)).send(outgoing(recipient="gone@example.com"))
    assert caught.value.is_permanent
    assert caught.value.channel == "smtp"
    assert caught.value.notice_id == 7


def test_closed_port_is_retryable() -> None:
    cfg = SmtpConfig(host=LOOPBACK, port=free_port(), from_address=FROM, timeout_seconds=2)
    with pytest.raises(NotifyError, match="cannot deliver") as caught:
        SmtpNotifier(cfg).send(outgoing())
    assert not caught.value.is_permanent


def test_notice_without_address_is_not_accepted(smtp_server: SmtpServer) -> None:
    notifier = SmtpNotifier(config(smtp_server))
    notice = outgoing()
    assert notifier.accepts(notice)
    no_address = OutgoingNotice(
        **{f: getattr(notice, f) for f in OutgoingNotice.__dataclass_fields__} | {"recipient": None}
    )
    assert not notifier.accepts(no_address)


def test_password_is_masked_in_config_repr() -> None:
    cfg = SmtpConfig(
        host="smtp.example.com",
        port=587,
        starttls=True,
        from_address=FROM,
        username="u",
        password=Secret("hunter2"),
    )
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.password)
    assert cfg.password is not None
    assert cfg.password.reveal() == "hunter2"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"starttls": True, "ssl": True}, "not both"),
        ({"username": "u"}, "go together"),
        ({"username": "u", "password": Secret("p"), "host": "smtp.example.com"}, "AUTH"),
        ({"port": 0}, "TCP port"),
        ({"from_address": "no address"}, "e-mail address"),
        ({"from_address": "a@example.com\r\nBcc: x@example.com"}, "line breaks"),
        ({"timeout_seconds": 0}, "positive"),
    ],
)
def test_bad_smtp_config_is_refused(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"host": LOOPBACK, "port": 25, "from_address": FROM}
    values.update(overrides)
    with pytest.raises(ConfigError, match=message):
        SmtpConfig(**values)  # type: ignore[arg-type]


def test_plaintext_auth_is_allowed_to_loopback_or_when_asked() -> None:
    SmtpConfig(host=LOOPBACK, port=25, from_address=FROM, username="u", password=Secret("p"))
    SmtpConfig(
        host="relay.internal",
        port=25,
        from_address=FROM,
        username="u",
        password=Secret("p"),
        allow_plaintext_auth=True,
    )


def test_language_of_message_matches_notice() -> None:
    assert outgoing("zh-HK").language is Language.ZH_HANT
