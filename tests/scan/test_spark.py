"""The Spark engine (local mode, Debian's Java) writes the local engine's tables row for row,
with a Parquet file split into several tasks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.scan.logfiles import TEXT_FORMATS, write_text

from geogate.client_ip import TrustedProxies
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.scan.judge import Scenario
from geogate.scan.readers import ReadOptions
from geogate.scan.run import ScanConfig, scan_local
from geogate.scan.spark import parquet_frames, scan_spark


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local Spark session for the module (starting one costs tens of seconds)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession  # noqa: PLC0415 - after PYSPARK_PYTHON is set

    session = (
        SparkSession.builder.master("local[2]")
        .appName("geogate-scan-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_tables_equal_the_local_engine_row_for_row(
    tmp_path: Path, spark: Any, requests: pa.Table, snapshot, policies: PolicySet
) -> None:
    half = requests.num_rows // 2
    logs = tmp_path / "logs"
    logs.mkdir()
    # Parquet in row groups of 50 rows, Spark splits of ~1 KB: the file is judged in parts.
    pq.write_table(requests.slice(0, half), logs / "a.parquet", row_group_size=50)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "1024")
    (frame,) = parquet_frames(spark, [str(logs / "a.parquet")], ReadOptions())
    assert frame.rdd.getNumPartitions() > 1
    # A row without a client address: counted as malformed by both engines.
    odd = requests.slice(0, 2)
    odd = odd.set_column(1, "ip", pa.array([None, "8.8.8.8"], pa.string()))
    pq.write_table(odd, logs / "c.parquet")
    _, render = TEXT_FORMATS["nginx-json"]
    write_text(logs / "b.log", render(requests.slice(half), peer="10.0.0.9") + b"{broken\n", "zstd")
    other = load_policy_set([resolve_policy_path("builtin:supported-countries")])
    common = {
        "inputs": [str(logs)],
        "policies": policies,
        "snapshot": snapshot,
        "trusted": TrustedProxies.parse(["10.0.0.0/8"]),
        "compare": Scenario(policies=other, at=datetime(2024, 7, 20, tzinfo=UTC)),
        "report": False,
    }
    local = scan_local(ScanConfig(out=tmp_path / "local", **common))
    remote = scan_spark(ScanConfig(out=tmp_path / "spark", **common), spark=spark)
    assert remote.rows == local.rows == requests.num_rows + 1
    assert remote.stats.count == local.stats.count == 2
    assert any(s["source"].endswith("c.parquet") for s in remote.stats.samples)
    assert set(remote.tables) == set(local.tables)
    for name, table in local.tables.items():
        assert remote.tables[name].num_rows == table.num_rows > 0, name
        assert remote.tables[name].to_pylist() == table.to_pylist(), name
        # What Spark wrote to disk is what the report was made from.
        on_disk = pq.read_table(tmp_path / "spark" / f"{name}.parquet")
        assert on_disk.num_rows == table.num_rows
