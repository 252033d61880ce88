"""The ext_authz gRPC server over a real gRPC channel on loopback (as Envoy calls it), plus the
wire format of the hand-declared messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest
from tests.service.conftest import Addresses
from tests.service.support import LoopThread

from geogate.client_ip import TrustedProxies
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.service import envoy_proto as pb
from geogate.service.engine import Engine, EngineRef, build_engine
from geogate.service.grpc_authz import AuthorizationServicer, GrpcAuthzServer
from geogate.service.metrics import ServiceMetrics
from geogate.service.ports import InMemoryAccountStatus
from geogate.service.responses import UNAVAILABLE_BYTES, denial_body

POLICY = "builtin:unsupported-regions"


def engine(snapshot: Snapshot | None) -> Engine:
    return build_engine(
        load_policy_set([resolve_policy_path(POLICY)]),
        snapshot,
        trusted=TrustedProxies.parse(["127.0.0.1", "::1"]),
        snapshot_problem=None if snapshot else "no snapshot",
    )


@pytest.fixture(scope="module")
def stub(embedded: Snapshot) -> Iterator[Any]:
    servicer = AuthorizationServicer(
        EngineRef(engine(embedded)),
        account_header="x-geogate-account",
        accounts=InMemoryAccountStatus(["acct-blocked"]),
        metrics=ServiceMetrics(),
    )
    loop = LoopThread()
    server = GrpcAuthzServer(servicer, address="127.0.0.1:0")
    port = loop.run(server.start())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    check = channel.unary_unary(
        pb.CHECK_METHOD,
        request_serializer=pb.CheckRequest.SerializeToString,
        response_deserializer=pb.CheckResponse.FromString,
    )
    try:
        yield check
    finally:
        channel.close()
        loop.run(server.stop(0))
        loop.close()


def request(peer: str, headers: dict[str, str]) -> Any:
    message = pb.CheckRequest()
    attrs = message.attributes
    attrs.source.address.socket_address.address = peer
    attrs.source.address.socket_address.port_value = 50000
    attrs.request.http.method = "POST"
    attrs.request.http.path = "/v1/chat/completions"
    for key, value in headers.items():
        attrs.request.http.headers[key] = value
    return message


def headers_of(options: Any) -> dict[str, str]:
    return {o.header.key: o.header.value for o in options}


def test_allowed_request_gets_ok_and_upstream_headers(stub: Any, addresses: Addresses) -> None:
    response = stub(request("127.0.0.1", {"x-forwarded-for": addresses.us4}), timeout=5)
    assert response.status.code == 0
    assert response.WhichOneof("http_response") == "ok_response"
    added = headers_of(response.ok_response.headers)
    assert added["x-geogate-action"] == "allow"
    assert added["x-geogate-region"] == "US"
    assert all(
        o.append_action == pb.OVERWRITE_IF_EXISTS_OR_ADD for o in response.ok_response.headers
    )


def test_denied_request_gets_403_and_the_denial_body(stub: Any, addresses: Addresses) -> None:
    response = stub(request("127.0.0.1", {"x-forwarded-for": addresses.cn6}), timeout=5)
    assert response.status.code == 7  # PERMISSION_DENIED
    denied = response.denied_response
    assert denied.status.code == 403
    assert json.loads(denied.body) == denial_body()
    sent = headers_of(denied.headers)
    assert sent["content-type"] == "application/json"
    assert sent["x-geogate-region"] == "CN"


def test_peer_is_the_client_when_untrusted(stub: Any, addresses: Addresses) -> None:
    response = stub(request(addresses.cn4, {"x-forwarded-for": addresses.us4}), timeout=5)
    assert response.denied_response.status.code == 403


def test_blocked_account(stub: Any, addresses: Addresses) -> None:
    headers = {"x-forwarded-for": addresses.us4, "x-geogate-account": "acct-blocked"}
    response = stub(request("127.0.0.1", headers), timeout=5)
    assert response.denied_response.status.code == 403
    assert headers_of(response.denied_response.headers)["x-geogate-reason"].startswith(
        "account_blocked"
    )


def test_raw_header_map_is_read_too(stub: Any, addresses: Addresses) -> None:
    """With Envoy's encode_raw_headers the headers come as a list with bytes values."""
    message = request("127.0.0.1", {})
    item = message.attributes.request.http.header_map.headers.add()
    item.key = "x-forwarded-for"
    item.raw_value = addresses.cn4.encode()
    assert stub(message, timeout=5).denied_response.status.code == 403


@pytest.mark.parametrize(
    ("peer", "xff"), [("", None), ("not-an-ip", None), ("127.0.0.1", "junk"), ("::1", "1," * 40)]
)
def test_unusable_address_gets_400_with_reason(stub: Any, peer: str, xff: str | None) -> None:
    response = stub(request(peer, {"x-forwarded-for": xff} if xff else {}), timeout=5)
    assert response.status.code == 3  # INVALID_ARGUMENT
    assert response.denied_response.status.code == 400
    assert json.loads(response.denied_response.body)["error"]["code"] == "invalid_client_address"


def test_fail_closed_without_snapshot() -> None:
    servicer = AuthorizationServicer(EngineRef(engine(None)), account_header="x-geogate-account")
    response = servicer.check(request("127.0.0.1", {"x-forwarded-for": "8.8.8.8"}))
    assert response.status.code == 14  # UNAVAILABLE
    assert response.denied_response.status.code == 503
    assert response.denied_response.body.encode() == UNAVAILABLE_BYTES


def test_unknown_fields_from_a_newer_envoy_are_ignored(addresses: Addresses) -> None:
    """A CheckRequest carrying fields this schema does not declare (here: destination labels
    and a metadata context, as Envoy sends) still parses and decides."""
    message = request("127.0.0.1", {"x-forwarded-for": addresses.cn4})
    data = message.SerializeToString()
    data += b"\x0a\x06\x5a\x04\x0a\x02\x08\x01"  # attributes.field 11 (metadata_context)
    parsed = pb.CheckRequest.FromString(data)
    assert parsed.attributes.request.http.headers["x-forwarded-for"] == addresses.cn4


def test_refused_calls_reach_the_error_counter(embedded: Snapshot) -> None:
    metrics = ServiceMetrics()
    servicer = AuthorizationServicer(
        EngineRef(engine(embedded)), account_header="x-geogate-account", metrics=metrics
    )
    loop = LoopThread()
    server = GrpcAuthzServer(servicer, address="127.0.0.1:0")
    port = loop.run(server.start())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            garbage = channel.unary_unary(pb.CHECK_METHOD)
            with pytest.raises(grpc.RpcError) as caught:
                garbage(b"\xff\xff\xff", timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        loop.run(server.stop(0))
        loop.close()
    text = generate_latest(metrics.registry).decode()
    assert 'geogate_request_errors_total{code="invalid_argument",endpoint="envoy_grpc"} 1.0' in text
