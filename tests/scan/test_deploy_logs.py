"""The JSON access logs that the shipped nginx and Envoy configurations write are read by
``geogate scan`` with each request's real client.

Real nginx and Envoy run the files in ``deploy/`` (started by the service tests' helpers, which
only move ports and the log path), in front of a real ``geogate serve``; requests arrive from a
load balancer on 127.0.0.1 that names the client in X-Forwarded-For, and from 127.0.0.2, a
client reaching the proxy directly with a forged header. The scan, trusting the load balancer
only, must place every request where the proxy and geogate placed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.service.support import (
    DEPLOY,
    Geogate,
    Upstream,
    run_upstream,
    start_geogate,
    wait_until,
)
from tests.service.test_envoy import start_envoy
from tests.service.test_nginx import start_nginx

from geogate.client_ip import TrustedProxies
from geogate.policy.model import PolicySet
from geogate.scan.run import ScanConfig, ScanResult, scan_local


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Geogate, Upstream]]:
    """``geogate serve`` (HTTP and gRPC) trusting the proxies on loopback, and an API."""
    workdir = tmp_path_factory.mktemp("geogate")
    config = workdir / "geogate.toml"
    config.write_text(
        '[serve]\npolicy = ["builtin:unsupported-regions"]\n'
        'trusted_proxies = ["127.0.0.1/32", "::1/128"]\n',
        encoding="utf-8",
    )
    server = start_geogate(workdir, "--config", str(config), grpc=True)
    try:
        with run_upstream() as api:
            yield server, api
    finally:
        server.process.stop()


def _send(port: int, clients: dict[str, str]) -> int:
    """Requests through the proxy: CN and US clients behind the load balancer, and a forged
    header from an untrusted peer. Returns how many were sent."""
    cases = [
        ("127.0.0.1", clients["CN"], "acct-cn"),
        ("127.0.0.1", clients["US"], "acct-us"),
        ("127.0.0.2", clients["CN"], "acct-direct"),
    ]
    for source, xff, account in cases:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=5) as client:
            answer = client.get(
                f"http://127.0.0.1:{port}/v1/models",
                headers={"x-forwarded-for": xff, "x-geogate-account": account},
            )
        assert answer.status_code in {200, 403}, answer.text
    return len(cases)


def _scan(log: Path, lines: int, tmp_path: Path, snapshot, policies: PolicySet) -> ScanResult:
    wait_until(
        lambda: log.exists() and log.read_bytes().count(b"\n") >= lines,
        timeout=15,
        what=f"{lines} lines in {log.name}",
    )
    return scan_local(
        ScanConfig(
            inputs=[str(log)],
            out=tmp_path / "scan",
            policies=policies,
            snapshot=snapshot,
            trusted=TrustedProxies.parse(["127.0.0.1/32", "::1/128"]),
            report=False,
        )
    )


def _placed(result: ScanResult) -> dict[str, tuple[str, int]]:
    """Account -> (region, denied requests) from the scan's per-account table."""
    rows = result.tables["accounts"].to_pylist()
    return {r["account"]: (r["region"], r["denied"]) for r in rows}


def _check(result: ScanResult, lines: int) -> None:
    assert result.stats.count == 0, result.stats.samples
    assert result.rows == lines
    placed = _placed(result)
    assert placed["acct-cn"] == ("CN", 1)
    assert placed["acct-us"] == ("US", 0)
    # The forged header from an untrusted peer moved neither the proxy nor the scan.
    assert placed["acct-direct"][0] != "CN"


def test_the_nginx_json_log_is_scanned_with_each_requests_client(
    tmp_path: Path,
    service: tuple[Geogate, Upstream],
    clients: dict[str, str],
    snapshot,
    policies: PolicySet,
) -> None:
    server, api = service
    workdir = tmp_path / "nginx"
    process, port = start_nginx(workdir, geogate_port=server.port, api_port=api.port)
    try:
        lines = _send(port, clients)
        result = _scan(workdir / "access.json.log", lines, tmp_path, snapshot, policies)
    finally:
        process.stop()
    _check(result, lines)


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_the_envoy_json_log_is_scanned_with_each_requests_client(
    tmp_path: Path,
    service: tuple[Geogate, Upstream],
    clients: dict[str, str],
    snapshot,
    policies: PolicySet,
    mode: str,
) -> None:
    server, api = service
    workdir = tmp_path / "envoy"
    workdir.mkdir()
    process, port = start_envoy(workdir, mode, geogate=server, api_port=api.port)
    try:
        lines = _send(port, clients)
        result = _scan(workdir / f"access-{mode}.json.log", lines, tmp_path, snapshot, policies)
    finally:
        process.stop()
    _check(result, lines)


def test_the_documented_log_formats_are_the_deploy_files_own() -> None:
    """docs/scan.md shows the formats of deploy/ verbatim (the doc's blocks are run by
    test_proxy_logs.py, the deploy files above)."""
    doc = (DEPLOY.parent / "docs" / "scan.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(nginx|yaml)\n(.*?)```", doc, re.S)
    nginx = next(b for lang, b in blocks if lang == "nginx" and "log_format" in b)
    envoy = next(b for lang, b in blocks if lang == "yaml" and "json_format" in b)

    def words(text: str) -> str:
        return " ".join(text.split())

    conf = words((DEPLOY / "nginx" / "geogate.conf").read_text())
    log_format, access_log = nginx.rsplit("access_log", 1)
    assert words(log_format) in conf
    assert words("access_log" + access_log) in conf
    for mode in ("http", "grpc"):
        assert words(envoy) in words((DEPLOY / "envoy" / f"envoy-{mode}.yaml").read_text())
