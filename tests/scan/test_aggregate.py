"""Aggregates do not depend on batch boundaries or on how often partial results are merged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from tests.scan.logfiles import write_parquet

from geogate.policy.model import PolicySet
from geogate.scan.aggregate import Accumulator
from geogate.scan.readers import ReadOptions, ReadStats, expand_inputs
from geogate.scan.run import ScanConfig, judged_batches, scan_local


def test_tables_are_the_same_whatever_the_batching_and_merging(
    tmp_path: Path, requests: pa.Table, snapshot, policies: PolicySet
) -> None:
    log = write_parquet(tmp_path / "log.parquet", requests)
    tables = []
    for batch_rows, compact_rows in ((1_000_000, 10_000_000), (37, 50)):
        config = ScanConfig(
            inputs=[str(log)],
            out=tmp_path / f"out-{batch_rows}",
            policies=policies,
            snapshot=snapshot,
            read=ReadOptions(batch_rows=batch_rows),
            report=False,
        )
        acc = Accumulator(compare=False, compact_rows=compact_rows)
        for judged in judged_batches(config, expand_inputs([str(log)]), ReadStats(), None):
            acc.add(judged)
        tables.append(acc.result())
    for name in tables[0]:
        assert tables[0][name].equals(tables[1][name]), name
    assert sum(tables[0]["daily"].column("requests").to_pylist()) == requests.num_rows


def test_since_and_until_keep_a_window(
    tmp_path: Path, requests: pa.Table, snapshot, policies: PolicySet
) -> None:
    log = write_parquet(tmp_path / "log.parquet", requests)
    since = datetime(2024, 7, 7, tzinfo=UTC)
    until = datetime(2024, 7, 9, tzinfo=UTC)
    result = scan_local(
        ScanConfig(
            inputs=[str(log)],
            out=tmp_path / "out",
            policies=policies,
            snapshot=snapshot,
            since=since,
            until=until,
            report=False,
        )
    )
    ts = requests.column("ts")
    inside = pc.sum(
        pc.and_(
            pc.greater_equal(ts, pa.scalar(since, ts.type)), pc.less(ts, pa.scalar(until, ts.type))
        )
    ).as_py()
    assert 0 < result.rows == inside < requests.num_rows
    days = {d.isoformat() for d in result.tables["daily"].column("day").to_pylist()}
    assert days == {"2024-07-07", "2024-07-08"}
