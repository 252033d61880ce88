"""``geogate notices``: deliver pending notices and preview the templates."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from geogate.clock import SystemClock
from geogate.errors import ConfigError
from geogate.notify.config import NotifyConfig, load_notify_config
from geogate.notify.language import pick_language
from geogate.notify.outbox import DeliveryReport, Outcome, deliver_pending
from geogate.notify.render import NoticeKind, NoticeRenderer, sample_payload

if TYPE_CHECKING:
    from geogate.store.sql import SqlStore

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML file with a [notify] section.",
        envvar="GEOGATE_CONFIG",
        dir_okay=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``notices`` command group to the ``geogate`` app."""
    notices = typer.Typer(help="Account notices: deliver the outbox, preview templates.")
    notices.command("send")(send)
    notices.command("preview")(preview)
    app.add_typer(notices, name="notices", no_args_is_help=True)


def _load_config(path: Path | None) -> NotifyConfig:
    return NotifyConfig() if path is None else load_notify_config(path, env=os.environ)


def _open_store(url: str) -> SqlStore:
    """The account store at ``url``; its outbox is what ``send`` drains."""
    from geogate.store.sql import SqlStore  # noqa: PLC0415 - keeps `notices preview` light

    return SqlStore.open(url)


def send(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            help="Account store URL (sqlite:///FILE or postgresql://...).",
            envvar="GEOGATE_DB",
        ),
    ],
    config: ConfigOpt = None,
    limit: Annotated[
        int | None, typer.Option(help="Most notices to attempt (default: [notify] batch_limit).")
    ] = None,
) -> None:
    """Deliver the notices that are due; failures are retried later on a fixed schedule."""
    cfg = _load_config(config)
    notifiers = cfg.notifiers()
    if not notifiers:
        raise ConfigError(
            "no delivery channel: give --config with [notify.smtp] or [notify.webhook]",
            key="--config",
        )
    store = _open_store(db)
    try:
        report = deliver_pending(
            store,
            notifiers,
            clock=SystemClock(),
            limit=limit or cfg.batch_limit,
            renderer=NoticeRenderer(templates_dir=cfg.templates_dir, defaults=cfg.defaults),
            retry=cfg.retry,
        )
    finally:
        store.close()
    _print_report(report)


def _print_report(report: DeliveryReport) -> None:
    for o in report.outcomes:
        what = f"notice {o.notice_id} ({o.kind}, account {o.account}, attempt {o.attempt})"
        if o.outcome is Outcome.SENT:
            typer.echo(f"sent {what} via {', '.join(o.channels)}")
        elif o.outcome is Outcome.RETRY and o.next_attempt_at is not None:
            typer.echo(f"retry {what} at {o.next_attempt_at.isoformat()}: {o.error}")
        else:
            typer.echo(f"failed {what}: {o.error}")
    typer.echo(report.summary())


def preview(
    kind: Annotated[str, typer.Option(help="warning, blocked or reinstated.")] = "warning",
    lang: Annotated[str, typer.Option(help="Language tag(s), e.g. zh-CN or 'ru,en;q=0.5'.")] = "en",
    part: Annotated[str, typer.Option("--part", help="What to print: text, html or all.")] = "text",
    payload: Annotated[
        Path | None,
        typer.Option(help="JSON file with the payload (default: a sample).", dir_okay=False),
    ] = None,
    account: Annotated[str, typer.Option(help="Account id shown in the notice.")] = "acct_example",
    policy_version: Annotated[str, typer.Option(help="Policy label.")] = "example@1",
    config: ConfigOpt = None,
) -> None:
    """Render a notice to stdout: the subject line, then the text or HTML body."""
    try:
        notice_kind = NoticeKind(kind.strip().lower())
    except ValueError:
        raise ConfigError(f"{kind!r} is not warning, blocked or reinstated", key="--kind") from None
    if part not in {"text", "html", "all"}:
        raise ConfigError(f"{part!r} is not text, html or all", key="--part")
    cfg = _load_config(config)
    data = sample_payload(notice_kind) if payload is None else _read_payload(payload)
    renderer = NoticeRenderer(templates_dir=cfg.templates_dir, defaults=cfg.defaults)
    context = renderer.context(
        data,
        kind=notice_kind,
        account=account,
        policy_version=policy_version,
        reference="GN-000000",
    )
    rendered = renderer.render(context, language=pick_language(lang))
    typer.echo(f"Subject: {rendered.subject}")
    typer.echo(f"Content-Language: {rendered.language.value}")
    typer.echo("")
    if part in {"text", "all"}:
        typer.echo(rendered.text, nl=False)
    if part == "all":
        typer.echo("")
    if part in {"html", "all"}:
        typer.echo(rendered.html, nl=False)


def _read_payload(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("the payload must be a JSON object", path=str(path))
    return data
