"""Benchmark of `geogate scan`: rows/s end to end, against a naive per-row loop, peak memory.

    python bench/bench_scan.py [--rows 10000000] [--naive-rows 1000000] [--gzip-rows 1000000]
                               [--spark-rows 1000000] [--repeat 10] [--jobs 2] [--passes 3]
                               [--profile]

Generates a synthetic log (cached in .cache/bench/), then, in the same run:

- the local engine on the Parquet log, end to end (read, trusted-proxy walk, decide, group,
  write the tables; no HTML report), in a child process whose peak RSS is recorded,
  ``--passes`` times (the median by CPU time is reported);
- the reference: a straightforward per-row loop over the same rows (``maxminddb`` lookup of
  the DB-IP city database + Python dict aggregation per day x country x action and per
  account x country), timed on the first ``--naive-rows`` rows;
- the same scan from gzip JSON Lines (the first ``--gzip-rows`` rows);
- ``--repeat`` times the Parquet file in one scan (10 x 10 M = 100 M rows) to show that memory
  stays flat as the input grows, and again with ``--jobs`` processes (wall time on the cores);
- the Spark engine in local mode on the first ``--spark-rows`` rows.

Rates per core divide rows by the CPU time (user + system) of the scan and its scan
processes, which is what the machine gave the scan; wall-clock rates are printed beside
them, and the load average before and after. Each scan's process has imported its modules
(and pyarrow its lazy pandas import) before the clock starts; loading the snapshot and the
policy is outside too, building the decision tables and everything after is inside.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import maxminddb
import orjson
import pyarrow.parquet as pq

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"
START = datetime(2024, 6, 20, tzinfo=UTC)
AT = "2024-07-10"


def reference_mmdb() -> Path:
    """A country database from the npm registry (@ip-location-db, cached) for the naive loop."""
    target = CACHE / "geo-whois-asn-country-ipv4.mmdb"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["npm", "pack", "@ip-location-db/geo-whois-asn-country-mmdb", "--silent"],
            cwd=CACHE,
            check=True,
            capture_output=True,
            text=True,
        )
        name = out.stdout.strip().splitlines()[-1]
        with tarfile.open(CACHE / name) as tar:
            src = tar.extractfile("package/geo-whois-asn-country-ipv4.mmdb")
            if src is None:
                raise SystemExit("package without geo-whois-asn-country-ipv4.mmdb")
            target.write_bytes(src.read())
    return target


def generate(rows: int) -> Path:
    """The synthetic log as Parquet (cached): 28 days, 50 k accounts, 200 k client addresses."""
    from geogate.intel.snapshot import Snapshot  # noqa: PLC0415
    from geogate.scan.synthetic import synthetic_requests  # noqa: PLC0415

    path = CACHE / f"scan-{rows}.parquet"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    snap = Snapshot.embedded()
    writer = None
    chunk = 2_000_000
    for i, offset in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - offset)
        table = synthetic_requests(
            snap, n, start=START, days=28, accounts=50_000, clients=200_000, seed=100 + i
        )
        # Chunks cover the same 28 days: sort is not needed for the scan, only realism of
        # row groups; the per-chunk order is by time already.
        if writer is None:
            writer = pq.ParquetWriter(str(path.with_suffix(".tmp")), table.schema)
        writer.write_table(table, row_group_size=262_144)
    assert writer is not None
    writer.close()
    path.with_suffix(".tmp").rename(path)
    return path


def gzip_jsonl(parquet: Path, rows: int) -> Path:
    """The first ``rows`` rows as gzip JSON Lines in geogate's event format (cached)."""
    path = CACHE / f"scan-{rows}.jsonl.gz"
    if path.exists():
        return path
    table = pq.read_table(str(parquet)).slice(0, rows)
    with gzip.open(path.with_suffix(".tmp"), "wb", compresslevel=6) as out:
        for batch in table.to_batches(100_000):
            lines = []
            for r in batch.to_pylist():
                r["ts"] = r["ts"].isoformat().replace("+00:00", "Z")
                r["type"] = "request"
                lines.append(orjson.dumps(r))
            out.write(b"\n".join(lines) + b"\n")
    path.with_suffix(".tmp").rename(path)
    return path


def head_parquet(parquet: Path, rows: int) -> Path:
    path = CACHE / f"scan-head-{rows}.parquet"
    if not path.exists():
        pq.write_table(pq.read_table(str(parquet)).slice(0, rows), str(path))
    return path


def child(
    inputs: list[str], engine: str, *, jobs: int = 1, profile: bool = False
) -> dict[str, float]:
    """Run one scan in a fresh process; its rows, wall and CPU seconds (its own and its
    scan processes') and peak RSS (its own, and the largest scan process's)."""
    code = f"""
import json, time, sys, resource, cProfile, pstats, io
from pathlib import Path
import tempfile
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.scan.readers import ReadOptions
from geogate.scan.run import ScanConfig, scan_local
from geogate.cli.main import parse_when
import pyarrow as pa
pa.array([0])  # pyarrow imports pandas on first use (~0.5 s): an import, like those above
snap = Snapshot.embedded()
pol = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
out = Path(tempfile.mkdtemp())
cfg = ScanConfig(inputs={inputs!r}, out=out, policies=pol, snapshot=snap, report=False,
                 read=ReadOptions(client_hints=False), at=parse_when({AT!r}))
def cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
prof = cProfile.Profile(time.process_time) if {profile!r} else None
stages = {{}}
if prof:  # CPU time per stage of the local engine, by wrapping its steps
    import geogate.scan.run as run
    from geogate.scan.aggregate import Accumulator
    from geogate.scan.judge import Judge
    def timed(name, f):
        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return f(*a, **k)
            finally:
                stages[name] = stages.get(name, 0.0) + time.process_time() - t
        return wrapper
    read = run.read_file
    def read_file(*a, **k):
        it = read(*a, **k)
        while True:
            t = time.process_time()
            try:
                b = next(it)
            except StopIteration:
                return
            finally:
                stages["read"] = stages.get("read", 0.0) + time.process_time() - t
            yield b
    run.read_file = read_file
    Judge.verdicts = timed("judge", Judge.verdicts)
    Accumulator.add = timed("group per batch", Accumulator.add)
    Accumulator.result = timed("merge, names, sort", Accumulator.result)
    run.derive_tables = timed("derived tables", run.derive_tables)
    run.write_tables = timed("write Parquet", run.write_tables)
c0 = cpu(); t0 = time.perf_counter()
if prof: prof.enable()
if {engine!r} == "spark":
    from geogate.scan.spark import scan_spark
    r = scan_spark(cfg)
else:
    r = scan_local(cfg, jobs={jobs!r})
if prof: prof.disable()
wall = time.perf_counter() - t0
used = cpu() - c0
if prof:
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(18)
    print(text.getvalue(), file=sys.stderr)
    for name, seconds in stages.items():
        print(f"stage {{name}}: {{seconds:.2f}} s CPU, {{seconds / r.rows * 1e9:.0f}} ns a row",
              file=sys.stderr)
    print(f"stage all: {{used:.2f}} s CPU (rest: {{used - sum(stages.values()):.2f}} s)",
          file=sys.stderr)
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({{"rows": r.rows, "wall": wall, "cpu": used, "rss_mb": hwm / 1024,
                  "child_rss_mb": kids / 1024, "jobs": {jobs!r}}}))
"""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    if profile:
        print(out.stderr, file=sys.stderr)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def naive(parquet: Path, rows: int) -> dict[str, float]:
    """The reference: one maxminddb lookup and a few dict updates per row, in Python."""
    from geogate.policy.parse import load_policy_set, resolve_policy_path  # noqa: PLC0415

    policy = load_policy_set([resolve_policy_path("builtin:unsupported-regions")]).latest
    at = datetime.fromisoformat(AT).replace(tzinfo=UTC)
    denied = {
        region.code: rule.action_at(at).label for rule in policy.rules for region in rule.regions
    }
    reader = maxminddb.open_database(str(reference_mmdb()), maxminddb.MODE_MMAP_EXT)
    table = pq.read_table(str(parquet), columns=["ts", "ip", "account"]).slice(0, rows)
    daily: dict[tuple[object, str, str], int] = {}
    accounts: dict[tuple[str, str], int] = {}
    c0 = time.process_time()
    t0 = time.perf_counter()
    for batch in table.to_batches(100_000):
        for ts, ip, account in zip(
            batch.column(0).to_pylist(),
            batch.column(1).to_pylist(),
            batch.column(2).to_pylist(),
            strict=True,
        ):
            rec = reader.get(ip)
            country = (rec or {}).get("country_code") or ""
            action = denied.get(country, "allow")
            key = (ts.date(), country, action)
            daily[key] = daily.get(key, 0) + 1
            acct = (account, country)
            accounts[acct] = accounts.get(acct, 0) + 1
    return {"rows": rows, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--naive-rows", type=int, default=1_000_000)
    ap.add_argument("--gzip-rows", type=int, default=1_000_000)
    ap.add_argument("--spark-rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2, help="processes for a second repeat run")
    ap.add_argument(
        "--profile", action="store_true", help="one more Parquet scan, profiled (by stage too)"
    )
    ap.add_argument("--passes", type=int, default=3, help="runs of the Parquet scan (median)")
    args = ap.parse_args()

    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    parquet = generate(args.rows)
    results: dict[str, dict[str, float]] = {}
    # The 10 M scan several times (the machine is shared): the median by CPU time counts.
    passes = [child([str(parquet)], "local") for _ in range(args.passes)]
    if args.profile:  # one more pass, profiled (its times are not reported)
        child([str(parquet)], "local", profile=True)
    passes.sort(key=lambda r: r["cpu"])
    results["parquet"] = passes[len(passes) // 2]
    print(
        "parquet passes, CPU s: " + ", ".join(f"{r['cpu']:.2f}" for r in passes),
        file=sys.stderr,
    )
    results["naive"] = naive(parquet, args.naive_rows)
    results["gzip"] = child([str(gzip_jsonl(parquet, args.gzip_rows))], "local")
    if args.repeat > 1:
        results["repeat"] = child([str(parquet)] * args.repeat, "local")
        if args.jobs > 1:
            results[f"repeat, --jobs {args.jobs}"] = child(
                [str(parquet)] * args.repeat, "local", jobs=args.jobs
            )
    if args.spark_rows:
        results["spark"] = child([str(head_parquet(parquet, args.spark_rows))], "spark")
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)

    def rate(r: dict[str, float], key: str) -> float:
        return r["rows"] / r[key]

    ref = rate(results["naive"], "cpu")
    print(f"\n## scan — {datetime.now(UTC).date()}, {os.cpu_count()} cores (shared)\n")
    print(
        "| run | rows | wall s | CPU s | rows/s (wall) | rows/s per core (CPU) | vs naive "
        "(per core) | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        rss = "-"
        if "rss_mb" in r and name != "spark":
            rss = f"{r['rss_mb']:.0f} MB"
            if r.get("jobs", 1) > 1:
                rss += f" (+ {r['child_rss_mb']:.0f} MB per scan process)"
        if name == "spark":  # the work runs in the JVM and Python workers, not this process
            cpu = per_core = ratio = "-"
        else:
            cpu = f"{r['cpu']:.1f}"
            per_core = f"{rate(r, 'cpu'):,.0f}"
            ratio = f"{rate(r, 'cpu') / ref:.1f}×"
        print(
            f"| {name} | {int(r['rows']):,} | {r['wall']:.1f} | {cpu} | "
            f"{rate(r, 'wall'):,.0f} | {per_core} | {ratio} | {rss} |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
