"""Benchmark the operator console: page times with 100,000 accounts in a SQLite store.

    python bench/bench_console.py                  # 100,000 accounts, 8 events each
    python bench/bench_console.py --accounts 20000 # smaller, quicker

The store is filled the real way (``geogate ingest`` of generated events: ordinary accounts
in Germany and the US, flagged ones with a Chinese signup and Chinese-language requests from
Germany, blocked ones reaching the API from China; ten accounts per organisation), then a real
``geogate serve`` is started and every console page is fetched over HTTP with a signed-in
session: 3 warm-up requests, then ``--repeat`` timed ones (median and 95th percentile of the
whole request as the client sees it). The reference, measured in the same run, is
``GET /healthz`` on the same server. Target (issue 12): every page under 300 ms.
Results go to ``bench/RESULTS.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import httpx

from geogate.service.config import ServiceConfig

TOKEN = "bench-operator-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_events(path: Path, accounts: int) -> int:
    """Generated events for ``accounts`` accounts; returns the number of events."""
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for i in range(accounts):
            account = f"acct-{i:07d}"
            org = f"org-{i // 10:06d}"
            kind = i % 20  # 0: blocked (CN direct), 1: flagged (CN signup + zh), else ordinary
            if kind == 0:
                ip, lang, signup_ip = f"59.224.{i % 4}.{1 + i % 250}", "zh-CN", None
            elif kind == 1:
                ip, lang, signup_ip = f"53.{i % 64 + 1}.{i % 250}.7", "zh-CN", "59.224.0.1"
            else:
                ip = f"53.{i % 64 + 1}.{i % 250}.{1 + i % 250}"
                if i % 2:
                    ip = f"29.130.{i % 250}.{1 + i % 250}"
                lang, signup_ip = "en-US", None
            rec: dict[str, object] = {
                "type": "signup",
                "ts": "2024-07-10T07:00:00Z",
                "account": account,
                "ip": signup_ip or ip,
                "org": org,
            }
            if kind == 1:
                rec["phone_country"] = "CN"
            out.write(json.dumps(rec) + "\n")
            n += 1
            for k in range(12 if kind == 1 else 7):
                out.write(
                    json.dumps(
                        {
                            "type": "request",
                            "ts": f"2024-07-10T{9 + k // 6:02d}:{(k * 7) % 60:02d}:00Z",
                            "account": account,
                            "ip": ip,
                            "accept_language": lang,
                            "user_agent": "sdk/1",
                            "org": org,
                        }
                    )
                    + "\n"
                )
                n += 1
    return n


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float, int]:
    """(median ms, p95 ms, bytes) of ``repeat`` GETs of ``path`` after 3 warm-up requests."""
    for _ in range(3):
        answer = client.get(path)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: HTTP {answer.status_code}: {answer.text[:300]}")
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        size = len(answer.content)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--workdir", type=Path, help="keep the store here; reuse it when it exists already"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="geogate-console-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = f"sqlite:///{work / 'accounts.db'}"
        if not (work / "accounts.db").exists():
            feed = work / "events.jsonl"
            events = write_events(feed, args.accounts)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "geogate.cli.main", "ingest", str(feed), "--db", db],
                check=True,
                capture_output=True,
            )
            ingest_s = time.perf_counter() - started
            print(f"ingested {events:,} events for {args.accounts:,} accounts in {ingest_s:.0f} s")
        config = work / "geogate.toml"
        # Page times, not load shedding, are measured here: queue-delay shedding (when the
        # service has it) is off, as a shared machine's hiccups would otherwise refuse pages.
        shedding = (
            "[serve]\nmax_queue_delay_ms = 0\n\n"
            if "max_queue_delay_ms" in {f.name for f in fields(ServiceConfig)}
            else ""
        )
        config.write_text(
            shedding + f'[accounts]\ndb = "{db}"\n\n[[accounts.tokens]]\nname = "bench"\n'
            f'role = "operator"\nsecret = "{TOKEN}"\n',
            encoding="utf-8",
        )
        port = free_port()
        log = (work / "serve.log").open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "geogate.cli.main",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            started = time.perf_counter()
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > 120 or server.poll() is not None:
                    raise SystemExit((work / "serve.log").read_text())
                time.sleep(0.1)
            with httpx.Client(base_url=base, timeout=30) as client:
                form = client.get("/console/signin")
                pre = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert pre is not None
                signed = client.post("/console/signin", data={"csrf": pre.group(1), "token": TOKEN})
                if signed.status_code != 303:
                    raise SystemExit(f"sign-in: HTTP {signed.status_code}: {signed.text[:300]}")
                started = time.perf_counter()
                while (
                    "Still reading the events"
                    in client.get("/console/accounts?q=org-000001&by=org").text
                ):
                    time.sleep(0.2)
                index_s = time.perf_counter() - started
                print(f"event index ready {index_s:.1f} s after the first console request")
                flagged = re.search(
                    r'/console/accounts/(acct-\d+)"', client.get("/console/accounts").text
                )
                assert flagged is not None, "no flagged account in the queue"
                pages = {
                    "reference: /healthz": "/healthz",
                    "overview": "/console/",
                    "accounts + review queue": "/console/accounts",
                    "queue page 100": "/console/accounts?page=100",
                    "search by account prefix": "/console/accounts?q=acct-00500&by=account",
                    "search by organisation": "/console/accounts?q=org-004321&by=org",
                    "search by IP": "/console/accounts?q=59.224.1.2&by=ip",
                    "account page (flagged)": f"/console/accounts/{flagged.group(1)}",
                    "organisation (10 accounts)": "/console/orgs/org-004321",
                    "lookup (chain of 3)": "/console/lookup?q=59.224.0.1,53.1.1.1,127.0.0.1",
                    "policy": "/console/policy",
                    "audit log": "/console/audit",
                }
                rows = []
                reference = None
                for label, path in pages.items():
                    med, p95, size = timed(client, path, args.repeat)
                    reference = reference or med
                    rows.append((label, med, p95, size))
                print("| page | median | p95 | x /healthz | size |")
                print("|---|---|---|---|---|")
                for label, med, p95, size in rows:
                    print(
                        f"| {label} | {med:.1f} ms | {p95:.1f} ms | {med / reference:.1f} "
                        f"| {size / 1024:.0f} KiB |"
                    )
                worst = max(p95 for label, _, p95, _ in rows if not label.startswith("ref"))
                print(f"slowest page p95: {worst:.0f} ms (target < 300 ms)")
        except SystemExit:
            print((work / "serve.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
