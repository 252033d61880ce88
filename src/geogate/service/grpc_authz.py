"""Envoy ext_authz over gRPC: the ``envoy.service.auth.v3.Authorization/Check`` server.

Envoy sends the downstream peer (``attributes.source.address``) and the request headers; the
check resolves the client exactly as the HTTP endpoints do (the peer plus ``x-forwarded-for``
walked right to left over the trusted proxies), decides with the current Engine and answers:

- allowed: gRPC status OK and an ``ok_response`` that sets the ``x-geogate-*`` headers on the
  request sent upstream (overwriting any a client sent);
- denied: status PERMISSION_DENIED and a ``denied_response`` with HTTP 403, the OpenAI-style
  denial body and the ``x-geogate-*`` headers; 503 (UNAVAILABLE) when failing closed, 400
  (INVALID_ARGUMENT) for a malformed client address.

The server runs on the HTTP service's event loop (:mod:`geogate.service.grpc_wire`) and shares
its :class:`~geogate.service.engine.EngineRef`, so a reload switches both at once; with several
workers each runs one on the shared port (``SO_REUSEPORT``). A check reads only the three
headers it needs and sends a response serialized once per Decision. grpcio's servers (its
thread pool, and its asyncio server on this loop) were measured first: their per-call
machinery cost about 250 µs of CPU per check, against about 1 µs for the decision
(bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from geogate.decide import TwoGenerationCache
from geogate.errors import ConfigError
from geogate.service import envoy_proto as pb
from geogate.service.engine import EngineRef, Verdict, enforce
from geogate.service.grpc_wire import INVALID_ARGUMENT, CallError, GrpcServer, UnaryMethod
from geogate.service.metrics import ServiceMetrics
from geogate.service.ports import AccountStatusPort
from geogate.service.responses import JSON_TYPE, decision_headers, refusal_body

log = logging.getLogger("geogate.service")

# google.rpc.Code values
_OK = 0
_INVALID_ARGUMENT = INVALID_ARGUMENT
_PERMISSION_DENIED = 7
_UNAVAILABLE = 14
_RPC_CODE = {200: _OK, 400: _INVALID_ARGUMENT, 403: _PERMISSION_DENIED, 503: _UNAVAILABLE}

ENDPOINT = "envoy_grpc"


def _headers_of(http: Any) -> dict[str, str]:
    """Request headers from ``headers`` or, with Envoy's ``encode_raw_headers``, ``header_map``
    (repeated names joined with commas, as RFC 9110 allows for list-valued fields)."""
    headers: dict[str, str] = dict(http.headers)
    for item in http.header_map.headers:
        value = item.raw_value.decode("utf-8", "replace") if item.raw_value else item.value
        key = item.key.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _wanted(http: Any, account_header: str) -> tuple[str | None, str | None, str | None]:
    """(X-Forwarded-For, Forwarded, account) of the request: read straight from the headers
    map (no copy of every header) unless Envoy sent ``header_map``."""
    if http.header_map.headers:
        full = _headers_of(http)
        return full.get("x-forwarded-for"), full.get("forwarded"), full.get(account_header)
    headers = http.headers
    return headers.get("x-forwarded-for"), headers.get("forwarded"), headers.get(account_header)


def _add(options: Any, headers: list[tuple[str, str]]) -> None:
    for key, value in headers:
        option = options.add()
        option.header.key = key
        option.header.value = value
        option.append_action = pb.OVERWRITE_IF_EXISTS_OR_ADD


def check_response(verdict: Verdict) -> Any:
    """The CheckResponse message for ``verdict``."""
    response = pb.CheckResponse()
    headers = decision_headers(verdict.decision)
    if verdict.status == 200:
        response.status.code = _OK
        _add(response.ok_response.headers, headers)
        return response
    response.status.code = _RPC_CODE.get(verdict.status, _PERMISSION_DENIED)
    denied = response.denied_response
    denied.status.code = verdict.status
    denied.body = refusal_body(verdict.status, verdict.problem).decode()
    _add(denied.headers, [("content-type", JSON_TYPE), *headers])
    return response


class AuthorizationServicer:
    """The Check handler: request message in, response message out (no gRPC types needed, so
    tests can call :meth:`check` directly as well as over the wire)."""

    def __init__(
        self,
        ref: EngineRef,
        *,
        account_header: str,
        accounts: AccountStatusPort | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.ref = ref
        self.account_header = account_header
        self.accounts = accounts
        self.metrics = metrics
        # Serialized responses by decision: the Decider hands out the same Decision object for
        # a range, so most checks reuse bytes encoded once (building the message took about
        # a third of a check's time).
        self._encoded: TwoGenerationCache = TwoGenerationCache(32_768)

    def _verdict(self, request: Any) -> Verdict:
        attrs = request.attributes
        xff, forwarded, account = _wanted(attrs.request.http, self.account_header)
        return enforce(
            self.ref.current,
            peer=attrs.source.address.socket_address.address,
            x_forwarded_for=xff,
            forwarded=forwarded,
            account=account or None,
            accounts=self.accounts,
        )

    def _observe(self, verdict: Verdict, started: float) -> None:
        if self.metrics is not None:
            if verdict.status == 400:
                self.metrics.error(ENDPOINT, "invalid_client_address")
            self.metrics.observe(ENDPOINT, verdict.decision, time.perf_counter() - started)

    def check(self, request: Any, context: object = None) -> Any:
        """Decide the request described by a ``CheckRequest``; returns a ``CheckResponse``."""
        started = time.perf_counter()
        verdict = self._verdict(request)
        response = check_response(verdict)
        self._observe(verdict, started)
        return response

    def check_encoded(self, request: Any, context: object = None) -> bytes:
        """:meth:`check`, returning the serialized ``CheckResponse`` (what the servers send)."""
        started = time.perf_counter()
        verdict = self._verdict(request)
        key = (id(verdict.decision), verdict.status, verdict.problem)
        entry = self._encoded.get(key)
        if entry is None or entry[0] is not verdict.decision:
            entry = (verdict.decision, check_response(verdict).SerializeToString())
            self._encoded.put(key, entry)  # holds the decision, so its id is not reused
        self._observe(verdict, started)
        data: bytes = entry[1]
        return data


def _check_method(servicer: AuthorizationServicer) -> UnaryMethod:
    from_string = pb.CheckRequest.FromString

    def handle(data: bytes) -> bytes:
        try:
            request = from_string(data)
        except DecodeError:
            raise CallError(INVALID_ARGUMENT, "malformed CheckRequest message") from None
        return servicer.check_encoded(request)

    return UnaryMethod(handle)


def _counter(metrics: ServiceMetrics | None) -> Callable[[str], None] | None:
    """Refused calls and closed connections into ``geogate_request_errors_total``."""
    if metrics is None:
        return None
    return lambda code: metrics.error(ENDPOINT, code)


class GrpcAuthzServer:
    """The ext_authz gRPC server for :class:`AuthorizationServicer` on ``address``
    (``host:port``, port 0 for a free one), on the running event loop (see
    :mod:`geogate.service.grpc_wire`)."""

    def __init__(
        self,
        servicer: AuthorizationServicer,
        *,
        address: str,
        reuse_port: bool = False,
    ) -> None:
        self.servicer = servicer
        self.address = address
        host, _, port = address.rpartition(":")
        self._server = GrpcServer(
            {pb.CHECK_METHOD: _check_method(servicer)},
            host=host,
            port=int(port),
            # Only the workers of one service share a port (SO_REUSEPORT); otherwise a busy
            # port must be an error, not a silently shared one.
            reuse_port=reuse_port,
            on_refused=_counter(servicer.metrics),
        )
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; returns the bound port. Raises ConfigError when the address
        cannot be bound."""
        try:
            self.port = await self._server.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.address}: {exc.strerror or exc}", key="grpc_port"
            ) from None
        log.info("geogate ext_authz gRPC server on %s", self.address)
        return self.port

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Stop accepting calls and close the connections once the calls in flight are
        answered (at most ``grace_seconds``)."""
        await self._server.stop(grace_seconds)
