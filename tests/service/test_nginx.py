"""nginx (Debian package) with auth_request in front of a tiny upstream API, configured by
``deploy/nginx/geogate.conf`` itself, asking a real ``geogate serve`` process.

The test client plays the load balancer in front of nginx: it connects from 127.0.0.1, which
the deploy file trusts (``set_real_ip_from``), and says who the client is in X-Forwarded-For.
A connection from 127.0.0.2 plays a client reaching nginx directly (untrusted).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.service.conftest import Addresses
from tests.service.support import (
    DEPLOY,
    NGINX_ACCESS_LOG,
    Geogate,
    Process,
    Upstream,
    free_port,
    nginx_binary,
    port_open,
    render_template,
    start_geogate,
    start_process,
    wait_until,
)

from geogate.service.responses import UNAVAILABLE_BYTES, denial_body

NGINX_CONF = DEPLOY / "nginx" / "geogate.conf"


def start_nginx(workdir: Path, *, geogate_port: int, api_port: int) -> tuple[Process, int]:
    """nginx running the deploy file (ports substituted, its JSON access log written to
    ``workdir/access.json.log``) inside a minimal main config."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = render_template(
        NGINX_CONF,
        {8080: port, 8300: geogate_port, 9000: api_port},
        files={NGINX_ACCESS_LOG: workdir / "access.json.log"},
    )
    (workdir / "geogate.conf").write_text(site, encoding="utf-8")
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"  {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n  access_log off;\n{temp}\n  include {workdir / 'geogate.conf'};\n}}\n",
        encoding="utf-8",
    )
    process = start_process(
        f"nginx-{port}",
        [
            nginx_binary(),
            "-p",
            str(workdir),
            "-c",
            str(workdir / "nginx.conf"),
            "-e",
            str(workdir / "error.log"),
        ],
        workdir=workdir,
    )

    def up() -> bool:
        process.check_alive()
        return port_open("127.0.0.1", port)

    wait_until(up, timeout=15, what="nginx")
    return process, port


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, geogate_server: Geogate, upstream: Upstream
) -> Iterator[int]:
    workdir = tmp_path_factory.mktemp("nginx")
    process, port = start_nginx(workdir, geogate_port=geogate_server.port, api_port=upstream.port)
    try:
        yield port
    finally:
        process.stop()


def call(
    port: int,
    path: str,
    *,
    xff: str | None = None,
    host: str = "127.0.0.1",
    source: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GET through nginx, from ``source`` (a loopback address) with an X-Forwarded-For."""
    sent = dict(headers or {})
    if xff is not None:
        sent["x-forwarded-for"] = xff
    transport = httpx.HTTPTransport(local_address=source) if source else None
    shown = f"[{host}]" if ":" in host else host
    with httpx.Client(transport=transport, timeout=5) as client:
        return client.get(f"http://{shown}:{port}{path}", headers=sent)


def test_deploy_file_bodies_are_the_service_bodies() -> None:
    """The JSON bodies nginx answers by itself are exactly the ones geogate produces."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    bodies = {
        int(m.group(1)): json.loads(m.group(2))
        for m in re.finditer(r"return (\d{3}) '(\{.*?\})';", text)
        if "intel_unavailable" in m.group(2) or m.group(1) == "403"
    }
    assert bodies[403] == denial_body()
    assert bodies[503] == json.loads(UNAVAILABLE_BYTES)


def test_denied_region_gets_403_with_error_body(
    nginx: int, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    response = call(nginx, "/v1/chat/completions", xff=addresses.cn4)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert response.json() == denial_body()
    assert response.headers["x-geogate-action"] == "deny"
    assert response.headers["x-geogate-region"] == "CN"
    assert "region_unsupported" in response.headers["x-geogate-reason"]
    assert upstream.seen == []  # the API never saw it


def test_allowed_region_reaches_upstream_with_decision_headers(
    nginx: int, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    response = call(nginx, "/v1/models", xff=addresses.us4)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "path": "/v1/models"}
    seen = upstream.last()
    assert seen.headers["x-real-ip"] == addresses.us4
    assert seen.headers["x-geogate-action"] == "allow"
    assert seen.headers["x-geogate-region"] == "US"
    assert seen.headers["x-geogate-reason"] == "region_supported"


def test_spoofed_prefix_in_forwarded_chain_does_not_help(
    nginx: int, upstream: Upstream, addresses: Addresses
) -> None:
    """A client in CN sends 'X-Forwarded-For: <US address>'; the trusted load balancer appends
    the real address. real_ip_recursive stops at the first untrusted hop from the right."""
    upstream.clear()
    response = call(nginx, "/v1/models", xff=f"{addresses.us4}, {addresses.cn4}")
    assert response.status_code == 403
    assert response.json() == denial_body()
    assert response.headers["x-geogate-region"] == "CN"
    assert upstream.seen == []


def test_untrusted_peer_cannot_choose_its_address(
    nginx: int, upstream: Upstream, addresses: Addresses
) -> None:
    """From an address nginx does not trust, X-Forwarded-For is ignored: claiming a CN address
    changes nothing (the connection address 127.0.0.2 is used), nor does claiming a US one."""
    for claimed in (addresses.cn4, addresses.us4):
        upstream.clear()
        response = call(nginx, "/v1/models", xff=claimed, source="127.0.0.2")
        assert response.status_code == 200
        seen = upstream.last()
        assert seen.headers["x-real-ip"] == "127.0.0.2"
        assert seen.headers["x-geogate-region"] == "unknown"
        assert seen.headers["x-geogate-reason"] == "region_unknown"


def test_client_cannot_forge_decision_headers(
    nginx: int, upstream: Upstream, addresses: Addresses
) -> None:
    upstream.clear()
    forged = {"x-geogate-action": "allow", "x-geogate-region": "US", "x-geogate-reason": "x"}
    response = call(nginx, "/v1/models", xff=addresses.de4, headers=forged)
    assert response.status_code == 200
    seen = upstream.last()
    assert seen.headers["x-geogate-region"] == "DE"
    assert seen.headers["x-geogate-reason"] == "region_supported"


def test_forwarded_header_from_a_client_is_not_believed(nginx: int, addresses: Addresses) -> None:
    response = call(
        nginx, "/v1/models", xff=addresses.cn4, headers={"forwarded": f"for={addresses.us4}"}
    )
    assert response.status_code == 403


def test_ipv6_clients_over_ipv6(nginx: int, upstream: Upstream, addresses: Addresses) -> None:
    denied = call(nginx, "/v1/models", xff=addresses.cn6, host="::1")
    assert denied.status_code == 403
    assert denied.json() == denial_body()
    assert denied.headers["x-geogate-region"] == "CN"
    upstream.clear()
    allowed = call(nginx, "/v1/models", xff=addresses.us6, host="::1")
    assert allowed.status_code == 200
    assert upstream.last().headers["x-real-ip"] == addresses.us6


def test_oversized_headers_get_431_json_and_nginx_keeps_serving(
    nginx: int, addresses: Addresses
) -> None:
    huge = ", ".join([addresses.us4] * 2000)  # ~28 KB, over nginx's 8 KB header buffers
    response = call(nginx, "/v1/models", xff=huge)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "request_headers_too_large"
    assert call(nginx, "/v1/models", xff=addresses.us4).status_code == 200


def test_long_chain_within_nginx_limits_is_resolved_by_nginx(
    nginx: int, upstream: Upstream, addresses: Addresses
) -> None:
    """A 5 KB chain (over geogate's own 4 KB header limit) is walked by nginx, which then sends
    geogate the single resolved address."""
    upstream.clear()
    chain = ", ".join([addresses.cn4] * 300 + [addresses.us4])
    assert len(chain) > 4096
    response = call(nginx, "/v1/models", xff=chain)
    assert response.status_code == 200
    assert upstream.last().headers["x-geogate-region"] == "US"


def test_geogate_unreachable_fails_closed(tmp_path: Path, upstream: Upstream) -> None:
    process, port = start_nginx(tmp_path, geogate_port=free_port(), api_port=upstream.port)
    try:
        upstream.clear()
        response = call(port, "/v1/models", xff="8.8.8.8")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "decision_service_unavailable"
        assert upstream.seen == []
    finally:
        process.stop()


def test_missing_snapshot_fails_closed_through_nginx(
    tmp_path: Path, upstream: Upstream, addresses: Addresses
) -> None:
    """geogate started without its snapshot is up but not ready, and refuses with a clear 503
    that nginx passes on (fail_mode closed, the default)."""
    server = start_geogate(
        tmp_path,
        "--snapshot",
        str(tmp_path / "missing.snapshot"),
        "--trusted-proxy",
        "127.0.0.1",
        ready=False,
    )
    try:
        ready = server.get("/readyz")
        assert ready.status_code == 503
        assert "missing.snapshot" in ready.json()["error"]["message"]
        process, port = start_nginx(
            tmp_path / "nginx", geogate_port=server.port, api_port=upstream.port
        )
        try:
            upstream.clear()
            response = call(port, "/v1/models", xff=addresses.us4)
            assert response.status_code == 503
            assert response.content == UNAVAILABLE_BYTES
            assert response.headers["x-geogate-reason"] == "intel_unavailable"
            assert upstream.seen == []
        finally:
            process.stop()
    finally:
        server.process.stop()
