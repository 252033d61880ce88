"""The packed snapshot container (LZ4 blocks behind a JSON member table).

It holds the same arrays as the ``.npz`` form, so both give the same snapshot and the same
content digest; a truncated, altered or hostile packed file is refused with one line naming
the file, and a header that claims huge members never makes the reader allocate them.
"""

from __future__ import annotations

import io
import json
import struct
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from geogate.errors import IntelDataError
from geogate.intel.container import MAGIC, PackedMembers, open_members, write_packed
from geogate.intel.snapshot import Snapshot

from .test_snapshot_properties import make_snapshot


@pytest.fixture
def snap() -> Snapshot:
    return make_snapshot([0, 0x01000000, 0x02000000, 0x08080800], [0, 1 << 125], [0, 1, 2, 1, 0, 3])


def _members(path: Path) -> dict[str, np.ndarray]:
    with open_members(path.read_bytes()) as members:
        return {name: np.array(members[name]) for name in members.files}


def _header(data: bytes) -> tuple[dict[str, object], int]:
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(data[start : start + length]), start + length


def _with_header(data: bytes, header: dict[str, object]) -> bytes:
    _, payload_at = _header(data)
    raw = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(raw)) + raw + data[payload_at:]


def _refused(path: Path, match: str) -> None:
    with pytest.raises(IntelDataError, match=match) as info:
        Snapshot.load(path)
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)


def test_packed_and_npz_hold_the_same_arrays_and_digest(snap: Snapshot, tmp_path: Path) -> None:
    npz, packed = tmp_path / "a.snapshot", tmp_path / "b.snapshot"
    snap.save(npz)
    snap.save(packed, packed=True)
    assert packed.read_bytes().startswith(MAGIC)
    assert npz.read_bytes().startswith(b"PK")
    a, b = _members(npz), _members(packed)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name]), name
    meta = json.loads(bytes(b["meta"]))
    assert meta["content_sha256"] == json.loads(bytes(a["meta"]))["content_sha256"]
    loaded = Snapshot.load(packed)
    assert loaded.lookup("1.2.3.4").country == Snapshot.load(npz).lookup("1.2.3.4").country
    assert loaded.lookup("8.8.8.8").country == snap.lookup("8.8.8.8").country


def test_the_embedded_default_is_packed() -> None:
    """`geogate check` loads the embedded default on every run: it ships in the fast form."""
    data = (files("geogate.intel") / "data" / "default.snapshot").read_bytes()
    assert data.startswith(MAGIC)
    assert isinstance(open_members(data), PackedMembers)


def test_altered_member_is_refused_by_the_digest(snap: Snapshot, tmp_path: Path) -> None:
    good = tmp_path / "good.snapshot"
    snap.save(good, packed=True)
    arrays = _members(good)
    country = arrays["country_idx"]
    arrays["country_idx"] = np.where(country == 1, 2, np.where(country == 2, 1, country))
    buf = io.BytesIO()
    write_packed(buf, arrays)
    bad = tmp_path / "swapped.snapshot"
    bad.write_bytes(buf.getvalue())
    _refused(bad, "does not match its digest")


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7, 0.99])
def test_truncated_packed_file(snap: Snapshot, tmp_path: Path, fraction: float) -> None:
    good = tmp_path / "good.snapshot"
    snap.save(good, packed=True)
    data = good.read_bytes()
    bad = tmp_path / "cut.snapshot"
    bad.write_bytes(data[: max(len(MAGIC), int(len(data) * fraction))])
    _refused(bad, "corrupt snapshot|not a geogate snapshot")


def test_flipped_bytes_are_one_line_errors(snap: Snapshot, tmp_path: Path) -> None:
    good = tmp_path / "good.snapshot"
    snap.save(good, packed=True)
    data = good.read_bytes()
    rng = np.random.default_rng(7)
    bad = tmp_path / "flipped.snapshot"
    refused = 0
    for _ in range(60):
        copy = bytearray(data)
        for pos in rng.integers(len(MAGIC), len(copy), 3):
            copy[int(pos)] ^= 0x5A
        bad.write_bytes(bytes(copy))
        error: IntelDataError | None = None
        try:
            Snapshot.load(bad)
        except IntelDataError as exc:
            error = exc
        if error is not None:
            assert error.path == str(bad)
            assert "\n" not in str(error)
            refused += 1
    # Only a flip in the zero padding between members (at most 7 bytes each) leaves the
    # content intact; anything else is caught by the header checks or the digest.
    assert refused >= 50


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"container": 2}, "unknown container version"),
        ({"members": "x"}, "no member list"),
        ({"member": {"dtype": "<f8"}}, "bad name, dtype or codec"),
        ({"member": {"dtype": "|O"}}, "bad name, dtype or codec"),
        ({"member": {"codec": "zip"}}, "bad name, dtype or codec"),
        ({"member": {"shape": [2, 2]}}, "bad shape"),
        ({"member": {"shape": [-1]}}, "bad shape"),
        ({"member": {"offset": True}}, "bad shape"),
        ({"member": {"offset": 1 << 40}}, "runs past the end"),
        # A claimed size far beyond what LZ4 can expand the payload to: refused before
        # anything is allocated.
        ({"member": {"shape": [1 << 40]}}, "size does not match"),
    ],
)
def test_hostile_header(
    snap: Snapshot, tmp_path: Path, change: dict[str, object], match: str
) -> None:
    good = tmp_path / "good.snapshot"
    snap.save(good, packed=True)
    data = good.read_bytes()
    header, _ = _header(data)
    member_change = change.pop("member", None)
    header.update(change)
    if isinstance(member_change, dict):
        members = header["members"]
        assert isinstance(members, list)
        target = next(m for m in members if m["name"] == "asn")
        target.update(member_change)
    bad = tmp_path / "hostile.snapshot"
    bad.write_bytes(_with_header(data, header))
    _refused(bad, match)


def test_duplicate_member_is_refused(snap: Snapshot, tmp_path: Path) -> None:
    good = tmp_path / "good.snapshot"
    snap.save(good, packed=True)
    data = good.read_bytes()
    header, _ = _header(data)
    members = header["members"]
    assert isinstance(members, list)
    members.append(dict(members[0]))
    bad = tmp_path / "dup.snapshot"
    bad.write_bytes(_with_header(data, header))
    _refused(bad, "appears twice")


def test_header_longer_than_the_file(snap: Snapshot, tmp_path: Path) -> None:
    bad = tmp_path / "long.snapshot"
    bad.write_bytes(MAGIC + struct.pack("<I", 1 << 30) + b"{}")
    _refused(bad, "does not fit the file")


def test_writer_refuses_what_the_reader_would() -> None:
    with pytest.raises(ValueError, match="1-D unsigned"):
        write_packed(io.BytesIO(), {"x": np.zeros(3, dtype=np.float64)})


@pytest.mark.parametrize(
    "content",
    [
        b"\xab\xcd\xefMaxMind.com" * 4,  # a vendor .mmdb given as --snapshot
        b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }",
        b"hello\n",
        b"",
    ],
)
def test_a_file_that_is_no_snapshot_says_so(tmp_path: Path, content: bytes) -> None:
    """Before, a plain .npy said "'numpy.ndarray' object does not support the context manager
    protocol" and text numpy's advice on loading pickles."""
    path = tmp_path / "x.snapshot"
    path.write_bytes(content)
    with pytest.raises(IntelDataError) as info:
        Snapshot.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert "not a geogate snapshot" in message, message
