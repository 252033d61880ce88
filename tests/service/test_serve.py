"""``geogate serve`` as a process: one-line errors for bad configuration at start, ``--check``,
and reload on SIGHUP without a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from tests.service.support import (
    Geogate,
    free_port,
    geogate_argv,
    start_geogate,
    tiny_snapshot,
    wait_until,
)
from tests.service.test_app import DENY_CN, DENY_RU


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        geogate_argv(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--config", "{tmp}/absent.toml"], {}, "absent.toml: no such config file"),
        (["--config", "{tmp}/bad.toml"], {}, "bad.toml: invalid TOML"),
        (["--policy", "{tmp}/nope.toml"], {}, "nope.toml: no such file"),
        (["--policy", "builtin:nope"], {}, "no built-in policy 'nope'"),
        ([], {"GEOGATE_FAIL_MODE": "sometimes"}, "GEOGATE_FAIL_MODE:fail_mode: expected"),
        (["--port", "99999"], {}, "command line:port: port 99999 is outside 0-65535"),
        (["--trusted-proxy", "10.0.0.0/40"], {}, "trusted_proxies: not a trusted-proxy network"),
        (["--host", "example.com"], {}, "host: expected an IP address (or localhost)"),
    ],
)
def test_bad_configuration_is_one_line_at_start(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    (tmp_path / "bad.toml").write_text("[serve\nport=1\n", encoding="utf-8")
    argv = ["serve", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    result = run_cli(*argv, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("geogate: error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_busy_port_is_one_line_at_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_prints_what_would_be_served(tmp_path: Path) -> None:
    ok = run_cli("serve", "--check", "--trusted-proxy", "127.0.0.1", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert '"snapshot_loaded": true' in ok.stdout
    assert '"trusted_proxies": [\n    "127.0.0.1/32"\n  ]' in ok.stdout
    missing = run_cli("serve", "--check", "--snapshot", str(tmp_path / "x.snapshot"), cwd=tmp_path)
    assert missing.returncode == 3
    assert "cannot read snapshot" in missing.stdout
    assert missing.stderr.startswith("geogate: error: ")


def decide(server: Geogate, ip: str) -> dict[str, object]:
    response = server.post("/v1/decide", json={"ip": ip})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_sighup_reloads_policy_and_snapshot_without_restart(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DENY_CN, encoding="utf-8")
    snap = tiny_snapshot(tmp_path / "data.snapshot", {"81.2.69.0-81.2.69.255": "CN"})
    server = start_geogate(tmp_path, "--policy", str(policy), "--snapshot", str(snap))
    try:
        pid = server.process.proc.pid
        assert decide(server, "81.2.69.10")["action"] == "deny"

        # A broken policy: SIGHUP fails, the service keeps deciding with what it had.
        policy.write_text("[policy]\nmode = 'sideways'\n", encoding="utf-8")
        server.process.signal(signal.SIGHUP)
        wait_until(
            lambda: "reload (SIGHUP) failed" in server.process.output(),
            timeout=10,
            what="the failed reload to be logged",
        )
        assert decide(server, "81.2.69.10")["action"] == "deny"
        assert server.get("/readyz").json()["generation"] == 1

        policy.write_text(DENY_RU, encoding="utf-8")
        tiny_snapshot(snap, {"81.2.69.0-81.2.69.255": "RU"})
        server.process.signal(signal.SIGHUP)
        wait_until(
            lambda: server.get("/readyz").json()["generation"] == 2,
            timeout=10,
            what="the SIGHUP reload",
        )
        result = decide(server, "81.2.69.10")
        assert (result["action"], result["region"], result["policy"]) == (
            "deny",
            "RU",
            "test-deny-ru@1",
        )
        assert server.process.proc.pid == pid  # same process: no restart
        server.process.check_alive()
        log = server.process.output()
        assert "reloaded (SIGHUP): generation 2" in log
        assert "Traceback" not in log
    finally:
        server.process.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM to exit as a terminated process.
    assert server.process.proc.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in server.process.output()
    assert "Traceback" not in server.process.output()


def test_grpc_port_in_use_is_one_line_at_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        grpc_port = busy.getsockname()[1]
        result = run_cli(
            "serve", "--port", str(free_port()), "--grpc-port", str(grpc_port), cwd=tmp_path
        )
    assert result.returncode == 2, result.stderr
    assert "cannot listen on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_real_server_answers_hostile_requests_and_keeps_serving(geogate_server: Geogate) -> None:
    """Against uvicorn itself (not the in-process transport): huge headers, a huge body,
    broken JSON and a half-sent request each get their answer, and the server stays up."""
    huge = geogate_server.post(
        "/v1/decide", json={"ip": "8.8.8.8"}, headers={"x-a": "a" * 1_000_000}
    )
    assert huge.status_code == 431
    assert huge.json()["error"]["code"] == "request_headers_too_large"
    body = geogate_server.post("/v1/decide", content=b"[" * 5_000_000)
    assert body.status_code == 413
    broken = geogate_server.post("/v1/decide", content=b'{"ip": "8.8.8.8"')
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")
    with socket.create_connection(("127.0.0.1", geogate_server.port), timeout=5) as half:
        half.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert geogate_server.get("/healthz").json() == {"status": "ok"}
    geogate_server.process.check_alive()
