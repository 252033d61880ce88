"""``geogate scan``: argument parsing and the progress bar (the work is in :mod:`geogate.scan`).

``geogate.cli.main`` registers a thin ``scan`` command that hands its arguments to
:func:`run_cli`, so that importing the CLI does not import pyarrow, plotly or pyspark.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from geogate.errors import ConfigError

app = typer.Typer(
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _RowsColumn(ProgressColumn):
    """Rows judged and rows per second."""

    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rows:,} rows  {rate:,.0f} rows/s")


def _when(text: str | None, option: str) -> Any:
    from geogate.cli.main import parse_when  # noqa: PLC0415

    return parse_when(text, option=option) if text is not None else None


@app.command(name="scan")
def scan_command(
    logs: Annotated[list[str], typer.Argument(help="Log files, directories or globs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Policy file or builtin:NAME (repeat for versions)."),
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option("--snapshot", "-s", help="Snapshot file (default: embedded).")
    ] = None,
    at: Annotated[
        list[str] | None,
        typer.Option(
            "--at",
            help="Judge every request as of this date (default: each at its own time). "
            "Give it twice to compare two dates.",
        ),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option("--compare", help="Policy B to compare with (file or builtin:NAME)."),
    ] = None,
    pivot: Annotated[
        str | None,
        typer.Option(
            "--pivot",
            help="Before/after date (default: --at, else the policy's first enforcement date).",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests from this time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only requests before this time.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, jsonl, csv, parquet or nginx.")
    ] = "auto",
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="FIELD=NAME: read FIELD (ts, peer, xff, forwarded, account, "
            "org, user_agent, accept_language, api_key) from column NAME.",
        ),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option("--trusted-proxy", help="CIDR whose forwarding headers are believed."),
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="local or spark.")] = "local",
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Local engine: scan the input files in N processes (memory is per process).",
        ),
    ] = 1,
    preview_accounts: Annotated[
        bool,
        typer.Option(
            "--preview-accounts",
            help="Also feed the requests through the account engine and list the accounts it "
            "would flag, warn and block at --at (exact: each account's identical requests of "
            "an hour go in as one counted event; see docs/scan.md for the rate).",
        ),
    ] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Tables only.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Judge access logs against a policy: aggregate tables (Parquet) and report.html in OUT.

    Every request is decided as the service would (trusted-proxy walk, policy in force,
    network kinds). --compare and a second --at preview a policy change.
    """
    from geogate.cli.main import load_policies, load_snapshot  # noqa: PLC0415
    from geogate.client_ip import TrustedProxies  # noqa: PLC0415
    from geogate.scan.judge import Scenario  # noqa: PLC0415
    from geogate.scan.readers import ReadOptions, parse_field_options  # noqa: PLC0415
    from geogate.scan.run import ScanConfig, scan_local  # noqa: PLC0415

    if engine not in {"local", "spark"}:
        raise ConfigError(f"unknown engine {engine!r}; use local or spark", key="--engine")
    ats = at or []
    if len(ats) > 2:
        raise ConfigError("give --at at most twice", key="--at")
    if preview_accounts and engine == "spark":
        raise ConfigError("--preview-accounts runs with the local engine only", key="--engine")
    read = ReadOptions(
        format=fmt, fields=parse_field_options(field or []), client_hints=preview_accounts
    )
    policies = load_policies(policy)
    when = _when(ats[0], "--at") if ats else None
    scenario_b = None
    if compare or len(ats) == 2:
        scenario_b = Scenario(
            policies=load_policies(compare) if compare else policies,
            at=_when(ats[1], "--at") if len(ats) == 2 else when,
        )
    config = ScanConfig(
        inputs=logs,
        out=out,
        policies=policies,
        snapshot=load_snapshot(snapshot),
        snapshot_path=snapshot,
        read=read,
        trusted=TrustedProxies.parse(trusted_proxy or []),
        at=when,
        compare=scenario_b,
        pivot=_when(pivot, "--pivot"),
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        report=not no_report,
        preview_accounts=preview_accounts,
    )
    if engine == "spark":
        from geogate.scan.spark import scan_spark  # noqa: PLC0415

        result = scan_spark(config)
    elif no_progress or not sys.stderr.isatty():
        result = scan_local(config, jobs=jobs)
    else:
        from geogate.scan.readers import expand_inputs, input_bytes  # noqa: PLC0415

        total = input_bytes(expand_inputs(logs))
        with Progress(
            TextColumn("scanning"),
            BarColumn(),
            _RowsColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("scan", total=total, rows=0)

            def progress(rows: int, done: int) -> None:
                bar.update(task, completed=done, rows=rows)

            result = scan_local(config, progress=progress, jobs=jobs)
    s = result.stats
    err.print(
        f"scanned {result.rows:,} requests from {result.files} files in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s); {s.count:,} malformed lines"
        + (f", {s.skipped:,} non-request events skipped" if s.skipped else ""),
        markup=False,
    )
    for sample in s.samples[:5]:
        err.print(
            f"  malformed {sample['source']}:{sample['line']}: {sample['error']}", markup=False
        )
    written = ", ".join(sorted(f"{k}.parquet" for k in result.tables))
    print(f"wrote {out}: {written}" + ("" if no_report else ", report.html"))


def run_cli(args: list[str]) -> int | None:
    """Run ``geogate scan`` with ``args`` (errors propagate to the main CLI's handler)."""
    result = app(args=args, prog_name="geogate scan", standalone_mode=False)
    return result if isinstance(result, int) else None
