"""The presets' city carve-out holds at every entry point, on the embedded data.

Zaporizhzhia (UA-23) and Kherson (UA-65) oblasts are denied, their capitals allowed: checked
through the Decider (one address, a batch of strings, a batch of IPv4 integers, a forwarded
chain), through an IPv6 embedding of a city address, and through the service's /v1/decide,
nginx ``auth_request`` and Envoy ``ext_authz`` HTTP endpoints (in process: the decision the
real proxies relay is this one, and their own tests run them).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import numpy as np
import pytest
from tests.service.support import AsgiClient

from geogate.client_ip import TrustedProxies
from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import Action
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.service.app import create_app
from geogate.service.config import ServiceConfig

AT = datetime(2026, 11, 1, tzinfo=UTC)
SNAP = Snapshot.embedded()
DECIDER = Decider(
    load_policy_set([resolve_policy_path("builtin:unsupported-regions")]),
    SNAP,
    trusted=TrustedProxies.parse(["127.0.0.1"]),
)


def _in(place_city: str | None, sub: str, version: int) -> str:
    """An address of the embedded snapshot in ``sub`` with city ``place_city`` (None: the
    oblast alone), found from its columns, not guessed."""
    for i, place in enumerate(SNAP.places):
        if place.subdivisions == (sub,) and place.city == place_city:
            for key in np.flatnonzero(SNAP.subdivision_idx == i):
                if (int(key) < SNAP.n4) == (version == 4):
                    first, _ = SNAP.network_of(int(key))
                    return str(ipaddress.ip_address(first) + 7)
    raise AssertionError(f"no {version} range for {place_city} in {sub}")


CASES = [
    (_in("Zaporizhzhia", "UA-23", 4), Action.ALLOW, "UA-23/Zaporizhzhia"),
    (_in("Zaporizhzhia", "UA-23", 6), Action.ALLOW, "UA-23/Zaporizhzhia"),
    (_in("Kherson", "UA-65", 4), Action.ALLOW, "UA-65/Kherson"),
    (_in(None, "UA-23", 4), Action.DENY, "UA-23"),
    (_in("Kakhovka", "UA-65", 4), Action.DENY, "UA-65"),
    (_in("Melitopol", "UA-23", 6), Action.DENY, "UA-23"),
]
IPS = [ip for ip, _, _ in CASES]


@pytest.mark.parametrize(("ip", "action", "region"), CASES)
def test_single_decisions(ip: str, action: Action, region: str) -> None:
    d = DECIDER.decide(ip, at=AT)
    assert (d.action, d.region) == (action, region), d.explain()
    _, walked = DECIDER.decide_request("127.0.0.1", x_forwarded_for=f"9.9.9.9, {ip}", at=AT)
    assert (walked.action, walked.region) == (action, region)


def test_batches_of_strings_and_integers() -> None:
    batch = DECIDER.decide_many(IPS, at=AT)
    assert batch.actions.tolist() == [int(a) for _, a, _ in CASES]
    v4 = [ip for ip in IPS if "." in ip]
    ints = np.array([int(ipaddress.IPv4Address(ip)) for ip in v4], dtype=np.uint32)
    by_int = DECIDER.decide_many(ints, at=AT)
    assert by_int.actions.tolist() == [int(a) for ip, a, _ in CASES if ip in v4]


def test_an_ipv6_embedding_of_a_city_address_is_the_city() -> None:
    city, oblast = CASES[0][0], CASES[3][0]
    for v4, action in ((city, Action.ALLOW), (oblast, Action.DENY)):
        six = str(ipaddress.IPv6Address(0x2002 << 112 | int(ipaddress.IPv4Address(v4)) << 80))
        d = DECIDER.decide(six, at=AT)
        assert (d.action, d.facts.embedding, d.facts.embedded_ipv4) == (action, "6to4", v4)
        assert DECIDER.decide_many([six], at=AT).actions.tolist() == [int(action)]


def test_the_service_endpoints() -> None:
    app = create_app(
        ServiceConfig(
            policies=("builtin:unsupported-regions",),
            trusted_proxies=TrustedProxies.parse(["127.0.0.1"]),
        ),
        handle_sighup=False,
    )
    with AsgiClient(app) as client:
        for ip, action, region in CASES:
            body = client.post("/v1/decide", json={"ip": ip}).json()
            assert (body["action"], body["region"]) == (action.label, region), body
            status = 200 if action is Action.ALLOW else 403
            for path in ("/v1/auth/nginx", "/v1/auth/envoy/v1/models"):
                r = client.get(path, headers={"x-forwarded-for": ip})
                assert r.status_code == status, (path, ip)
                assert r.headers.get("x-geogate-region") == region, (path, ip)
