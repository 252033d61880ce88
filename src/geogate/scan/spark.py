"""The Spark engine: the same scan as a PySpark job, for logs that outgrow one machine.

Parquet inputs are read by Spark itself (``spark.read.parquet``), which splits large files
into tasks by row groups; every other input file is one task, read by the local engine's
readers (gzip and zstd streams do not split). Executors judge each Arrow batch with the same
:class:`~geogate.scan.judge.Judge` inside ``mapInArrow`` — the policy files and the snapshot
are shipped to them with ``SparkContext.addFile`` (the embedded snapshot comes with the
installed package). Spark SQL
groups the judged rows into the base tables of :mod:`geogate.scan.aggregate`, written as
Parquet directories (``DIR/daily.parquet/part-*``); the driver then derives the small tables
and the report from them exactly as the local engine does.

Run it with ``geogate scan --engine spark`` (a local Spark, or the cluster a surrounding
``spark-submit`` configured), or submit this file unchanged::

    spark-submit --master yarn "$(python -c 'import geogate.scan.spark as m; print(m.__file__)')" \
        /shared/logs/2026-11 --policy policy.toml --at 2026-12-01 --out /shared/scan-out

geogate must be installed on the driver and the executors, and the inputs and ``--out`` must
be paths every node can read and write (a shared filesystem).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geogate.scan.aggregate import BASE_TABLES, _normalise, sort_table
from geogate.scan.readers import (
    ReadOptions,
    ReadStats,
    detect_format,
    expand_inputs,
    normalise_columns,
    parquet_names,
    read_file,
)
from geogate.scan.run import ScanConfig, ScanResult, filter_window, finish


@dataclass(frozen=True, slots=True)
class _JobSpec:
    """Plain values an executor needs to rebuild the judge (policies by file name, shipped)."""

    policy_files: tuple[str, ...]
    compare_files: tuple[str, ...] | None
    at: datetime | None
    compare_at: datetime | None
    pivot: datetime
    since: datetime | None
    until: datetime | None
    trusted: tuple[str, ...]
    snapshot_file: str | None
    read: ReadOptions


_JUDGES: dict[str, Any] = {}


def _judge_for(spec: _JobSpec) -> Any:
    """The executor's judge for ``spec``, built once per Python worker."""
    key = repr(spec)
    judge = _JUDGES.get(key)
    if judge is None:
        from pyspark import SparkFiles  # noqa: PLC0415

        from geogate.client_ip import TrustedProxies  # noqa: PLC0415
        from geogate.intel.snapshot import Snapshot  # noqa: PLC0415
        from geogate.policy.parse import load_policy_set  # noqa: PLC0415
        from geogate.scan.judge import Judge, Scenario  # noqa: PLC0415

        def local(names: tuple[str, ...]) -> Any:
            return load_policy_set([Path(SparkFiles.get(n)) for n in names])

        snapshot = (
            Snapshot.load(SparkFiles.get(spec.snapshot_file))
            if spec.snapshot_file
            else Snapshot.embedded()
        )
        policies = local(spec.policy_files)
        compare = None
        if spec.compare_files is not None or spec.compare_at is not None:
            compare = Scenario(
                policies=local(spec.compare_files) if spec.compare_files else policies,
                at=spec.compare_at,
            )
        judge = Judge(
            snapshot,
            Scenario(policies=policies, at=spec.at),
            trusted=TrustedProxies.parse(spec.trusted),
            pivot=spec.pivot,
            compare=compare,
        )
        _JUDGES[key] = judge
    return judge


def _plain(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Dictionary columns decoded, in the declared column order (what Spark expects)."""
    cols = [batch.column(f.name).cast(f.type) for f in schema]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def judged_schema(compare: bool) -> pa.Schema:
    """The Arrow schema of judged rows as the Spark job carries them."""
    from geogate.scan.judge import COMPARE_FIELDS, JUDGED_FIELDS  # noqa: PLC0415

    types = {
        "ts": pa.timestamp("us", tz="UTC"),
        "day": pa.date32(),
        "asn": pa.int64(),
        **dict.fromkeys(("anonymized", "hosting", "unsupported", "denied", "warned"), pa.bool_()),
    }
    names = [*JUDGED_FIELDS, *(COMPARE_FIELDS if compare else ())]
    return pa.schema([(n, types.get(n, pa.string())) for n in names])


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql import types as T  # noqa: PLC0415, N812

    mapping = {
        pa.string(): T.StringType(),
        pa.int64(): T.LongType(),
        pa.bool_(): T.BooleanType(),
        pa.date32(): T.DateType(),
    }
    fields = []
    for f in schema:
        spark_type = T.TimestampType() if pa.types.is_timestamp(f.type) else mapping[f.type]
        fields.append(T.StructField(f.name, spark_type, True))
    return T.StructType(fields)


class _Samples:
    """AccumulatorParam for malformed-line samples (a short list)."""

    def zero(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []

    def addInPlace(  # noqa: N802 - Spark's name
        self, a: list[dict[str, Any]], b: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return (a + b)[:20]


_SOURCE = "__source"


def _split_parquet(paths: list[str], opts: ReadOptions) -> tuple[list[str], list[str]]:
    """The Parquet inputs (read by Spark itself, split into tasks by row groups) and the
    others (read by geogate's readers, a task per file: gzip and zstd do not split)."""
    parquet: list[str] = []
    others: list[str] = []
    for path in paths:
        fmt = opts.format if opts.format != "auto" else detect_format(Path(path))
        (parquet if fmt == "parquet" else others).append(path)
    return parquet, others


def parquet_frames(spark: Any, paths: list[str], opts: ReadOptions) -> list[Any]:
    """Spark DataFrames of the Parquet inputs with the columns a scan reads, under their
    canonical names (plus each row's file), one per set of files that name them alike.

    Spark splits each file by row groups into tasks of ``spark.sql.files.maxPartitionBytes``,
    so a large file is judged by many executors at once.
    """
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    groups: dict[tuple[tuple[str, str, str], ...], list[str]] = {}
    for path in paths:
        columns = pq.read_schema(path)
        names = parquet_names(columns.names, opts, path)
        shape = tuple(
            (canon, column, str(columns.field(column).type)) for canon, column in names.items()
        )
        groups.setdefault(shape, []).append(path)
    frames = []
    for shape, files in groups.items():
        frame = spark.read.parquet(*files)
        frames.append(
            frame.select(
                *[F.col(f"`{column}`").alias(canon) for canon, column, _ in shape],
                F.input_file_name().alias(_SOURCE),
            )
        )
    return frames


def _spec_of(config: ScanConfig, sc: Any) -> _JobSpec:
    def ship(paths: list[str]) -> tuple[str, ...]:
        names = []
        for p in paths:
            sc.addFile(p)
            names.append(Path(p).name)
        if len(set(names)) != len(names):
            from geogate.errors import ConfigError  # noqa: PLC0415

            raise ConfigError("policy files must have distinct names for Spark", key="--policy")
        return tuple(names)

    def sources(policies: Any) -> list[str]:
        return [str(v.source) for v in policies.versions]

    compare = config.compare
    snapshot_file = None
    if config.snapshot_path is not None:
        sc.addFile(str(config.snapshot_path))
        snapshot_file = Path(config.snapshot_path).name
    return _JobSpec(
        policy_files=ship(sources(config.policies)),
        compare_files=(
            ship(sources(compare.policies))
            if compare is not None and compare.policies is not config.policies
            else None
        ),
        at=config.at,
        compare_at=compare.at if compare is not None else None,
        pivot=config.effective_pivot(),
        since=config.since,
        until=config.until,
        trusted=tuple(str(n) for n in config.trusted.networks),
        snapshot_file=snapshot_file,
        read=config.read,
    )


def scan_spark(config: ScanConfig, *, spark: Any = None) -> ScanResult:
    """Run the scan on Spark (``spark``: a session; default: get or create one) and write
    the same tables and report as :func:`geogate.scan.run.scan_local`."""
    from pyspark import StorageLevel  # noqa: PLC0415
    from pyspark.sql import SparkSession  # noqa: PLC0415
    from pyspark.sql import functions as F  # noqa: PLC0415, N812

    paths = [str(p.resolve()) for p in expand_inputs(config.inputs)]
    if spark is None:
        # Local runs: executors' Python is this one (spark-submit users set their own).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = (
            SparkSession.builder.appName("geogate-scan")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate()
        )
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    # Arrow batches handed to the judge: each distinct address is decided once per batch.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.read.batch_rows))
    sc = spark.sparkContext
    spec = _spec_of(config, sc)
    compare = config.compare is not None
    schema = judged_schema(compare)
    counts = sc.accumulator(0)
    skipped = sc.accumulator(0)
    samples = sc.accumulator([], _Samples())

    def judge_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        judge = _judge_for(spec)
        for batch in batches:
            for path in batch.column("path").to_pylist():
                stats = ReadStats()
                for raw in read_file(Path(path), spec.read, stats):
                    rows = filter_window(raw, spec.since, spec.until)
                    if rows.num_rows:
                        yield _plain(judge.judge(rows), schema)
                counts.add(stats.count)
                skipped.add(stats.skipped)
                if stats.samples:
                    samples.add(stats.samples)

    def judge_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        judge = _judge_for(spec)
        for batch in batches:
            stats = ReadStats()
            sources = batch.column(_SOURCE)
            raw = normalise_columns(batch.drop_columns([_SOURCE]), sources=sources, malformed=stats)
            if raw is not None:
                rows = filter_window(raw, spec.since, spec.until)
                if rows.num_rows:
                    yield _plain(judge.judge(rows), schema)
            counts.add(stats.count)
            if stats.samples:
                samples.add(stats.samples)

    start = time.perf_counter()
    parquet, others = _split_parquet(paths, config.read)
    parts = []
    if others:
        files = spark.createDataFrame([(p,) for p in others], "path string").repartition(
            len(others)
        )
        parts.append(files.mapInArrow(judge_files, _spark_schema(schema)))
    for frame in parquet_frames(spark, parquet, config.read):
        parts.append(frame.mapInArrow(judge_rows, _spark_schema(schema)))
    judged = parts[0]
    for part in parts[1:]:
        judged = judged.unionByName(part)
    judged = judged.persist(StorageLevel.MEMORY_AND_DISK)
    measures = {
        "requests": F.count(F.lit(1)),
        "denied": F.sum(F.col("denied").cast("long")),
        "warned": F.sum(F.col("warned").cast("long")),
        "anonymized": F.sum(F.col("anonymized").cast("long")),
        "hosting": F.sum(F.col("hosting").cast("long")),
        "unsupported": F.sum(F.col("unsupported").cast("long")),
        "first_seen": F.min("ts"),
        "last_seen": F.max("ts"),
    }
    filters = {
        "has_account": F.col("account").isNotNull(),
        "has_egress": F.col("account").isNotNull() & (F.col("egress") != ""),
        "changed": F.col("change") != "same",
    }
    tables: dict[str, pa.Table] = {}
    config.out.mkdir(parents=True, exist_ok=True)
    for table_spec in BASE_TABLES:
        if table_spec.needs_compare and not compare:
            continue
        df = judged.filter(filters[table_spec.where]) if table_spec.where else judged
        grouped = df.groupBy(*table_spec.keys).agg(
            *[measures[m.name].alias(m.name) for m in table_spec.measures]
        )
        target = config.out / f"{table_spec.name}.parquet"
        grouped.write.mode("overwrite").parquet(str(target))
        table = pq.read_table(str(target))
        tables[table_spec.name] = sort_table(_normalise(table, table_spec), table_spec.keys)
    judged.unpersist()
    rows = int(pc.sum(tables["daily"].column("requests")).as_py() or 0)
    stats = ReadStats(count=counts.value, samples=list(samples.value), skipped=skipped.value)
    result = ScanResult(
        rows=rows,
        stats=stats,
        tables=tables,
        seconds=time.perf_counter() - start,
        engine="spark",
        files=len(paths),
    )
    return finish(config, result, written=set(tables))


def main(argv: list[str] | None = None) -> int:
    """``spark-submit .../geogate/scan/spark.py LOGS... --out DIR [options]``: the same
    options as ``geogate scan``, run with the Spark engine."""
    from geogate.cli.main import main as cli_main  # noqa: PLC0415

    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["scan", *args, "--engine", "spark", "--no-progress"])


if __name__ == "__main__":
    sys.exit(main())
