"""Wiring of the account store into the decision service (``[accounts] db`` configured).

One place builds it all: the store (:class:`~geogate.store.sql.SqlStore`, SQLite or
PostgreSQL), the :class:`~geogate.accounts.engine.Enforcer` over it (locating addresses with
the service's current Engine, so a reload of policy and snapshot applies to ingestion too),
the cached blocked set the decision path reads (:class:`CachedAccountStatus`), and the account
API mounted into the service when tokens are configured. Without tokens the account paths
answer 404 ``accounts_api_disabled``: no unauthenticated access, read or write.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geogate.accounts.engine import Enforcer
from geogate.accounts.evidence import DeciderLocator, Located
from geogate.accounts_api import create_accounts_app
from geogate.errors import IntelDataError, StoreUnavailable
from geogate.service.account_status import CachedAccountStatus
from geogate.service.config import ServiceConfig
from geogate.service.engine import Engine, EngineRef
from geogate.service.metrics import ServiceMetrics
from geogate.service.responses import error_body
from geogate.store.sql import SqlStore

#: The paths of the account API (see :mod:`geogate.accounts_api.app`).
ACCOUNT_PATHS: Final = (
    "/v1/events",
    "/v1/accounts",
    "/v1/accounts/{account}",
    "/v1/accounts/{account}/explain",
    "/v1/accounts/{account}/{action}",
    "/v1/enforce",
    "/v1/audit/verify",
)
_ALL_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class EngineLocator:
    """The Enforcer's :class:`~geogate.accounts.evidence.Locator` over the service's current
    Engine: a reload swaps the snapshot and policy for ingestion too. Without a snapshot,
    locating raises IntelDataError (the ingestion request fails with 503, nothing is stored)."""

    def __init__(self, ref: EngineRef) -> None:
        self._ref = ref
        self._bound: tuple[Engine, DeciderLocator] | None = None

    def _current(self) -> DeciderLocator:
        engine = self._ref.current
        bound = self._bound
        if bound is None or bound[0] is not engine:
            if engine.decider is None:
                raise IntelDataError(
                    f"cannot locate event addresses: {engine.snapshot_problem or 'no snapshot'}"
                )
            bound = (engine, DeciderLocator(engine.decider))
            self._bound = bound
        return bound[1]

    def locate(self, ip: str, at: datetime) -> Located:
        """Locate ``ip`` with the current Engine's decider."""
        return self._current().locate(ip, at)

    def is_unsupported(self, region: str, at: datetime) -> bool:
        """True when the current policy treats ``region`` as unsupported at ``at``."""
        return self._current().is_unsupported(region, at)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountsWiring:
    """The store-backed parts of a running service.

    ``lock`` serialises the Enforcer's writes with reloads (an ingestion batch sees one
    policy and one snapshot); ``app`` is the account API (or its disabled stand-in).
    """

    store: SqlStore
    enforcer: Enforcer
    status: CachedAccountStatus
    lock: threading.Lock
    app: Starlette

    def on_reload(self, engine: Engine) -> None:
        """Point the Enforcer at a newly loaded Engine's policies (call under ``lock``)."""
        self.enforcer.policies = engine.policies

    def close(self) -> None:
        """Stop the refresh thread and close the store's connections."""
        self.status.stop()
        self.store.close()


def disabled_accounts_app(message: str) -> Starlette:
    """An app answering every account path with 404 ``accounts_api_disabled`` and ``message``."""

    async def disabled(request: Request) -> Response:
        body = error_body(code="accounts_api_disabled", message=message)
        return JSONResponse(body, status_code=404)

    return Starlette(routes=[Route(p, disabled, methods=_ALL_METHODS) for p in ACCOUNT_PATHS])


def wire_accounts(
    config: ServiceConfig, *, ref: EngineRef, metrics: ServiceMetrics
) -> AccountsWiring:
    """Open the store named by ``config.accounts_db`` (creating or migrating its schema), load
    the blocked set once and build the Enforcer and the account API.

    Raises StoreUnavailable when the store cannot be reached or read at start (a wrong URL or
    credentials stop the server with one line, not the first request), ConfigError for bad
    settings.
    """
    if config.accounts_db is None:
        raise ValueError("wire_accounts needs config.accounts_db")
    store = SqlStore.open(config.accounts_db.reveal())
    try:
        status = CachedAccountStatus(
            store.blocked_accounts,
            refresh_seconds=config.accounts_refresh_seconds,
            max_stale_seconds=config.accounts_max_stale_seconds,
            static=config.blocked_accounts,
            on_refresh=metrics.account_refresh,
        )
        # The first load must succeed: a store that answers the migration but not this query
        # is as broken as an unreachable one.
        if not status.refresh():
            raise StoreUnavailable(f"cannot read the blocked accounts: {status.problem}")
        metrics.track_accounts(
            blocked=lambda: float(len(status.blocked)),
            age_seconds=lambda: status.age_seconds,
        )
        enforcer = Enforcer(store, policies=ref.current.policies, locator=EngineLocator(ref))
        lock = threading.Lock()

        def now() -> datetime:  # the clock of the Engine in force, reloads included
            return ref.current.clock.now()

        if config.accounts_tokens:
            app = create_accounts_app(
                enforcer,
                tokens=list(config.accounts_tokens),
                now=now,
                on_change=status.apply,
                write_lock=lock,
            )
        else:
            app = disabled_accounts_app(
                "the account API is off: configure [[accounts.tokens]] to enable it"
            )
    except BaseException:
        store.close()
        raise
    return AccountsWiring(store=store, enforcer=enforcer, status=status, lock=lock, app=app)
