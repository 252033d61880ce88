"""The console in headless Chromium against a real ``geogate serve``: an operator works the
review queue, a viewer cannot act, the pages pass axe-core and work by keyboard alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect
from tests.console.conftest import (
    OPERATOR_TOKEN,
    USER_PASSWORD,
    VIEWER_TOKEN,
    Console,
    screenshot,
    sign_in_with_token,
)

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def test_operator_finds_flagged_account_reads_evidence_and_exempts_it(
    page: Page, console: Console
) -> None:
    base = console.url
    sign_in_with_token(page, base, OPERATOR_TOKEN)
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("header")).to_contain_text("olga")
    screenshot(page, "overview")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    queue = page.locator("#queue-table")
    expect(queue).to_contain_text("acct-flagged")
    screenshot(page, "accounts")
    queue.get_by_role("link", name="acct-flagged").click()
    page.wait_for_url(re.compile(r".*/console/accounts/acct-flagged$"))

    # The evidence and rules, in the words of `geogate accounts explain`.
    explanation = page.locator("pre.explain")
    expect(explanation).to_contain_text("Account acct-flagged is FLAGGED")
    expect(explanation).to_contain_text("Rules (fired first):")
    expect(page.locator("table.rules tr.fired").first).to_be_visible()
    screenshot(page, "account")

    page.get_by_label("exempt", exact=True).check()
    page.get_by_label("Reason (required, kept in the audit log)").fill(
        "Verified customer, office in Singapore"
    )
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_contain_text("Done: exempt")
    expect(page.locator(".summary .badge")).to_have_text("exempt")
    audit = page.locator("#h-audit + ol")
    expect(audit).to_contain_text("flagged → exempt")
    expect(audit).to_contain_text("operator:olga")
    expect(audit).to_contain_text("Verified customer, office in Singapore")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    expect(page.locator("table")).to_contain_text("operator:olga")
    page.get_by_role("link", name="Verify the hash chain").click()
    expect(page.get_by_role("status")).to_contain_text("The chain is intact")
    screenshot(page, "audit")


def test_a_viewer_sees_but_cannot_act(page: Page, console: Console) -> None:
    base = console.url
    sign_in_with_token(page, base, VIEWER_TOKEN)
    page.goto(f"{base}/accounts/acct-cn")
    expect(page.locator("pre.explain")).to_contain_text("Account acct-cn is BLOCKED")
    expect(page.get_by_text("You are signed in as a viewer")).to_be_visible()
    expect(page.get_by_role("button", name="Apply")).to_have_count(0)
    # Even a well-formed form with the viewer's own CSRF token is refused by the server.
    csrf = page.locator("form.who input[name=csrf]").get_attribute("value")
    answer = page.request.post(
        f"{base}/accounts/acct-cn/action",
        form={"csrf": csrf or "", "action": "reinstate", "reason": "viewer tries"},
        max_redirects=0,
    )
    assert answer.status == 403
    page.reload()
    expect(page.locator(".summary .badge")).to_have_text("blocked")


def test_sign_in_and_act_with_user_name_and_password_by_keyboard_alone(
    page: Page, console: Console
) -> None:
    base = console.url
    page.goto(f"{base}/accounts")  # refused: sent to the sign-in page, then back
    page.wait_for_url(re.compile(r".*/console/signin\?next=.*"))
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "username":
            break
    page.keyboard.type("dana")
    page.keyboard.press("Tab")
    page.keyboard.type(USER_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/accounts$"))
    expect(page.locator("header")).to_contain_text("dana")
    # The skip link is the first stop and moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Search by keyboard: the search field, then Enter.
    page.get_by_label("Search").focus()
    page.keyboard.type("acct-d")
    page.keyboard.press("Enter")
    expect(page.locator("#results")).to_contain_text("acct-de")
    # Open the account and act on it without the mouse: link, radio, reason, Apply.
    page.locator("#results").get_by_role("link", name="acct-de").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/accounts/acct-de$"))
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "action":
            break
    assert page.evaluate("document.activeElement.value") == "exempt"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "reason"
    page.keyboard.type("Contract customer, keyboard test")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Done: exempt")
    expect(page.locator("#h-audit + ol")).to_contain_text("operator:dana")


def test_every_page_passes_axe_at_both_widths(browser: Browser, console: Console) -> None:
    """axe-core (vendored) finds no serious or critical violation on any page, at 1280 px
    and 390 px; a screenshot of each page at each width is kept."""
    base = console.url
    # axe is injected as a script: the console's CSP (rightly) forbids that, so this
    # context bypasses it.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{base}/signin")
        pages = {"signin": f"{base}/signin"}
        _axe(page, "signin")
        sign_in_with_token(page, base, OPERATOR_TOKEN)
        pages = {
            "overview": f"{base}/",
            "accounts": f"{base}/accounts?q=acct&by=account",
            "account": f"{base}/accounts/acct-cn",
            "org": f"{base}/orgs/org-resell",
            "lookup": f"{base}/lookup?q=203.0.113.9%2C+59.224.0.1",
            "policy": f"{base}/policy",
            "audit": f"{base}/audit",
        }
        for name, url in pages.items():
            page.goto(url)
            _axe(page, name)
            screenshot(page, f"page-{name}")
    finally:
        context.close()


def _axe(page: Page, name: str) -> None:
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            "async () => JSON.stringify((await axe.run(document, "
            "{resultTypes: ['violations']})).violations)"
        )
        serious = [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in json.loads(result)
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, f"{name} at {width}px: {serious}"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_overview_counts_decisions_live(page: Page, console: Console) -> None:
    """The decisions table follows the service's own counters without a reload (htmx, served
    by geogate under the console's CSP)."""
    base = console.url
    sign_in_with_token(page, base, VIEWER_TOKEN)
    deny_total = page.locator("#rates tr.act-deny td").nth(1)
    before = int(deny_total.inner_text().replace(",", ""))
    with httpx.Client(base_url=console.server.url, timeout=10) as client:
        for _ in range(7):
            answer = client.post("/v1/decide", json={"ip": "59.224.0.1"})
            assert answer.json()["action"] == "deny"
    expect(deny_total).to_have_text(str(before + 7), timeout=15_000)
    assert page.url == f"{base}/"  # no navigation: the fragment was swapped in


CANDIDATE = """
[policy]
id = "stricter"
version = "2024-07-10"
mode = "deny-list"
effective = 2024-07-01T00:00:00Z

[[rules]]
id = "china"
regions = ["CN", "HK", "MO"]

[[rules]]
id = "germany"
regions = ["DE"]
"""


def test_impact_preview_of_a_pasted_candidate_policy(page: Page, console: Console) -> None:
    base = console.url
    sign_in_with_token(page, base, VIEWER_TOKEN)  # a preview changes nothing: viewers may
    page.goto(f"{base}/policy")
    page.get_by_label("Candidate", exact=True).select_option("pasted")
    page.get_by_label("Candidate policy (TOML").fill(CANDIDATE)
    page.get_by_label("Window from (UTC date)").fill("2024-07-01")
    page.get_by_label("to (exclusive)").fill("2024-07-11")
    page.get_by_role("button", name="Preview").click()
    status = page.locator("#preview [role=status]")
    # The German accounts' requests (acct-de and acct-flagged) would newly be denied.
    expect(status).to_contain_text("2 accounts would newly be denied")
    expect(page.locator("#preview")).to_contain_text("allow → deny")
    screenshot(page, "policy-preview")
    # A broken candidate is one line naming where.
    page.get_by_label("Candidate policy (TOML").fill("[policy]\nid = 1\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview [role=alert]")).to_contain_text("pasted policy")
