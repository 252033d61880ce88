"""Webhook delivery against a real HTTP server on loopback: the signed JSON body, the headers,
and which replies are retried."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from geogate.errors import ConfigError, NotifyError
from geogate.notify.language import Language
from geogate.notify.notifier import OutgoingNotice
from geogate.notify.render import NoticeKind
from geogate.notify.webhook import (
    WebhookConfig,
    WebhookNotifier,
    notice_body,
    sign_body,
    verify_signature,
)
from geogate.secret import Secret

from .receivers import LOOPBACK, WebhookServer, free_port

SECRET = Secret("whsec-test-0123456789")


def outgoing(notice_id: int = 3) -> OutgoingNotice:
    return OutgoingNotice(
        notice_id=notice_id,
        account="acct_9",
        kind=NoticeKind.BLOCKED,
        policy_version="deny@1",
        language=Language.ZH_HANS,
        recipient="dev@example.com",
        subject="您的 Acme API 账户 acct_9 已被停用",
        text="正文",
        html="<p>正文</p>",
        payload={"email": "dev@example.com", "region": "CN", "crm_id": 881},
        attempt=2,
        at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
    )


def notifier(url: str, **overrides: object) -> WebhookNotifier:
    values: dict[str, object] = {"url": url, "secret": SECRET, "timeout_seconds": 2.0}
    values.update(overrides)
    return WebhookNotifier(WebhookConfig(**values))  # type: ignore[arg-type]


def test_posts_signed_json_the_receiver_can_verify(webhook_server: WebhookServer) -> None:
    notifier(webhook_server.url).send(outgoing())

    [request] = webhook_server.requests
    assert request.path == "/hooks/geogate"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["x-geogate-delivery"] == "3"
    assert request.headers["x-geogate-event"] == "notice.blocked"
    assert request.headers["user-agent"].startswith("geogate/")
    # The receiver's check, written out independently of geogate's helper:
    expected = hmac.new(SECRET.reveal().encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-geogate-signature"] == f"sha256={expected}"
    assert verify_signature(SECRET, request.body, request.headers["x-geogate-signature"])

    document = json.loads(request.body.decode("utf-8"))
    assert document == {
        "id": 3,
        "kind": "blocked",
        "account": "acct_9",
        "policy_version": "deny@1",
        "language": "zh-Hans",
        "recipient": "dev@example.com",
        "subject": "您的 Acme API 账户 acct_9 已被停用",
        "text": "正文",
        "html": "<p>正文</p>",
        "payload": {"email": "dev@example.com", "region": "CN", "crm_id": 881},
        "attempt": 2,
        "sent_at": "2026-03-02T09:30:00+00:00",
    }


def test_signature_fails_for_a_changed_body_or_another_secret() -> None:
    body = notice_body(outgoing())
    header = sign_body(SECRET, body)
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body.replace(b"acct_9", b"acct_8"), header)
    assert not verify_signature(Secret("other-secret-0000000"), body, header)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "sha256=")
    assert not verify_signature(SECRET, body, header.removeprefix("sha256="))


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429, 301])
def test_server_errors_and_throttling_are_retried(
    webhook_server: WebhookServer, status: int
) -> None:
    webhook_server.statuses.append(status)
    with pytest.raises(NotifyError, match=f"HTTP {status}") as caught:
        notifier(webhook_server.url).send(outgoing())
    assert not caught.value.is_permanent
    assert caught.value.channel == "webhook"


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_client_errors_are_permanent(webhook_server: WebhookServer, status: int) -> None:
    webhook_server.statuses.append(status)
    with pytest.raises(NotifyError, match="rejected by test") as caught:
        notifier(webhook_server.url).send(outgoing())
    assert caught.value.is_permanent


def test_closed_port_is_retried() -> None:
    with pytest.raises(NotifyError) as caught:
        notifier(f"http://{LOOPBACK}:{free_port()}/hook").send(outgoing())
    assert not caught.value.is_permanent
    assert "ConnectError" in str(caught.value)


def test_slow_receiver_times_out_and_is_retried() -> None:
    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(1.0)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Slow)
    thread = Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://{LOOPBACK}:{server.server_address[1]}/"
        started = time.monotonic()
        with pytest.raises(NotifyError, match="timed out") as caught:
            notifier(url, timeout_seconds=0.2).send(outgoing())
        assert time.monotonic() - started < 0.9
        assert not caught.value.is_permanent
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_secret_is_masked_in_config_repr() -> None:
    cfg = WebhookConfig(url="https://hooks.example.com/x", secret=Secret("topsecret"))
    assert "topsecret" not in repr(cfg)
    assert "topsecret" not in f"{cfg.secret}"


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("ftp://hooks.example.com/", "k", "http"),
        ("hooks.example.com/x", "k", "http"),
        ("http://hooks.example.com/x", "k", "https"),  # plain http to a remote host
        ("https://hooks.example.com/x", "", "empty"),
    ],
)
def test_bad_webhook_config_is_refused(url: str, secret: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WebhookConfig(url=url, secret=Secret(secret))


def test_plain_http_is_allowed_to_loopback_or_when_asked() -> None:
    WebhookConfig(url="http://[::1]:8080/x", secret=SECRET)
    WebhookConfig(url="http://localhost/x", secret=SECRET)
    WebhookConfig(url="http://hooks.internal/x", secret=SECRET, allow_http=True)
