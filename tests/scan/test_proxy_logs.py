"""The JSON access-log formats of docs/scan.md, written by real nginx and Envoy, scan right.

Each proxy runs the documented log format (taken from docs/scan.md itself) behind a loopback
"load balancer" (the test client, connecting from 127.0.0.1 and naming the client in
X-Forwarded-For). Scanning the log with that load balancer trusted must locate every request
at the client the proxy was told about; without it, every request is the load balancer's.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from tests.service.support import (
    envoy_binary,
    free_port,
    nginx_binary,
    port_open,
    start_process,
    wait_until,
)

from geogate.client_ip import TrustedProxies
from geogate.policy.model import PolicySet
from geogate.scan.readers import ReadOptions, ReadStats, read_file
from geogate.scan.run import ScanConfig, scan_local

DOC = Path(__file__).resolve().parents[2] / "docs" / "scan.md"
_API = "type.googleapis.com/envoy.extensions"
_HCM = f"{_API}.filters.network.http_connection_manager.v3.HttpConnectionManager"
_XFF = f"{_API}.http.original_ip_detection.xff.v3.XffConfig"


def _doc_block(language: str, must_contain: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return next(b for b in blocks if must_contain in b)


def _send(port: int, clients: dict[str, str]) -> None:
    with httpx.Client(timeout=5) as http:
        for i, ip in enumerate(clients.values()):
            r = http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers={"x-forwarded-for": ip, "x-geogate-account": f"acct-{i}"},
            )
            assert r.status_code == 200


def _wait_for_lines(log: Path, n: int) -> None:
    wait_until(
        lambda: log.exists() and len(log.read_text().splitlines()) >= n,
        timeout=15,
        what="access log lines",
    )


def _check_scan(
    log: Path, clients: dict[str, str], tmp_path: Path, snapshot, policies: PolicySet
) -> None:
    stats = ReadStats()
    raw = pa.Table.from_batches(list(read_file(log, ReadOptions(), stats)))
    assert stats.count == 0
    assert raw.num_rows == len(clients)
    assert set(raw.column("peer").to_pylist()) == {"127.0.0.1"}
    assert raw.column("account").to_pylist() == [f"acct-{i}" for i in range(len(clients))]
    for trusted, want in ((["127.0.0.1"], set(clients)), ([], {""})):
        result = scan_local(
            ScanConfig(
                inputs=[str(log)],
                out=tmp_path / f"out-{len(trusted)}",
                policies=policies,
                snapshot=snapshot,
                trusted=TrustedProxies.parse(trusted),
                report=False,
            )
        )
        daily = result.tables["daily"]
        regions = set(pc.unique(daily.column("region")).to_pylist())
        assert regions == want


def test_nginx_json_log_format_from_the_docs(
    tmp_path: Path, clients: dict[str, str], snapshot, policies: PolicySet
) -> None:
    clients = {k: clients[k] for k in ("US", "CN", "RU")}
    port = free_port()
    log = tmp_path / "api.json.log"
    fmt = _doc_block("nginx", "log_format geogate_json")
    fmt = fmt.replace("/var/log/nginx/geogate.json.log", str(log))
    log_format, access_log = fmt.rsplit("access_log", 1)
    temp = "\n".join(
        f"  {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} warn;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n{temp}\n{log_format}\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n"
        "    set_real_ip_from 127.0.0.1;\n    real_ip_header X-Forwarded-For;\n"
        "    real_ip_recursive on;\n"
        '    set $geogate_action "allow";  # auth_request_set sets them in deploy/nginx\n'
        '    set $geogate_region "";\n'
        f"    access_log{access_log}\n"
        '    location / { return 200 "ok"; }\n  }\n}\n'
    )
    proc = start_process(
        "nginx-scan",
        [
            nginx_binary(),
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "error.log"),
        ],
        workdir=tmp_path,
    )
    try:
        wait_until(
            lambda: proc.check_alive() or port_open("127.0.0.1", port), timeout=15, what="nginx"
        )
        _send(port, clients)
        _wait_for_lines(log, len(clients))
    finally:
        proc.stop()
    _check_scan(log, clients, tmp_path, snapshot, policies)


def test_envoy_json_log_format_from_the_docs(
    tmp_path: Path, clients: dict[str, str], snapshot, policies: PolicySet
) -> None:
    clients = {k: clients[k] for k in ("US", "CN", "RU")}
    port, admin = free_port(), free_port()
    log = tmp_path / "api.json.log"
    access_log = _doc_block("yaml", "json_format").replace(
        "/var/log/envoy/geogate.json.log", str(log)
    )
    indented = "\n".join("          " + line for line in access_log.splitlines())
    (tmp_path / "envoy.yaml").write_text(
        f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: api
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {_HCM}
          stat_prefix: api
          original_ip_detection_extensions:
          - name: envoy.extensions.http.original_ip_detection.xff
            typed_config:
              "@type": {_XFF}
              xff_trusted_cidrs:
                cidrs: [{{address_prefix: 127.0.0.1, prefix_len: 32}}]
{indented}
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200, body: {{inline_string: "ok"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""
    )
    proc = start_process(
        "envoy-scan",
        [
            envoy_binary(),
            "-c",
            str(tmp_path / "envoy.yaml"),
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        workdir=tmp_path,
    )

    def ready() -> bool:
        proc.check_alive()
        try:
            return httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=30, what="envoy")
        _send(port, clients)
        _wait_for_lines(log, len(clients))
        time.sleep(0.2)
    finally:
        proc.stop()
    _check_scan(log, clients, tmp_path, snapshot, policies)
