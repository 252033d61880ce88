"""Refuse, never half-load: broken vendor files and altered snapshots fail with one line.

Before, a MaxMind DB with a bad record built into an empty snapshot with exit 0, a good file
with 2 KB overwritten kept 12 of 239 networks, and a snapshot re-saved with two country
indices swapped loaded and answered wrongly.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from geogate.errors import IntelDataError
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources.mmdb_verify import verify_mmdb

from .conftest import write_mmdb


def _many_networks(n: int = 239) -> dict[str, object]:
    countries = ["CN", "RU", "US", "UA", "DE", "FR", "JP"]
    return {
        "database_type": "GeoIP2-Country",
        "ip_version": 6,
        "networks": [
            [f"{10 + i // 200}.{i % 200}.0.0/16", {"country": {"iso_code": countries[i % 7]}}]
            for i in range(n)
        ],
    }


def _build(tmp_path: Path, mmdb: Path) -> Snapshot:
    (tmp_path / "build.toml").write_text(
        f'[[sources]]\nname = "v"\nkind = "mmdb"\npath = "{mmdb.name}"\ndate = "2026-06-01"\n'
        "[build]\nblank_special_purpose = false\n"
    )
    return build_snapshot(load_build_config(tmp_path / "build.toml"))


def _one_line(exc: pytest.ExceptionInfo[IntelDataError], path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert exc.value.path == str(path)
    return message


def test_good_file_passes_and_builds_whole(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "good.mmdb", _many_networks())
    check = verify_mmdb(path)
    assert check.node_count > 239
    snap = _build(tmp_path, path)
    assert snap.lookup("10.5.1.1").country == "FR"
    assert snap.lookup("11.38.1.1").country == "CN"  # network 238, the last one


def test_bad_double_in_a_record_fails_naming_the_offset(tmp_path: Path) -> None:
    spec = {
        "database_type": "GeoIP2-City",
        "ip_version": 6,
        "networks": [
            ["1.0.0.0/8", {"country": {"iso_code": "CN"}, "location": {"latitude": 1.5}}],
            ["2.0.0.0/8", {"country": {"iso_code": "RU"}}],
        ],
    }
    path = write_mmdb(tmp_path / "double.mmdb", spec)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x68" + struct.pack(">d", 1.5))  # control byte: double, size 8
    assert at > 0
    data[at] = 0x62  # a double of size 2, as in MaxMind's Broken-Double-Format test file
    path.write_bytes(bytes(data))
    with pytest.raises(IntelDataError) as info:
        _build(tmp_path, path)
    message = _one_line(info, path)
    assert "does not decode" in message
    assert "offset" in message


@pytest.mark.parametrize("seed", range(6))
def test_two_kilobytes_overwritten_fail(tmp_path: Path, seed: int) -> None:
    path = write_mmdb(tmp_path / "over.mmdb", _many_networks())
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, verify_mmdb(path).tree_bytes - 2048))
    data[start : start + 2048] = rng.bytes(2048)
    path.write_bytes(bytes(data))
    with pytest.raises(IntelDataError) as info:
        _build(tmp_path, path)
    assert "offset" in _one_line(info, path)


def test_zeroed_tree_fails(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "zero.mmdb", _many_networks())
    data = bytearray(path.read_bytes())
    tree = verify_mmdb(path).tree_bytes
    data[tree // 4 : tree // 2] = bytes(tree // 2 - tree // 4)
    path.write_bytes(bytes(data))
    with pytest.raises(IntelDataError, match=r"unreachable|offset"):
        verify_mmdb(path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_fails(tmp_path: Path, keep: float) -> None:
    path = write_mmdb(tmp_path / "cut.mmdb", _many_networks())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(IntelDataError) as info:
        _build(tmp_path, path)
    _one_line(info, path)


def test_not_a_maxmind_db(tmp_path: Path) -> None:
    path = tmp_path / "text.mmdb"
    path.write_text("1.0.0.0,1.0.0.255,CN\n")
    with pytest.raises(IntelDataError) as info:
        _build(tmp_path, path)
    _one_line(info, path)


def _rewrite(src: Path, dst: Path, member: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            payload = buf.getvalue() if item.filename == member else zin.read(item.filename)
            zout.writestr(item.filename, payload)


def test_snapshot_with_swapped_country_indices_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.snapshot"
    _build(tmp_path, write_mmdb(tmp_path / "g.mmdb", _many_networks())).save(good)
    with zipfile.ZipFile(good) as z:
        country = np.load(io.BytesIO(z.read("country_idx.npy")))
    codes = Snapshot.load(good).country_codes
    a, b = codes.index("CN"), codes.index("RU")
    swapped = country.copy()
    swapped[country == a], swapped[country == b] = b, a
    bad = tmp_path / "swapped.snapshot"
    _rewrite(good, bad, "country_idx.npy", swapped)
    with pytest.raises(IntelDataError, match="does not match its digest") as info:
        Snapshot.load(bad)
    _one_line(info, bad)


def test_snapshot_with_edited_metadata_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.snapshot"
    _build(tmp_path, write_mmdb(tmp_path / "g.mmdb", _many_networks())).save(good)
    with zipfile.ZipFile(good) as z:
        meta = json.loads(np.load(io.BytesIO(z.read("meta.npy"))).tobytes())
    meta["country_codes"] = sorted(meta["country_codes"], key=lambda c: c != "", reverse=False)
    meta["sources"][0]["date"] = "2030-01-01"
    bad = tmp_path / "meta.snapshot"
    _rewrite(good, bad, "meta.npy", np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(IntelDataError, match="digest"):
        Snapshot.load(bad)
