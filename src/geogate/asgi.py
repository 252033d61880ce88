"""ASGI middleware: geogate decisions inside a Starlette / FastAPI (or any ASGI) app.

    from geogate.asgi import GeoGateMiddleware
    app.add_middleware(GeoGateMiddleware, trusted_proxies=["10.0.0.0/8"])

Each HTTP request (and WebSocket handshake) is decided exactly as the decision service decides
it (:func:`geogate.service.engine.enforce`). A denied request gets the service's answer (403 and
the OpenAI-style error body, 503 when failing closed, 400 for a malformed forwarding chain) and
never reaches the app. An allowed one reaches the app with the decision in the scope:
``scope["geogate.decision"]`` (also ``request.state.geogate`` in Starlette) and the resolved
address in ``scope["geogate.client_ip"]``; a ``warn`` decision is allowed, so the app can act on
it (log it, show a notice).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Final

from geogate.decide import Decision
from geogate.intel.snapshot import Snapshot
from geogate.service.config import DEFAULT_POLICY
from geogate.service.engine import Engine, EngineRef, Verdict, enforce, engine_for
from geogate.service.ports import AccountStatusPort
from geogate.service.responses import JSON_TYPE, decision_headers, refusal_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DECISION_KEY: Final = "geogate.decision"
CLIENT_IP_KEY: Final = "geogate.client_ip"
WS_POLICY_VIOLATION: Final = 1008  # RFC 6455 close code for a refused WebSocket

log = logging.getLogger("geogate.asgi")


def refusal(verdict: Verdict) -> tuple[int, bytes, list[tuple[str, str]]]:
    """(status, body, headers) of the answer to a refused request, as every enforcement point
    sends it."""
    headers = [("content-type", JSON_TYPE), *decision_headers(verdict.decision)]
    return verdict.status, refusal_body(verdict.status, verdict.problem), headers


def is_exempt_path(path: str, exempt: Sequence[str]) -> bool:
    """True when ``path`` is one of ``exempt`` or below one of them (``/health`` covers
    ``/health/live``)."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in exempt)


def open_engine(
    engine: Engine | None,
    *,
    policy: str | Sequence[str],
    snapshot: str | Path | Snapshot | None,
    trusted_proxies: Sequence[str],
    client_ip_header: str,
    fail_mode: str,
    log: logging.Logger,
) -> EngineRef:
    """The engine a middleware decides with: ``engine`` when given, else one built from the
    arguments. A missing snapshot is logged, not raised: the fail mode decides then."""
    if engine is None:
        engine = engine_for(
            policy=policy,
            snapshot=str(snapshot) if isinstance(snapshot, Path) else snapshot,
            trusted_proxies=trusted_proxies,
            client_ip_header=client_ip_header,
            fail_mode=fail_mode,
        )
    if engine.snapshot_problem:
        log.warning("geogate: %s; deciding by fail mode", engine.snapshot_problem)
    return EngineRef(engine)


class GeoGateMiddleware:
    """Decide every request before the wrapped ASGI app sees it.

    ``policy``: a policy file or ``builtin:NAME`` (or several versions); ``snapshot``: a file,
    a loaded Snapshot or None for the embedded data; ``trusted_proxies``: CIDRs whose
    forwarding headers are believed (empty: the connection address is the client);
    ``client_ip_header``: the one forwarding header read, ``x-forwarded-for`` or ``forwarded``;
    ``fail_mode``: ``closed`` or ``open`` when there is no snapshot or the account port fails;
    ``accounts`` and ``account_header``: deny requests naming a blocked account;
    ``exempt_paths``: paths never checked (health checks); ``response_headers``: also add the
    ``x-geogate-*`` headers to allowed responses (they are always on refusals);
    ``engine``: a ready-made Engine instead of the arguments above.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        self._account_header = account_header.lower().encode() if account_header else None
        self.exempt_paths = tuple(exempt_paths)
        self.response_headers = response_headers

    def decide(self, scope: Scope) -> Verdict:
        """The verdict for the request in ``scope`` (no side effects)."""
        xff: list[str] = []
        fwd: list[str] = []
        account: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                xff.append(value.decode("latin-1"))
            elif name == b"forwarded":
                fwd.append(value.decode("latin-1"))
            elif name == self._account_header:
                account = value.decode("latin-1").strip() or None
        client = scope.get("client")
        return enforce(
            self.ref.current,
            peer=str(client[0]) if client else "",
            x_forwarded_for=xff or None,
            forwarded=fwd or None,
            account=account,
            accounts=self.accounts,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or is_exempt_path(scope["path"], self.exempt_paths):
            await self.app(scope, receive, send)
            return
        verdict = self.decide(scope)
        if verdict.status != 200:
            if kind == "websocket":
                await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
                return
            status, body, headers = refusal(verdict)
            raw = [(k.encode(), v.encode("latin-1", "replace")) for k, v in headers]
            raw.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        scope[DECISION_KEY] = verdict.decision
        scope[CLIENT_IP_KEY] = verdict.client_ip
        state = scope.get("state")
        if isinstance(state, MutableMapping):
            state["geogate"] = verdict.decision
        else:
            scope["state"] = {"geogate": verdict.decision}
        if not self.response_headers or kind != "http":
            await self.app(scope, receive, send)
            return
        extra = [
            (k.encode(), v.encode("latin-1", "replace"))
            for k, v in decision_headers(verdict.decision)
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def decision_of(scope: Scope) -> Decision | None:
    """The decision the middleware made for the request in ``scope`` (None if it did not run
    or the path is exempt)."""
    value = scope.get(DECISION_KEY)
    return value if isinstance(value, Decision) else None
