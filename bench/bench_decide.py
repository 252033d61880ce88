"""Benchmark: single decisions, batch decisions and CLI start-up against their floors.

Not a test. Prints Markdown tables to paste into bench/RESULTS.md. Every reference is measured
in the same run, so the ratios hold on a shared, noisy machine:

- a bare ``maxminddb`` get on the CC0 country file (``@ip-location-db/geo-whois-asn-country``
  from the npm registry, cached under .cache/bench), IPv4 and IPv6: the floor of a single
  decision, warm and cold (first decision for a range; cold through the compiled path,
  ``geogate._fastpath``, when it is built, and through the pure-Python path beside it);
- ``inet_aton`` + ``np.searchsorted`` over the same strings: the floor of batch decisions
  from text;
- ``decide_many`` on integer arrays from 1 M to ``--max-n`` addresses, each size in a fresh
  process (time and peak memory beyond the input);
- ``python -c`` opening the country file and getting one address: the floor of
  ``geogate check`` (both run with compiled bytecode cached, as in an installed package).

The scaling rows are saved to ``bench/decide_many_scaling.json`` and drawn, time and memory
against n, in ``bench/decide_many_scaling.svg`` (matplotlib, from the ``bench`` extra;
``--chart-from FILE.json`` redraws without measuring).

    python bench/bench_decide.py [--n 1000000] [--max-n 100000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import maxminddb
import numpy as np

from geogate.decide import Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
HERE = Path(__file__).resolve().parent
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
    """The CC0 country database (IPv4 and IPv6) from the npm registry (cached), or the one
    given."""
    if path is not None:
        return path
    target = CACHE / "geo-whois-asn-country.mmdb"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        name = (
            subprocess.run(
                ["npm", "pack", "@ip-location-db/geo-whois-asn-country-mmdb", "--silent"],
                cwd=CACHE,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(CACHE / name) as tar:
            member = tar.getmember("package/geo-whois-asn-country.mmdb")
            src = tar.extractfile(member)
            assert src is not None
            target.write_bytes(src.read())
        (CACHE / name).unlink()
    return target


def ipv6_samples(snap: Snapshot, n: int, *, seed: int) -> list[str]:
    """``n`` IPv6 addresses inside located ranges of the snapshot (one per range, random
    ranges, a random address in each): real IPv6 traffic, nearly every client a new range."""
    rng = np.random.default_rng(seed)
    located = np.flatnonzero(snap.country_idx[snap.n4 :] != 0)
    keys = rng.choice(located, size=min(n, len(located)), replace=False) + snap.n4
    out = []
    for key in keys:
        first, last = snap.network_of(int(key))
        lo = int.from_bytes(socket.inet_pton(socket.AF_INET6, first), "big")
        hi = int.from_bytes(socket.inet_pton(socket.AF_INET6, last), "big")
        x = lo + int(rng.integers(0, 2**62)) % (hi - lo + 1)
        out.append(socket.inet_ntop(socket.AF_INET6, x.to_bytes(16, "big")))
    return out


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


def rss_mb(field: str = "VmRSS") -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Start ``VmHWM`` over from the current resident size (Linux clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def scale_one(n: int) -> dict[str, float]:
    """decide_many over ``n`` random IPv4 integers in this process: seconds and memory."""
    snap = Snapshot.embedded()
    decider = Decider(load_policy_set([resolve_policy_path("builtin:unsupported-regions")]), snap)
    decider.decide_many(np.zeros(1000, np.uint32), at=AT)
    addrs = np.random.default_rng(n).integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    gc.collect()
    before = rss_mb()
    reset_peak()
    t = time.perf_counter()
    batch = decider.decide_many(addrs, at=AT)
    seconds = time.perf_counter() - t
    peak = rss_mb("VmHWM")
    result_mb = (batch.actions.nbytes + batch.reasons.nbytes + batch.regions.nbytes
                 + batch.keys.nbytes) / 2**20  # fmt: skip
    return {
        "n": n,
        "seconds": seconds,
        "rate": n / seconds,
        "result_mb": result_mb,
        "growth_mb": peak - before,
        "extra_mb": max(0.0, peak - before - result_mb),
    }


def cli_seconds(argv: list[str], runs: int = 5) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system) of ``runs`` runs of a command, after
    one unmeasured run, with compiled bytecode cached in a temporary directory as an installed
    package has it (this environment may set PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "geogate-bench-pyc")
    subprocess.run(argv, check=True, capture_output=True, env=env)
    best = cpu_best = float("inf")
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        best = min(best, time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        cpu_best = min(cpu_best, cpu)
    return best, cpu_best


def draw_scaling(rows: list[dict[str, float]], path: Path) -> bool:
    """Time and memory of ``decide_many`` against n as an SVG chart; False (and a note) when
    matplotlib (the ``bench`` extra) is not installed."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("svg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print(f"(no chart: pip install -e '.[bench]' for matplotlib; data in {path.stem}.json)")
        return False
    matplotlib.rcParams["svg.hashsalt"] = "geogate"  # the same data draws the same file
    matplotlib.rcParams["svg.fonttype"] = "none"
    n = [row["n"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(n, [row["seconds"] for row in rows], "o-", label="decide_many, uint32 array")
    first = rows[0]
    left.loglog(
        n, [first["seconds"] * x / first["n"] for x in n], "--", color="grey", label="linear"
    )
    left.set(xlabel="addresses", ylabel="seconds", title="Time (one process per size)")
    left.legend()
    right.semilogx(n, [row["result_mb"] for row in rows], "o-", label="result arrays")
    right.semilogx(n, [row["growth_mb"] for row in rows], "s--", label="peak growth")
    right.semilogx(n, [row["extra_mb"] for row in rows], "^:", label="beyond the result")
    right.set(xlabel="addresses", ylabel="MB", title="Memory during the call")
    right.legend()
    for axis in (left, right):
        axis.grid(True, which="major", alpha=0.3)
    fig.suptitle("geogate decide_many: linear time, memory bounded beyond the result")
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--max-n", type=int, default=100_000_000)
    ap.add_argument("--mmdb", type=Path)
    ap.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--chart-from", type=Path, help="redraw the chart from a saved JSON file")
    args = ap.parse_args()
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one)))
        return 0
    if args.chart_from:
        draw_scaling(json.loads(args.chart_from.read_text()), args.chart_from.with_suffix(".svg"))
        return 0

    load_before = os.getloadavg()
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    snap = Snapshot.embedded()
    load_s = time.perf_counter() - t
    rss_mb_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    addrs = random_public_ipv4(args.n)
    texts = [socket.inet_ntoa(int(a).to_bytes(4, "big")) for a in addrs]
    texts6 = ipv6_samples(snap, 200_000, seed=6)  # half to measure, half to warm up
    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    mmdb = reference_mmdb(args.mmdb)
    reader = maxminddb.open_database(str(mmdb), maxminddb.MODE_MMAP_EXT)

    ref4 = per_item(reader.get, texts)
    ref6 = per_item(reader.get, texts6)

    # Warm: every address seen before (the cache holds them all).
    decider = Decider(policies, snap, cache_bytes=4 << 30)
    for ip in texts + texts6:
        decider.decide(ip, at=AT)
    warm4 = per_item(lambda ip: decider.decide(ip, at=AT), texts)
    warm6 = per_item(lambda ip: decider.decide(ip, at=AT), texts6)
    warm4_now = per_item(decider.decide, texts)  # ``at`` from the clock
    stats = decider.cache_stats()

    # Cold: the first decision for a range, a fresh decider for each pass.
    keys_seen: set[int] = set()
    first4 = []
    for ip in texts:
        key = snap.locate(ip)
        if key not in keys_seen:
            keys_seen.add(key)
            first4.append(ip)
    warmup4, first4 = first4[100_000:200_000], first4[:100_000]
    warmup6, texts6 = texts6[100_000:], texts6[:100_000]

    def cold(
        items: list[str],
        warmup: list[str],
        *,
        evidence: bool = False,
        accelerated: bool | None = None,
    ) -> tuple[float, float]:
        """Per-address wall time and CPU time (which a busy shared machine inflates less) of a
        decider that has served other ranges (``warmup``) deciding addresses of ranges it has
        not seen; ``accelerated=False`` times the pure-Python path."""
        best = cpu = float("inf")
        for _ in range(3):
            fresh = Decider(policies, snap, accelerated=accelerated)
            fresh.prepare()  # as the service does before serving
            for ip in warmup:
                fresh.decide(ip, at=AT)
            gc.collect()
            t = time.perf_counter()
            c = time.process_time()
            if evidence:
                for ip in items:
                    fresh.decide(ip, at=AT).facts  # noqa: B018 - the evidence is the cost
            else:
                for ip in items:
                    fresh.decide(ip, at=AT)
            cpu = min(cpu, (time.process_time() - c) / len(items))
            best = min(best, (time.perf_counter() - t) / len(items))
        return best, cpu

    cold4, cold4_cpu = cold(first4, warmup4)
    cold6, cold6_cpu = cold(texts6, warmup6)
    cold4_facts, _ = cold(first4, warmup4, evidence=True)
    compiled = Decider(policies, snap).accelerated
    pure4, pure4_cpu = cold(first4, warmup4, accelerated=False)
    pure6, pure6_cpu = cold(texts6, warmup6, accelerated=False)

    # Batches.
    decider.decide_many(addrs[:1000], at=AT)
    many_best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        batch = decider.decide_many(addrs, at=AT)
        many_best = min(many_best, time.perf_counter() - t)
    starts = snap.v4_starts
    int_floor = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        found = np.searchsorted(starts, addrs, side="right")
        decider.key_table(AT).actions[found - 1]
        int_floor = min(int_floor, time.perf_counter() - t)
    floor_best = text_best = float("inf")
    aton = socket.inet_aton
    for _ in range(3):
        t = time.perf_counter()
        ints = np.array([int.from_bytes(aton(x), "big") for x in texts], dtype=np.uint32)
        np.searchsorted(starts, ints, side="right")
        floor_best = min(floor_best, time.perf_counter() - t)
        t = time.perf_counter()
        decider.decide_many(texts, at=AT)
        text_best = min(text_best, time.perf_counter() - t)
    sample = range(0, len(texts), max(1, len(texts) // 2000))
    mismatches = sum(
        int(batch.actions[i]) != int(decider.decide(texts[i], at=AT).action) for i in sample
    )

    # Scaling, each size in a fresh process.
    all_sizes = (1_000_000, 3_000_000, 10_000_000, 30_000_000, 100_000_000)
    sizes = [n for n in all_sizes if n <= args.max_n]
    scaling = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--scale-one", str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        scaling.append(json.loads(out.strip().splitlines()[-1]))
    if scaling:
        saved = HERE / "decide_many_scaling.json"
        saved.write_text(json.dumps(scaling, indent=1) + "\n")
        draw_scaling(scaling, saved.with_suffix(".svg"))

    # CLI start-up against a maxminddb one-liner.
    geogate = Path(sys.executable).with_name("geogate")
    check_s, check_cpu = cli_seconds([str(geogate), "check", "8.8.8.8"])
    one_liner = f"import maxminddb; print(maxminddb.open_database({str(mmdb)!r}).get('8.8.8.8'))"
    floor_cli_s, floor_cli_cpu = cli_seconds([sys.executable, "-c", one_liner])
    bare_s, _ = cli_seconds([sys.executable, "-c", "pass"])

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    us = 1e6
    print(f"## decide — {datetime.now(UTC):%Y-%m-%d}, {cpu}, Python {sys.version.split()[0]}")
    print()
    print(
        f"{args.n:,} random public IPv4 addresses (seed 20241125) and 200,000 IPv6 addresses "
        f"in distinct located ranges, policy {policies.latest.label}, at {AT.date()}; best of "
        f"3 passes. Reference: bare `maxminddb` get on the CC0 country file ({mmdb.name})."
    )
    print()
    print("| measure | IPv4 | IPv6 | target |")
    print("|---|---|---|---|")
    print(f"| bare `maxminddb` get (floor) | {ref4 * us:.2f} µs | {ref6 * us:.2f} µs | |")
    print(
        f"| `Decider.decide`, warm | {warm4 * us:.2f} µs ({warm4 / ref4:.2f}×) | "
        f"{warm6 * us:.2f} µs ({warm6 / ref6:.2f}×) | ≤ 1.0× |"
    )
    print(f"| `Decider.decide`, warm, `at` from the clock | {warm4_now * us:.2f} µs "
          f"({warm4_now / ref4:.2f}×) | | |")  # fmt: skip
    path = "compiled path" if compiled else "pure Python: geogate._fastpath not built or disabled"
    print(
        f"| first decision for a range (cold; {path}) | {cold4 * us:.2f} µs "
        f"({cold4 / ref4:.1f}×) | {cold6 * us:.2f} µs ({cold6 / ref6:.1f}×) | ≤ 2 µs |"
    )
    print(
        f"| same, CPU time of the process | {cold4_cpu * us:.2f} µs | {cold6_cpu * us:.2f} µs | |"
    )
    print(
        f"| cold, pure-Python path (`GEOGATE_PURE_PYTHON=1`) | {pure4 * us:.2f} µs "
        f"({pure4 / ref4:.1f}×) | {pure6 * us:.2f} µs ({pure6 / ref6:.1f}×) | |"
    )
    print(f"| same, CPU time | {pure4_cpu * us:.2f} µs | {pure6_cpu * us:.2f} µs | |")
    print(f"| cold, evidence read too (`/v1/decide`) | {cold4_facts * us:.2f} µs | | |")
    print(
        f"| decision cache after the warm runs | hit rate {stats.hit_rate:.1%}, "
        f"{stats.entries:,} entries, ~{stats.bytes_estimate / 2**20:.0f} MB | | |"
    )
    print()
    print("| batch | value | floor | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| `decide_many` uint32 array, {args.n:,} | {args.n / many_best / 1e6:.2f} M/s | "
        f"{args.n / int_floor / 1e6:.2f} M/s (`np.searchsorted` + one gather) | "
        f"{int_floor / many_best:.2f}× | ≥ 8 M/s/core |"
    )
    print(
        f"| `decide_many` strings, {args.n:,} | {args.n / text_best / 1e6:.2f} M/s | "
        f"{args.n / floor_best / 1e6:.2f} M/s (`inet_aton` + searchsorted) | "
        f"{floor_best / text_best:.2f}× | ≥ 0.95× |"
    )
    print(f"| batch vs single disagreements (sample of {len(sample)}) | {mismatches} | | | 0 |")
    print()
    print("`decide_many` on uint32 arrays, one fresh process per size (chunks of 65,536):")
    print()
    print(
        "| addresses | time | rate | result arrays | peak growth in the call | beyond the result |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for row in scaling:
        print(
            f"| {int(row['n']):,} | {row['seconds']:.2f} s | {row['rate'] / 1e6:.2f} M/s | "
            f"{row['result_mb']:.0f} MB | {row['growth_mb']:.0f} MB | {row['extra_mb']:.0f} MB |"
        )
    print()
    print("| CLI start-up | time | floor | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| `geogate check 8.8.8.8` | {check_s:.3f} s | {floor_cli_s:.3f} s (maxminddb "
        f"one-liner; bare interpreter {bare_s:.3f} s) | {check_s / floor_cli_s:.1f}× | < 0.25 s |"
    )
    print(f"| same, CPU time (user + system) | {check_cpu:.3f} s | {floor_cli_cpu:.3f} s | | |")
    print()
    print(
        f"Embedded snapshot load: {load_s:.3f} s; max RSS {rss_before_mb:.0f} MB before, "
        f"{rss_mb_after:.0f} MB after."
    )
    print("Counts at that date:", batch.counts())
    print(
        f"Load average (1 min): {load_before[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
