"""Benchmark: latency of admitted requests when ``geogate serve`` is overloaded, with and
without load shedding. Not a test.

One process (uvicorn, one worker) serves ``GET /v1/auth/nginx`` on loopback. For each setting
(shedding off: ``max_queue_delay_ms = 0``, ``max_concurrent_requests = 0``; shedding on: the
values given), the run measures:

1. **capacity**: wrk, one thread, 16 connections, no shedding in play: answered requests/s;
2. **overload**: wrk, one thread, ``--connections`` (default 1,000, the issue's reproducer)
   keep-alive connections for ``--duration`` seconds, while a probe thread sends one request
   every 10 ms on its own keep-alive connection and times each answer. wrk's offered rate
   (answers of any status per second) over the capacity is the overload factor; the probe's
   latencies of *admitted* (200) answers are the latency of admitted requests, since the
   probe waits in the same queue as everyone else. Requests that time out (2 s) are counted.

Prints a Markdown table for ``bench/RESULTS.md``.

    python bench/bench_overload.py [--duration 10] [--connections 1000] [--queue-delay-ms 20]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PATH = "/v1/auth/nginx"
CLIENT = "8.8.8.8"  # a US address: allowed, the cheapest full decision path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    workdir: Path, *, queue_delay_ms: float, max_concurrent: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / f"geogate-{queue_delay_ms:g}.toml"
    config.write_text(
        "[serve]\n"
        'trusted_proxies = ["127.0.0.1/32"]\n'
        f"max_queue_delay_ms = {queue_delay_ms}\n"
        f"max_concurrent_requests = {max_concurrent}\n"
        "retry_after_seconds = 1\n",
        encoding="utf-8",
    )
    argv = [sys.executable, "-m", "geogate.cli.main", "serve", "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    helptext = subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if "--workers" in helptext:
        argv += ["--workers", "1"]
    log = (workdir / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"geogate serve exited {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("geogate serve did not become ready")


@dataclass
class WrkResult:
    requests_per_s: float
    non_2xx: int
    total: int
    timeouts: int


def wrk(port: int, *, connections: int, seconds: int, pace_ms: int = 0) -> WrkResult:
    """Closed loop (each connection sends again as soon as it has an answer), or paced: each
    connection waits ``pace_ms`` after an answer, so the offered rate stays near
    ``connections / pace`` whatever the latency, as long as answers come back in time."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s"]
    argv += ["-H", f"X-Forwarded-For: {CLIENT}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"function delay()\n  return {pace_ms}\nend\n" if pace_ms else "")
    argv += ["-s", script.name, f"http://127.0.0.1:{port}{PATH}"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    return WrkResult(
        requests_per_s=rps,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        total=total,
        timeouts=int(timeouts.group(1)) if timeouts else 0,
    )


@dataclass
class Probe:
    admitted_ms: list[float]
    shed_ms: list[float]
    failed: int


def probe(port: int, stop: threading.Event, result: Probe) -> None:
    conn: http.client.HTTPConnection | None = None
    while not stop.is_set():
        started = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", PATH, headers={"X-Forwarded-For": CLIENT})
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            (result.admitted_ms if response.status == 200 else result.shed_ms).append(elapsed)
        except (OSError, http.client.HTTPException):
            result.failed += 1
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(max(0.0, 0.01 - (time.perf_counter() - started)))
    if conn is not None:
        conn.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    workdir: Path,
    *,
    queue_delay_ms: float,
    max_concurrent: int,
    connections: int,
    seconds: int,
    factor: float,
) -> dict[str, float]:
    proc, port = start_server(workdir, queue_delay_ms=queue_delay_ms, max_concurrent=max_concurrent)
    try:
        wrk(port, connections=16, seconds=2)  # warm-up
        capacity = wrk(port, connections=16, seconds=seconds)
        # Paced: `connections` connections together offering `factor` times the capacity.
        pace_ms = max(1, round(connections * 1000 / (factor * capacity.requests_per_s)))
        stop = threading.Event()
        seen = Probe(admitted_ms=[], shed_ms=[], failed=0)
        thread = threading.Thread(target=probe, args=(port, stop, seen), daemon=True)
        thread.start()
        flood = wrk(port, connections=connections, seconds=seconds, pace_ms=pace_ms)
        stop.set()
        thread.join(timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    admitted_rps = flood.requests_per_s * (1 - flood.non_2xx / max(1, flood.total))
    return {
        "capacity_rps": capacity.requests_per_s,
        "offered_rps": flood.requests_per_s,
        "overload": flood.requests_per_s / capacity.requests_per_s,
        "admitted_rps": admitted_rps,
        "shed_share": flood.non_2xx / max(1, flood.total),
        "wrk_timeouts": flood.timeouts,
        "probe_admitted": len(seen.admitted_ms),
        "probe_shed": len(seen.shed_ms),
        "probe_failed": seen.failed,
        "p50_ms": percentile(seen.admitted_ms, 0.50),
        "p99_ms": percentile(seen.admitted_ms, 0.99),
        "max_ms": max(seen.admitted_ms) if seen.admitted_ms else float("nan"),
        "shed_p99_ms": percentile(seen.shed_ms, 0.99),
        "mean_ms": statistics.fmean(seen.admitted_ms) if seen.admitted_ms else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--factor", type=float, default=3.0, help="offered load / capacity")
    parser.add_argument("--queue-delay-ms", type=float, default=20.0)
    parser.add_argument("--max-concurrent", type=int, default=1024)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="geogate-overload-") as tmp:
        for label, delay, limit in (
            ("shedding off", 0.0, 0),
            (
                f"shedding on ({args.queue_delay_ms:g} ms, {args.max_concurrent})",
                args.queue_delay_ms,
                args.max_concurrent,
            ),
        ):
            result = measure(
                Path(tmp),
                queue_delay_ms=delay,
                max_concurrent=limit,
                connections=args.connections,
                seconds=args.duration,
                factor=args.factor,
            )
            rows.append((label, result))
            print(label, {k: round(v, 2) for k, v in result.items()}, file=sys.stderr, flush=True)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores (shared), "
        f"{args.connections} connections, {args.duration} s per run\n"
    )
    print(
        "| setting | capacity req/s | offered req/s (× capacity) | admitted req/s | shed | "
        "probe p50 / p99 / max of admitted (ms) | probe shed answers p99 (ms) | wrk time-outs |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        print(
            f"| {label} | {r['capacity_rps']:,.0f} | "
            f"{r['offered_rps']:,.0f} ({r['overload']:.1f}×) | "
            f"{r['admitted_rps']:,.0f} | {r['shed_share']:.0%} | "
            f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} | {r['shed_p99_ms']:.1f} | "
            f"{r['wrk_timeouts']:.0f} |"
        )


if __name__ == "__main__":
    main()
