"""Every enforcement point decides alike: the same client, asked through Envoy's HTTP
ext_authz endpoint, Envoy's gRPC Check, nginx's endpoint and ``POST /v1/decide`` of one real
``geogate serve`` (two workers), gets the same status, region, action and reasons.

The addresses: random public IPv4 and IPv6 addresses, the regions' own addresses, IPv6 forms
that carry an IPv4 address (mapped, 6to4, NAT64), forwarding chains through trusted and
untrusted hops, and malformed values."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from tests.service.conftest import Addresses
from tests.service.support import Geogate

from geogate.intel.build import random_public_ipv4
from geogate.service import envoy_proto as pb
from geogate.service.responses import DECISION_HEADERS


def _chains(addresses: Addresses) -> list[str]:
    rng = random.Random(11)
    v4 = [str(ipaddress.IPv4Address(int(x))) for x in random_public_ipv4(120, seed=11)]
    v6 = [str(ipaddress.IPv6Address((0x2000 << 112) | rng.getrandbits(125))) for _ in range(60)]
    regions = [
        addresses.cn4,
        addresses.cn6,
        addresses.us4,
        addresses.us6,
        addresses.ru4,
        addresses.de4,
    ]
    carried = [f"::ffff:{addresses.cn4}", f"64:ff9b::{addresses.cn4}"]
    packed = int(ipaddress.IPv4Address(addresses.ru4))
    carried.append(str(ipaddress.IPv6Address((0x2002 << 112) | (packed << 80) | 1)))
    chains = [*v4, *v6, *regions, *carried]
    chains += [f"{addresses.us4}, {addresses.cn4}", f"{addresses.cn4}, 127.0.0.1"]
    chains += ["junk", "1.2.3", f"{addresses.us4}, unknown", "::1%eth0"]
    return chains


@pytest.fixture(scope="module")
def check(geogate_server: Geogate) -> Iterator[Any]:
    assert geogate_server.grpc_port is not None
    with grpc.insecure_channel(f"127.0.0.1:{geogate_server.grpc_port}") as channel:
        yield channel.unary_unary(
            pb.CHECK_METHOD,
            request_serializer=pb.CheckRequest.SerializeToString,
            response_deserializer=pb.CheckResponse.FromString,
        )


def _grpc(check: Any, chain: str) -> tuple[int, dict[str, str]]:
    message = pb.CheckRequest()
    message.attributes.source.address.socket_address.address = "127.0.0.1"
    message.attributes.request.http.headers["x-forwarded-for"] = chain
    response = check(message, timeout=5)
    which = response.WhichOneof("http_response")
    if which == "ok_response":
        options = response.ok_response.headers
        status = 200
    else:
        options = response.denied_response.headers
        status = response.denied_response.status.code
    headers = {o.header.key: o.header.value for o in options}
    return status, {k: headers[k] for k in DECISION_HEADERS if k in headers}


def _http(client: httpx.Client, path: str, chain: str) -> tuple[int, dict[str, str]]:
    r = client.get(path, headers={"x-forwarded-for": chain})
    return r.status_code, {k: r.headers[k] for k in DECISION_HEADERS if k in r.headers}


def test_every_enforcement_point_decides_alike(
    geogate_server: Geogate, check: Any, addresses: Addresses
) -> None:
    chains = _chains(addresses)
    statuses = set()
    with httpx.Client(base_url=geogate_server.url, timeout=5) as client:
        for chain in chains:
            grpc_side = _grpc(check, chain)
            envoy = _http(client, "/v1/auth/envoy/v1/chat", chain)
            nginx = _http(client, "/v1/auth/nginx", chain)
            assert grpc_side == envoy == nginx, chain
            statuses.add(grpc_side[0])
            if grpc_side[0] == 400:
                continue  # /v1/decide takes the address, not a forwarding chain
            client_ip = [hop.strip() for hop in chain.split(",") if hop.strip() != "127.0.0.1"]
            body = client.post("/v1/decide", json={"ip": client_ip[-1]}).json()
            assert body["action"] == grpc_side[1]["x-geogate-action"], chain
            assert (body["region"] or "unknown") == grpc_side[1]["x-geogate-region"], chain
    assert {200, 403, 400} <= statuses  # allowed, denied and unusable addresses all compared
