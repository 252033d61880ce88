"""The decision service: a Starlette app (wiring for ``geogate serve`` happens here).

Endpoints (reference in ``docs/service.md``, schema at ``/openapi.json``):

- ``POST /v1/decide``: JSON in, decision JSON out (always 200 for a well-formed request);
- ``/v1/auth/nginx`` and ``/v1/auth/envoy[/...]``, any method: the nginx ``auth_request`` and
  Envoy ``ext_authz`` HTTP endpoints: 200 allows, 403 denies with the OpenAI-style body,
  503 when failing closed, 400 for a malformed forwarding chain; ``x-geogate-*`` headers;
- ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /openapi.json``;
- ``POST /admin/reload``: reload policy and snapshot (SIGHUP does the same);
- with ``[accounts] db``: the account API (``POST /v1/events``, ``/v1/accounts/...``,
  ``/v1/enforce``, ``/v1/audit/verify``; see :mod:`geogate.accounts_api.app`), routed by
  its own paths, enabled only with API tokens (see :mod:`geogate.service.accounts`).

The three decision endpoints are plain ASGI callables mounted as Starlette routes: Starlette's
Request/Response objects cost about a third of the throughput on this path (measured: 31k vs
19k requests/s for a trivial endpoint under uvicorn on one core), and these endpoints need
nothing from them but the headers and the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any, Final

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from geogate import __version__
from geogate.client_ip import parse_ip
from geogate.clock import Clock, parse_instant
from geogate.decide import CacheStats, Decision
from geogate.errors import ClientIPError, GeogateError
from geogate.intel.places import city_region_warnings
from geogate.json_limits import loads_bounded
from geogate.service.accounts import (
    ACCOUNT_PATHS,
    AccountsWiring,
    disabled_accounts_app,
    wire_accounts,
)
from geogate.service.config import ClientIPHeader, ServiceConfig
from geogate.service.engine import Engine, EngineRef, Verdict, enforce, load_engine
from geogate.service.metrics import CONTENT_TYPE, ServiceMetrics
from geogate.service.openapi import openapi_document
from geogate.service.overload import LoadMonitor, OverloadGuard
from geogate.service.ports import AccountStatusPort, InMemoryAccountStatus
from geogate.service.responses import (
    JSON_TYPE,
    decision_headers,
    encode_json,
    error_body,
    refusal_body,
)

log = logging.getLogger("geogate.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADER: Final = (b"content-type", JSON_TYPE.encode())
#: Largest total of request header names and values accepted (nginx's default buffers hold
#: 4 x 8 KiB); uvicorn's httptools parser sets no limit of its own.
MAX_HEADER_BYTES: Final = 32 * 1024
_DECIDE_KEYS: Final = frozenset(
    {"ip", "forwarded_for", "forwarded", "account", "org", "headers", "at"}
)


def headers_too_large(scope: Scope) -> bool:
    """True when the request's headers exceed :data:`MAX_HEADER_BYTES` in total."""
    total = 0
    for name, value in scope["headers"]:
        total += len(name) + len(value)
    return total > MAX_HEADER_BYTES


async def send_headers_too_large(send: Send) -> None:
    """Answer 431 with a JSON error."""
    await send_error(
        send,
        431,
        code="request_headers_too_large",
        message=f"request headers larger than {MAX_HEADER_BYTES} bytes in total",
    )


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


async def read_body(scope: Scope, receive: Receive, *, limit: int) -> bytes:
    """The whole request body; raises BodyTooLarge as soon as it passes ``limit`` bytes
    (before reading it all when Content-Length says so)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge
            except ValueError:
                pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_response(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Send a complete response with Content-Length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    status: int,
    *,
    code: str,
    message: str,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> None:
    """Send an OpenAI-style error body."""
    body = encode_json(error_body(code=code, message=message, type_=type_, param=param))
    await send_response(send, status, body, [_JSON_HEADER])


class _Rendered:
    """Per-decision encodings cached by identity: the Decider memoises decisions per range, so
    the same object comes back for most requests and is encoded once."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 65_536) -> None:
        self._entries: dict[int, tuple[Decision, bytes, list[tuple[bytes, bytes]]]] = {}
        self._limit = limit

    def get(self, decision: Decision) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """(decision JSON without its opening brace, encoded ``x-geogate-*`` headers)."""
        entry = self._entries.get(id(decision))
        if entry is not None and entry[0] is decision:
            return entry[1], entry[2]
        body = encode_json(decision.to_dict())[1:]
        headers = [
            (k.encode(), v.encode("latin-1", "replace")) for k, v in decision_headers(decision)
        ]
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[id(decision)] = (decision, body, headers)  # holds the object: id stays
        return body, headers


def freeze_heap() -> None:
    """Collect garbage, then move every live object out of the collector's reach.

    The policy, the snapshot and the caches are long-lived; left in the collected generations,
    each full collection walks them all and stalls requests (measured: p99 of /v1/decide 23 ms
    with, 6.5 ms without). Frozen objects are still freed by reference counting.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ReloadFailed(GeogateError):
    """A reload failed for a reason no specific check anticipated; the old data stays."""

    http_status = 422

    @classmethod
    def of(cls, exc: BaseException) -> ReloadFailed:
        """The error for ``exc``, as one line naming its type."""
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        return cls(f"unexpected {type(exc).__name__}: {detail}".rstrip(": "))


class GeoGateService:
    """The running service: current Engine, account port, metrics and configuration.

    With ``[accounts] db`` configured (and no ``accounts`` port given) it opens the account
    store and holds the :class:`~geogate.service.accounts.AccountsWiring` in ``wiring``; the
    account port is then the store-backed cached set. :meth:`close` releases the store.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        engine: Engine | None = None,
        accounts: AccountStatusPort | None = None,
        clock: Clock | None = None,
        freeze_gc: bool = False,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.config = config
        self.freeze_gc = freeze_gc
        first = engine if engine is not None else load_engine(config, clock=clock)
        self.ref = EngineRef(first, loader=lambda prev: load_engine(config, previous=prev))
        self.metrics = metrics if metrics is not None else ServiceMetrics()
        self.wiring: AccountsWiring | None = None
        if accounts is None and config.accounts_db is not None:
            self.wiring = wire_accounts(config, ref=self.ref, metrics=self.metrics)
            accounts = self.wiring.status
        self.accounts: AccountStatusPort = (
            accounts if accounts is not None else InMemoryAccountStatus(config.blocked_accounts)
        )
        self.metrics.track(age_days=self._age_days, ready=lambda: float(self.ref.current.is_ready))
        self.metrics.generation.set_function(lambda: float(self.ref.current.generation))
        self.metrics.track_cache(self._cache_stats)
        self.rendered = _Rendered()
        self._reload_lock = threading.Lock()
        if first.snapshot_problem:
            log.warning(
                "snapshot unavailable (%s); deciding by fail mode %s until a reload succeeds",
                first.snapshot_problem,
                config.fail_mode.value,
            )
        self._warn_if_stale(first)
        self._warn_city_rules(first)

    def _cache_stats(self) -> tuple[object, CacheStats] | None:
        decider = self.ref.current.decider
        return None if decider is None else (decider, decider.cache_stats())

    def _age_days(self) -> float:
        engine = self.ref.current
        if engine.snapshot_meta is None:
            return math.nan
        return engine.snapshot_meta.age_days(engine.clock.now())

    def _warn_if_stale(self, engine: Engine) -> None:
        limit = self.config.max_staleness_days
        if limit is not None and engine.snapshot_meta is not None:
            age = engine.snapshot_meta.age_days(engine.clock.now())
            if age > limit:
                log.warning("snapshot data is %.0f days old (max_staleness_days %g)", age, limit)

    @staticmethod
    def _warn_city_rules(engine: Engine) -> None:
        """Log each city rule that can never match the loaded snapshot (a subdivision built
        without cities, a misspelt city): the subdivision's rule applies there instead."""
        decider = engine.decider
        if decider is None:
            return
        for policy in decider.policies.versions:
            for rule, _, why in city_region_warnings(policy, decider.intel):
                log.warning("policy %s: rule %r: %s", policy.source or policy.label, rule.id, why)

    def reload(self, trigger: str) -> Engine:
        """Reload policy and snapshot and swap them in atomically; returns the new Engine.

        On error the running Engine stays, the error is logged in one line, counted in
        ``geogate_reloads_total{result="error"}`` and raised: a :class:`GeogateError` as it is,
        anything unexpected as :class:`ReloadFailed` (a reload must fail safely, whatever broke).
        """
        # With an account store, a reload waits for the ingestion batch in progress: each
        # batch is located and judged with one policy and one snapshot.
        accounts_lock = self.wiring.lock if self.wiring is not None else contextlib.nullcontext()
        with self._reload_lock, accounts_lock:
            try:
                engine = self.ref.reload()
                if self.wiring is not None:
                    self.wiring.on_reload(engine)
            except Exception as exc:  # any failure keeps the running data
                self.metrics.reloads.labels("error").inc()
                error = exc if isinstance(exc, GeogateError) else ReloadFailed.of(exc)
                log.error(
                    "reload (%s) failed, keeping the previous data: %s", trigger, error.one_line()
                )
                if error is exc:
                    raise
                raise error from exc
            self.metrics.reloads.labels("ok").inc()
            if self.freeze_gc:
                freeze_heap()
            log.info(
                "reloaded (%s): generation %d, policy %s, snapshot %s%s",
                trigger,
                engine.generation,
                engine.policy_label,
                engine.snapshot_source,
                f" UNAVAILABLE ({engine.snapshot_problem})" if engine.snapshot_problem else "",
            )
            self._warn_if_stale(engine)
            self._warn_city_rules(engine)
            return engine

    def start(self) -> None:
        """Start background work (the blocked-set refresh); the app's lifespan calls it."""
        if self.wiring is not None:
            self.wiring.status.start()

    def close(self) -> None:
        """Stop background work and close the account store (idempotent)."""
        if self.wiring is not None:
            self.wiring.close()

    def accounts_stale(self) -> str | None:
        """Why the account store's blocked set is past ``max_stale_seconds`` (the fail mode
        then applies to requests naming an account), None when it is fresh or there is no
        store. ``/readyz`` answers 503 while it is stale."""
        if self.wiring is None:
            return None
        status = self.wiring.status
        age = status.age_seconds
        if age is None or age <= status.max_stale_seconds:
            return None
        return (
            f"the blocked accounts were last read {age:.0f} s ago, more than max_stale_seconds "
            f"({status.max_stale_seconds:g}): {status.problem or 'refresh failing'}"
        )

    def accounts_status(self) -> dict[str, Any] | None:
        """The account store's state for ``/readyz``; None without a store."""
        if self.wiring is None:
            return None
        status = self.wiring.status
        age = status.age_seconds
        return {
            "store": "available" if status.problem is None else "refresh_failing",
            "blocked": len(status.blocked),
            "age_seconds": None if age is None else round(age, 1),
            "refresh_seconds": status.refresh_seconds,
            "max_stale_seconds": status.max_stale_seconds,
        }

    def status(self) -> dict[str, Any]:
        """What is loaded: the body of ``/readyz`` and of a successful reload."""
        engine = self.ref.current
        meta = engine.snapshot_meta
        snapshot: dict[str, Any] = {"source": engine.snapshot_source}
        if meta is not None:
            snapshot |= {
                "built_at": meta.built_at.isoformat(),
                "age_days": round(meta.age_days(engine.clock.now()), 2),
                "sources": [{"name": s.name, "kind": s.kind, "date": s.date} for s in meta.sources],
            }
        body = {
            "status": "ready" if engine.is_ready else "not_ready",
            "version": __version__,
            "generation": engine.generation,
            "loaded_at": engine.loaded_at.isoformat(),
            "policy": engine.policy_label,
            "policy_versions": [p.label for p in engine.policies.versions],
            "snapshot": snapshot,
            "fail_mode": engine.fail_mode.value,
        }
        accounts = self.accounts_status()
        if accounts is not None:
            body["accounts"] = accounts
        return body


def _header_values(scope: Scope, account_header: bytes) -> tuple[list[str], list[str], str | None]:
    """(X-Forwarded-For lines, Forwarded lines, account) from the ASGI headers."""
    xff: list[str] = []
    fwd: list[str] = []
    account: str | None = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            xff.append(value.decode("latin-1"))
        elif name == b"forwarded":
            fwd.append(value.decode("latin-1"))
        elif name == account_header:
            account = value.decode("latin-1").strip() or None
    return xff, fwd, account


def peer_of(scope: Scope) -> str:
    """The connection's peer address ("" when the server does not know it)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


class ProxyAuthEndpoint:
    """``/v1/auth/nginx`` and ``/v1/auth/envoy``: the proxy asks, the status answers.

    The peer is the proxy; the client address comes from ``X-Forwarded-For`` (or
    ``Forwarded``), believed only from trusted proxies. The body of the asking request is
    ignored (nginx and Envoy send none).
    """

    def __init__(self, service: GeoGateService, *, name: str) -> None:
        self.service = service
        self.name = name
        self._account_header = service.config.account_header.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        service = self.service
        if headers_too_large(scope):
            service.metrics.error(self.name, "request_headers_too_large")
            await send_headers_too_large(send)
            return
        xff, fwd, account = _header_values(scope, self._account_header)
        verdict = enforce(
            service.ref.current,
            peer=peer_of(scope),
            x_forwarded_for=xff or None,
            forwarded=fwd or None,
            account=account,
            accounts=service.accounts,
        )
        _, headers = service.rendered.get(verdict.decision)
        status = verdict.status
        if status == 200:
            body = b""
            out = headers
        else:
            out = [_JSON_HEADER, *headers]
            body = refusal_body(status, verdict.problem)
            if status == 400:
                service.metrics.error(self.name, "invalid_client_address")
        service.metrics.observe(self.name, verdict.decision, time.perf_counter() - started)
        await send_response(send, status, body, out)


def _parse_at(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("expected an RFC 3339 date-time string")
    return parse_instant(value)


def _chain(value: object, param: str) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(f"{param} must be a string or a list of strings")


class DecideEndpoint:
    """``POST /v1/decide``: decide for a request described in JSON."""

    def __init__(self, service: GeoGateService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        if scope["method"] != "POST":
            await send_error(
                send, 405, code="method_not_allowed", message="use POST with a JSON body"
            )
            return
        if headers_too_large(scope):
            service.metrics.error("decide", "request_headers_too_large")
            await send_headers_too_large(send)
            return
        try:
            raw = await read_body(scope, receive, limit=service.config.max_body_bytes)
        except BodyTooLarge:
            service.metrics.error("decide", "body_too_large")
            await send_error(
                send,
                413,
                code="body_too_large",
                message=f"request body larger than {service.config.max_body_bytes} bytes",
            )
            return
        started = time.perf_counter()
        try:
            data = loads_bounded(raw)
        except ValueError as exc:
            service.metrics.error("decide", "invalid_json")
            message = str(exc).splitlines()[0] if str(exc) else "empty body"
            await send_error(
                send, 400, code="invalid_json", message=f"body is not valid JSON: {message}"
            )
            return
        problem = self._validate(data)
        if problem is not None:
            param, message = problem
            service.metrics.error("decide", "invalid_parameter")
            await send_error(send, 400, code="invalid_parameter", message=message, param=param)
            return
        headers = {str(k).lower(): v for k, v in (data.get("headers") or {}).items()}
        xff = _chain(data.get("forwarded_for", headers.get("x-forwarded-for")), "forwarded_for")
        fwd = _chain(data.get("forwarded", headers.get("forwarded")), "forwarded")
        account = data.get("account")
        verdict = enforce(
            service.ref.current,
            peer=data["ip"],
            x_forwarded_for=xff,
            forwarded=fwd,
            account=account,
            accounts=service.accounts,
            at=_parse_at(data["at"]) if data.get("at") is not None else None,
        )
        if verdict.status == 400:
            service.metrics.error("decide", "invalid_client_address")
            await send_error(
                send,
                400,
                code="invalid_client_address",
                message=f"cannot determine the client address: {verdict.problem}",
                param=(
                    "forwarded"
                    if service.ref.current.client_header is ClientIPHeader.FORWARDED
                    else "forwarded_for"
                ),
            )
            return
        await send_response(send, 200, self._render(verdict, data), [_JSON_HEADER])
        service.metrics.observe("decide", verdict.decision, time.perf_counter() - started)

    def _render(self, verdict: Verdict, data: dict[str, Any]) -> bytes:
        body, _ = self.service.rendered.get(verdict.decision)
        head: dict[str, Any] = {"client_ip": verdict.client_ip}
        if data.get("account") is not None:
            head["account"] = data["account"]
        if data.get("org") is not None:
            head["org"] = data["org"]
        if verdict.problem is not None:
            head["problem"] = verdict.problem
        return encode_json(head)[:-1] + b"," + body

    @staticmethod
    def _validate(data: object) -> tuple[str | None, str] | None:
        """(param, message) of the first problem with a decide request, None when fine."""
        if not isinstance(data, dict):
            return None, "body must be a JSON object"
        unknown = sorted(set(data) - _DECIDE_KEYS)
        if unknown:
            return unknown[0], f"unknown parameter {unknown[0]!r}"
        ip = data.get("ip")
        if not isinstance(ip, str):
            return "ip", "ip is required: the address of the connection, as a string"
        try:
            parse_ip(ip)
        except ClientIPError as exc:
            return "ip", exc.one_line()
        for key in ("account", "org"):
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 256):
                return key, f"{key} must be a string of 1 to 256 characters"
        headers = data.get("headers")
        if headers is not None and (
            not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())
        ):
            return "headers", "headers must be an object of strings"
        for key in ("forwarded_for", "forwarded"):
            try:
                _chain(data.get(key), key)
            except ValueError as exc:
                return key, str(exc)
        if data.get("at") is not None:
            try:
                _parse_at(data["at"])
            except ValueError as exc:
                return (
                    "at",
                    f"at must be an RFC 3339 date-time such as 2024-07-10T00:00:00Z ({exc})",
                )
        return None


def _json(status: int, body: object) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def create_app(
    config: ServiceConfig | None = None,
    *,
    engine: Engine | None = None,
    accounts: AccountStatusPort | None = None,
    clock: Clock | None = None,
    handle_sighup: bool = True,
    freeze_gc: bool = False,
    service_metrics: ServiceMetrics | None = None,
    after_reload: Callable[[], None] | None = None,
) -> Starlette:
    """The decision service app for ``config`` (defaults: built-in policy, embedded data).

    ``engine`` replaces loading from ``config`` (tests, embedding); ``accounts`` is the account
    status port (default: the account store's cached blocked set when ``[accounts] db`` is
    set, which also mounts the account API; else in-memory, seeded from ``[accounts]
    blocked``). The store is opened here (StoreUnavailable when it cannot be reached); the
    app's lifespan starts the blocked-set refresh and closes the store at shutdown. With
    ``handle_sighup`` the app reloads on SIGHUP while it runs (main thread only). With
    ``freeze_gc`` (for a process that only serves geogate) the loaded data is frozen out of
    the garbage collector's reach after each load (see :func:`freeze_heap`). ``service_metrics``
    replaces the app's own (a worker's multiprocess metrics); ``after_reload`` is called after
    a successful ``POST /admin/reload`` (a worker asks its supervisor to reload every worker).
    Raises PolicyError / ConfigError for a bad configuration.
    """
    cfg = config or ServiceConfig()
    service = GeoGateService(
        cfg,
        engine=engine,
        accounts=accounts,
        clock=clock,
        freeze_gc=freeze_gc,
        metrics=service_metrics,
    )
    monitor = load_monitor(cfg, service.metrics)

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        body = service.status()
        engine = service.ref.current
        stale = service.accounts_stale()
        if engine.is_ready and stale is None:
            return _json(200, body)
        if not engine.is_ready:
            body |= error_body(
                code="intel_unavailable",
                message=f"no IP intelligence snapshot loaded: {engine.snapshot_problem}",
                type_="service_unavailable",
            )
        else:
            body |= error_body(
                code="accounts_stale", message=stale or "", type_="service_unavailable"
            )
        body["status"] = "not_ready"
        return _json(503, body)

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    document = openapi_document(__version__)

    async def openapi(request: Request) -> Response:
        return _json(200, document)

    async def admin_reload(request: Request) -> Response:
        problem = _admin_denied(request, cfg)
        if problem is not None:
            status, message = problem
            return _json(status, error_body(code="forbidden", message=message, type_="forbidden"))
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, service.reload, "admin endpoint")
        except GeogateError as exc:
            return _json(
                422,
                error_body(
                    code="reload_failed",
                    message=f"{exc.one_line()}; the previous policy and snapshot stay in use",
                    type_="reload_error",
                ),
            )
        if after_reload is not None:
            after_reload()
        return _json(200, {"reloaded": True, **service.status()})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(status, "http_error")
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return _json(status, error_body(code=code, message=str(message)))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _json(
            500, error_body(code="internal_error", message="internal error", type_="server_error")
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()
        installed = False
        if handle_sighup and threading.current_thread() is threading.main_thread():

            def on_sighup() -> None:
                async def run() -> None:
                    # reload() logged and counted the failure already; the old data stays.
                    with contextlib.suppress(GeogateError):
                        await loop.run_in_executor(None, service.reload, "SIGHUP")

                task = loop.create_task(run())
                pending.add(task)
                task.add_done_callback(pending.discard)

            try:
                loop.add_signal_handler(signal.SIGHUP, on_sighup)
                installed = True
            except (NotImplementedError, RuntimeError, ValueError):
                log.warning("cannot handle SIGHUP here; use POST /admin/reload")
        service.start()
        monitor.start()

        async def sync_cache_metrics() -> None:
            # Decisions count cache hits in plain integers (no lock on the hot path); copy
            # them into the metrics every second, so every worker's share is current.
            while True:
                await asyncio.sleep(1.0)
                service.metrics.sync_cache()

        syncing = loop.create_task(sync_cache_metrics())
        try:
            yield
        finally:
            syncing.cancel()
            await monitor.stop()
            if installed:
                loop.remove_signal_handler(signal.SIGHUP)
            service.close()

    accounts_app = (
        service.wiring.app
        if service.wiring is not None
        else disabled_accounts_app(
            "no account store: configure [accounts] db to enable the account API"
        )
    )
    from geogate.console import create_console_app as console_app  # noqa: PLC0415

    nginx = ProxyAuthEndpoint(service, name="nginx")
    envoy = ProxyAuthEndpoint(service, name="envoy_http")
    app = Starlette(
        routes=[
            Route("/v1/decide", DecideEndpoint(service)),
            Route("/v1/auth/nginx", nginx),
            Route("/v1/auth/envoy{rest:path}", envoy),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/admin/reload", admin_reload, methods=["POST"]),
            # Only the account API's own paths go to it, so other paths keep this app's
            # 404/405 answers.
            *(Route(path, accounts_app) for path in ACCOUNT_PATHS),
            # The operator console (pages for people; same tokens, roles and store).
            Mount("/console", app=console_app(service)),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        middleware=[Middleware(OverloadGuard, monitor=monitor)],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.load = monitor
    return app


def load_monitor(config: ServiceConfig, metrics: ServiceMetrics) -> LoadMonitor:
    """The load-shedding state for ``config``, counting refusals in
    ``geogate_shed_requests_total{reason}`` on the service's registry."""
    shed = Counter(
        "geogate_shed_requests_total",
        "Requests refused with 503 because the service is overloaded, by reason.",
        ("reason",),
        registry=metrics.registry,
    )
    return LoadMonitor(
        max_concurrent=config.max_concurrent_requests,
        max_queue_delay_ms=config.max_queue_delay_ms,
        retry_after_seconds=config.retry_after_seconds,
        on_shed=lambda reason: shed.labels(reason).inc(),
    )


def _admin_denied(request: Request, config: ServiceConfig) -> tuple[int, str] | None:
    """Why ``request`` may not use an admin endpoint ((status, message)), None if it may."""
    token = config.admin_token
    if token is not None:
        given = request.headers.get("authorization", "")
        import hmac  # noqa: PLC0415 - admin path only

        if not hmac.compare_digest(given.encode(), f"Bearer {token.reveal()}".encode()):
            return 401, "admin endpoints need 'Authorization: Bearer <admin_token>'"
        return None
    peer = request.client.host if request.client else ""
    try:
        if parse_ip(peer).is_loopback:
            return None
    except ClientIPError:
        pass
    return 403, "admin endpoints accept loopback peers only when no admin_token is configured"


def service_of(app: Starlette) -> GeoGateService:
    """The :class:`GeoGateService` behind an app made by :func:`create_app`."""
    service = app.state.service
    if not isinstance(service, GeoGateService):  # pragma: no cover - misuse
        raise TypeError("not a geogate service app")
    return service
