"""The packed snapshot container: arrays as LZ4 blocks behind a JSON member table.

A snapshot is a set of named one-dimensional arrays (see docs/snapshot-format.md). The
original container is numpy's ``.npz`` (a zip of deflated ``.npy`` members); inflating it
took about 100 ms of the embedded snapshot's 220 ms load, which every ``geogate check``
paid. The packed container stores the same arrays, byte for byte, as LZ4 blocks, which
decompress at memory speed (about 20 ms for the embedded default's 39 MB), so the content
digest check on load (SHA-256 over the arrays, unchanged) is the largest remaining cost.

Layout::

    8 bytes   magic  b"\\x89GGSNAP\\n"
    4 bytes   header length H, little-endian unsigned
    H bytes   UTF-8 JSON: {"container": 1, "members": [{"name", "dtype", "shape",
              "codec", "offset", "size"}, ...]}
    ...       member payloads; ``offset`` counts from the first byte after the header

``dtype`` is a numpy type string (``"<u4"``, only unsigned integers), ``shape`` a
one-element list, ``codec`` ``"lz4"`` (an LZ4 block, its decompressed size given by dtype
and shape) or ``"raw"``. The writer pads the header and each member to 8 bytes, so raw
members can be used in place. The reader checks every number against the file before it
allocates anything, so a hostile or truncated file is an error, never a large allocation.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import IO, Any, Final

import lz4.block
import numpy as np
import numpy.typing as npt

MAGIC: Final = b"\x89GGSNAP\n"
"""First bytes of a packed snapshot (a zip-based ``.npz`` starts with ``PK``)."""

CONTAINER_VERSION: Final = 1
_HEADER_LEN: Final = struct.Struct("<I")
_MAX_HEADER_BYTES: Final = 1 << 20
_DTYPES: Final = frozenset({"|u1", "<u2", "<u4", "<u8"})
_LZ4_MAX_RATIO: Final = 255  # an LZ4 block never expands by more than this
_ALIGN: Final = 8


class PackedMembers:
    """The arrays of a packed container, read on demand (the ``NpzFile`` interface the
    snapshot loader uses: ``files``, ``[name]`` and use as a context manager).

    Raises ``ValueError`` with a one-line message for anything malformed.
    """

    __slots__ = ("_data", "_entries", "_payload", "files")

    def __init__(self, data: bytes) -> None:
        view = memoryview(data)
        start = len(MAGIC) + _HEADER_LEN.size
        if len(data) < start or not data.startswith(MAGIC):
            raise ValueError("not a packed snapshot")
        (header_len,) = _HEADER_LEN.unpack_from(data, len(MAGIC))
        if header_len > min(_MAX_HEADER_BYTES, len(data) - start):
            raise ValueError(f"packed header of {header_len} bytes does not fit the file")
        try:
            header = json.loads(bytes(view[start : start + header_len]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"packed header is not JSON: {exc}") from None
        if not isinstance(header, dict) or header.get("container") != CONTAINER_VERSION:
            raise ValueError("packed header of an unknown container version")
        self._data = data
        self._payload = view[start + header_len :]
        self._entries: dict[str, tuple[np.dtype[Any], int, str, int, int]] = {}
        members = header.get("members")
        if not isinstance(members, list):
            raise ValueError("packed header has no member list")
        for entry in members:
            name, parsed = self._parse_entry(entry, len(self._payload))
            if name in self._entries:
                raise ValueError(f"member {name!r} appears twice")
            self._entries[name] = parsed
        self.files = list(self._entries)

    @staticmethod
    def _parse_entry(
        entry: object, payload_len: int
    ) -> tuple[str, tuple[np.dtype[Any], int, str, int, int]]:
        if not isinstance(entry, dict):
            raise ValueError("packed member entry is not an object")
        name = entry.get("name")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        codec = entry.get("codec")
        offset = entry.get("offset")
        size = entry.get("size")
        if not isinstance(name, str) or dtype not in _DTYPES or codec not in ("lz4", "raw"):
            raise ValueError(f"packed member {name!r}: bad name, dtype or codec")
        count = _count(shape[0] if isinstance(shape, list) and len(shape) == 1 else None, name)
        offset = _count(offset, name)
        size = _count(size, name)
        dt = np.dtype(dtype)
        nbytes = count * dt.itemsize
        if offset + size > payload_len:
            raise ValueError(f"packed member {name!r} runs past the end of the file")
        if (codec == "raw" and size != nbytes) or (
            codec == "lz4" and nbytes > size * _LZ4_MAX_RATIO
        ):
            raise ValueError(f"packed member {name!r}: size does not match its shape")
        return name, (dt, count, codec, offset, size)

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        """The array ``name`` (read-only, sharing memory with the file's bytes when raw)."""
        dt, count, codec, offset, size = self._entries[name]
        payload = self._payload[offset : offset + size]
        if codec == "raw":
            array = np.frombuffer(payload, dtype=dt, count=count)
            # numpy exports an unaligned array's buffer as "=H", which memoryview indexing
            # (the cold lookup path) cannot read: copy the rare unaligned member.
            return array if array.flags.aligned else array.copy()
        nbytes = count * dt.itemsize
        if nbytes == 0:
            return np.empty(0, dtype=dt)
        try:
            raw = lz4.block.decompress(payload, uncompressed_size=nbytes)
        except lz4.block.LZ4BlockError as exc:
            raise ValueError(f"packed member {name!r} does not decompress") from exc
        if len(raw) != nbytes:
            raise ValueError(f"packed member {name!r} decompresses to the wrong size")
        return np.frombuffer(raw, dtype=dt, count=count)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __enter__(self) -> PackedMembers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def _count(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"packed member {name!r}: bad shape, offset or size")


def open_members(data: bytes) -> Any:
    """The members of a snapshot file's bytes: a :class:`PackedMembers` for the packed
    container, else numpy's ``NpzFile`` (``allow_pickle=False``). Both are context managers
    with ``files`` and ``[name]``; malformed input raises ``ValueError`` or a zip error."""
    if data.startswith(MAGIC):
        return PackedMembers(data)
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip archive (.npz) or nothing
        raise ValueError(
            "not a geogate snapshot (neither a packed container nor an .npz archive); "
            "build one with `geogate data build`"
        )
    return np.load(io.BytesIO(data), allow_pickle=False)


def write_packed(fh: IO[bytes], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """Write ``arrays`` (one-dimensional, unsigned integers) to ``fh`` as a packed container,
    each member an LZ4 block (high compression) unless storing it raw is smaller."""
    members: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    offset = 0
    for name, array in arrays.items():
        a = np.ascontiguousarray(array)
        if a.ndim != 1 or a.dtype.str not in _DTYPES:
            raise ValueError(f"member {name!r}: want a 1-D unsigned array, got {a.dtype} {a.shape}")
        raw = a.tobytes()
        packed = lz4.block.compress(raw, mode="high_compression", compression=12, store_size=False)
        codec, body = ("lz4", packed) if len(packed) < len(raw) else ("raw", raw)
        members.append(
            {
                "name": name,
                "dtype": a.dtype.str,
                "shape": [int(a.shape[0])],
                "codec": codec,
                "offset": offset,
                "size": len(body),
            }
        )
        pad = -len(body) % _ALIGN  # every member starts on an 8-byte boundary
        payloads.append(body + bytes(pad))
        offset += len(body) + pad
    header = json.dumps({"container": CONTAINER_VERSION, "members": members}).encode()
    header += b" " * (-(len(MAGIC) + _HEADER_LEN.size + len(header)) % _ALIGN)
    fh.write(MAGIC)
    fh.write(_HEADER_LEN.pack(len(header)))
    fh.write(header)
    for body in payloads:
        fh.write(body)
