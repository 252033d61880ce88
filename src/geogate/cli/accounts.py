"""``geogate ingest``, ``geogate accounts ...``, ``geogate enforce`` and ``geogate audit``:
argument parsing and output only; the work is :class:`geogate.accounts.engine.Enforcer`'s."""

from __future__ import annotations

import csv
import gc
import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from geogate.errors import ConfigError, EventError

if TYPE_CHECKING:
    from geogate.accounts.engine import Enforcer
    from geogate.accounts.evidence import BinTable
    from geogate.store.protocol import AccountRow
    from geogate.store.sql import SqlStore

DEFAULT_DB = "geogate.db"

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        help="Account store: sqlite:///FILE, a file path, or postgresql://... "
        f"Default: {DEFAULT_DB}.",
        envvar="GEOGATE_DB",
    ),
]
PolicyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        "-p",
        help="Policy file (repeat for versions) or builtin:NAME; its [accounts] table sets the "
        "rules. Default: builtin:unsupported-regions.",
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
OperatorOpt = Annotated[str | None, typer.Option("--operator", help="Who is acting (recorded).")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why (recorded with the transition).")]


def register(app: typer.Typer) -> None:
    """Add ``ingest``, ``accounts``, ``enforce`` and ``audit`` to the ``geogate`` app."""
    app.command("ingest")(ingest)
    app.command("enforce")(enforce)
    accounts = typer.Typer(
        help="Account states, evidence and operator actions.", no_args_is_help=True
    )
    accounts.command("list")(accounts_list)
    accounts.command("show")(accounts_show)
    accounts.command("explain")(accounts_explain)
    accounts.command("exempt")(accounts_exempt)
    accounts.command("appeal")(accounts_appeal)
    accounts.command("reinstate")(accounts_reinstate)
    accounts.command("reject-appeal")(accounts_reject_appeal)
    accounts.command("block")(accounts_block)
    app.add_typer(accounts, name="accounts")
    audit = typer.Typer(
        help="The hash-chained audit log of account state changes.", no_args_is_help=True
    )
    audit.command("verify")(audit_verify)
    app.add_typer(audit, name="audit")


# ----- wiring --------------------------------------------------------------------------


def _store(db: str) -> SqlStore:
    from geogate.store.sql import SqlStore  # noqa: PLC0415 - keeps `geogate --help` fast

    return SqlStore.open(db)


def _bins(path: Path | None) -> BinTable | None:
    from geogate.accounts.evidence import BinTable  # noqa: PLC0415

    if path is None:
        return None
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = [(r[0], r[1]) for r in csv.reader(f) if len(r) >= 2 and not r[0].startswith("#")]
    except OSError as exc:
        raise ConfigError(f"cannot read BIN table: {exc.strerror}", path=str(path)) from None
    table = BinTable(rows)
    if not len(table):
        raise ConfigError("no prefix,country rows found", path=str(path))
    return table


def _enforcer(
    store: SqlStore,
    policy: list[str] | None,
    snapshot: Path | None,
    *,
    bins: BinTable | None = None,
) -> Enforcer:
    from geogate.accounts.engine import Enforcer  # noqa: PLC0415
    from geogate.accounts.evidence import DeciderLocator  # noqa: PLC0415
    from geogate.cli.main import load_policies, load_snapshot  # noqa: PLC0415
    from geogate.decide import Decider  # noqa: PLC0415

    policies = load_policies(policy)
    decider = Decider(policies, load_snapshot(snapshot))
    return Enforcer(store, policies=policies, locator=DeciderLocator(decider), bins=bins)


def _when(text: str | None) -> Any:
    from geogate.cli.main import parse_when  # noqa: PLC0415

    return parse_when(text)


# ----- ingest --------------------------------------------------------------------------


@contextmanager
def ingest_collector() -> Iterator[None]:
    """Tune the cyclic garbage collector for a bulk ingestion, and restore it afterwards.

    Ingestion keeps each batch's events and up to ``cache_accounts`` accounts' evidence alive
    as millions of small containers, which reference counting frees; the collector's full
    passes over them, every ten younger passes by default, took a fifth of ingestion time
    (2.5 s of 12 s for 300,000 events). What is alive beforehand (snapshot, policy) is frozen
    out of collection; the youngest generation is collected every 100,000 allocations instead
    of every 700, the middle one every 50 young passes and full passes a hundred times less
    often: 3,148 young and 286 middle passes took 0.93 s of 9.5 s for 300,000 events, 18 and 1
    take 0.57 s. Cyclic garbage is still collected, only in larger steps.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, thresholds[2] * 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def ingest(
    files: Annotated[list[Path], typer.Argument(help="Event files: .jsonl, .csv or .parquet.")],
    db: DbOpt = DEFAULT_DB,
    policy: PolicyOpt = None,
    snapshot: SnapshotOpt = None,
    batch_size: Annotated[
        int, typer.Option(help="Events per transaction (acknowledged together).")
    ] = 50_000,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where malformed lines go (JSON Lines). Default: FILE.rejects.jsonl."),
    ] = None,
    bin_table: Annotated[
        Path | None,
        typer.Option("--bin-table", help="CSV of card BIN prefix,country rows (optional)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Read event files into the account store, updating evidence and states as they arrive.

    Re-running the same file is safe: events already stored are skipped (idempotent ids).
    """
    from geogate.accounts.events import Event, Rejected, read_events  # noqa: PLC0415

    if batch_size < 1:
        raise ConfigError("must be at least 1", key="--batch-size")
    for f in files:
        if not f.is_file():
            raise EventError("no such file", source=str(f))
    store = _store(db)
    try:
        enforcer = _enforcer(store, policy, snapshot, bins=_bins(bin_table))
        total_bytes = sum(f.stat().st_size for f in files)
        totals: Counter[str] = Counter()
        transitions: Counter[str] = Counter()
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[events]:,} events"),
            TimeRemainingColumn(),
            console=err,
            disable=quiet or not err.is_terminal,
        )
        with progress:
            task = progress.add_task("ingest", total=total_bytes or 1, events=0)
            for f in files:
                reject_path = rejects or f.with_name(f.name + ".rejects.jsonl")
                reject_handle = None
                rejected_here = 0

                def events(path: Path = f, reject_path: Path = reject_path) -> Iterator[Event]:
                    nonlocal reject_handle, rejected_here
                    for item in read_events(path):
                        if isinstance(item, Rejected):
                            if reject_handle is None:
                                reject_handle = reject_path.open("a", encoding="utf-8")
                            reject_handle.write(item.to_json() + "\n")
                            rejected_here += 1
                            if rejected_here <= 5:
                                err.print(f"geogate: rejected {item.error}", markup=False)
                            continue
                        progress.advance(task, len(item.record) + 1)
                        yield item

                def acknowledged(report: Any) -> None:
                    totals["inserted"] += report.inserted
                    totals["duplicates"] += report.duplicates
                    totals["notices"] += report.notices
                    for t in report.transitions:
                        transitions[f"{t.from_state} -> {t.to_state}"] += 1
                    progress.update(task, events=totals["inserted"] + totals["duplicates"])

                try:
                    with ingest_collector():
                        enforcer.ingest(events(), batch_size=batch_size, on_batch=acknowledged)
                finally:
                    if reject_handle is not None:
                        reject_handle.close()
                if rejected_here:
                    totals["rejected"] += rejected_here
                    err.print(
                        f"geogate: {rejected_here} malformed lines of {f} written to {reject_path}"
                    )
    finally:
        store.close()
    out.print(
        f"ingested {totals['inserted']:,} new events ({totals['duplicates']:,} already stored, "
        f"{totals['rejected']:,} rejected); {totals['notices']:,} notices queued"
    )
    for move, n in transitions.most_common():
        out.print(f"  {move}: {n:,} accounts")


# ----- enforce -------------------------------------------------------------------------


def enforce(
    at: Annotated[str, typer.Option("--at", help="Evaluate as of this date or date-time (UTC).")],
    db: DbOpt = DEFAULT_DB,
    policy: PolicyOpt = None,
    snapshot: SnapshotOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would change.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    limit: Annotated[int, typer.Option(help="Most changed accounts to list.")] = 200,
) -> None:
    """Re-evaluate every account as of --at: warn before the effective date, block on or after
    it the warned accounts that still show the evidence."""
    when = _when(at)
    store = _store(db)
    try:
        report = _enforcer(store, policy, snapshot).enforce(when, dry_run=dry_run)
    finally:
        store.close()
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "at": when.isoformat(),
                    "dry_run": dry_run,
                    "evaluated": report.evaluated,
                    "by_state": report.by_state,
                    "by_reason": report.by_reason,
                    "by_region": report.by_region,
                    "review": list(report.review),
                    "changes": [
                        {
                            "account": c.account,
                            "from": c.from_state.value,
                            "to": c.to_state.value,
                            "rules": list(c.rules),
                            "regions": list(c.regions),
                            "policy": c.policy_version,
                        }
                        for c in report.changes
                    ],
                }
            )
        )
        return
    verb = "would change" if dry_run else "changed"
    out.print(
        f"{report.evaluated:,} accounts evaluated as of {when.isoformat()}; "
        f"{len(report.changes):,} {verb}"
    )
    for title, counts in (
        ("by new state", report.by_state),
        ("by reason", report.by_reason),
        ("by region", report.by_region),
    ):
        if counts:
            out.print(f"{title}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if report.changes:
        table = Table(title_justify="left")
        for col in ("account", "from", "to", "rules", "regions"):
            table.add_column(col)
        for c in report.changes[:limit]:
            table.add_row(
                c.account,
                c.from_state.value,
                c.to_state.value,
                ", ".join(c.rules),
                ", ".join(c.regions),
            )
        out.print(table)
        if len(report.changes) > limit:
            out.print(f"... and {len(report.changes) - limit:,} more (use --json for all)")
    if report.review:
        shown = ", ".join(report.review[:20])
        more = f" and {len(report.review) - 20:,} more" if len(report.review) > 20 else ""
        out.print(
            f"{len(report.review):,} blocked accounts no longer show evidence that blocks them "
            f"(review them; `geogate accounts explain ACCOUNT`): {shown}{more}"
        )


# ----- accounts ------------------------------------------------------------------------


def accounts_list(
    db: DbOpt = DEFAULT_DB,
    state: Annotated[str | None, typer.Option(help="Only accounts in this state.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Most accounts to list (0: all). Default: 100, or all with --json."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Every account as one JSON document.")
    ] = False,
    policy: PolicyOpt = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Assess as of this time (default: now).")
    ] = None,
) -> None:
    """List accounts: the state each is in (frozen at the move, with its score and reasons)
    beside what the evidence says now. A blocked account whose evidence has gone is marked for
    review."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from geogate.accounts.engine import Enforcer  # noqa: PLC0415
    from geogate.accounts.states import AccountState  # noqa: PLC0415
    from geogate.cli.main import load_policies  # noqa: PLC0415

    if state is not None and state not in {s.value for s in AccountState}:
        raise ConfigError(
            f"unknown state {state!r} (one of {', '.join(s.value for s in AccountState)})",
            key="--state",
        )
    if limit is not None and limit < 0:
        raise ConfigError("must be 0 (all) or more", key="--limit")
    cap = limit if limit is not None else (0 if as_json else 100)
    when = _when(at) if at else datetime.now(UTC)
    store = _store(db)
    try:
        counts = store.count_accounts()
        total = counts.get(state, 0) if state else sum(counts.values())
        rows = []
        for row in store.iter_accounts(state=state, batch_size=min(cap or 10_000, 10_000)):
            rows.append(row)
            if cap and len(rows) >= cap:
                break
        enforcer = Enforcer(store, policies=load_policies(policy), locator=_NoLocator())
        now = enforcer.assess_rows(rows, at=when)
    finally:
        store.close()
    if cap and total > len(rows):
        err.print(
            f"listing {len(rows):,} of {total:,} accounts (--limit {cap}); --limit 0 lists all"
        )
    if as_json:
        doc = {
            "at": when.isoformat(),
            "counts": counts,
            "total": total,
            "listed": len(rows),
            "accounts": [_row_dict(r, now.get(r.account)) for r in rows],
        }
        out.print_json(json.dumps(doc), indent=None)
        return
    out.print(
        "accounts by state: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none")
    )
    table = Table(title_justify="left")
    for col in ("account", "state", "since", "score", "reasons", "now", "last seen"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.account,
            r.state + (" (review)" if _needs_review(r, now.get(r.account)) else ""),
            f"{r.state_since:%Y-%m-%d %H:%M}" if r.state_since else "-",
            f"{r.score:.2f}",
            ", ".join(r.reasons) or "-",
            _now_text(now.get(r.account)),
            f"{r.last_seen:%Y-%m-%d %H:%M}" if r.last_seen else "-",
        )
    out.print(table)


def _needs_review(row: Any, assessment: Any) -> bool:
    """A blocked account whose evidence no longer blocks it: an operator should look."""
    return bool(
        row.state == "blocked" and assessment is not None and assessment.verdict.label != "block"
    )


def _now_text(assessment: Any) -> str:
    if assessment is None:
        return "-"
    names = ", ".join(assessment.rule_names)
    return f"{assessment.verdict.label} {assessment.strong_score:.2f}" + (
        f" ({names})" if names else ""
    )


def _row_dict(r: AccountRow, assessment: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = r.summary_json()
    if assessment is not None:
        doc["now"] = {
            "verdict": assessment.verdict.label,
            "score": round(assessment.score, 4),
            "strong_score": round(assessment.strong_score, 4),
            "rules": list(assessment.rule_names),
            "regions": list(assessment.regions),
            "post_date": assessment.post_date,
        }
        doc["review"] = _needs_review(r, assessment)
    return doc


def _require(store: SqlStore, account: str) -> Any:
    row = store.get_account(account)
    if row is None:
        raise ConfigError(f"no account {account!r} in the store", key="ACCOUNT")
    return row


def accounts_show(
    account: Annotated[str, typer.Argument(help="Account id.")],
    db: DbOpt = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show an account's state, history and notices."""
    store = _store(db)
    try:
        row = _require(store, account)
        transitions = store.transitions(account)
        notices = store.notices(account)
    finally:
        store.close()
    if as_json:
        data = _row_dict(row) | {
            "transitions": [
                {
                    "at": t.at.isoformat(),
                    "from": t.from_state,
                    "to": t.to_state,
                    "rules": list(t.rules),
                    "policy": t.policy_version,
                    "actor": t.actor,
                    "note": t.note,
                }
                for t in transitions
            ],
            "notices": [
                {"kind": n.kind, "policy": n.policy_version, "state": str(n.state)} for n in notices
            ],
        }
        out.print_json(json.dumps(data))
        return
    d = _row_dict(row)
    for key, value in d.items():
        out.print(f"{key}: {value if not isinstance(value, list) else ', '.join(value) or '-'}")
    for t in transitions:
        out.print(
            f"  {t.at:%Y-%m-%d %H:%M} {t.from_state} -> {t.to_state} by {t.actor}: "
            f"{', '.join(t.rules)} ({t.policy_version})"
        )
    for n in notices:
        out.print(f"  notice {n.kind} ({n.policy_version}): {n.state}")


def accounts_explain(
    account: Annotated[str, typer.Argument(help="Account id.")],
    db: DbOpt = DEFAULT_DB,
    policy: PolicyOpt = None,
    snapshot: SnapshotOpt = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Assess as of this time. Default: the account's last event."),
    ] = None,
) -> None:
    """Explain in plain language every piece of evidence and every rule behind the state."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from geogate.accounts.config import AccountsConfig  # noqa: PLC0415
    from geogate.accounts.explain import explain_lines  # noqa: PLC0415

    store = _store(db)
    try:
        row = _require(store, account)
        when = _when(at) if at else (row.last_seen or datetime.now(UTC))
        enforcer = _enforcer(store, policy, snapshot)
        fresh, assessment = enforcer.assess_account(account, at=when)
        if fresh is None or assessment is None:
            raise ConfigError(f"no account {account!r} in the store", key="ACCOUNT")
        row = fresh
        config = AccountsConfig.from_policy(enforcer.policies.in_force(when))
        lines = explain_lines(
            row,
            assessment,
            config=config,
            transitions=store.transitions(account),
            notices=store.notices(account),
        )
    finally:
        store.close()
    for line in lines:
        out.print(line, markup=False)


def _operate(
    account: str,
    action: str,
    db: str,
    operator: str | None,
    note: str | None,
    policy: list[str] | None,
) -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from geogate.accounts.engine import Enforcer  # noqa: PLC0415
    from geogate.accounts.states import OperatorAction  # noqa: PLC0415
    from geogate.cli.main import load_policies  # noqa: PLC0415

    store = _store(db)
    try:
        enforcer = Enforcer(store, policies=load_policies(policy), locator=_NoLocator())
        t = enforcer.operate(
            account, OperatorAction(action), at=datetime.now(UTC), operator=operator, note=note
        )
    finally:
        store.close()
    out.print(f"{account}: {t.from_state} -> {t.to_state}")


class _NoLocator:
    """Operator actions look nothing up; a locator is still part of the Enforcer."""

    def locate(self, ip: str, at: Any) -> Any:
        raise ConfigError("operator actions do not locate addresses")

    def is_unsupported(self, region: str, at: Any) -> bool:
        raise ConfigError("operator actions do not classify regions")


def accounts_exempt(
    account: Annotated[str, typer.Argument(help="Account id.")],
    db: DbOpt = DEFAULT_DB,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Lift the exemption (back to active).")
    ] = False,
    operator: OperatorOpt = None,
    note: NoteOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Exempt an account: the engine never changes its state (until --revoke)."""
    _operate(account, "unexempt" if revoke else "exempt", db, operator, note, policy)


def accounts_appeal(
    account: Annotated[str, typer.Argument(help="Account id.")],
    db: DbOpt = DEFAULT_DB,
    operator: OperatorOpt = None,
    note: NoteOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Record an appeal against a warning, flag or block (state appealed)."""
    _operate(account, "appeal", db, operator, note, policy)


def accounts_reinstate(
    account: Annotated[str, typer.Argument(help="Account id.")],
    db: DbOpt = DEFAULT_DB,
    operator: OperatorOpt = None,
    note: NoteOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Reinstate an account; the evidence before this moment no longer counts."""
    _operate(account, "reinstate", db, operator, note, policy)


def accounts_reject_appeal(
    account: Annotated[str, typer.Argument(help="Account id.")],
    db: DbOpt = DEFAULT_DB,
    operator: OperatorOpt = None,
    note: NoteOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Reject an appeal: the account is blocked again."""
    _operate(account, "reject_appeal", db, operator, note, policy)


def accounts_block(
    account: Annotated[str, typer.Argument(help="Account id.")],
    note: Annotated[str, typer.Option("--note", help="Why (required; recorded and audited).")],
    db: DbOpt = DEFAULT_DB,
    operator: OperatorOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Block an account on an operator's own judgement (a reason is required); a blocked notice
    is queued like for any block."""
    if not note.strip():
        raise ConfigError("a reason is required", key="--note")
    _operate(account, "block", db, operator, note, policy)


# ----- audit ---------------------------------------------------------------------------


def audit_verify(db: DbOpt = DEFAULT_DB) -> None:
    """Check the audit log's hash chain; a broken chain is an error (exit code 4)."""
    from geogate.errors import StoreError  # noqa: PLC0415

    store = _store(db)
    try:
        report = store.verify_audit()
    finally:
        store.close()
    if not report.ok:
        raise StoreError(f"audit log broken at record {report.broken_at}: {report.problem}")
    out.print(f"audit log ok: {report.records:,} records, head {report.head}")
