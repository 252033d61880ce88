"""The console's guards over plain HTTP against a real ``geogate serve``: no page or action
without a session, no state change without the CSRF token or from another origin, cookie
flags, and the sign-in rate limit (last: it locks out the test's own address)."""

from __future__ import annotations

import os
import re

import httpx
import pytest
from tests.console.conftest import OPERATOR_TOKEN, VIEWER_TOKEN, Console

PAGES = [
    "/console/",
    "/console/rates",
    "/console/accounts",
    "/console/accounts?q=acct&by=org",
    "/console/accounts/acct-cn",
    "/console/orgs/org-resell",
    "/console/lookup?q=59.224.0.1",
    "/console/policy",
    "/console/audit",
    "/console/audit?verify=1",
]
ACTIONS = [
    "/console/accounts/acct-cn/action",
    "/console/accounts/acct-flagged/action",
    "/console/signout",
    "/console/policy/preview",
]


def sign_in(client: httpx.Client, token: str) -> str:
    """Sign in with ``token``; returns the session's CSRF token."""
    form = client.get("/console/signin")
    pre = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert pre is not None
    answer = client.post("/console/signin", data={"csrf": pre.group(1), "token": token})
    assert answer.status_code == 303, answer.text
    page = client.get("/console/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return csrf.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_refuses_a_request_without_a_session(console: Console, path: str) -> None:
    with console.client() as client:
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/signin?next=")
        assert "acct-" not in answer.text
        fragment = client.get(path, headers={"hx-request": "true"})
        assert fragment.status_code == 401
    with console.client() as forged:
        forged.cookies.set("geogate_console", "not-a-session", path="/console")
        assert forged.get(path).status_code == 303


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_refuses_a_request_without_a_session(console: Console, path: str) -> None:
    with console.client() as client:
        answer = client.post(path, data={"action": "reinstate", "reason": "x", "csrf": "x"})
        assert answer.status_code == 401


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    with console.client() as client:
        csrf = sign_in(client, OPERATOR_TOKEN)
        for form in (
            {"action": "reinstate", "reason": "no token"},
            {"action": "reinstate", "reason": "wrong token", "csrf": csrf[::-1]},
        ):
            answer = client.post("/console/accounts/acct-cn/action", data=form)
            assert answer.status_code == 403
            assert "CSRF" in answer.text
        cross = client.post(
            "/console/accounts/acct-cn/action",
            data={"action": "reinstate", "reason": "elsewhere", "csrf": csrf},
            headers={"origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        page = client.get("/console/accounts/acct-cn")
        assert 'class="badge st-blocked"' in page.text
        # A reason is required, too.
        empty = client.post(
            "/console/accounts/acct-cn/action",
            data={"action": "reinstate", "reason": "  ", "csrf": csrf},
        )
        assert empty.status_code == 400
        # The sign-in form has its own CSRF token (no login CSRF).
        assert client.post("/console/signin", data={"token": OPERATOR_TOKEN}).status_code == 403


def test_the_session_cookie_is_httponly_strict_and_scoped(console: Console) -> None:
    with console.client() as client:
        form = client.get("/console/signin")
        pre = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert pre is not None
        answer = client.post("/console/signin", data={"csrf": pre.group(1), "token": VIEWER_TOKEN})
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("geogate_console=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # plain HTTP here; Secure over TLS
        page = client.get("/console/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_a_refusal_echoes_nothing_unescaped(console: Console) -> None:
    with console.client() as client:
        csrf = sign_in(client, OPERATOR_TOKEN)
        answer = client.post(
            "/console/accounts/<b>x</b>/action",
            data={"action": "reinstate", "reason": "r", "csrf": csrf},
        )
        assert answer.status_code in (404, 409)
        assert "<b>" not in answer.text


def _attempt(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/console/signin")
    pre = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert pre is not None
    return client.post("/console/signin", data={"csrf": pre.group(1), "token": token})


def test_sign_in_attempts_are_rate_limited(console: Console) -> None:
    # The limit is kept per worker process (workers share nothing): keep failing until every
    # worker has refused a few times in a row, then even the right token is refused.
    workers = os.cpu_count() or 1
    refused_in_a_row = 0
    with console.client() as client:
        for _ in range(5 * workers + 10 * workers):
            answer = _attempt(client, "wrong-token-000000000")
            if answer.status_code == 429:
                assert int(answer.headers["retry-after"]) > 0
                refused_in_a_row += 1
                if refused_in_a_row >= 4 * workers:
                    break
            else:
                assert answer.status_code == 401
                refused_in_a_row = 0
        assert refused_in_a_row >= 4 * workers
        assert _attempt(client, OPERATOR_TOKEN).status_code == 429
