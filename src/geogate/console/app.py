"""The operator console: server-rendered pages (Jinja2, htmx) mounted at ``/console``.

It stands on what the service already has: the account API's tokens and roles (``viewer``,
``operator``), the account store and the Enforcer (every action goes through
``Enforcer.operate``, under the service's write lock, and lands in the transitions and the
hash-chained audit log with ``operator:NAME`` as the actor), the service's metrics (live
decision rates) and the loaded Engine (lookups, policy). Nothing is stored twice.

Security: sign-in with an API token or a ``[[console.users]]`` password (Argon2id); a session
cookie that is ``HttpOnly``, ``SameSite=Strict``, ``Path=/console`` and ``Secure`` over TLS; a
CSRF token in every form that changes anything (sign-in included), checked with the Origin
header when a browser sends one; sign-in attempts limited per address and per name; a strict
Content-Security-Policy (no inline script or style, every asset served from ``/console/static``).
Unauthenticated requests get a redirect to the sign-in page (pages) or 401 (anything else).
"""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, quote, urlsplit

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from geogate import __version__
from geogate.accounts.config import AccountsConfig
from geogate.accounts.explain import explain_lines
from geogate.accounts.states import AccountState, OperatorAction, operator_move
from geogate.accounts_api.tokens import ApiToken, Role
from geogate.console import queries, views
from geogate.console.config import ConsoleSettings, ConsoleUser, load_console_settings
from geogate.console.index import EventIndex
from geogate.console.passwords import verify_password
from geogate.console.sessions import (
    COOKIE,
    PRE_COOKIE,
    Session,
    SessionStore,
    SignInLimiter,
    session_key,
)
from geogate.console.worldmap import country_paths, world_svg
from geogate.errors import GeogateError, StateConflict
from geogate.policy.parse import parse_policy

if TYPE_CHECKING:
    from geogate.service.app import GeoGateService

log = logging.getLogger("geogate.console")

PREFIX: Final = "/console"
MAX_FORM_BYTES: Final = 16 * 1024
MAX_REASON_CHARS: Final = 2_000
TIMELINE_EVENTS: Final = 5_000
PREVIEW_REQUESTS: Final = 200_000
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS: Final = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
#: Console actions -> the state machine's operator actions. ``block`` appears by itself once
#: the state machine has an operator block (``OperatorAction.BLOCK``).
ACTIONS: Final[dict[str, OperatorAction]] = {
    "exempt": OperatorAction.EXEMPT,
    "unexempt": OperatorAction.UNEXEMPT,
    "appeal": OperatorAction.APPEAL,
    "reinstate": OperatorAction.REINSTATE,
    "reject-appeal": OperatorAction.REJECT_APPEAL,
    "block": OperatorAction.BLOCK,
}
STATES: Final = tuple(s.value for s in AccountState)


class Forbidden(Exception):
    """A request the signed-in operator may not make (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("geogate.console", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M UTC") if v else "—"
    env.filters["pct"] = lambda v: f"{100 * v:.0f}%"
    env.filters["num"] = lambda v: f"{v:,.0f}" if isinstance(v, int | float) else v
    env.filters["rate"] = lambda v: f"{v:,.1f}"
    env.filters["q"] = lambda v: quote(str(v), safe="")
    return env


def create_console_app(service: GeoGateService) -> Starlette:
    """The console for a running service (mount it at ``/console``).

    Without any way to sign in (no API tokens, no ``[[console.users]]``) every console path
    answers 404 saying how to enable it. Raises ConfigError for a bad ``[console]`` table.
    """
    settings = load_console_settings(service.config.source)
    tokens: tuple[ApiToken, ...] = service.config.accounts_tokens
    if not tokens and not settings.users:
        return _disabled_app()
    clashes = {t.name for t in tokens} & {u.name for u in settings.users}
    if clashes:
        from geogate.errors import ConfigError  # noqa: PLC0415

        raise ConfigError(
            f"console user {sorted(clashes)[0]!r} has the name of an API token",
            path=service.config.source,
            key="console.users",
        )
    console = _Console(service, settings, tokens)
    return console.app


def _disabled_app() -> Starlette:
    async def off(request: Request) -> Response:
        return HTMLResponse(
            "<!doctype html><title>geogate console</title><p>The console is off: configure "
            "[[accounts.tokens]] or [[console.users]] to enable it.</p>",
            status_code=404,
            headers=_SECURITY_HEADERS,
        )

    return Starlette(routes=[Route("/{rest:path}", off, methods=["GET", "POST", "HEAD"])])


class _Console:
    """The console's state and routes (one per service app)."""

    def __init__(
        self, service: GeoGateService, settings: ConsoleSettings, tokens: tuple[ApiToken, ...]
    ) -> None:
        self.service = service
        self.settings = settings
        self.tokens = tokens
        self.users: dict[str, ConsoleUser] = {u.name: u for u in settings.users}
        self.sessions = SessionStore(
            key=session_key(
                [t.reveal() for t in tokens] + [u.password_hash for u in settings.users]
            ),
            lifetime_seconds=settings.session_minutes * 60.0,
        )
        self.limiter = SignInLimiter()
        self.rates = views.DecisionRates(service.metrics)
        self.env = _env()
        wiring = service.wiring
        self.index: EventIndex | None = None
        if wiring is not None:
            self.index = EventIndex(wiring.store)
        country_paths()  # decode the map once, at start, not on a request
        static = resources.files("geogate.console").joinpath("static")
        g = self._guard
        routes = [
            Route("/", g(self.overview), methods=["GET"]),
            Route("/rates", g(self.rates_fragment), methods=["GET"]),
            Route("/signin", g(self.signin_page), methods=["GET"]),
            Route("/signin", g(self.signin), methods=["POST"]),
            Route("/signout", g(self.signout), methods=["POST"]),
            Route("/accounts", g(self.accounts), methods=["GET"]),
            Route("/accounts/{account:path}/action", g(self.act), methods=["POST"]),
            Route("/accounts/{account:path}", g(self.account), methods=["GET"]),
            Route("/orgs/{org:path}", g(self.org), methods=["GET"]),
            Route("/lookup", g(self.lookup), methods=["GET"]),
            Route("/policy", g(self.policy), methods=["GET"]),
            Route("/policy/preview", g(self.preview), methods=["POST"]),
            Route("/audit", g(self.audit), methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=str(static)), name="static"),
        ]
        self.app = Starlette(routes=routes)

    # ----- plumbing ---------------------------------------------------------------------

    def _secure(self, request: Request) -> bool:
        forced = self.settings.secure_cookies
        return forced if forced is not None else request.url.scheme == "https"

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    async def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None,
        http_status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page (or fragment) with the security headers, rendered off the event loop (a
        large page takes milliseconds; the decision endpoints share the loop)."""
        page = await run_in_threadpool(
            self.env.get_template(template).render,
            prefix=PREFIX,
            session=session,
            version=__version__,
            path=request.url.path,
            has_store=self.service.wiring is not None,
            **context,
        )
        return HTMLResponse(page, status_code=http_status, headers=_SECURITY_HEADERS)

    def _refuse(self, request: Request, status: int, message: str) -> Response:
        if request.method == "GET" and status == 401 and "hx-request" not in request.headers:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"{PREFIX}/signin?next={quote(target, safe='')}",
                status_code=303,
                headers=_SECURITY_HEADERS,
            )
        return HTMLResponse(
            f"<!doctype html><title>refused</title><p>{html.escape(message)}</p>",
            status_code=status,
            headers=_SECURITY_HEADERS,
        )

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        host = request.headers.get("host", "")
        return urlsplit(origin).netloc == host

    async def _form(self, request: Request) -> dict[str, str]:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Forbidden(413, "form too large")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise Forbidden(400, "malformed form") from None
        return {k: v[-1] for k, v in parsed.items()}

    def _need(self, request: Request, role: Role = Role.VIEWER) -> Session:
        session = self._session(request)
        if session is None:
            raise Forbidden(401, "sign in first")
        if session.role < role:
            raise Forbidden(403, f"this needs the {role.name.lower()} role")
        return session

    async def _checked_form(self, request: Request, role: Role) -> tuple[Session, dict[str, str]]:
        """The session and form of a state-changing request, after the role, Origin and CSRF
        checks."""
        session = self._need(request, role)
        if not self._same_origin(request):
            raise Forbidden(403, "cross-origin form refused")
        form = await self._form(request)
        if not session.csrf_ok(form.get("csrf")):
            raise Forbidden(403, "missing or wrong CSRF token: reload the page and try again")
        return session, form

    def _guard(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if self.index is not None:
                self.index.start()  # the first request of this process starts the index
            try:
                return await handler(request)
            except Forbidden as exc:
                return self._refuse(request, exc.status, str(exc))

        return run

    def _now(self) -> datetime:
        return self.service.ref.current.clock.now()

    # ----- sign-in ----------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        if self._session(request) is not None:
            return RedirectResponse(f"{PREFIX}/", status_code=303)
        return await self._signin_form(request, status=200, error=None)

    async def _signin_form(self, request: Request, *, status: int, error: str | None) -> Response:
        pre = secrets.token_urlsafe(24)
        response = await self.render(
            request,
            "signin.html.j2",
            session=None,
            http_status=status,
            title="Sign in",
            error=error,
            csrf=pre,
            next=_safe_next(request.query_params.get("next")),
            has_users=bool(self.users),
            has_tokens=bool(self.tokens),
        )
        response.set_cookie(
            PRE_COOKIE,
            pre,
            max_age=1800,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        return response

    async def signin(self, request: Request) -> Response:
        if not self._same_origin(request):
            raise Forbidden(403, "cross-origin form refused")
        form = await self._form(request)
        pre = request.cookies.get(PRE_COOKIE)
        if not pre or not secrets.compare_digest(form.get("csrf", ""), pre):
            raise Forbidden(403, "missing or wrong CSRF token: reload the sign-in page")
        client = request.client.host if request.client else "unknown"
        name = form.get("username", "").strip()
        keys = [f"ip:{client}"] + ([f"user:{name}"] if name else [])
        wait = self.limiter.retry_after(*keys)
        if wait:
            response = await self._signin_form(
                request, status=429, error=f"Too many failed attempts: try again in {wait} s."
            )
            response.headers["retry-after"] = str(wait)
            return response
        found: tuple[str, Role, str] | None = None
        token = form.get("token", "").strip()
        if token:
            for t in self.tokens:  # every token compared, in constant time each
                if t.matches(token):
                    found = (t.name, t.role, "token")
        elif name:
            user = self.users.get(name)
            ok = await run_in_threadpool(
                verify_password, user.password_hash if user else None, form.get("password", "")
            )
            if ok and user is not None:
                found = (user.name, user.role, "password")
        if found is None:
            self.limiter.failed(*keys)
            log.warning("console sign-in failed from %s", client)
            return await self._signin_form(request, status=401, error="Sign-in failed.")
        session = self.sessions.create(name=found[0], role=found[1], via=found[2])
        await run_in_threadpool(
            self._audit, "console_sign_in", {"operator": session.name, "via": session.via}
        )
        response = RedirectResponse(_safe_next(form.get("next")) or f"{PREFIX}/", status_code=303)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=self.settings.session_minutes * 60,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        response.delete_cookie(PRE_COOKIE, path=PREFIX)
        return response

    async def signout(self, request: Request) -> Response:
        session, _ = await self._checked_form(request, Role.VIEWER)
        self.sessions.drop(session.id)
        await run_in_threadpool(self._audit, "console_sign_out", {"operator": session.name})
        response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    def _audit(self, action: str, detail: dict[str, Any]) -> None:
        wiring = self.service.wiring
        if wiring is None:
            return
        try:
            with wiring.lock, wiring.store.transaction() as tx:
                tx.append_audit(at=self._now(), account=None, action=action, detail=detail)
        except GeogateError as exc:
            log.warning("console: cannot write the audit record %s: %s", action, exc.one_line())

    # ----- overview ---------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        session = self._need(request)
        service = self.service
        wiring = service.wiring
        status = service.status()
        engine = service.ref.current
        now = self._now()

        def read() -> dict[str, Any]:
            if wiring is None:
                return {"by_state": {}, "queue": 0, "egress": []}
            by_state = queries.accounts_by_state(wiring.store)
            return {
                "by_state": by_state,
                "queue": by_state.get("flagged", 0),
                "egress": queries.top_egress(wiring.store, limit=10),
            }

        data = await run_in_threadpool(read)
        traffic = views.traffic_by_region(service.metrics)
        rates, totals, span = self.rates.sample()
        meta = engine.snapshot_meta
        age_days = meta.age_days(now) if meta is not None else None
        limit = service.config.max_staleness_days or 45.0
        current = engine.policies.in_force(now)
        since = current.valid_from or current.effective_at
        scheduled = [v for v in views.policy_views(engine, now) if v.status == "scheduled"]
        return await self.render(
            request,
            "overview.html.j2",
            session=session,
            title="Overview",
            svc=status,
            rates=rates,
            totals=totals,
            span=span,
            actions=views.ACTIONS,
            traffic=traffic,
            world=world_svg(traffic.map_values(), title="Denied and warned decisions by country"),
            by_state=data["by_state"],
            states=STATES,
            queue=data["queue"],
            egress=data["egress"],
            snapshot_age=age_days,
            stale=age_days is not None and age_days > limit,
            stale_limit=limit,
            snapshot_problem=engine.snapshot_problem,
            policy=current,
            policy_since=since,
            policy_age_days=(now - since).total_seconds() / 86_400 if since else None,
            scheduled=scheduled,
            loaded_at=engine.loaded_at,
            accounts_status=service.accounts_status(),
        )

    async def rates_fragment(self, request: Request) -> Response:
        session = self._need(request)
        rates, totals, span = self.rates.sample()
        return await self.render(
            request,
            "_rates.html.j2",
            session=session,
            rates=rates,
            totals=totals,
            span=span,
            actions=views.ACTIONS,
        )

    # ----- accounts ---------------------------------------------------------------------

    def _wiring(self) -> Any:
        wiring = self.service.wiring
        if wiring is None:
            raise Forbidden(404, "no account store: configure [accounts] db")
        return wiring

    async def accounts(self, request: Request) -> Response:
        session = self._need(request)
        wiring = self._wiring()
        q = request.query_params.get("q", "").strip()[:256]
        by = request.query_params.get("by", "account")
        if by not in ("account", "org", "ip"):
            by = "account"
        try:
            page = max(0, int(request.query_params.get("page", "0")))
        except ValueError:
            page = 0
        index = self.index

        def read() -> dict[str, Any]:
            results: list[queries.AccountSummary] | None = None
            orgs: list[str] = []
            note = None
            if q:
                if by == "account":
                    results = queries.accounts_with_prefix(wiring.store, q, limit=50)
                elif index is not None:
                    index.catch_up()
                    if not index.ready:
                        note = f"Still reading the events ({index.events:,} so far): try again."
                    if by == "org":
                        orgs = index.orgs_like(q)
                        ids = index.accounts_of_org(q)
                    else:
                        ids = index.accounts_at(q)
                    results = queries.accounts_by_id(wiring.store, ids[:200])
            queue = queries.review_queue(wiring.store, limit=50, offset=page * 50)
            return {
                "results": results,
                "orgs": orgs,
                "note": note,
                "queue": queue,
                "queue_size": queries.count_flagged(wiring.store),
            }

        data = await run_in_threadpool(read)
        return await self.render(
            request,
            "accounts.html.j2",
            session=session,
            title="Accounts",
            q=q,
            by=by,
            page=page,
            **data,
        )

    async def account(self, request: Request) -> Response:
        session = self._need(request)
        wiring = self._wiring()
        account = request.path_params["account"]
        index = self.index
        engine = self.service.ref.current
        at_param = request.query_params.get("at")

        def read() -> dict[str, Any] | None:
            store = wiring.store
            row = store.get_account(account)
            if row is None:
                return None
            when = _parse_at(at_param) if at_param else (row.last_seen or self._now())
            fresh, assessment = wiring.enforcer.assess_account(account, at=when)
            if fresh is None or assessment is None:
                return None
            config = AccountsConfig.from_policy(wiring.enforcer.policies.in_force(when))
            transitions = store.transitions(account)
            notices = store.notices(account)
            lines = explain_lines(
                fresh, assessment, config=config, transitions=transitions, notices=notices
            )
            days: list[views.Day] = []
            org = None
            if index is not None:
                index.catch_up()
                seqs = index.recent_seqs(account, TIMELINE_EVENTS)
                days = views.timeline(engine, queries.events_by_seq(store, seqs))
                org = index.org(account)
            return {
                "row": fresh,
                "assessment": assessment,
                "explain": lines,
                "transitions": list(reversed(transitions)),
                "notices": notices,
                "days": days,
                "org": org,
                "audit": queries.recent_audit(store, account=account, limit=20),
                "at": when,
            }

        data = await run_in_threadpool(read)
        if data is None:
            return await self.render(
                request,
                "missing.html.j2",
                session=session,
                title="No such account",
                what=f"account {account}",
                status=404,
            )
        state = AccountState(data["row"].state)
        allowed = []
        for name, action in ACTIONS.items():
            try:
                operator_move(state, action, account=account)
                allowed.append(name)
            except StateConflict:
                pass
        return await self.render(
            request,
            "account.html.j2",
            session=session,
            title=f"Account {account}",
            account=account,
            allowed=allowed,
            can_act=session.role >= Role.OPERATOR,
            done=request.query_params.get("done"),
            error=None,
            **data,
        )

    async def act(self, request: Request) -> Response:
        session, form = await self._checked_form(request, Role.OPERATOR)
        wiring = self._wiring()
        account = request.path_params["account"]
        name = form.get("action", "")
        action = ACTIONS.get(name)
        reason = form.get("reason", "").strip()
        back = f"{PREFIX}/accounts/{quote(account, safe='')}"
        if action is None:
            raise Forbidden(400, f"unknown action (one of {', '.join(ACTIONS)})")
        if not reason:
            raise Forbidden(400, "a reason is required")
        if len(reason) > MAX_REASON_CHARS:
            raise Forbidden(400, f"the reason is longer than {MAX_REASON_CHARS} characters")

        def apply() -> tuple[str, str]:
            with wiring.lock:
                done = wiring.enforcer.operate(
                    account, action, at=self._now(), operator=session.name, note=reason
                )
                wiring.status.apply([(done.account, done.from_state, done.to_state)])
                return done.from_state, done.to_state

        try:
            await run_in_threadpool(apply)
        except StateConflict as exc:
            raise Forbidden(409, exc.one_line()) from None
        except GeogateError as exc:
            raise Forbidden(exc.http_status, exc.one_line()) from None
        return RedirectResponse(f"{back}?done={quote(name)}", status_code=303)

    async def org(self, request: Request) -> Response:
        session = self._need(request)
        wiring = self._wiring()
        org = request.path_params["org"]
        index = self.index
        engine = self.service.ref.current

        def read() -> list[dict[str, Any]]:
            if index is None:
                return []
            index.catch_up()
            ids = index.accounts_of_org(org)[:24]
            out = []
            for summary in queries.accounts_by_id(wiring.store, ids, with_last_seen=True):
                seqs = index.recent_seqs(summary.account, 2_000)
                days = views.timeline(engine, queries.events_by_seq(wiring.store, seqs))
                regions: dict[str, int] = {}
                requests = anonymized = 0
                payments: list[str] = []
                for d in days:
                    requests += d.requests
                    anonymized += d.anonymized
                    for r, n in d.regions.items():
                        regions[r] = regions.get(r, 0) + n
                    payments.extend(d.payments)
                top = sorted(regions.items(), key=lambda kv: -kv[1])[:4]
                out.append(
                    {
                        "summary": summary,
                        "requests": requests,
                        "anonymized": anonymized / requests if requests else 0.0,
                        "regions": top,
                        "payments": payments[:3],
                        "days": len(days),
                    }
                )
            return out

        columns = await run_in_threadpool(read)
        return await self.render(
            request,
            "org.html.j2",
            session=session,
            title=f"Organisation {org}",
            org=org,
            columns=columns,
            ready=index is not None and index.ready,
        )

    # ----- lookup, policy, audit ---------------------------------------------------------

    async def lookup(self, request: Request) -> Response:
        session = self._need(request)
        text = request.query_params.get("q", "").strip()[:4096]
        peer = request.query_params.get("peer", "").strip()[:64] or None
        at_text = request.query_params.get("at", "").strip()
        error = None
        at = self._now()
        if at_text:
            try:
                at = _parse_at(at_text)
            except ValueError:
                error = f"{at_text!r} is not a date such as 2024-07-10"
        result = views.lookup(self.service.ref.current, text, at=at, peer=peer) if text else None
        return await self.render(
            request,
            "lookup.html.j2",
            session=session,
            title="Lookup",
            q=text,
            peer=peer or "",
            at_text=at_text,
            at=at,
            error=error,
            result=result,
            trusted=[str(n) for n in self.service.ref.current.trusted.networks],
        )

    async def policy(
        self,
        request: Request,
        *,
        preview: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> Response:
        session = session or self._need(request)
        engine = self.service.ref.current
        now = self._now()
        versions = views.policy_views(engine, now)
        maps = [
            (
                v,
                world_svg(
                    {},
                    title=f"Regions of {v.policy.label}",
                    classes=views.policy_map_classes(v.policy, max(now, v.starts or now)),
                ),
            )
            for v in versions
            if v.status != "superseded"
        ]
        return await self.render(
            request,
            "policy.html.j2",
            session=session,
            title="Policy",
            versions=versions,
            maps=maps,
            now=now,
            preview=preview or {},
            max_requests=PREVIEW_REQUESTS,
        )

    async def preview(self, request: Request) -> Response:
        """The impact of a candidate policy (a loaded version, or pasted TOML) on the stored
        requests of a window, against the policy in force (read-only; a form with CSRF)."""
        session, form = await self._checked_form(request, Role.VIEWER)
        wiring = self._wiring()
        engine = self.service.ref.current
        choice = form.get("candidate", "")
        text = form.get("toml", "")
        state: dict[str, Any] = {
            "candidate": choice,
            "toml": text,
            "start": form.get("start", ""),
            "end": form.get("end", ""),
            "at": form.get("at", ""),
        }
        try:
            if choice == "pasted":
                if len(text) > MAX_FORM_BYTES:
                    raise ValueError("the pasted policy is too long")
                candidate = parse_policy(text, path="pasted policy")
            else:
                found = [v for v in engine.policies.versions if v.label == choice]
                if not found:
                    raise ValueError("choose a loaded policy version or paste one")
                candidate = found[0]

            def run() -> views.Impact:
                last = queries.last_event_time(wiring.store) or self._now()
                end = _parse_at(state["end"]) if state["end"] else last + timedelta(seconds=1)
                start = _parse_at(state["start"]) if state["start"] else end - timedelta(days=7)
                begins = candidate.valid_from or candidate.effective_at or end
                at = _parse_at(state["at"]) if state["at"] else max(end, begins)
                rows, truncated = queries.request_window(
                    wiring.store, start=start, end=end, limit=PREVIEW_REQUESTS
                )
                state.update(start=f"{start:%Y-%m-%d}", end=f"{end:%Y-%m-%d}")
                return views.impact(engine, candidate, rows, at=at, truncated=truncated)

            state["result"] = await run_in_threadpool(run)
        except (GeogateError, ValueError) as exc:
            message = exc.one_line() if isinstance(exc, GeogateError) else str(exc)
            state["error"] = message
        return await self.policy(request, preview=state, session=session)

    async def audit(self, request: Request) -> Response:
        session = self._need(request)
        wiring = self._wiring()
        account = request.query_params.get("account") or None
        verify = request.query_params.get("verify") == "1"

        def read() -> dict[str, Any]:
            lines = queries.recent_audit(wiring.store, account=account, limit=100)
            report = wiring.store.verify_audit() if verify else None
            return {"lines": lines, "report": report}

        data = await run_in_threadpool(read)
        return await self.render(
            request, "audit.html.j2", session=session, title="Audit log", account=account, **data
        )


def _safe_next(value: str | None) -> str | None:
    """A same-site console path to go to after sign-in, None for anything else."""
    if not value or not value.startswith(PREFIX + "/") or value.startswith("//"):
        return None
    if "\\" in value or "\r" in value or "\n" in value:
        return None
    return value


def _parse_at(text: str) -> datetime:
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


__all__ = ["PREFIX", "create_console_app"]
