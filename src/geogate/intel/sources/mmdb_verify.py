"""Check a MaxMind DB file whole before a build takes anything from it.

A damaged ``.mmdb`` does not always fail loudly: a reader walking a search tree whose nodes
were overwritten simply meets fewer networks (a 2 KB overwrite kept 12 of 239), and a corrupt
data record stops the walk part way. :func:`verify_mmdb` therefore checks the file the way
``mmdbverify`` does, with numpy so that a 100 MB file takes well under a second:

- the metadata section is found and gives a sane node count, record size and IP version;
- the search tree fits in the file and is followed by the 16 zero bytes that separate it
  from the data section;
- every record of every node is a node number, the "empty" marker or a pointer into the data
  section (never the 16 reserved values after the node count, never past the data section);
- every node is reachable from the root and no path is deeper than the address width
  (overwritten pointers orphan nodes or loop).

:func:`verify_data_section` then walks the data section value after value, as
``mmdbverify`` does, with the pure-Python decoder (a corrupt record can crash the C reader):
every value decodes, every map key is text, the walk ends exactly at the metadata, and every
offset the tree points at is the start of a value. Overwritten or zeroed data bytes decode
as values that the tree's pointers no longer start at, or not at all. Unlike ``mmdbverify``
it does not require every value to be pointed at: some writers store shared values there.
A record that fails to decode in the build's walk is located by :func:`first_bad_record`.
"""

from __future__ import annotations

import array
import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import maxminddb
import numpy as np
import numpy.typing as npt
from maxminddb.decoder import Decoder

from geogate.errors import IntelDataError

METADATA_MARKER: Final = b"\xab\xcd\xefMaxMind.com"
_SEPARATOR: Final = 16  # zero bytes between the search tree and the data section
_MAX_DECODE_SCAN: Final = 2_000_000  # records decoded one by one to find a bad one
# What the pure-Python decoder raises on bad bytes (its own error, or Python's on nonsense).
_DECODE_ERRORS: Final = (
    maxminddb.InvalidDatabaseError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
    struct.error,
)
# Keys the build reads whose value is always a map (a flipped type byte turns one into bytes
# or a number); keys it does not read are left to the vendor.
_MAP_KEYS: Final = frozenset({"names", "registered_country", "traits"})
# Keys that are a map in GeoIP2 and text in the flat layouts (IPinfo, ip-location-db).
_TEXT_OR_MAP_KEYS: Final = frozenset({"city", "country", "iso_code", "country_code"})


@dataclass(frozen=True, slots=True, kw_only=True)
class MmdbCheck:
    """What :func:`verify_mmdb` found in a file that passed.

    ``data_offsets`` are the distinct data-section offsets the tree points at, sorted.
    ``ipv4_depth`` is how deep the all-zero path of an IPv6 tree goes before it ends in a
    record: 96 when the file has an IPv4 subtree at ``::/96``, as writers usually make it
    (32 for an IPv4 tree).
    """

    node_count: int
    record_size: int
    ip_version: int
    tree_bytes: int
    data_bytes: int
    data_offsets: npt.NDArray[np.int64]
    ipv4_depth: int


def _records(
    tree: npt.NDArray[np.uint8], node_count: int, record_size: int
) -> npt.NDArray[np.uint32]:
    """Left and right record of every node, shape (node_count, 2), as uint32 (a 32-bit
    record is at most 2**32 - 1; uint32 keeps an 8-million-node tree at 64 MB)."""
    b = tree.reshape(node_count, record_size // 4)
    out = np.empty((node_count, 2), dtype=np.uint32)
    width = record_size // 8  # whole bytes per record (3 or 4; 28-bit shares a nibble byte)
    for side in (0, 1):
        first = 4 if (record_size == 28 and side) else side * width
        rec = out[:, side]
        rec[:] = b[:, first]
        for k in range(1, 4 if record_size == 32 else 3):
            rec <<= 8
            rec |= b[:, first + k]
    if record_size == 28:
        middle = b[:, 3].astype(np.uint32)
        out[:, 0] |= (middle & 0xF0) << 20
        out[:, 1] |= (middle & 0x0F) << 24
    return out


def verify_mmdb(path: str | Path) -> MmdbCheck:
    """Check the structure of the MaxMind DB at ``path`` (see the module doc).

    Raises ``IntelDataError(path=...)`` with a one-line message naming the first bad byte
    offset; returns an :class:`MmdbCheck` otherwise.
    """
    p = Path(path)
    where = str(p)

    def bad(message: str) -> IntelDataError:
        return IntelDataError(f"corrupt MaxMind DB: {message}", path=where)

    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IntelDataError(f"cannot read: {exc.strerror or exc}", path=where) from exc
    marker = data.rfind(METADATA_MARKER)
    if marker < 0:
        raise bad("no metadata section (not a MaxMind DB, or truncated)")
    try:
        with maxminddb.open_database(where, mode=maxminddb.MODE_MEMORY) as reader:
            meta = reader.metadata()
            node_count = int(meta.node_count)
            record_size = int(meta.record_size)
            ip_version = int(meta.ip_version)
    except (OSError, ValueError, TypeError, maxminddb.InvalidDatabaseError) as exc:
        raise bad(f"unreadable metadata at offset {marker}: {exc}") from exc
    if record_size not in (24, 28, 32) or ip_version not in (4, 6) or node_count <= 0:
        raise bad(
            f"metadata at offset {marker} gives record_size {record_size}, "
            f"ip_version {ip_version}, node_count {node_count}"
        )
    node_bytes = record_size // 4
    tree_bytes = node_count * node_bytes
    data_start = tree_bytes + _SEPARATOR
    if data_start > marker:
        raise bad(
            f"search tree of {node_count} nodes ({tree_bytes} bytes) runs past the metadata "
            f"at offset {marker}"
        )
    separator = np.frombuffer(data, dtype=np.uint8, count=_SEPARATOR, offset=tree_bytes)
    if separator.any():
        first = tree_bytes + int(np.flatnonzero(separator)[0])
        raise bad(f"data section separator is not zero at offset {first}")
    data_bytes = marker - data_start
    tree = np.frombuffer(data, dtype=np.uint8, count=tree_bytes)
    records = _records(tree, node_count, record_size)

    # Bounds clipped to the uint32 range of the records (a value past it cannot occur).
    top = (1 << 32) - 1
    reserved = (records > node_count) & (records < min(node_count + _SEPARATOR, top))
    broken = reserved
    if node_count + _SEPARATOR + data_bytes <= top:
        broken = reserved | (records >= node_count + _SEPARATOR + data_bytes)
    if broken.any():
        node, side = (int(x) for x in np.argwhere(broken)[0])
        offset = node * node_bytes + (node_bytes // 2 if side else 0)
        value = int(records[node, side])
        raise bad(
            f"search tree node {node} points to {value}, outside the tree and the data section "
            f"(offset {offset})"
        )

    seen = np.zeros(node_count, dtype=np.bool_)
    seen[0] = True
    frontier = np.zeros(1, dtype=np.uint32)
    depth = 0
    width = 128 if ip_version == 6 else 32
    while len(frontier):
        depth += 1
        children = records[frontier].ravel()
        nodes = children[children < node_count]
        fresh = nodes[~seen[nodes]]  # duplicates only through aliases (::ffff:0:0/96 ...)
        if len(fresh) and depth >= width:
            offset = int(fresh[0]) * node_bytes
            raise bad(
                f"search tree deeper than {width} bits at node {int(fresh[0])} (offset {offset})"
            )
        seen[fresh] = True
        frontier = fresh
    if not seen.all():
        orphan = int(np.flatnonzero(~seen)[0])
        raise bad(
            f"{int((~seen).sum())} of {node_count} search tree nodes are unreachable, "
            f"first node {orphan} (offset {orphan * node_bytes}): overwritten pointers"
        )
    ipv4_depth = 32 if ip_version == 4 else 96
    if ip_version == 6:
        node = 0
        for depth in range(1, 97):
            node = int(records[node, 0])
            if node >= node_count:
                ipv4_depth = depth
                break
    pointers = records[records >= node_count + _SEPARATOR].astype(np.int64)
    offsets = np.unique(pointers - node_count - _SEPARATOR)
    return MmdbCheck(
        node_count=node_count,
        record_size=record_size,
        ip_version=ip_version,
        tree_bytes=tree_bytes,
        data_bytes=data_bytes,
        data_offsets=offsets,
        ipv4_depth=ipv4_depth,
    )


def first_bad_record(path: str | Path, offsets: Iterable[int], *, tree_bytes: int) -> int | None:
    """The file offset of the first data record (of ``offsets``, data-section offsets) that
    does not decode, or None when they all do (only the first two million are tried)."""
    data = Path(path).read_bytes()
    decoder = Decoder(data, pointer_base=tree_bytes + _SEPARATOR)
    for i, off in enumerate(offsets):
        if i >= _MAX_DECODE_SCAN:
            return None
        try:
            decoder.decode(tree_bytes + _SEPARATOR + int(off))
        except _DECODE_ERRORS:
            return tree_bytes + _SEPARATOR + int(off)
    return None


def _bad_value(value: object, depth: int = 0) -> str | None:
    """Why a decoded value cannot be a MaxMind DB record, or None: a map key that is not text
    (the format allows only UTF-8 keys) or a GeoIP2 map key holding something else."""
    if depth > 64:
        return "nesting deeper than 64 levels"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a map key is {type(key).__name__}, not text"
            if key in _MAP_KEYS and not isinstance(item, dict):
                return f"{key!r} is {type(item).__name__}, not a map"
            if key in _TEXT_OR_MAP_KEYS and not isinstance(item, str | dict):
                return f"{key!r} is {type(item).__name__}, not text or a map"
            if key == "subdivisions" and not isinstance(item, list | str):
                return f"'subdivisions' is {type(item).__name__}, not an array"
            why = _bad_value(item, depth + 1)
            if why is not None:
                return why
    elif isinstance(value, list):
        for item in value:
            why = _bad_value(item, depth + 1)
            if why is not None:
                return why
    return None


def verify_data_section(path: str | Path, check: MmdbCheck) -> None:
    """Walk the data section of the file ``check`` describes value after value (see the
    module doc); raises ``IntelDataError(path=...)`` naming the first bad byte offset.

    Takes about 20 s per million values (the pure-Python decoder: a corrupt record can crash
    the C reader, so nothing reaches it unchecked)."""
    p = Path(path)
    where = str(p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IntelDataError(f"cannot read: {exc.strerror or exc}", path=where) from exc
    base = check.tree_bytes + _SEPARATOR
    decoder = Decoder(data, pointer_base=base)
    end = check.data_bytes
    starts = array.array("q")  # 8 bytes a value: millions of values stay small
    offset = 0
    while offset < end:
        try:
            value, after = decoder.decode(base + offset)
        except _DECODE_ERRORS as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise IntelDataError(
                f"corrupt MaxMind DB: the data value at offset {base + offset} does not "
                f"decode: {detail}",
                path=where,
            ) from exc
        why = _bad_value(value)
        if why is not None:
            raise IntelDataError(
                f"corrupt MaxMind DB: the data value at offset {base + offset}: {why}",
                path=where,
            )
        after -= base
        if after <= offset or after > end:
            raise IntelDataError(
                f"corrupt MaxMind DB: the data value at offset {base + offset} runs "
                f"{'past the metadata' if after > end else 'backwards'}",
                path=where,
            )
        starts.append(offset)
        offset = after
    found = np.frombuffer(starts, dtype=np.int64) if starts else np.zeros(0, np.int64)
    misplaced = check.data_offsets[~np.isin(check.data_offsets, found)]
    if len(misplaced):
        first = int(misplaced[0]) + base
        raise IntelDataError(
            f"corrupt MaxMind DB: {len(misplaced)} search tree pointers do not start a data "
            f"value, first to offset {first}: overwritten data",
            path=where,
        )


def walk_networks(
    path: str | Path, check: MmdbCheck
) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every network of the search tree that points at data, in address order, for a file the
    reader's own iterator cannot walk: an IPv6 tree whose all-zero path ends in a record above
    ``::/96`` (no IPv4 subtree; MaxMind's ``MaxMind-DB-no-ipv4-search-tree`` test database).
    Such a record covers every IPv4 address (looked up as ``::a.b.c.d``), so it is given as
    ``0.0.0.0/0`` and as its IPv6 network; networks under ``::/96`` are IPv4 ones, as the
    reader gives them. Call after :func:`verify_mmdb` (no loops, no deeper than 128 bits)."""
    data = Path(path).read_bytes()
    tree = np.frombuffer(data, dtype=np.uint8, count=check.tree_bytes)
    records = _records(tree, check.node_count, check.record_size)
    width = 128 if check.ip_version == 6 else 32
    stack: list[tuple[int, int, int]] = [(0, 0, 0)]  # node, prefix bits, depth
    while stack:
        node, bits, depth = stack.pop()
        if node < check.node_count:
            left, right = (int(x) for x in records[node])
            stack.append((right, bits << 1 | 1, depth + 1))
            stack.append((left, bits << 1, depth + 1))
            continue
        if node == check.node_count:
            continue  # empty
        first = bits << (width - depth)
        if width == 32:
            yield ipaddress.IPv4Network((first, depth))
        elif first == 0 and depth < 96:
            yield ipaddress.IPv4Network((0, 0))
            yield ipaddress.IPv6Network((0, depth))
        elif first <= 0xFFFFFFFF and depth >= 96:
            yield ipaddress.IPv4Network((first, depth - 96))
        else:
            yield ipaddress.IPv6Network((first, depth))
