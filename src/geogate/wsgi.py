"""WSGI middleware: geogate decisions inside a Flask / Django (or any WSGI) app.

    from geogate.wsgi import GeoGateMiddleware
    app.wsgi_app = GeoGateMiddleware(app.wsgi_app, trusted_proxies=["10.0.0.0/8"])   # Flask
    application = GeoGateMiddleware(get_wsgi_application(), ...)                      # Django

Same decisions and answers as :mod:`geogate.asgi`. The client is ``REMOTE_ADDR`` plus the
``X-Forwarded-For`` / ``Forwarded`` headers from trusted proxies (do not also enable a
framework's own proxy fix: geogate must see the real peer). An allowed request reaches the app
with ``environ["geogate.decision"]`` and ``environ["geogate.client_ip"]`` set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

from geogate.asgi import is_exempt_path, open_engine, refusal
from geogate.decide import Decision
from geogate.intel.snapshot import Snapshot
from geogate.service.config import DEFAULT_POLICY
from geogate.service.engine import Engine, Verdict, enforce
from geogate.service.ports import AccountStatusPort
from geogate.service.responses import decision_headers

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

DECISION_KEY: Final = "geogate.decision"
CLIENT_IP_KEY: Final = "geogate.client_ip"

log = logging.getLogger("geogate.wsgi")


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class GeoGateMiddleware:
    """Decide every request before the wrapped WSGI app sees it.

    Arguments as for :class:`geogate.asgi.GeoGateMiddleware`. Thread-safe: share one instance
    between the server's worker threads.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        policy: str | Sequence[str] = DEFAULT_POLICY,
        snapshot: str | Path | Snapshot | None = None,
        trusted_proxies: Sequence[str] = (),
        client_ip_header: str = "x-forwarded-for",
        fail_mode: str = "closed",
        accounts: AccountStatusPort | None = None,
        account_header: str | None = None,
        exempt_paths: Sequence[str] = (),
        response_headers: bool = False,
        engine: Engine | None = None,
    ) -> None:
        self.app = app
        self.ref = open_engine(
            engine,
            policy=policy,
            snapshot=snapshot,
            trusted_proxies=trusted_proxies,
            client_ip_header=client_ip_header,
            fail_mode=fail_mode,
            log=log,
        )
        self.accounts = accounts
        self._account_key = _environ_key(account_header) if account_header else None
        self.exempt_paths = tuple(exempt_paths)
        self.response_headers = response_headers

    def decide(self, environ: Environ) -> Verdict:
        """The verdict for the request in ``environ`` (no side effects)."""
        account = environ.get(self._account_key) if self._account_key else None
        return enforce(
            self.ref.current,
            peer=str(environ.get("REMOTE_ADDR") or ""),
            x_forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
            forwarded=environ.get("HTTP_FORWARDED"),
            account=account.strip() or None if isinstance(account, str) else None,
            accounts=self.accounts,
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if is_exempt_path(str(environ.get("PATH_INFO") or "/"), self.exempt_paths):
            return self.app(environ, start_response)
        verdict = self.decide(environ)
        if verdict.status != 200:
            status, body, headers = refusal(verdict)
            phrase = HTTPStatus(status).phrase
            start_response(f"{status} {phrase}", [*headers, ("Content-Length", str(len(body)))])
            return [body]
        environ[DECISION_KEY] = verdict.decision
        environ[CLIENT_IP_KEY] = verdict.client_ip
        if not self.response_headers:
            return self.app(environ, start_response)
        extra = decision_headers(verdict.decision)

        def start_with_headers(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            return start_response(status, [*headers, *extra], *rest)

        return self.app(environ, start_with_headers)


def decision_of(environ: Environ) -> Decision | None:
    """The decision the middleware made for the request in ``environ`` (None if none)."""
    value = environ.get(DECISION_KEY)
    return value if isinstance(value, Decision) else None
