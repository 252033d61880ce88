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
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from geogate.accounts.config import AccountsConfig
from geogate.accounts.engine import Enforcer
from geogate.accounts.events import Event, read_events
from geogate.accounts.evidence import AccountEvidence, DeciderLocator
from geogate.accounts.rules import assess
from geogate.accounts.states import AccountState, next_state
from geogate.cli.accounts import ingest_collector
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


def write_events(
    path: Path, *, events: int, accounts: int, snap: Snapshot, skewed: bool = False, seed: int = 1
) -> None:
    """A JSON Lines file of one day's traffic: ``events`` requests (and 2% payments) over
    ``accounts``, in time order. 2% of the accounts are in unsupported regions (their
    addresses, languages and cards say so); the rest call from supported countries.

    Uniform: every account equally busy (the worst case: each batch touches most accounts).
    Skewed: a few accounts make most requests, as on a real API platform (u**3 over the
    account range: the busiest 10% of accounts make about half the requests).
    """
    rng = random.Random(seed)
    good, bad = _addresses(snap)
    good_langs = ["en-US,en;q=0.9", "de-DE", "ja-JP", "fr-FR", "pt-BR"]
    t0 = D - timedelta(days=2)
    step = 86400 / events  # one day of traffic
    with path.open("w", encoding="utf-8") as f:
        for i in range(events):
            n = int(accounts * rng.random() ** 3) if skewed else rng.randrange(accounts)
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


def bench_ingest(
    url: str, path: Path, policies: PolicySet, snap: Snapshot, batch_size: int
) -> float:
    """Events per second for parsing and ingesting ``path`` into the store at ``url``."""
    store = SqlStore.open(url)
    enforcer = Enforcer(store, policies=policies, locator=DeciderLocator(Decider(policies, snap)))
    start = time.perf_counter()
    with ingest_collector():  # as `geogate ingest` does
        report = enforcer.ingest(_events(path), batch_size=batch_size)
    elapsed = time.perf_counter() - start
    store.close()
    print(f"  {report.inserted:,} events in {elapsed:.2f} s")
    return report.inserted / elapsed


def fill_accounts(url: str, n: int, *, policies: PolicySet, seed: int = 2) -> None:
    """Write ``n`` account rows straight into the store, as ingestion leaves them (state and
    reasons from a real assessment at the last event): 10% of them with a share of their
    traffic from an unsupported region, the rest clean."""
    rng = random.Random(seed)
    store = SqlStore.open(url)
    policy = policies.latest
    config = AccountsConfig.from_policy(policy)
    day0 = int((D - timedelta(days=10)).timestamp()) // 86400
    last_seen = datetime.fromtimestamp((day0 + 9) * 86400 + 80_000, tz=UTC)
    templates: list[tuple[dict[str, object], str, tuple[str, ...]]] = []
    for k in range(50):
        ev = AccountEvidence()
        ev.first_seen = day0 * 86400
        ev.last_seen = int(last_seen.timestamp())
        bad_share = 0.3 if k % 10 == 0 else 0.0
        for d in range(10):
            counts = [0] * 13
            counts[0] = rng.randrange(20, 200)
            bad = int(counts[0] * bad_share)
            counts[1] = counts[0] - bad
            counts[2] = bad
            counts[12] = counts[0]
            ev.days[day0 + d] = counts
        ev.regions = {"US": [100, ev.last_seen, 0]}
        if bad_share:
            ev.regions["CN"] = [30, ev.last_seen, 1]
        # A human day at UTC-5 (or UTC+8 for the accounts in unsupported regions).
        offset = 8 if bad_share else -5
        ev.hours = [0] * 24
        for _ in range(300):
            local = rng.choices(
                range(24),
                weights=[1, 1, 0, 0, 0, 0, 1, 2, 4, 6, 7, 7, 6, 6, 7, 7, 6, 5, 5, 4, 4, 3, 2, 1],
            )[0]
            ev.hours[(local - offset) % 24] += 1
        ev.languages = {"en-US": 100}
        ev.requests = sum(c[0] for c in ev.days.values())
        ev.assessed_day = day0 + 9
        assessment = assess(ev, at=last_seen, config=config)
        move = next_state(AccountState.ACTIVE, assessment.verdict, at=last_seen, effective_at=D)
        state = move.to.value if move else "active"
        templates.append((ev.to_dict(), state, assessment.rule_names))
    start = time.perf_counter()
    batch: list[AccountRow] = []
    for i in range(n):
        evidence, state, reasons = templates[i % len(templates)]
        batch.append(
            AccountRow(
                account=f"acct-{i:07d}",
                state=state,
                state_since=last_seen if state != "active" else None,
                policy_version=policy.label,
                reasons=reasons,
                score=0.0,
                points_unsupported=False,
                language="en-US",
                evidence=evidence,
                last_seen=last_seen,
            )
        )
        if len(batch) >= 20_000:
            with store.transaction() as tx:
                tx.save_accounts(batch)
            batch.clear()
    if batch:
        with store.transaction() as tx:
            tx.save_accounts(batch)
    states = store.count_accounts()
    print(f"  wrote {n:,} accounts in {time.perf_counter() - start:.1f} s: {states}")
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
    parser.add_argument("--skewed", action="store_true", help="A few accounts make most requests.")
    parser.add_argument("--batch-size", type=int, default=50_000)
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
        write_events(
            path, events=args.events, accounts=args.accounts, snap=snap, skewed=args.skewed
        )
        shape = "skewed" if args.skewed else "uniform"
        print(
            f"ingest {args.events:,} events over {args.accounts:,} accounts ({shape}), "
            f"batches of {args.batch_size:,}"
        )
        print("SQLite:")
        rate = bench_ingest(str(tmp / "bench.db"), path, policies, snap, args.batch_size)
        print(f"  {rate:,.0f} events/s")
        pg_url = args.postgres
        if pg_url is None and args.start_postgres:
            pgdir = tmp / "pg"
            pgdir.mkdir()
            pg_url, _, stop = start_postgres(pgdir)
        if pg_url:
            print("PostgreSQL:")
            rate = bench_ingest(pg_url, path, policies, snap, args.batch_size)
            print(f"  {rate:,.0f} events/s")
        print(f"re-evaluate {args.reeval_accounts:,} accounts (enforce --dry-run), SQLite:")
        url = str(tmp / "reeval.db")
        fill_accounts(url, args.reeval_accounts, policies=policies)
        seconds = bench_enforce(url, policies, snap)
        print(f"  {seconds:.1f} s")
        # Worst case: a new policy version, so no account can be skipped on the strength of
        # its last assessment and every one is evaluated in full.
        newer = PolicySet.of([replace(policies.latest, version="bench-newer")])
        print("re-evaluate them all under a new policy version (nothing skipped):")
        seconds = bench_enforce(url, newer, snap)
        print(f"  {seconds:.1f} s")
    finally:
        if stop:
            subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
