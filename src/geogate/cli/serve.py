"""``geogate serve``: run the decision service (argument parsing only; see geogate.service)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command()
    def serve(
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", "-c", help="TOML config file (its serve table). Env: GEOGATE_CONFIG."
            ),
        ] = None,
        host: Annotated[
            str | None, typer.Option("--host", help="Listen address. Default 127.0.0.1.")
        ] = None,
        port: Annotated[
            int | None, typer.Option("--port", help="HTTP port (0: any free one). Default 8300.")
        ] = None,
        policy: Annotated[
            list[str] | None,
            typer.Option(
                "--policy",
                "-p",
                help="Policy file or builtin:NAME; repeat for several versions.",
            ),
        ] = None,
        snapshot: Annotated[
            str | None,
            typer.Option("--snapshot", "-s", help="Snapshot file ('embedded': shipped data)."),
        ] = None,
        grpc_port: Annotated[
            int | None,
            typer.Option("--grpc-port", help="Serve Envoy ext_authz gRPC on this port."),
        ] = None,
        trusted_proxy: Annotated[
            list[str] | None,
            typer.Option(
                "--trusted-proxy", help="CIDR whose forwarding headers are believed (repeat)."
            ),
        ] = None,
        fail_mode: Annotated[
            str | None,
            typer.Option("--fail-mode", help="closed (default) or open, when data is missing."),
        ] = None,
        db: Annotated[
            str | None,
            typer.Option(
                "--db",
                help="Account store (sqlite:///FILE or postgresql://...): deny blocked "
                "accounts, serve the account API. Env: GEOGATE_DB.",
                show_default=False,
            ),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option(
                "--workers",
                "-w",
                help="Processes serving the port (0: one per core, the default). Env: "
                "GEOGATE_WORKERS.",
                show_default=False,
            ),
        ] = None,
        watch: Annotated[
            float | None,
            typer.Option(
                "--watch",
                metavar="SECONDS",
                help="Poll the policy and snapshot files every SECONDS and reload when one "
                "changes (a bad file keeps the running data). Env: GEOGATE_WATCH_SECONDS.",
                show_default=False,
            ),
        ] = None,
        check: Annotated[
            bool,
            typer.Option("--check", help="Load config, policy and snapshot, print them and exit."),
        ] = False,
    ) -> None:
        """Run the decision service: /v1/decide, nginx and Envoy endpoints, metrics; with an
        account store (--db or [accounts] db), account blocks and the account API.

        Settings come from --config, then GEOGATE_* environment variables, then these flags.
        SIGHUP (or POST /admin/reload, or a change seen by --watch) reloads the policy and
        the snapshot.
        """
        from geogate.service.config import describe, load_config  # noqa: PLC0415

        overrides: dict[str, object] = {
            "host": host,
            "port": port,
            "policy": list(policy) if policy else None,
            "snapshot": snapshot,
            "grpc_port": grpc_port,
            "trusted_proxies": list(trusted_proxy) if trusted_proxy else None,
            "fail_mode": fail_mode,
            "db": db,
            "workers": workers,
            "watch_seconds": watch,
        }
        cfg = load_config(config, env=os.environ, overrides=overrides)
        if check:
            from geogate.service.engine import load_engine  # noqa: PLC0415

            engine = load_engine(cfg)
            summary = describe(cfg) | {
                "policy_in_force": engine.policy_label,
                "snapshot_loaded": engine.is_ready,
                "snapshot_problem": engine.snapshot_problem,
            }
            if cfg.accounts_db is not None:
                from geogate.store.sql import SqlStore  # noqa: PLC0415

                store = SqlStore.open(cfg.accounts_db.reveal())
                try:
                    summary["accounts_blocked_in_store"] = len(store.blocked_accounts())
                finally:
                    store.close()
            typer.echo(json.dumps(summary, indent=2))
            if not engine.is_ready:
                from geogate.errors import IntelDataError  # noqa: PLC0415

                raise IntelDataError(engine.snapshot_problem or "no snapshot")
            return
        from geogate.service.server import run  # noqa: PLC0415

        run(cfg)
