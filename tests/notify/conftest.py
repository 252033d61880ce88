"""Fixtures for the notice tests: real receivers on loopback and every outbox implementation."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from geogate.notify.memory import MemoryOutbox
from geogate.store.sql import SqlStore

from .receivers import (
    LOOPBACK,
    InspectableOutbox,
    ManualClock,
    RecordingHandler,
    SmtpServer,
    TlsFiles,
    WebhookRequest,
    WebhookServer,
    free_port,
    make_self_signed,
)

StartSmtp = Callable[..., SmtpServer]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def start_smtp() -> Iterator[StartSmtp]:
    """Start an aiosmtpd server on loopback: ``start_smtp(port=None, **smtp_kwargs)``.

    Keyword arguments go to aiosmtpd (``tls_context``, ``require_starttls``,
    ``authenticator``, ``ssl_context`` for implicit TLS...). Servers stop after the test.
    """
    controllers: list[Controller] = []

    def start(port: int | None = None, **kwargs: Any) -> SmtpServer:
        handler = RecordingHandler()
        controller = Controller(
            handler, hostname=LOOPBACK, port=port or free_port(), ready_timeout=5, **kwargs
        )
        controller.start()
        controllers.append(controller)
        return SmtpServer(host=LOOPBACK, port=controller.port, handler=handler)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp: StartSmtp) -> SmtpServer:
    """A plain SMTP server on loopback that accepts everything."""
    return start_smtp()


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A webhook receiver on loopback (see WebhookServer)."""
    requests: list[WebhookRequest] = []
    statuses: deque[int] = deque()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            requests.append(
                WebhookRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            status = statuses.popleft() if statuses else 204
            reply = b"" if status == 204 else b'{"error": "rejected by test"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield WebhookServer(
            url=f"http://{LOOPBACK}:{server.server_address[1]}/hooks/geogate",
            requests=requests,
            statuses=statuses,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(params=["memory", "sqlite"])
def outbox(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> Iterator[InspectableOutbox]:
    """Every outbox implementation in turn, dated by ``clock`` (the same tests run on each)."""
    if request.param == "memory":
        yield MemoryOutbox(clock=clock)
        return
    store = SqlStore.open(str(tmp_path / "store.db"), clock=clock)
    try:
        yield store
    finally:
        store.close()
