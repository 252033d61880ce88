"""The account operations over HTTP: a Starlette sub-app behind operator authentication.

Every request needs ``Authorization: Bearer <token>``; a token has a role, ``viewer`` (read
accounts, explain, verify the audit log, dry-run enforcement) or ``operator`` (also ingest
events, exempt, appeal, reinstate, reject appeals, enforce). There is no unauthenticated access
at all, and an app without tokens refuses to start.

Endpoints (JSON in and out; errors are ``{"error": {"code", "message", "type", "param"}}``):

==============================================  ========  ==============================
``POST /v1/events``                             operator  JSON Lines or a JSON array
``GET  /v1/accounts?state=&limit=&after=``      viewer    list
``GET  /v1/accounts/{account}``                 viewer    row, transitions, notices
``GET  /v1/accounts/{account}/explain?at=``     viewer    plain-language explanation
``POST /v1/accounts/{account}/{action}``        operator  exempt, unexempt, appeal,
                                                          reinstate, reject-appeal, block
``POST /v1/enforce`` ``{"at", "dry_run"}``      operator  (viewer: dry run only)
``GET  /v1/audit/verify``                       viewer
==============================================  ========  ==============================

``geogate serve`` routes these paths to it when ``[accounts] db`` and tokens are configured
(see :mod:`geogate.service.accounts`); it can also be served alone. Blocking store work runs in
Starlette's thread pool; writes (ingestion, operator actions, enforcement) run one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geogate.accounts.config import AccountsConfig
from geogate.accounts.engine import BatchReport, Enforcer, EnforceReport
from geogate.accounts.events import Event, Rejected, read_json_payload
from geogate.accounts.explain import explain_lines
from geogate.accounts.states import OperatorAction
from geogate.accounts_api.tokens import ApiToken, Role
from geogate.clock import parse_instant
from geogate.errors import ConfigError, GeogateError, StateConflict, StoreError
from geogate.json_limits import loads_bounded
from geogate.store.protocol import AccountRow, NoticeRow, TransitionRow

MAX_EVENTS_BODY: Final = 16 * 1024 * 1024
"""Largest ``POST /v1/events`` body (bytes); send bigger feeds in several requests."""
MAX_JSON_BODY: Final = 64 * 1024
"""Largest body of the other POST endpoints (operator actions, enforcement), in bytes."""
MAX_NOTE_CHARS: Final = 4096
"""Longest ``note`` of an operator action (characters)."""
MAX_PAGE: Final = 10_000
"""Largest ``limit`` of ``GET /v1/accounts``."""
MAX_ID_CHARS: Final = 256
"""Longest account id (and ``after`` cursor, ``state`` filter) accepted in a path or query."""
MIN_TOKEN_CHARS: Final = 16

log = logging.getLogger("geogate.accounts_api")


class BodyTooLarge(GeogateError):
    """A request body passed its limit while being read."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, read chunk by chunk; :class:`BodyTooLarge` as soon as it passes
    ``limit`` bytes, so a chunked (or lying) body is never buffered beyond the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class _JSON(JSONResponse):
    """JSON answers that stay valid UTF-8 whatever text they echo (a lone surrogate from a
    ``"\\ud800"`` escape becomes that escape again instead of failing the answer)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace"
        )


def _error(status: int, code: str, message: str, type_: str = "invalid_request_error") -> Response:
    return _JSON(
        {"error": {"code": code, "message": message, "type": type_, "param": None}},
        status_code=status,
    )


def _when(value: object, param: str) -> datetime:
    if not isinstance(value, str):
        raise ConfigError("must be an RFC 3339 date or date-time", key=param)
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise ConfigError(str(exc), key=param) from None


def _short(value: str | None, param: str) -> str | None:
    if value is not None and len(value) > MAX_ID_CHARS:
        raise ConfigError(f"longer than {MAX_ID_CHARS} characters", key=param)
    return value


def _transition_json(t: TransitionRow) -> dict[str, Any]:
    return {
        "at": t.at.isoformat(),
        "from": t.from_state,
        "to": t.to_state,
        "rules": list(t.rules),
        "policy_version": t.policy_version,
        "actor": t.actor,
        "note": t.note,
    }


def _notice_json(n: NoticeRow) -> dict[str, Any]:
    return {
        "kind": n.kind,
        "policy_version": n.policy_version,
        "language": n.language,
        "state": str(n.state),
        "attempts": n.attempts,
        "last_error": n.last_error,
    }


Handler = Callable[[Request, ApiToken], Awaitable[Response]]

#: One state change as ``(account, from_state, to_state)``, for :func:`create_accounts_app`'s
#: ``on_change`` hook.
StateChange = tuple[str, str, str]

__all__ = ["MAX_EVENTS_BODY", "ApiToken", "Role", "StateChange", "create_accounts_app"]


def create_accounts_app(
    enforcer: Enforcer,
    *,
    tokens: list[ApiToken],
    now: Callable[[], datetime] | None = None,
    on_change: Callable[[Iterable[StateChange]], None] | None = None,
    write_lock: threading.Lock | None = None,
) -> Starlette:
    """The account API over ``enforcer`` (and its store) for the given tokens.

    Raises :class:`ConfigError` when no token is given, a secret is shorter than 16
    characters, or two tokens share a name or a secret. ``now`` is the clock for operator
    actions (default: the system clock). ``on_change`` is called with the state changes of
    every committed ingestion batch, operator action and (non-dry) enforcement run, in commit
    order (the decision service keeps its in-memory blocked set current with it).
    ``write_lock`` serialises those writes (the Enforcer's caches are not thread-safe; the
    service shares it with its reload); a private lock is used when None.
    """
    if not tokens:
        raise ConfigError("the account API needs at least one token", key="tokens")
    for t in tokens:
        if len(t.reveal()) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"token {t.name!r} is shorter than {MIN_TOKEN_CHARS} characters", key="tokens"
            )
    if len({t.name for t in tokens}) < len(tokens):
        raise ConfigError("two tokens have the same name", key="tokens")
    if len({t.reveal() for t in tokens}) < len(tokens):
        raise ConfigError("two tokens have the same secret", key="tokens")
    lock = write_lock or threading.Lock()

    def publish(changes: Iterable[StateChange]) -> None:
        if on_change is not None:
            on_change(changes)

    clock = now or (lambda: datetime.now(UTC))
    store = enforcer.store

    def authenticate(request: Request) -> ApiToken | None:
        given = request.headers.get("authorization", "")
        scheme, _, secret = given.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return None
        found = None
        presented = secret.strip()
        for t in tokens:  # compare with every token, in constant time each
            if t.matches(presented):
                found = t
        return found

    def guarded(role: Role, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            token = authenticate(request)
            if token is None:
                return _error(
                    401,
                    "unauthorized",
                    "send 'Authorization: Bearer <token>'",
                    "authentication_error",
                )
            if token.role < role:
                return _error(
                    403, "forbidden", f"this needs an {role.name.lower()} token", "permission_error"
                )
            try:
                return await handler(request, token)
            except BodyTooLarge as exc:
                return _error(413, "body_too_large", exc.one_line())
            except StoreError as exc:
                if isinstance(exc, StateConflict):
                    return _error(409, "state_conflict", exc.one_line())
                # The detail names the database (host, port, user): it goes to the log only.
                log.error("account store error on %s: %s", request.url.path, exc.one_line())
                return _error(
                    503,
                    "store_unavailable",
                    "the account store is unavailable; retry later",
                    "service_unavailable",
                )
            except GeogateError as exc:
                status = 400 if isinstance(exc, ConfigError) else exc.http_status
                return _error(status, _code(exc), exc.one_line(), _type(status))

        return endpoint

    async def post_events(request: Request, token: ApiToken) -> Response:
        body = await read_body(request, limit=MAX_EVENTS_BODY)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "not_utf8", "the body must be UTF-8 JSON")
        items = await run_in_threadpool(read_json_payload, text, source="request")
        events = [i for i in items if isinstance(i, Event)]
        rejected = [i for i in items if isinstance(i, Rejected)]

        def ingest() -> BatchReport:
            with lock:
                done = enforcer.ingest(events)
                publish((t.account, t.from_state, t.to_state) for t in done.transitions)
                return done

        batch = await run_in_threadpool(ingest)
        return _JSON(
            {
                "received": len(items),
                "inserted": batch.inserted,
                "duplicates": batch.duplicates,
                "rejected": [
                    {"line": r.error.line, "field": r.error.field, "error": str(r.error)}
                    for r in rejected
                ],
                "transitions": [
                    {
                        "account": t.account,
                        "from": t.from_state,
                        "to": t.to_state,
                        "rules": list(t.rules),
                    }
                    for t in batch.transitions
                ],
            },
            status_code=200 if not rejected else 207,
        )

    async def list_accounts(request: Request, token: ApiToken) -> Response:
        state = _short(request.query_params.get("state"), "state")
        raw_limit = request.query_params.get("limit", "100")
        # The length check first: int() of a 5,000-digit string raises ValueError.
        if not (
            raw_limit.isascii()
            and raw_limit.isdigit()
            and len(raw_limit) <= 9
            and 1 <= int(raw_limit) <= MAX_PAGE
        ):
            raise ConfigError(f"must be a whole number from 1 to {MAX_PAGE}", key="limit")
        limit = int(raw_limit)
        after = _short(request.query_params.get("after"), "after")

        def read() -> list[AccountRow]:
            rows = []
            for row in store.iter_accounts(state=state, batch_size=limit + 1):
                if after is not None and row.account <= after:
                    continue
                rows.append(row)
                if len(rows) >= limit:
                    break
            return rows

        rows = await run_in_threadpool(read)
        return _JSON(
            {
                "accounts": [r.summary_json() for r in rows],
                "next": rows[-1].account if len(rows) == limit else None,
            }
        )

    async def show_account(request: Request, token: ApiToken) -> Response:
        account = _short(request.path_params["account"], "account") or ""

        def read() -> dict[str, Any] | None:
            row = store.get_account(account)
            if row is None:
                return None
            return row.summary_json() | {
                "transitions": [_transition_json(t) for t in store.transitions(account)],
                "notices": [_notice_json(n) for n in store.notices(account)],
            }

        data = await run_in_threadpool(read)
        if data is None:
            return _error(404, "not_found", f"no account {account!r}")
        return _JSON(data)

    async def explain_account(request: Request, token: ApiToken) -> Response:
        account = _short(request.path_params["account"], "account") or ""
        at_param = request.query_params.get("at")
        at = _when(at_param, "at") if at_param else None

        def read() -> dict[str, Any] | None:
            row = store.get_account(account)
            if row is None:
                return None
            when = at or row.last_seen or clock()
            fresh, assessment = enforcer.assess_account(account, at=when)
            if fresh is None or assessment is None:
                return None
            config = AccountsConfig.from_policy(enforcer.policies.in_force(when))
            lines = explain_lines(
                fresh,
                assessment,
                config=config,
                transitions=store.transitions(account),
                notices=store.notices(account),
            )
            return {
                "account": account,
                "text": "\n".join(lines),
                "assessment": assessment.to_dict(),
            }

        data = await run_in_threadpool(read)
        if data is None:
            return _error(404, "not_found", f"no account {account!r}")
        return _JSON(data)

    actions = {
        "exempt": OperatorAction.EXEMPT,
        "unexempt": OperatorAction.UNEXEMPT,
        "appeal": OperatorAction.APPEAL,
        "reinstate": OperatorAction.REINSTATE,
        "reject-appeal": OperatorAction.REJECT_APPEAL,
        "block": OperatorAction.BLOCK,
    }

    async def operate(request: Request, token: ApiToken) -> Response:
        account = _short(request.path_params["account"], "account") or ""
        action = actions.get(request.path_params["action"])
        if action is None:
            return _error(404, "not_found", f"unknown action (one of {', '.join(actions)})")
        data = await _json_body(request)
        note = data.get("note")
        if note is not None and not isinstance(note, str):
            raise ConfigError("must be a string", key="note")
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise ConfigError(f"longer than {MAX_NOTE_CHARS} characters", key="note")
        if note is not None and not note.isascii():
            try:
                note.encode("utf-8")
            except UnicodeEncodeError:  # a "\ud800" escape: valid JSON, not storable text
                raise ConfigError("not valid Unicode text (a lone surrogate)", key="note") from None

        if action is OperatorAction.BLOCK and not (note or "").strip():
            raise ConfigError("an operator block needs a reason", key="note")

        def apply() -> TransitionRow:
            with lock:
                done = enforcer.operate(account, action, at=clock(), operator=token.name, note=note)
                publish([(done.account, done.from_state, done.to_state)])
                return done

        transition = await run_in_threadpool(apply)
        return _JSON(_transition_json(transition) | {"account": account})

    async def enforce(request: Request, token: ApiToken) -> Response:
        data = await _json_body(request)
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ConfigError("must be true or false", key="dry_run")
        if not dry_run and token.role < Role.OPERATOR:
            return _error(
                403,
                "forbidden",
                "enforcing needs an operator token (viewers may dry-run)",
                "permission_error",
            )
        when = _when(data.get("at"), "at")

        def run() -> EnforceReport:
            if dry_run:
                return enforcer.enforce(when, dry_run=True)
            with lock:
                done = enforcer.enforce(when, dry_run=False)
                publish((c.account, c.from_state.value, c.to_state.value) for c in done.changes)
                return done

        outcome = await run_in_threadpool(run)
        return _JSON(
            {
                "at": when.isoformat(),
                "dry_run": dry_run,
                "evaluated": outcome.evaluated,
                "by_state": dict(outcome.by_state),
                "by_reason": dict(outcome.by_reason),
                "by_region": dict(outcome.by_region),
                "changes": [
                    {
                        "account": c.account,
                        "from": c.from_state.value,
                        "to": c.to_state.value,
                        "rules": list(c.rules),
                        "regions": list(c.regions),
                    }
                    for c in outcome.changes
                ],
            }
        )

    async def verify_audit(request: Request, token: ApiToken) -> Response:
        report = await run_in_threadpool(store.verify_audit)
        return _JSON(
            {
                "ok": report.ok,
                "records": report.records,
                "head": report.head,
                "broken_at": report.broken_at,
                "problem": report.problem,
            },
            status_code=200 if report.ok else 409,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(
            status,
            {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error"),
            str(getattr(exc, "detail", "error")),
        )

    routes = [
        Route("/v1/events", guarded(Role.OPERATOR, post_events), methods=["POST"]),
        Route("/v1/accounts", guarded(Role.VIEWER, list_accounts), methods=["GET"]),
        Route("/v1/accounts/{account}", guarded(Role.VIEWER, show_account), methods=["GET"]),
        Route(
            "/v1/accounts/{account}/explain", guarded(Role.VIEWER, explain_account), methods=["GET"]
        ),
        Route("/v1/accounts/{account}/{action}", guarded(Role.OPERATOR, operate), methods=["POST"]),
        Route("/v1/enforce", guarded(Role.VIEWER, enforce), methods=["POST"]),
        Route("/v1/audit/verify", guarded(Role.VIEWER, verify_audit), methods=["GET"]),
    ]

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal_error", "internal error", "server_error")

    return Starlette(
        routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error}
    )


def _code(exc: GeogateError) -> str:
    """The error code of a refused request: the error's class in snake case."""
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _type(status: int) -> str:
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "invalid_request_error",
        503: "service_unavailable",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")


async def _json_body(request: Request) -> Mapping[str, Any]:
    body = await read_body(request, limit=MAX_JSON_BODY)
    if not body.strip():
        return {}
    try:
        data = loads_bounded(body)
    except ValueError as exc:
        raise ConfigError(f"the body must be a JSON object ({exc})", key="body") from None
    if not isinstance(data, dict):
        raise ConfigError("the body must be a JSON object", key="body")
    return data
