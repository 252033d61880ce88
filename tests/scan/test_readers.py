"""Every input format, plain and compressed, reads to the same requests and the same tables."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.scan.logfiles import TEXT_FORMATS, write_parquet, write_text

from geogate.errors import ConfigError
from geogate.policy.model import PolicySet
from geogate.scan.readers import ReadOptions, ReadStats, expand_inputs, read_file
from geogate.scan.run import ScanConfig, scan_local


def _read_all(path: Path, opts: ReadOptions | None = None) -> tuple[pa.Table, ReadStats]:
    stats = ReadStats()
    batches = list(read_file(path, opts or ReadOptions(), stats))
    return pa.Table.from_batches(batches), stats


def _scan(tmp_path: Path, inputs: list[str], snapshot, policies: PolicySet, **kw) -> dict:
    out = tmp_path / "out"
    cfg = ScanConfig(
        inputs=inputs, out=out, policies=policies, snapshot=snapshot, report=False, **kw
    )
    return scan_local(cfg).tables


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
@pytest.mark.parametrize("fmt", sorted(TEXT_FORMATS))
def test_each_text_format_reads_every_request_with_its_time_and_client(
    tmp_path: Path, requests: pa.Table, fmt: str, compression: str | None
) -> None:
    suffix, render = TEXT_FORMATS[fmt]
    path = write_text(tmp_path / f"log{suffix}", render(requests), compression)
    table, stats = _read_all(path)
    assert stats.count == 0
    assert table.num_rows == requests.num_rows
    assert table.column("ts").to_pylist() == requests.column("ts").to_pylist()
    assert (
        pc.cast(table.column("peer"), pa.string()).to_pylist() == requests.column("ip").to_pylist()
    )
    assert table.column("account").to_pylist() == requests.column("account").to_pylist()


def test_parquet_reads_like_the_text_formats(tmp_path: Path, requests: pa.Table) -> None:
    table, stats = _read_all(write_parquet(tmp_path / "log.parquet", requests))
    assert stats.count == 0
    assert (
        pc.cast(table.column("peer"), pa.string()).to_pylist() == requests.column("ip").to_pylist()
    )
    assert table.column("ts").to_pylist() == requests.column("ts").to_pylist()


@pytest.mark.parametrize("fmt", ["events", "nginx-json", "envoy-json", "nginx-combined", "csv"])
def test_tables_equal_across_formats(
    tmp_path: Path, requests: pa.Table, snapshot, policies: PolicySet, fmt: str
) -> None:
    baseline = _scan(
        tmp_path / "p",
        [str(write_parquet(tmp_path / "log.parquet", requests))],
        snapshot,
        policies,
    )
    suffix, render = TEXT_FORMATS[fmt]
    path = write_text(tmp_path / f"log{suffix}", render(requests), "gzip")
    tables = _scan(tmp_path / "t", [str(path)], snapshot, policies)
    assert tables["daily"].equals(baseline["daily"])
    keys = ["account", "region", "phase"]
    got = tables["accounts"].group_by(keys).aggregate([("requests", "sum")])
    want = baseline["accounts"].group_by(keys).aggregate([("requests", "sum")])
    order = [(k, "ascending") for k in keys]
    assert got.sort_by(order).equals(want.sort_by(order))


def test_field_names_are_mapped_by_options(tmp_path: Path, requests: pa.Table) -> None:
    renamed = requests.rename_columns(["when", "client", "who", "team", "agent", "lang"])
    path = write_parquet(tmp_path / "custom.parquet", renamed)
    with pytest.raises(ConfigError, match="no ts column"):
        _read_all(path)
    opts = ReadOptions(fields={"ts": "when", "peer": "client", "account": "who", "org": "team"})
    table, _ = _read_all(path, opts)
    assert table.column("account").to_pylist() == requests.column("account").to_pylist()
    assert table.column("org").to_pylist() == requests.column("org").to_pylist()


def test_malformed_lines_are_counted_and_sampled_never_fatal(tmp_path: Path) -> None:
    lines = [
        b'{"ts": "2024-07-10T00:00:00Z", "ip": "8.8.8.8", "account": "a"}',
        b"not json at all",
        b'{"ts": "2024-07-10", "ip": "8.8.8.8"}',  # a date without a time of day and offset
        b"[1, 2]",
        b'{"ip": "8.8.8.8"}',
        b'{"type": "payment", "ts": "2024-07-10T00:00:00Z", "account": "a"}',
        b'{"ts": "2024-07-10T01:00:00+08:00", "ip": "1.1.1.1"}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    table, stats = _read_all(path)
    assert table.num_rows == 2
    assert stats.count == 4
    assert stats.skipped == 1
    assert [s["line"] for s in stats.samples] == [2, 4, 5, 3]
    assert all(s["source"] == str(path) for s in stats.samples)


def test_a_truncated_gzip_keeps_what_was_read(tmp_path: Path, requests: pa.Table) -> None:
    _, render = TEXT_FORMATS["events"]
    data = gzip.compress(render(requests) * 40, compresslevel=1)  # several read blocks
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    table, stats = _read_all(path)
    assert 0 < table.num_rows < 40 * requests.num_rows
    assert stats.count >= 1
    assert any("read stopped" in s["error"] for s in stats.samples)


def test_directories_and_globs_expand_to_files(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/a.jsonl", "d/e/b.log.gz", "c.csv"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_inputs([str(tmp_path / "d")])] == ["a.jsonl", "b.log.gz"]
    assert [p.name for p in expand_inputs([str(tmp_path / "*.csv")])] == ["c.csv"]
    with pytest.raises(ConfigError, match="no such file"):
        expand_inputs([str(tmp_path / "nothing-*.log")])


def test_a_csv_row_with_the_wrong_number_of_columns_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "ts,ip,account\n"
        "2024-07-10T00:00:00Z,8.8.8.8,a\n"
        "2024-07-10T00:00:01Z,8.8.8.8,a,extra\n"
        "2024-07-10T00:00:02Z,1.1.1.1,b\n"
    )
    table, stats = _read_all(path)
    assert table.column("account").to_pylist() == ["a", "b"]
    assert stats.count == 1
    assert "4 columns where the header has 3" in stats.samples[0]["error"]


def _line_reader(data: bytes, opts: ReadOptions) -> tuple[pa.Table, ReadStats]:
    """The exact line-by-line JSON reader on ``data`` (the oracle of the block reader)."""
    from geogate.scan.readers import _json_lines, _json_names  # noqa: PLC0415

    stats = ReadStats()
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    batch = _json_lines(lines, 1, opts, _json_names(opts), "x", stats)
    assert batch is not None
    return pa.Table.from_batches([batch]), stats


_SHAPES = {
    # An optional field missing from the first line, present later.
    "optional-later": [
        b'{"ts":"2024-07-10T00:00:00Z","ip":"8.8.8.8","account":"a"}',
        b'{"ts":"2024-07-10T00:00:01Z","ip":"8.8.4.4","account":"b","org":"o"}',
    ],
    # Another name of a field on later lines; a null first name falls to the next one.
    "other-names": [
        b'{"time":"2024-07-10T00:00:00Z","remote_addr":"8.8.8.8"}',
        b'{"time":"2024-07-10T00:00:01Z","peer":null,"ip":"1.1.1.1","user":"u"}',
        b'{"start_time":"2024-07-10T00:00:02Z","downstream_remote_address":"9.9.9.9"}',
    ],
    # A mapped field that is a number or a list: read as text, like the line reader does.
    "not-text": [
        b'{"ts":"2024-07-10T00:00:00Z","ip":"8.8.8.8","account":12}',
        b'{"ts":"2024-07-10T00:00:01Z","ip":"8.8.8.8","xff":["1.1.1.1","2.2.2.2"]}',
    ],
    # Broken, blank, comment and non-request lines between valid ones; blanks to null.
    "malformed": [
        b'{"ts":"2024-07-10T00:00:00Z","ip":"8.8.8.8","account":"-"}',
        b"{broken",
        b"",
        b"# a comment",
        b'{"type":"payment","ts":"2024-07-10T00:00:00Z","account":"a"}',
        b'{"ts":"2024-07-10T00:00:01Z","ip":""}',
        b'{"ts":"yesterday","ip":"8.8.8.8"}',
        b'{"ts":"2024-07-10T00:00:02Z","ip":"8.8.8.8"} {"ts":"2024-07-10T00:00:03Z"}',
    ],
    # Valid lines only, of one shape, with time zones and numbers in unmapped fields.
    "one-shape": [
        b'{"ts":"2024-07-10T0%d:00:00+02:00","ip":"8.8.8.%d","status":200,"ok":true}' % (i, i)
        for i in range(10)
    ],
}


_LONG = b'{"ts":"2024-07-10T00:00:04Z","ip":"8.8.8.8","account":"' + b"x" * 70_000 + b'"}'


@pytest.mark.parametrize("shape", sorted(_SHAPES))
@pytest.mark.parametrize("repeat", [1, 20_000])
def test_json_blocks_read_exactly_what_the_line_reader_reads(
    tmp_path: Path, shape: str, repeat: int
) -> None:
    """Arrow's block parser is only a faster path: whatever the lines, the rows, their
    order and the malformed count equal the line-by-line reader's (20,000 copies span
    several blocks, one of them holding an over-long line)."""
    lines = _SHAPES[shape] * repeat
    lines.insert(len(lines) // 2, _LONG)
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "log.jsonl"
    path.write_bytes(data)
    got, got_stats = _read_all(path)
    want, want_stats = _line_reader(data, ReadOptions())
    assert got.num_rows > 0
    assert got.to_pylist() == want.to_pylist()
    assert (got_stats.count, got_stats.skipped) == (want_stats.count, want_stats.skipped)
    if repeat == 1:
        key = [(s["line"], s["error"]) for s in got_stats.samples]
        assert sorted(key) == sorted((s["line"], s["error"]) for s in want_stats.samples)
    if shape == "malformed":
        assert got_stats.count == 4 * repeat + 1


def test_api_keys_are_read_for_the_account_preview_only(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"ts":"2024-07-10T00:00:00Z","ip":"8.8.8.8","api_key":"k-1"}\n')
    table, _ = _read_all(path)
    assert table.column("api_key").to_pylist() == ["k-1"]
    table, _ = _read_all(path, ReadOptions(client_hints=False))
    assert table.column("api_key").to_pylist() == [None]


@pytest.mark.parametrize("fmt", ["events", "nginx-combined"])
def test_a_line_of_many_megabytes_is_one_malformed_line(
    tmp_path: Path, requests: pa.Table, fmt: str
) -> None:
    """A line without an end for 40 MB is counted once and skipped without being held in
    memory whole; the lines around it are read."""
    suffix, render = TEXT_FORMATS[fmt]
    text = render(requests)
    half = text.index(b"\n", len(text) // 2) + 1
    long_line = b"x" * 40_000_000
    path = write_text(
        tmp_path / f"log{suffix}", text[:half] + long_line + b"\n" + text[half:], "gzip"
    )
    del long_line
    tracemalloc.start()
    try:
        table, stats = _read_all(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000
    assert table.num_rows == requests.num_rows
    assert stats.count == 1
    assert stats.samples[0]["line"] == text[:half].count(b"\n") + 1
