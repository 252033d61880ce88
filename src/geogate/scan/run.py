"""Run a scan: inputs -> judged batches -> aggregate tables in ``DIR`` -> the report.

:func:`scan` is the library entry point behind ``geogate scan``; the local engine streams
batches in this process, the Spark engine (:mod:`geogate.scan.spark`) distributes the same
reading and judging over a cluster. Either way the output directory holds the same Parquet
tables (see docs/scan.md), ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geogate.client_ip import TrustedProxies
from geogate.errors import ConfigError
from geogate.policy.model import PolicySet
from geogate.scan.aggregate import Accumulator, derive_tables
from geogate.scan.judge import Judge, Scenario, Verdicts
from geogate.scan.readers import (
    ReadOptions,
    ReadStats,
    detect_format,
    expand_inputs,
    parquet_ranges,
    part_bytes,
    read_file,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanConfig:
    """Everything a scan needs. ``at`` judges every request as of that instant (None: each at
    its own time); ``compare`` is the scenario to compare with (another policy and/or
    instant); ``pivot`` splits before/after (default: ``at``, else the first enforcement
    date of the policy)."""

    inputs: Sequence[str]
    out: Path
    policies: PolicySet
    snapshot: Any
    snapshot_path: Path | None = None  # the file ``snapshot`` came from (None: embedded)
    read: ReadOptions = field(default_factory=ReadOptions)
    trusted: TrustedProxies = field(default_factory=TrustedProxies)
    at: datetime | None = None
    compare: Scenario | None = None
    pivot: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    report: bool = True
    preview_accounts: bool = False  # also run the account engine (slow: see scan/preview.py)

    def judge(self) -> Judge:
        """The batch judge of this scan."""
        return Judge(
            self.snapshot,
            Scenario(policies=self.policies, at=self.at),
            trusted=self.trusted,
            pivot=self.effective_pivot(),
            compare=self.compare,
        )

    def effective_pivot(self) -> datetime:
        """The before/after date."""
        if self.pivot is not None:
            return self.pivot
        if self.at is not None:
            return self.at
        dates = self.policies.latest.boundaries()
        return dates[0] if dates else datetime.now(UTC)


@dataclass
class ScanResult:
    """What a scan did: rows judged, the read statistics, the tables written, the time taken."""

    rows: int
    stats: ReadStats
    tables: dict[str, pa.Table]
    seconds: float
    engine: str
    files: int

    @property
    def rows_per_second(self) -> float:
        """Judged rows per wall-clock second (reading included)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


ProgressFn = Callable[[int, int], None]  # (rows judged so far, input bytes consumed so far)


def filter_window(
    batch: pa.RecordBatch, since: datetime | None, until: datetime | None
) -> pa.RecordBatch:
    """Rows with ``since <= ts < until``."""
    if since is None and until is None:
        return batch
    ts = batch.column("ts")
    mask = None
    if since is not None:
        mask = pc.greater_equal(ts, pa.scalar(since, pa.timestamp("us", tz="UTC")))
    if until is not None:
        upper = pc.less(ts, pa.scalar(until, pa.timestamp("us", tz="UTC")))
        mask = upper if mask is None else pc.and_(mask, upper)
    return batch.filter(mask)


Part = tuple[Path, tuple[int, int] | None]
"""An input file, or a range of a Parquet file's row groups."""


def verdict_batches(
    config: ScanConfig,
    paths: Sequence[Path | Part],
    stats: ReadStats,
    progress: ProgressFn | None,
) -> Iterator[Verdicts]:
    """Judged batches of all inputs (files, or ranges of Parquet row groups), in order, in
    compact form (the local engine's stream)."""
    judge = config.judge()
    rows = 0
    done_bytes = 0
    for item in paths:
        path, row_groups = item if isinstance(item, tuple) else (item, None)
        stats.bytes_read = 0
        for raw in read_file(path, config.read, stats, row_groups=row_groups):
            batch = filter_window(raw, config.since, config.until)
            if batch.num_rows:
                rows += batch.num_rows
                yield judge.verdicts(batch)
            if progress is not None:
                progress(rows, done_bytes + stats.bytes_read)
        done_bytes += part_bytes(path, row_groups)
        if progress is not None:
            progress(rows, done_bytes)


def judged_batches(
    config: ScanConfig, paths: Sequence[Path], stats: ReadStats, progress: ProgressFn | None
) -> Iterator[pa.RecordBatch]:
    """Judged batches of all inputs, in order, one row per request (:data:`JUDGED_FIELDS`)."""
    for verdicts in verdict_batches(config, paths, stats, progress):
        yield verdicts.to_batch()


def write_tables(out: Path, tables: dict[str, pa.Table]) -> None:
    """Each table as ``out/NAME.parquet`` (zstd)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")


def write_summary(config: ScanConfig, result: ScanResult) -> dict[str, Any]:
    """``summary.json``: the scan's parameters, counts and malformed-line samples."""
    daily = result.tables["daily"]
    totals = {
        str(k["action"]): int(k["requests_sum"])
        for k in daily.group_by("action").aggregate([("requests", "sum")]).to_pylist()
    }
    summary: dict[str, Any] = {
        "engine": result.engine,
        "files": result.files,
        "rows": result.rows,
        "seconds": round(result.seconds, 3),
        "rows_per_second": round(result.rows_per_second),
        "actions": totals,
        "malformed": result.stats.count,
        "malformed_samples": result.stats.samples,
        "skipped_non_request": result.stats.skipped,
        "policy": config.policies.latest.label,
        "at": config.at.isoformat() if config.at else None,
        "pivot": config.effective_pivot().isoformat(),
        "since": config.since.isoformat() if config.since else None,
        "until": config.until.isoformat() if config.until else None,
        "compare": (
            {
                "policy": config.compare.policies.latest.label,
                "at": config.compare.at.isoformat() if config.compare.at else None,
            }
            if config.compare
            else None
        ),
        "snapshot_built": config.snapshot.meta.built_at.isoformat(),
        "territory_rules": [
            {
                "rule": r.id,
                "region": str(g),
                "effective_at": (r.effective_at.isoformat() if r.effective_at else None),
            }
            for r in config.policies.latest.rules
            for g in sorted(r.regions, key=str)
            if g.is_subdivision
        ],
    }
    preview = result.tables.get("account_preview")
    if preview is not None:
        from geogate.scan.preview import PREVIEW_STATS_KEY  # noqa: PLC0415

        counts = (preview.schema.metadata or {}).get(PREVIEW_STATS_KEY.encode())
        if counts is not None:
            summary["account_preview"] = json.loads(counts)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def finish(
    config: ScanConfig, result: ScanResult, *, written: frozenset[str] | set[str] = frozenset()
) -> ScanResult:
    """Derive the remaining tables, write those not ``written`` yet, and render the report."""
    as_org = getattr(config.snapshot, "as_org", None)
    result.tables.update(derive_tables(result.tables, as_org=as_org))
    write_tables(config.out, {k: v for k, v in result.tables.items() if k not in written})
    summary = write_summary(config, result)
    if config.report:
        from geogate.scan.report import write_report  # noqa: PLC0415 - plotly is large

        write_report(config.out, result.tables, summary)
    return result


MAX_JOBS: Final = 256
"""The most processes ``--jobs`` starts (each holds its own tables in memory)."""


def scan_local(
    config: ScanConfig, *, progress: ProgressFn | None = None, jobs: int = 1
) -> ScanResult:
    """Scan with the in-process engine (streaming; memory holds the output's distinct keys).

    ``jobs`` > 1 scans the inputs in that many processes (each a share of the files, the
    largest first; a Parquet file cut into ranges of row groups when there are fewer files
    than processes; memory is per process), then adds up their counts. The account preview
    runs in this process only.
    """
    paths = expand_inputs(config.inputs)
    if not paths:
        raise ConfigError("no input files", key="LOGS")
    if not 1 <= jobs <= MAX_JOBS:
        raise ConfigError(f"jobs must be between 1 and {MAX_JOBS}, not {jobs}", key="--jobs")
    start = time.perf_counter()
    shares = _shares(paths, jobs, config.read) if jobs > 1 else []
    if len(shares) > 1 and not config.preview_accounts:
        rows, stats, tables = _scan_processes(config, shares, progress)
    else:
        rows, stats, tables = _scan_here(config, paths, progress)
    result = ScanResult(
        rows=rows,
        stats=stats,
        tables=tables,
        seconds=time.perf_counter() - start,
        engine="local",
        files=len(paths),
    )
    return finish(config, result)


def _scan_here(
    config: ScanConfig, paths: Sequence[Path | Part], progress: ProgressFn | None
) -> tuple[int, ReadStats, dict[str, pa.Table]]:
    rows, stats, acc, preview = _accumulate(config, paths, progress)
    tables = acc.result()
    tables.update(preview)
    return rows, stats, tables


def _accumulate(
    config: ScanConfig, paths: Sequence[Path | Part], progress: ProgressFn | None
) -> tuple[int, ReadStats, Accumulator, dict[str, pa.Table]]:
    """Rows judged, read statistics, the accumulated base tables, and the account preview's
    table when asked for."""
    stats = ReadStats()
    acc = Accumulator(compare=config.compare is not None)
    rows = 0
    extra: dict[str, pa.Table] = {}
    with tempfile.TemporaryDirectory(prefix="geogate-preview-") as tmp:
        preview = None
        if config.preview_accounts:
            from geogate.scan.preview import AccountPreview  # noqa: PLC0415

            preview = AccountPreview(config.policies, config.snapshot, db=Path(tmp) / "a.db")
        for verdicts in verdict_batches(config, paths, stats, progress):
            rows += verdicts.rows
            acc.add(verdicts)
            if preview is not None:
                preview.add(verdicts.to_batch())
        if preview is not None:
            extra["account_preview"] = preview.result(config.at or config.effective_pivot())
    return rows, stats, acc, extra


def _shares(paths: Sequence[Path], count: int, opts: ReadOptions) -> list[list[Part]]:
    """The inputs split into ``count`` shares of about equal size (largest first, each to
    the smallest share so far), each in input order. With fewer files than shares, Parquet
    files are cut into ranges of row groups."""
    parts: list[tuple[Part, float]] = []
    for path in paths:
        size = float(path.stat().st_size)
        fmt = opts.format if opts.format != "auto" else detect_format(path)
        ranges = parquet_ranges(path, count) if len(paths) < count and fmt == "parquet" else []
        if len(ranges) > 1:
            total = ranges[-1][1]
            parts.extend(((path, r), size * (r[1] - r[0]) / total) for r in ranges)
        else:
            parts.append(((path, None), size))
    shares: list[list[Part]] = [[] for _ in range(count)]
    sizes = [0.0] * count
    for part, size in sorted(parts, key=lambda p: p[1], reverse=True):
        i = sizes.index(min(sizes))
        shares[i].append(part)
        sizes[i] += size
    order = {part: i for i, (part, _) in enumerate(parts)}
    return [sorted(share, key=order.__getitem__) for share in shares if share]


# What forked scan processes inherit: the configuration (policies and snapshot are shared
# copy-on-write rather than pickled), the shares, and counters for the progress bar.
_FORKED: dict[str, Any] = {}


def _scan_share(index: int) -> tuple[int, ReadStats, dict[str, Any]]:
    config: ScanConfig = _FORKED["config"]
    done_rows, done_bytes = _FORKED["rows"][index], _FORKED["bytes"][index]

    def report(rows: int, consumed: int) -> None:
        done_rows.value, done_bytes.value = rows, consumed

    rows, stats, acc, _ = _accumulate(config, _FORKED["shares"][index], report)
    return rows, stats, acc.state()


def _scan_processes(
    config: ScanConfig, shares: list[list[Part]], progress: ProgressFn | None
) -> tuple[int, ReadStats, dict[str, pa.Table]]:
    """The inputs' shares accumulated in forked processes, their counts added up here."""
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait  # noqa: PLC0415

    context = multiprocessing.get_context("fork")
    _FORKED.update(
        config=config,
        shares=shares,
        rows=[context.Value("q", 0, lock=False) for _ in shares],
        bytes=[context.Value("q", 0, lock=False) for _ in shares],
    )
    try:
        with ProcessPoolExecutor(max_workers=len(shares), mp_context=context) as pool:
            pending = {pool.submit(_scan_share, i) for i in range(len(shares))}
            futures = list(pending)
            while pending:
                _, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                if progress is not None:
                    progress(
                        sum(v.value for v in _FORKED["rows"]),
                        sum(v.value for v in _FORKED["bytes"]),
                    )
                if any(f.done() and f.exception() for f in futures):
                    break
            results = [f.result() for f in futures]  # raises a process's error
    finally:
        _FORKED.clear()
    stats = ReadStats()
    acc = Accumulator(compare=config.compare is not None)
    for _, part, state in results:
        stats.merge(part)
        acc.absorb(state)
    return sum(r for r, _, _ in results), stats, acc.result()
