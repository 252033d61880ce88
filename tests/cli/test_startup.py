"""Start-up cost of the CLI: ``geogate check`` loads only what a check needs.

The account store, the notices, the web service, the log scan and their libraries are
imported by the commands that use them, not by every run of ``geogate``; nor is pydantic,
which Typer would import to convert the arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

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
import contextlib, io, json, sys
from geogate.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
print(json.dumps({{"code": code, "loaded": loaded, "stdout": out.getvalue()}}))
"""


def run_probe(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_check_imports_no_store_notices_or_web_modules() -> None:
    report = run_probe("check", "8.8.8.8", "2a00:1450:4001::1", "--json")
    assert report["code"] == 0
    assert report["loaded"] == []


def test_every_check_option_is_read_without_pydantic(tmp_path: Path) -> None:
    """Lists, paths, text and flags (Typer would convert each with pydantic), also from the
    environment, reach the check as the right types."""
    snapshot = tmp_path / "copy.snapshot"
    snapshot.write_bytes((files("geogate.intel") / "data" / "default.snapshot").read_bytes())
    report = run_probe(
        "check",
        "59.224.0.1",
        "--snapshot",
        str(snapshot),
        "--at",
        "2024-07-10",
        "--account",
        "acct-1",
        "--json",
        env={"GEOGATE_POLICY": "builtin:unsupported-regions"},
    )
    assert report["code"] == 0
    assert report["loaded"] == []
    decision = json.loads(str(report["stdout"]).splitlines()[0])
    assert (decision["action"], decision["region"]) == ("deny", "CN")
    assert decision["at"].startswith("2024-07-10")


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
