"""The HTML report renders its map and charts in a real headless Chromium, fully offline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from playwright.sync_api import Browser, sync_playwright
from tests.scan.logfiles import write_parquet

from geogate.policy.model import PolicySet
from geogate.scan.judge import Scenario
from geogate.scan.run import ScanConfig, scan_local

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (make test installs it); never downloaded
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, requests: pa.Table, snapshot, policies: PolicySet
) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    log = write_parquet(tmp / "log.parquet", requests)
    config = ScanConfig(
        inputs=[str(log)],
        out=tmp / "out",
        policies=policies,
        snapshot=snapshot,
        at=datetime(2024, 7, 1, tzinfo=UTC),  # before the enforcement date ...
        compare=Scenario(policies=policies, at=datetime(2024, 7, 10, tzinfo=UTC)),  # ... after
        preview_accounts=True,
    )
    scan_local(config)
    return tmp / "out" / "report.html"


def test_report_is_one_file_that_names_no_remote_resource(report: Path) -> None:
    html = report.read_text()
    assert "cdn.plot.ly" not in html.replace('dflt:"https://cdn.plot.ly/un/"', "")
    assert "<script src=" not in html
    assert '<link rel="stylesheet" href' not in html


def test_map_and_charts_render_offline_in_chromium(report: Path, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    remote: list[str] = []
    # Any request that is not the file itself would be a CDN fetch: record and refuse it.
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("file://")
            else (remote.append(route.request.url), route.abort())
        ),
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    page.wait_for_selector("#map path.choroplethlocation", timeout=60_000)
    # The map: filled country shapes with real geometry, and the land layer from the embedded
    # topology (plotly.js would fetch it from its CDN otherwise).
    shapes = page.locator("#map path.choroplethlocation")
    assert shapes.count() >= 5
    assert len(shapes.first.get_attribute("d") or "") > 50
    assert page.locator("#map .land path, #map path.land").count() >= 1
    # The charts: stacked daily bars, anonymizer shares, the comparison.
    assert page.locator("#daily .bars path").count() >= 10
    assert page.locator("#anonymizers .bars path").count() >= 1
    assert page.locator("#compare .bars path").count() >= 1
    assert page.locator("text=Top accounts").count() == 1
    preview = page.locator("h2:has-text('Account preview') + table tr")
    assert preview.count() >= 2  # a header row and at least one account
    assert remote == []
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    context.close()
