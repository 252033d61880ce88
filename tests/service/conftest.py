"""Fixtures of the enforcement-point tests: the embedded data, addresses picked from it, a
tiny upstream API and one shared ``geogate serve`` process (HTTP + gRPC) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.service.support import Geogate, Upstream, pick_address, run_upstream, start_geogate

from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy, resolve_policy_path

BLOCKED_ACCOUNT = "acct-blocked-1"


@dataclass(frozen=True)
class Addresses:
    """Client addresses picked from the embedded snapshot's columns (not guessed)."""

    cn4: str
    cn6: str
    us4: str
    us6: str
    ru4: str
    de4: str


@pytest.fixture(scope="session")
def embedded() -> Snapshot:
    return Snapshot.embedded()


@pytest.fixture(scope="session")
def addresses(embedded: Snapshot) -> Addresses:
    """CN addresses are denied and US/DE ones allowed by the shipped deny-list today: checked
    here with the core Decider, so every test below starts from verified inputs."""
    picked = Addresses(
        cn4=pick_address(embedded, "CN", version=4),
        cn6=pick_address(embedded, "CN", version=6),
        us4=pick_address(embedded, "US", version=4),
        us6=pick_address(embedded, "US", version=6),
        ru4=pick_address(embedded, "RU", version=4),
        de4=pick_address(embedded, "DE", version=4),
    )
    decider = Decider(load_policy(resolve_policy_path("builtin:unsupported-regions")), embedded)  # type: ignore[arg-type]
    for ip in (picked.cn4, picked.cn6, picked.ru4):
        assert decider.decide(ip).is_denied, ip
    for ip in (picked.us4, picked.us6, picked.de4):
        assert decider.decide(ip).action.label == "allow", ip
    return picked


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with run_upstream() as api:
        yield api


@pytest.fixture(scope="session")
def service_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config of the shared server: trusts the loopback proxies, knows a blocked account."""
    path = tmp_path_factory.mktemp("geogate-config") / "geogate.toml"
    path.write_text(
        "[serve]\n"
        'policy = ["builtin:unsupported-regions"]\n'
        'trusted_proxies = ["127.0.0.1/32", "::1/128"]\n'
        'fail_mode = "closed"\n'
        "[accounts]\n"
        f'blocked = ["{BLOCKED_ACCOUNT}"]\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def geogate_server(
    tmp_path_factory: pytest.TempPathFactory, service_config: Path
) -> Iterator[Geogate]:
    """One ``geogate serve`` with HTTP and gRPC and two worker processes, shared by the proxy
    tests (so nginx and Envoy run against the multi-process service)."""
    workdir = tmp_path_factory.mktemp("geogate-serve")
    server = start_geogate(workdir, "--config", str(service_config), grpc=True, workers=2)
    try:
        yield server
    finally:
        server.process.stop()
