"""A real ``geogate serve`` with a seeded SQLite store, and headless Chromium (Debian's
``chromium``, driven by Playwright; no browser download) for the console tests.

The store is seeded through ``geogate ingest`` from events written here: an ordinary account,
a blocked one (direct access from CN after the enforcement date) and a flagged one (weak
evidence: a CN phone at signup, Chinese-language requests from Germany), the last two in one
organisation. Screenshots go to ``tests/console/artifacts/`` (not committed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from tests.service.support import Geogate, start_geogate

from geogate.console.passwords import hash_password
from geogate.service.config import ServiceConfig

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
OPERATOR_TOKEN = "console-operator-token-0123456789"
VIEWER_TOKEN = "console-viewer-token-0123456789ab"
USER_PASSWORD = "correct horse battery staple"
WIDTHS = {"desktop": 1280, "phone": 390}


def _events() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {
            "type": "signup",
            "ts": "2024-06-01T08:00:00Z",
            "account": "acct-de",
            "ip": "53.128.0.1",
            "email": "dev@example.de",
            "org": "org-acme",
        },
        {
            "type": "request",
            "ts": "2024-07-10T09:00:00Z",
            "account": "acct-de",
            "ip": "53.128.0.1",
            "accept_language": "de-DE",
            "user_agent": "sdk/1",
            "org": "org-acme",
        },
        {
            "type": "payment",
            "ts": "2024-07-05T12:00:00Z",
            "account": "acct-de",
            "card_country": "DE",
            "billing_country": "DE",
            "amount": 20,
            "currency": "USD",
        },
        {
            "type": "signup",
            "ts": "2024-07-10T07:00:00Z",
            "account": "acct-flagged",
            "ip": "59.224.0.1",
            "phone_country": "CN",
            "email": "x@example.com",
            "org": "org-resell",
        },
    ]
    for minute in range(12):
        out.append(
            {
                "type": "request",
                "ts": f"2024-07-10T10:{minute:02d}:00Z",
                "account": "acct-flagged",
                "ip": "53.128.0.7",
                "accept_language": "zh-CN",
                "user_agent": "sdk/1",
                "org": "org-resell",
            }
        )
    for minute in (0, 20, 40):
        out.append(
            {
                "type": "request",
                "ts": f"2024-07-10T09:{minute:02d}:00Z",
                "account": "acct-cn",
                "ip": "59.224.0.1",
                "accept_language": "zh-CN",
                "user_agent": "sdk/1",
                "org": "org-resell",
            }
        )
    return out


@dataclass
class Console:
    """The running service and its console's base URL."""

    server: Geogate
    workdir: Path

    @property
    def url(self) -> str:
        return f"{self.server.url}/console"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=10, follow_redirects=False)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    feed = work / "events.jsonl"
    feed.write_text("".join(json.dumps(e) + "\n" for e in _events()), encoding="utf-8")
    db = f"sqlite:///{work / 'accounts.db'}"
    subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", "ingest", str(feed), "--db", db],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=work,
    )
    config = work / "geogate.toml"
    # Shedding by event-loop delay protects the decision endpoints under overload; on a shared
    # test machine it would refuse console pages at random, so these tests turn it off.
    serve = (
        "[serve]\nmax_queue_delay_ms = 0\n"
        if "max_queue_delay_ms" in {f.name for f in fields(ServiceConfig)}
        else ""
    )
    config.write_text(
        serve
        + f"""
[accounts]
db = "{db}"

[[accounts.tokens]]
name = "olga"
role = "operator"
secret = "{OPERATOR_TOKEN}"

[[accounts.tokens]]
name = "victor"
role = "viewer"
secret = "{VIEWER_TOKEN}"

[[console.users]]
name = "dana"
role = "operator"
password_hash = "{hash_password(USER_PASSWORD)}"
""",
        encoding="utf-8",
    )
    server = start_geogate(work, "--config", str(config))
    try:
        yield Console(server=server, workdir=work)
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=False)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Keep a full-page screenshot of ``page`` as a test artifact, at both widths."""
    ARTIFACTS.mkdir(exist_ok=True)
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def sign_in_with_token(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("Operator API token").fill(token)
    page.get_by_role("button", name="Sign in with token").click()
    page.wait_for_url(f"{base}/")
