"""Hostile and broken input: snapshot files, source files and build configs.

A bad snapshot file gives IntelDataError with the path and a one-line message (never a numpy
or zip traceback); a bad line in a source file is skipped and reported with its line number
while every valid line is kept; a bad build config gives ConfigError naming the key.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from geogate.errors import ClientIPError, ConfigError, IntelDataError
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources import ProblemLog
from geogate.intel.sources.cloud import CloudRangesSource
from geogate.intel.sources.csv_ranges import CsvRangeSource
from geogate.intel.sources.mmdb import MmdbSource
from geogate.intel.sources.tor import TorExitListSource

from .test_snapshot_properties import make_snapshot


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    snap = make_snapshot([0, 0x01000000, 0x02000000], [0, 1 << 125], [0, 1, 2, 0, 3])
    path = tmp_path / "good.snapshot"
    snap.save(path)
    return path


def _rewrite_member(src: Path, dst: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            payload = data if item.filename == member else zin.read(item.filename)
            zout.writestr(item.filename, payload)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _assert_one_line_error(path: Path, match: str | None) -> None:
    with pytest.raises(IntelDataError, match=match) as info:
        Snapshot.load(path)
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_good_file_round_trips(good_file: Path) -> None:
    snap = Snapshot.load(good_file)
    assert snap.lookup("1.2.3.4").country == "CN"
    assert snap.lookup("2.0.0.1").country == "RU"
    assert snap.lookup("::1").country is None
    assert snap.lookup("2000::1").country == "US"


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path / "nope.snapshot", "cannot read snapshot")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path, "cannot read snapshot")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(good_file: Path, tmp_path: Path, fraction: float) -> None:
    data = good_file.read_bytes()
    bad = tmp_path / "truncated.snapshot"
    bad.write_bytes(data[: int(len(data) * fraction)])
    _assert_one_line_error(bad, None)


def test_random_bytes(tmp_path: Path) -> None:
    bad = tmp_path / "random.snapshot"
    bad.write_bytes(np.random.default_rng(1).bytes(5000))
    _assert_one_line_error(bad, "corrupt snapshot")


def test_flipped_bytes_never_escape_as_raw_errors(good_file: Path, tmp_path: Path) -> None:
    data = bytearray(good_file.read_bytes())
    rng = np.random.default_rng(3)
    bad = tmp_path / "flipped.snapshot"
    for _ in range(40):
        copy = bytearray(data)
        for pos in rng.integers(0, len(copy), 4):
            copy[int(pos)] ^= 0xFF
        bad.write_bytes(bytes(copy))
        error: IntelDataError | None = None
        try:
            Snapshot.load(bad)  # a flip in padding may leave a valid file
        except IntelDataError as exc:
            error = exc
        if error is not None:
            assert error.path == str(bad)
            assert "\n" not in str(error)


def test_other_npz_is_not_a_snapshot(tmp_path: Path) -> None:
    bad = tmp_path / "other.npz"
    np.savez(bad, x=np.arange(3))
    _assert_one_line_error(bad, "not a geogate snapshot")


def test_wrong_format_version(good_file: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(good_file) as z:
        meta = json.loads(np.load(io.BytesIO(z.read("meta.npy"))).tobytes())
    meta["format_version"] = 99
    bad = tmp_path / "v99.snapshot"
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _rewrite_member(good_file, bad, "meta.npy", _npy(raw))
    _assert_one_line_error(bad, "format version 99")


def test_pickled_member_is_refused(good_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pickle.snapshot"
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _rewrite_member(good_file, bad, "asn.npy", buf.getvalue())
    _assert_one_line_error(bad, "corrupt snapshot")


def test_wrong_column_dtype(good_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "dtype.snapshot"
    _rewrite_member(good_file, bad, "asn.npy", _npy(np.zeros(5, dtype=np.float64)))
    _assert_one_line_error(bad, "column asn must be uint32")


def test_wrong_column_length(good_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "len.snapshot"
    _rewrite_member(good_file, bad, "flags.npy", _npy(np.zeros(4, dtype=np.uint8)))
    _assert_one_line_error(bad, "column flags")


def test_index_out_of_table(good_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "idx.snapshot"
    _rewrite_member(good_file, bad, "country_idx.npy", _npy(np.full(5, 60000, dtype=np.uint16)))
    _assert_one_line_error(bad, "country_idx out of table")


def test_unsorted_starts(good_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "order.snapshot"
    # the v6 table has two ranges; zeroing the high halves makes both start at ::
    _rewrite_member(good_file, bad, "v6_starts_hi.npy", _npy(np.zeros(2, dtype=np.uint64)))
    _assert_one_line_error(bad, "IPv6 starts are not strictly increasing")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.3",
        "01.2.3.4",
        " 1.2.3.4",
        "1.2.3.4 ",
        "256.0.0.1",
        "fe80::1%eth0",
        "1.2.3.4\x00",
        "x" * 10_000,
        ":::",
        "1::2::3",
    ],
)
def test_malformed_addresses(good_file: Path, text: str) -> None:
    snap = Snapshot.load(good_file)
    with pytest.raises(ClientIPError):
        snap.lookup(text)
    assert snap.locate_many([text]).tolist() == [-1]
    assert snap.facts_at(-1).is_known is False


# ----- source files ------------------------------------------------------------------------


def test_csv_bad_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "country.csv"
    path.write_text(
        "start,end,country\n"  # 1: header, skipped silently
        "1.0.0.0,1.0.0.255,AU\n"  # 2
        "1.0.1.0,1.0.0.0,CN\n"  # 3: start after end
        "1.0.2.0,1.0.2.255,China\n"  # 4: not a code
        "16777984,16778239,CN\n"  # 5: integer form, 1.0.3.0-1.0.3.255
        "\n"  # 6
        "# comment\n"  # 7
        "1.0.4.0,::1,CN\n"  # 8: mixed families
        f"1.0.5.0,1.0.5.255,{'x' * 5000}\n"  # 9: too long
        '"1.0.6.0,1.0.6.255,CN\n'  # 10: unterminated quote -> one field
        "2001:db8::,2001:db8::ffff,de\n"  # 11
        "1.0.7.0\n"  # 12: too few fields
    )
    problems = ProblemLog()
    rows = list(CsvRangeSource(path, name="c", kind="country").ranges(problems))
    assert [(r.version, r.first, r.last, r.country) for r in rows] == [
        (4, 0x01000000, 0x010000FF, "AU"),
        (4, 0x01000300, 0x010003FF, "CN"),
        (6, 0x20010DB8 << 96, (0x20010DB8 << 96) | 0xFFFF, "DE"),
    ]
    numbers = [int(line.split(":")[1]) for line in problems.lines]
    assert numbers == [3, 4, 8, 9, 10, 12]
    assert all(line.startswith("country.csv:") for line in problems.lines)


def test_csv_integer_ipv6_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "asn-ipv6-num.csv"
    path.write_text(f"{1 << 125},{(1 << 125) + 255},AS64500,Example\n0,255,0,AS zero\n")
    rows = list(CsvRangeSource(path, name="a", kind="asn").ranges(ProblemLog()))
    assert [(r.version, r.first, r.asn, r.as_org) for r in rows] == [
        (6, 1 << 125, 64500, "Example"),
        (6, 0, None, None),
    ]
    flags = tmp_path / "flags.csv"
    flags.write_text("1.0.0.0,1.0.0.255,vpn|proxy\n2.0.0.0,2.0.0.255,spaceship\n3.0.0.0,3.0.0.9\n")
    problems = ProblemLog()
    src = CsvRangeSource(flags, name="f", kind="flag", flag=NetworkFlag.RELAY)
    got = [(r.first, r.flags) for r in src.ranges(problems)]
    assert got == [
        (0x01000000, NetworkFlag.VPN | NetworkFlag.PROXY),
        (0x03000000, NetworkFlag.RELAY),
    ]
    assert problems.lines == ["flags.csv:2: unknown flag name in 'spaceship'"]


def test_tor_list_formats(tmp_path: Path) -> None:
    path = tmp_path / "exits.txt"
    path.write_text(
        "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\n"
        "Published 2026-06-01 00:00:00\n"
        "ExitAddress 162.247.74.201 2026-06-01 01:00:00\n"
        "185.220.101.1 # inline comment\n"
        "2001:db8::1\n"
        "185.220.101.1 extra\n"
    )
    problems = ProblemLog()
    rows = list(TorExitListSource(path, name="tor").ranges(problems))
    assert [(r.version, r.first, r.flags) for r in rows] == [
        (4, 0xA2F74AC9, NetworkFlag.TOR),
        (4, 0xB9DC6501, NetworkFlag.TOR),
        (6, (0x20010DB8 << 96) | 1, NetworkFlag.TOR),
    ]
    assert problems.lines == ["exits.txt:6: not an address: '185.220.101.1 extra'"]


def test_cloud_lists(tmp_path: Path) -> None:
    google = tmp_path / "cloud.json"
    google.write_text(
        '{"prefixes": [{"ipv4Prefix": "34.1.208.0/20", "scope": "africa-south1"},'
        ' {"ipv6Prefix": "2600:1900:8000::/44"}, {"ipv4Prefix": 7}]}'
    )
    problems = ProblemLog()
    rows = list(CloudRangesSource(google, name="gcp").ranges(problems))
    assert [(r.version, r.last - r.first + 1) for r in rows] == [(4, 4096), (6, 1 << 84)]
    assert problems.lines == ["cloud.json: $.prefixes[2].ipv4Prefix: not a network: '7'"]
    plain = tmp_path / "ranges.txt"
    plain.write_text("# list\n10.0.0.0/8\n10.1.2.3/16\nbad/99\n::ffff:1.2.3.0/120\n")
    problems = ProblemLog()
    rows = list(CloudRangesSource(plain, name="p").ranges(problems))
    assert [(r.version, r.first, r.last) for r in rows] == [
        (4, 0x0A000000, 0x0AFFFFFF),
        (4, 0x0A010000, 0x0A01FFFF),
        (4, 0x01020300, 0x010203FF),
    ]
    assert problems.lines == ["ranges.txt:4: not a network: 'bad/99'"]
    broken = tmp_path / "broken.json"
    broken.write_text('{"prefixes": [')
    problems = ProblemLog()
    assert list(CloudRangesSource(broken, name="b").ranges(problems)) == []
    assert problems.lines[0].startswith("broken.json:1: not valid JSON")


def test_problem_log_caps_lines_but_counts_all(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("".join(f"bad{i},x,y\n" for i in range(500)) + "1.0.0.0,1.0.0.1,US\n")
    problems = ProblemLog(keep_per_file=10)
    rows = list(CsvRangeSource(path, name="m", kind="country").ranges(problems))
    assert len(rows) == 1
    assert problems.total == 499  # line 1 looks like a header
    assert len(problems.lines) == 11


def test_not_a_maxmind_db(tmp_path: Path) -> None:
    path = tmp_path / "fake.mmdb"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(IntelDataError) as info:
        MmdbSource(path, name="fake")
    assert info.value.path == str(path)


def test_missing_source_file_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text(
        '[[sources]]\nname = "x"\nkind = "csv-country"\npath = "nope.csv"\ndate = "2026-06-01"\n'
    )
    with pytest.raises(IntelDataError, match="source file not found"):
        build_snapshot(load_build_config(tmp_path / "b.toml"))


# ----- build configs -----------------------------------------------------------------------

_SOURCE = '[[sources]]\nname = "a"\nkind = "csv-country"\npath = "a.csv"\ndate = "2026-06-01"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("", "sources"),
        ("[[sources]]\nkind = 'mmdb'\npath = 'x'\ndate = '2026-06-01'\n", "sources[0].name"),
        (_SOURCE.replace("csv-country", "ftp"), "sources[0].kind"),
        (_SOURCE.replace('date = "2026-06-01"', 'date = "June"'), "sources[0].date"),
        (_SOURCE.replace('date = "2026-06-01"', 'date = "2026-02-30"'), "sources[0].date"),
        (_SOURCE + 'fields = ["asn"]\n', "sources[0].fields"),
        (_SOURCE + 'colour = "red"\n', "sources[0].colour"),
        (_SOURCE + 'flag = "spaceship"\n', "sources[0].flag"),
        (_SOURCE + "ip_version = 5\n", "sources[0].ip_version"),
        (_SOURCE + _SOURCE, "sources[1].name"),
        (_SOURCE + '[precedence]\nlocation = ["b"]\n', "precedence.location"),
        (_SOURCE + '[precedence]\nasn = ["a"]\n', "precedence.asn"),
        (_SOURCE + '[precedence]\ncolour = ["a"]\n', "precedence.colour"),
        (_SOURCE + "[build]\nsubdivision_countries = ['Ukraine']\n", "build.subdivision_countries"),
        (_SOURCE + "[build]\nblank_special_purpose = 'yes'\n", "build.blank_special_purpose"),
        (_SOURCE + "[build]\nspeed = 1\n", "build.speed"),
        (_SOURCE + "[extra]\n", "extra"),
    ],
)
def test_bad_build_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "build.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_build_config(path)
    assert info.value.key == key
    assert info.value.path == str(path)


def test_build_config_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "build.toml"
    path.write_text("[[sources]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_build_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_build_config(tmp_path / "missing.toml")
