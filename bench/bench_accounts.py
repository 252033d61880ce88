"""Benchmark account enforcement: ingestion events/s (SQLite, PostgreSQL) and the time to
re-evaluate 1,000,000 accounts with ``enforce --dry-run``.

    python bench/bench_accounts.py                      # SQLite only
    python bench/bench_accounts.py --postgres URL       # also PostgreSQL at URL
    python bench/bench_accounts.py --start-postgres     # also a throwaway local PostgreSQL

Addresses are picked from the embedded snapshot's own ranges (``geogate.intel.samples``), so
every lookup is a real one. Targets (issue 4): >= 50,000 events/s into SQLite; 1M accounts
re-evaluated in < 60 s. Results go to ``bench/RESULTS.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, read_events
from geogate.accounts.evidence import AccountEvidence, DeciderLocator
from geogate.decide import Decider
from geogate.intel.samples import sample_addresses
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import builtin_policy_path, load_policy
from geogate.store.protocol import AccountRow
from geogate.store.sql import SqlStore

D = datetime(2024, 7, 9, tzinfo=UTC)
SUPPORTED = ["US", "DE", "GB", "FR", "JP", "BR", "IN", "CA"]
UNSUPPORTED = ["CN", "RU", "IR"]


def _addresses(snap: Snapshot) -> tuple[list[str], list[str]]:
    good = list(sample_addresses(snap, SUPPORTED, ipv6=False))
    bad = list(sample_addresses(snap, UNSUPPORTED, ipv6=False))

    # Spread over each range's neighbourhood: a few hundred distinct addresses.
    def spread(ips: list[str]) -> list[str]:
        out = []
        for ip in ips:
            a, b, c, _ = ip.split(".")
            out.extend(f"{a}.{b}.{c}.{d}" for d in range(1, 60))
        return out

    return spread(good), spread(bad)


def write_events(path: Path, *, events: int, accounts: int, snap: Snapshot, seed: int = 1) -> None:
    """A JSON Lines file of one day's traffic: ``events`` requests (and 2% payments) over
    ``accounts``, in time order. 2% of the accounts are in unsupported regions (their
    addresses, languages and cards say so); the rest call from supported countries."""
    rng = random.Random(seed)
    good, bad = _addresses(snap)
    good_langs = ["en-US,en;q=0.9", "de-DE", "ja-JP", "fr-FR", "pt-BR"]
    t0 = D - timedelta(days=2)
    step = 86400 / events  # one day of traffic
    with path.open("w", encoding="utf-8") as f:
        for i in range(events):
            n = rng.randrange(accounts)
            account = f"acct-{n}"
            is_bad = n % 50 == 0
            ts = (t0 + timedelta(seconds=i * step)).strftime("%Y-%m-%dT%H:%M:%SZ")
            if i % 50 == 0:
                country = "CN" if is_bad else SUPPORTED[n % len(SUPPORTED)]
                rec = {
                    "type": "payment",
                    "ts": ts,
                    "account": account,
                    "card_country": country,
                    "amount": 20,
                    "currency": "USD",
                }
            else:
                rec = {
                    "type": "request",
                    "ts": ts,
                    "account": account,
                    "ip": rng.choice(bad) if is_bad else good[(n * 7 + i % 3) % len(good)],
                    "accept_language": "zh-CN,zh;q=0.9" if is_bad else good_langs[n % 5],
                    "user_agent": f"sdk/{n % 5}",
                    "path": "/v1/chat",
                }
            f.write(json.dumps(rec) + "\n")


def _events(path: Path) -> Iterator[Event]:
    for item in read_events(path):
        if isinstance(item, Event):
            yield item


def bench_ingest(url: str, path: Path, events: int, policies: PolicySet, snap: Snapshot) -> float:
    """Events per second for parsing and ingesting ``path`` into the store at ``url``."""
    store = SqlStore.open(url)
    enforcer = Enforcer(store, policies=policies, locator=DeciderLocator(Decider(policies, snap)))
    start = time.perf_counter()
    report = enforcer.ingest(_events(path), batch_size=10_000)
    elapsed = time.perf_counter() - start
    store.close()
    print(f"  {report.inserted:,} events in {elapsed:.2f} s")
    return report.inserted / elapsed


def fill_accounts(url: str, n: int, *, seed: int = 2) -> None:
    """Write ``n`` account rows with realistic evidence straight into the store."""
    rng = random.Random(seed)
    store = SqlStore.open(url)
    day0 = int((D - timedelta(days=10)).timestamp()) // 86400
    batch: list[AccountRow] = []
    templates = []
    for k in range(50):
        ev = AccountEvidence()
        ev.first_seen = day0 * 86400
        ev.last_seen = (day0 + 9) * 86400
        for d in range(10):
            counts = [0] * 13
            counts[0] = rng.randrange(5, 200)
            bad = counts[0] // 20 if k % 10 == 0 else 0
            counts[1] = counts[0] - bad
            counts[2] = bad
            counts[12] = counts[0]
            ev.days[day0 + d] = counts
        ev.regions = {"US": [100, ev.last_seen, 0]} | (
            {"CN": [5, ev.last_seen, 1]} if k % 10 == 0 else {}
        )
        ev.hours = [rng.randrange(50) for _ in range(24)]
        ev.languages = {"en-US": 100}
        ev.requests = 1000
        templates.append(ev.to_dict())
    start = time.perf_counter()
    for i in range(n):
        batch.append(
            AccountRow(
                account=f"acct-{i:07d}",
                state="active",
                state_since=None,
                policy_version=None,
                reasons=(),
                score=0.0,
                points_unsupported=False,
                language="en-US",
                evidence=templates[i % len(templates)],
                last_seen=D,
            )
        )
        if len(batch) >= 20_000:
            with store.transaction() as tx:
                tx.save_accounts(batch)
            batch.clear()
    if batch:
        with store.transaction() as tx:
            tx.save_accounts(batch)
    print(f"  wrote {n:,} accounts in {time.perf_counter() - start:.1f} s")
    store.close()


def bench_enforce(url: str, policies: PolicySet, snap: Snapshot) -> float:
    """Seconds for a dry-run enforcement pass over every account in the store."""
    store = SqlStore.open(url)
    enforcer = Enforcer(store, policies=policies, locator=DeciderLocator(Decider(policies, snap)))
    start = time.perf_counter()
    report = enforcer.enforce(D + timedelta(days=1), dry_run=True)
    elapsed = time.perf_counter() - start
    print(f"  evaluated {report.evaluated:,} accounts, {len(report.changes):,} would change")
    store.close()
    return elapsed


def start_postgres(base: Path) -> tuple[str, subprocess.Popen[bytes] | None, list[str]]:
    """A throwaway PostgreSQL on 127.0.0.1 (as the ``postgres`` user when run as root)."""
    bindir = Path(shutil.which("pg_ctl") or "").parent
    if not (bindir / "initdb").exists():
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not found:
            raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql)")
        bindir = found[-1]
    run_as: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = base / "data"
    if run_as:
        shutil.chown(base, "postgres")
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "geogate",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off"
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    stop = [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
    return f"postgresql://geogate@127.0.0.1:{port}/postgres", None, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--reeval-accounts", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="PostgreSQL URL to bench too")
    parser.add_argument("--start-postgres", action="store_true")
    args = parser.parse_args()

    snap = Snapshot.embedded()
    policies = PolicySet.of([load_policy(builtin_policy_path("unsupported-regions"))])
    tmp = Path(tempfile.mkdtemp(prefix="geogate-bench-"))
    os.chmod(tmp, 0o755)
    stop: list[str] = []
    try:
        path = tmp / "events.jsonl"
        write_events(path, events=args.events, accounts=args.accounts, snap=snap)
        print(f"ingest {args.events:,} events over {args.accounts:,} accounts")
        print("SQLite:")
        rate = bench_ingest(str(tmp / "bench.db"), path, args.events, policies, snap)
        print(f"  {rate:,.0f} events/s")
        pg_url = args.postgres
        if pg_url is None and args.start_postgres:
            pgdir = tmp / "pg"
            pgdir.mkdir()
            pg_url, _, stop = start_postgres(pgdir)
        if pg_url:
            print("PostgreSQL:")
            rate = bench_ingest(pg_url, path, args.events, policies, snap)
            print(f"  {rate:,.0f} events/s")
        print(f"re-evaluate {args.reeval_accounts:,} accounts (enforce --dry-run), SQLite:")
        url = str(tmp / "reeval.db")
        fill_accounts(url, args.reeval_accounts)
        seconds = bench_enforce(url, policies, snap)
        print(f"  {seconds:.1f} s")
    finally:
        if stop:
            subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
