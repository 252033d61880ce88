"""Damage to the data section of a MaxMind DB is refused, never half-read or crashed on.

The search tree check alone let through: 2 KB of zeroed data (each record there decodes as
an empty map, so its networks silently vanished: 94 of 239 in MaxMind's GeoIP2-City-Test),
a record whose type byte flipped into another type (a country became bytes), a tree pointer
moved into the middle of a record, and a map key flipped into a number, on which the C reader
of maxminddb 3.2 crashes the whole process (SIGSEGV) instead of raising.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from maxminddb.decoder import Decoder

from geogate.errors import IntelDataError
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources.mmdb_verify import verify_data_section, verify_mmdb

from .conftest import write_mmdb

CITIES = [("CN", "BJ", "Beijing"), ("RU", "MOW", "Moscow"), ("UA", "23", "Zaporizhzhia")]


def _city_spec(n: int = 120) -> dict[str, object]:
    networks = []
    for i in range(n):
        country, sub, city = CITIES[i % 3]
        record = {
            "city": {"geoname_id": 1000 + i, "names": {"en": f"{city} {i}", "de": f"{city}-{i}"}},
            "country": {"geoname_id": 5000 + i, "iso_code": country, "names": {"en": country}},
            "location": {"latitude": 1.5 + i, "longitude": 2.5 + i, "time_zone": "UTC"},
            "subdivisions": [{"iso_code": sub, "names": {"en": f"{sub} region"}}],
        }
        networks.append([f"{20 + i // 100}.{i % 100}.0.0/16", record])
    return {"database_type": "GeoIP2-City", "ip_version": 6, "networks": networks}


def _build(tmp_path: Path, mmdb: Path) -> Snapshot:
    (tmp_path / "build.toml").write_text(
        f'[[sources]]\nname = "v"\nkind = "mmdb"\npath = "{mmdb.name}"\ndate = "2026-06-01"\n'
    )
    return build_snapshot(load_build_config(tmp_path / "build.toml"))


def _follow(data: bytearray, at: int, start: int) -> int:
    """The offset of the value at ``at``, through a pointer (MaxMind DB spec, "Pointer")."""
    ctrl = data[at]
    if ctrl >> 5 != 1:
        return at
    size = ctrl & 0x1F
    width = (size >> 3) + 1
    raw = int.from_bytes(data[at + 1 : at + 1 + width], "big")
    base = {1: 0, 2: 2048, 3: 526336, 4: 0}[width]
    high = (size & 0x7) << (8 * width) if width < 4 else 0
    return start + (high | raw) + base


def _refused(tmp_path: Path, path: Path) -> str:
    with pytest.raises(IntelDataError) as info:
        _build(tmp_path, path)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.path == str(path)
    assert "offset" in message
    return message


def _damaged(tmp_path: Path) -> tuple[Path, bytearray, int]:
    """A good city DB, its bytes, and the file offset where its data section starts."""
    path = write_mmdb(tmp_path / "city.mmdb", _city_spec())
    check = verify_mmdb(path)
    verify_data_section(path, check)  # the undamaged file passes
    return path, bytearray(path.read_bytes()), check.tree_bytes + 16


def test_zeroed_data_is_refused(tmp_path: Path) -> None:
    path, data, start = _damaged(tmp_path)
    data[start + 1000 : start + 3048] = bytes(2048)
    path.write_bytes(bytes(data))
    _refused(tmp_path, path)


@pytest.mark.parametrize("seed", range(4))
def test_data_overwritten_with_noise_is_refused(tmp_path: Path, seed: int) -> None:
    path, data, start = _damaged(tmp_path)
    rng = np.random.default_rng(seed)
    at = start + int(rng.integers(0, len(data) - start - 4096))
    data[at : at + 2048] = rng.bytes(2048)
    path.write_bytes(bytes(data))
    _refused(tmp_path, path)


def test_map_key_turned_into_a_number_is_refused_not_crashed_on(tmp_path: Path) -> None:
    path, data, start = _damaged(tmp_path)
    at = data.index(b"\x48location", start)  # control byte: UTF-8 string of 8 bytes
    data[at] ^= 0x80  # -> an unsigned integer: the C reader segfaulted here
    path.write_bytes(bytes(data))
    _refused(tmp_path, path)


def test_country_turned_into_bytes_is_refused(tmp_path: Path) -> None:
    path, data, start = _damaged(tmp_path)
    check = verify_mmdb(path)
    decoder = Decoder(bytes(data), pointer_base=start)
    record = start + int(check.data_offsets[0])
    assert data[record] >> 5 == 7  # a map: its keys and values follow the control byte
    at = record + 1
    while True:
        key, at = decoder.decode(at)
        if key == "country":
            break
        at = decoder.decode(at)[1]
    value = _follow(data, at, start)
    assert data[value] >> 5 == 7  # the country map
    data[value] = (4 << 5) | (data[value] & 0x1F)  # -> bytes of the same size
    path.write_bytes(bytes(data))
    _refused(tmp_path, path)


def test_tree_pointer_into_the_middle_of_a_record_is_refused(tmp_path: Path) -> None:
    path, data, _ = _damaged(tmp_path)
    check = verify_mmdb(path)
    node_bytes = check.record_size // 4
    target = int(check.data_offsets[-1]) + check.node_count + 16
    needle = target.to_bytes(node_bytes // 2, "big")
    tree = bytes(data[: check.tree_bytes])
    at = next(
        i for i in range(0, len(tree), node_bytes // 2) if tree[i : i + node_bytes // 2] == needle
    )
    data[at : at + node_bytes // 2] = (target + 1).to_bytes(node_bytes // 2, "big")
    path.write_bytes(bytes(data))
    assert "do not start a data value" in _refused(tmp_path, path)


def test_single_bit_flips_never_crash(tmp_path: Path) -> None:
    """Each flip is refused in one line or builds; the process never dies or raises
    anything else (flips inside a string or a number cannot be told from data)."""
    path, clean, start = _damaged(tmp_path)
    rng = np.random.default_rng(20261129)
    messages: list[str] = []
    for at in rng.integers(start, len(clean) - 200, size=60):
        data = bytearray(clean)
        data[int(at)] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(data))
        try:
            _build(tmp_path, path)
        except IntelDataError as exc:
            messages.append(str(exc))
    assert all("\n" not in m for m in messages)
    assert len(messages) >= 20
