"""Aggregates equal the plainest group-by of the judged rows, whatever the batching."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.scan import reference
from tests.scan.logfiles import TEXT_FORMATS, write_parquet, write_text

from geogate.client_ip import TrustedProxies
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set, resolve_policy_path
from geogate.scan.aggregate import Accumulator
from geogate.scan.judge import Scenario
from geogate.scan.readers import ReadOptions, ReadStats, expand_inputs, parquet_ranges
from geogate.scan.run import ScanConfig, judged_batches, scan_local, verdict_batches

# Odd requests beside the synthetic ones: a hidden client, IPv6 and IPv4-mapped clients, a
# peer that is no address, requests without an account or org, an account in two orgs.
_ODD = (
    b"".join(
        b'{"time":"2024-07-09T00:00:00Z","realip_remote_addr":"10.0.0.9",' + rest + b"}\n"
        for rest in (
            b'"http_x_forwarded_for":"unknown","http_x_geogate_account":"acct-1"',
            b'"http_x_forwarded_for":"2a00:1450:4001::1","http_x_geogate_account":"acct-2"',
            b'"http_x_forwarded_for":"2001:67c:4e8::5","http_x_geogate_account":"acct-2"',
            b'"http_x_forwarded_for":"::ffff:1.2.3.4","http_x_geogate_account":"acct-2",'
            b'"http_x_geogate_org":"another-org"',
            b'"http_x_forwarded_for":"185.220.101.1"',
            b'"http_x_forwarded_for":"185.220.101.1","http_x_geogate_account":"acct-3"',
        )
    )
    + b'{"time":"2024-07-09T00:00:00Z","realip_remote_addr":"bogus"}\n'
)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, requests: pa.Table) -> Path:
    """Half the synthetic requests as Parquet, half as nginx JSON behind a load balancer."""
    root = tmp_path_factory.mktemp("logs")
    half = requests.num_rows // 2
    write_parquet(root / "a.parquet", requests.slice(0, half))
    _, render = TEXT_FORMATS["nginx-json"]
    write_text(root / "b.log", render(requests.slice(half), peer="10.0.0.9") + _ODD, "gzip")
    return root


@pytest.fixture(scope="module")
def exempt(tmp_path_factory: pytest.TempPathFactory) -> PolicySet:
    text = Path("policies/unsupported-regions.toml").read_text()
    path = tmp_path_factory.mktemp("policy") / "exempt.toml"
    path.write_text(text.replace("accounts = []", 'accounts = ["acct-3", "acct-7"]', 1))
    return load_policy_set([path])


AT = datetime(2024, 7, 10, tzinfo=UTC)
LATER = datetime(2024, 7, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "case", ["at", "own-time", "compare-policy", "compare-dates", "exempt-own-time-compare"]
)
@pytest.mark.parametrize("batch_rows", [64, 1_048_576])
def test_tables_equal_a_plain_group_by_of_the_judged_rows(
    tmp_path: Path,
    logs: Path,
    snapshot,
    policies: PolicySet,
    exempt: PolicySet,
    case: str,
    batch_rows: int,
) -> None:
    other = load_policy_set([resolve_policy_path("builtin:supported-countries")])
    settings = {
        "at": {"at": AT},
        "own-time": {},
        "compare-policy": {"compare": Scenario(policies=other, at=LATER)},
        "compare-dates": {
            "at": datetime(2024, 7, 1, tzinfo=UTC),
            "compare": Scenario(policies=policies, at=datetime(2024, 7, 20, tzinfo=UTC)),
        },
        "exempt-own-time-compare": {"compare": Scenario(policies=policies)},
    }[case]
    config = ScanConfig(
        inputs=[str(logs)],
        out=tmp_path / "out",
        policies=exempt if case.startswith("exempt") else policies,
        snapshot=snapshot,
        trusted=TrustedProxies.parse(["10.0.0.0/8"]),
        read=ReadOptions(batch_rows=batch_rows),
        report=False,
        **settings,
    )
    got = scan_local(config).tables
    judged = reference.judged_rows(
        judged_batches(config, expand_inputs(config.inputs), ReadStats(), None)
    )
    want = reference.base_tables(judged, compare="compare" in settings)
    want.update(reference.derived_tables(want))
    assert set(got) == set(want)
    for name, table in want.items():
        mine = got[name].drop_columns(["as_org"]) if name == "egress" else got[name]
        assert table.num_rows > 0, name
        assert mine.equals(table), name


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
        for verdicts in verdict_batches(config, expand_inputs([str(log)]), ReadStats(), None):
            acc.add(verdicts)
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


def test_processes_over_shares_of_the_files_write_the_same_tables(
    tmp_path: Path, logs: Path, requests: pa.Table, snapshot, policies: PolicySet
) -> None:
    """--jobs: files scanned in forked processes, tables merged: equal to one process."""
    write_parquet(tmp_path / "more.parquet", requests.slice(0, 100))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{broken\n{"ts":"2024-07-10T00:00:00Z","ip":"8.8.8.8","account":"a"}\n')
    inputs = [str(logs), str(tmp_path / "more.parquet"), str(bad)]
    seen: list[tuple[int, int]] = []
    results = []
    for jobs in (1, 2):
        config = ScanConfig(
            inputs=inputs,
            out=tmp_path / f"out-{jobs}",
            policies=policies,
            snapshot=snapshot,
            trusted=TrustedProxies.parse(["10.0.0.0/8"]),
            compare=Scenario(policies=policies, at=LATER),
            report=False,
        )
        progress = (lambda rows, done: seen.append((rows, done))) if jobs == 2 else None
        results.append(scan_local(config, jobs=jobs, progress=progress))
    one, two = results
    assert two.rows == one.rows
    assert two.stats.count == one.stats.count == 1
    assert set(two.tables) == set(one.tables)
    for name, table in one.tables.items():
        assert two.tables[name].equals(table), name
    assert seen
    assert seen[-1][0] == one.rows


def test_one_parquet_file_is_cut_into_row_group_ranges_for_processes(
    tmp_path: Path, requests: pa.Table, snapshot, policies: PolicySet
) -> None:
    """--jobs with a single Parquet file: each process reads a range of its row groups; the
    tables, and the row numbers of malformed rows, are those of one process."""
    table = requests.set_column(
        1,
        "ip",
        pa.array([None if i == 450 else ip for i, ip in enumerate(requests["ip"].to_pylist())]),
    )
    log = tmp_path / "one.parquet"
    pq.write_table(table, log, row_group_size=100)
    assert parquet_ranges(log, 2) == [(0, 3), (3, 6)]
    results = []
    for jobs in (1, 2):
        config = ScanConfig(
            inputs=[str(log)],
            out=tmp_path / f"out-{jobs}",
            policies=policies,
            snapshot=snapshot,
            read=ReadOptions(batch_rows=64),
            report=False,
        )
        results.append(scan_local(config, jobs=jobs))
    one, two = results
    assert two.rows == one.rows == requests.num_rows - 1
    assert two.stats.samples == one.stats.samples
    assert [s["line"] for s in one.stats.samples] == [451]
    for name, table in one.tables.items():
        assert two.tables[name].equals(table), name


def test_processes_name_ipv6_egress_networks_alike(
    tmp_path: Path, snapshot, policies: PolicySet
) -> None:
    """IPv6 egress networks are numbered per process in the order it meets them; the merged
    tables name them as one process does."""
    first, second = "2001:470:1e0::5", "2001:470:391::5"  # datacenter ranges in the data

    def line(ip: str, account: str) -> bytes:
        return b'{"ts":"2024-07-10T00:00:00Z","ip":"%s","account":"%s"}' % (
            ip.encode(),
            account.encode(),
        )

    (tmp_path / "a.jsonl").write_bytes(line(first, "a") + b"\n" + line(second, "b") + b"\n")
    (tmp_path / "b.jsonl").write_bytes(line(second, "c") + b"\n" + line(first, "d") + b"\n")
    results = []
    for jobs in (1, 2):
        config = ScanConfig(
            inputs=[str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")],
            out=tmp_path / f"out-{jobs}",
            policies=policies,
            snapshot=snapshot,
            report=False,
        )
        results.append(scan_local(config, jobs=jobs).tables)
    one, two = results
    assert set(one["egress"].column("egress").to_pylist()) == {
        "2001:470:1e0::/48",
        "2001:470:391::/48",
    }
    for name, table in one.items():
        assert two[name].equals(table), name


def test_progress_of_processes_counts_each_byte_once(
    tmp_path: Path, requests: pa.Table, snapshot, policies: PolicySet
) -> None:
    """A Parquet file cut between processes reports its size once, at the end exactly."""
    log = tmp_path / "one.parquet"
    pq.write_table(requests, log, row_group_size=100)
    seen: list[tuple[int, int]] = []
    config = ScanConfig(
        inputs=[str(log)],
        out=tmp_path / "out",
        policies=policies,
        snapshot=snapshot,
        report=False,
    )
    scan_local(config, jobs=2, progress=lambda rows, done: seen.append((rows, done)))
    assert max(done for _, done in seen) <= log.stat().st_size
    assert seen[-1] == (requests.num_rows, pytest.approx(log.stat().st_size, rel=0.01))
