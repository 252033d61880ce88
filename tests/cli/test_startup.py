"""Start-up cost of the CLI: ``geogate check`` loads only what a check needs.

The account store, the notices, the web service, the log scan and their libraries are
imported by the commands that use them, not by every run of ``geogate``; nor is pydantic,
which Typer would import to convert the arguments.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "geogate.notify",
    "geogate.store",
    "geogate.service",
    "geogate.accounts",
    "geogate.accounts_api",
    "geogate.scan",
    "geogate.console",
    "starlette",
    "uvicorn",
    "jinja2",
    "sqlalchemy",
    "grpc",
    "prometheus_client",
    "httpx",
    "pyarrow",
    "pydantic",  # Typer's coercion imports it unless geogate.cli.coercion handles the type
)

PROBE = f"""
import json, sys
from geogate.cli.main import main
code = main(sys.argv[1:])
heavy = {HEAVY!r}
print(json.dumps({{"code": code, "loaded": sorted(m for m in sys.modules if m.startswith(heavy))}}))
"""


def run_probe(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_check_imports_no_store_notices_or_web_modules() -> None:
    report = run_probe("check", "8.8.8.8", "2a00:1450:4001::1", "--json")
    assert report["code"] == 0
    assert report["loaded"] == []


def test_the_probe_sees_what_other_commands_import() -> None:
    """The same probe on a command of another group does load those modules: the check above
    can fail."""
    report = run_probe("notices", "preview", "--kind", "warning")
    assert report["code"] == 0
    assert any(str(m).startswith("geogate.notify") for m in report["loaded"])  # type: ignore[attr-defined]


def test_help_still_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("check", "serve", "ingest", "enforce", "accounts", "notices", "policy"):
        assert command in result.stdout, command
