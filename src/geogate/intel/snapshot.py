"""The compiled IP intelligence snapshot: one immutable range table over IPv4 and IPv6.

A snapshot splits each address family into contiguous ranges that cover the whole space
(a gap in the data is a range whose values are all unknown). Range *keys* number the ranges:
``0 .. n4-1`` for IPv4 and ``n4 .. n4+n6-1`` for IPv6. Every column (``country_idx``,
``asn`` ...) is a numpy array indexed by key, so a batch scan can gather columns for millions
of addresses at once, and ``facts_at(key)`` turns one key into :class:`IntelFacts`.

Hot-path cost (measured, see docs/snapshot-format.md): ``locate`` parses with
``socket.inet_pton`` and searches a 65,536-entry table on the top 16 bits, then bisects the
few starts of that bucket in a memoryview of the numpy starts (no Python int objects for the
whole table and no copy of it, so it stays small and cache friendly).
"""

from __future__ import annotations

import array
import dataclasses
import functools
import hashlib
import importlib.resources
import json
import queue
import socket
import threading
import zipfile
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from geogate.errors import ClientIPError, IntelDataError
from geogate.intel.addresses import V4_MAX, V6_MAX, embedded_ipv4, format_address
from geogate.intel.container import open_members, write_packed
from geogate.intel.facts import IntelFacts, NetworkFlag, Provenance
from geogate.intel.places import EMPTY_PLACE, Place, place_table
from geogate.policy.cities import city_key

FORMAT_VERSION: Final = 3
"""Version of the on-disk format written by :meth:`Snapshot.save`. Version 2 added the
anonymizer evidence columns and the content digest; version 3 turned the subdivision table
into a place table (several subdivisions, a city). :meth:`Snapshot.load` also reads version 2
(every place one subdivision) and refuses any other."""

READABLE_VERSIONS: Final = (2, 3)

FIELDS: Final = ("location", "subdivision", "alt_country", "asn", "flags")
"""Field names used in provenance and precedence."""

MAX_SOURCES: Final = 16  # flags_src is a uint16 bit mask over source indexes
_MEMO_LIMIT: Final = 1 << 17  # facts_at entries per memo generation (two are kept)
_U64: Final = (1 << 64) - 1
_MAPPED: Final = b"\x00" * 10 + b"\xff\xff"
_EMBEDDED_NAME: Final = "default.snapshot"

# Column name -> dtype, in file order. Source columns hold 1 + source index (0 = none);
# flags_src is a bit mask of the sources that set a flag.
_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "country_idx": np.uint16,
    "subdivision_idx": np.uint16,
    "alt_country_idx": np.uint16,
    "asn": np.uint32,
    "flags": np.uint8,
    "location_src": np.uint8,
    "subdivision_src": np.uint8,
    "alt_country_src": np.uint8,
    "asn_src": np.uint8,
    "flags_src": np.uint16,
}
# Anonymizer evidence: confidence 1-99 (0 = none) and 1 + index into the provider names.
# Optional when a snapshot is assembled in memory (zeros), required in a file.
_EVIDENCE_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "anon_confidence": np.uint8,
    "anon_provider_idx": np.uint16,
}
_ORG_COLUMN: Final = "as_org_idx"
# First two bytes of the IPv6 forms that can carry an IPv4 address (see embedded_ipv4).
_EMBED_HEADS: Final = frozenset({b"\x00\x00", b"\x20\x01", b"\x20\x02", b"\x00\x64"})
# The same forms, exactly: top 16 bits (::/16 forms, 6to4) or top 32 bits (Teredo, NAT64), so
# that the rest of 2001::/16 (many allocations) does not pay for the embedded-IPv4 check.
_EMBED_TOP16: Final = frozenset({0x0000, 0x2002})
_EMBED_TOP32: Final = frozenset({0x2001_0000, 0x0064_FF9B})

_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_from_bytes = int.from_bytes
_ntop = socket.inet_ntop
_PTON4 = functools.partial(socket.inet_pton, socket.AF_INET)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    """One data source compiled into a snapshot.

    ``date`` is the source's data date (YYYY-MM-DD); ``ranges`` is how many ranges the source
    contributed (after merging adjacent equal ones); ``origin`` says where it came from
    (e.g. ``"@ip-location-db/asn@2.3.2026061719"``), empty when unknown.
    """

    name: str
    kind: str
    date: str
    license: str = ""
    attribution: str = ""
    ranges: int = 0
    origin: str = ""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "name": self.name,
            "kind": self.kind,
            "date": self.date,
            "license": self.license,
            "attribution": self.attribution,
            "ranges": self.ranges,
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """What a snapshot was built from and how.

    ``precedence`` maps a field (``"location"``, ``"subdivision"``, ``"asn"``, ``"flags"``)
    to the source names consulted for it, highest first (flags are OR-ed over all of them).
    ``built_at`` is an aware UTC datetime.
    """

    format_version: int
    built_at: datetime
    sources: tuple[SourceInfo, ...]
    precedence: dict[str, tuple[str, ...]] = field(default_factory=dict)
    v4_ranges: int = 0
    v6_ranges: int = 0

    def age_days(self, now: datetime) -> float:
        """Days from the oldest source's data date (midnight UTC) to ``now`` (aware).

        With no dated source, the age is measured from ``built_at``.
        """
        dates = [_parse_date(s.date) for s in self.sources if s.date]
        oldest = min(dates) if dates else self.built_at
        return (now - oldest).total_seconds() / 86400.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (also the ``meta`` member of the snapshot file)."""
        return {
            "format_version": self.format_version,
            "built_at": self.built_at.isoformat(),
            "sources": [s.to_dict() for s in self.sources],
            "precedence": {k: list(v) for k, v in self.precedence.items()},
            "v4_ranges": self.v4_ranges,
            "v6_ranges": self.v6_ranges,
        }


def _parse_date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


def _array_typecode(itemsize: int, *, unsigned: bool = True) -> str:
    for code in ("I", "L", "Q") if itemsize <= 8 else ():
        if array.array(code).itemsize == itemsize:
            return code if unsigned else code.lower()
    raise RuntimeError(f"no array typecode of {itemsize} bytes")  # pragma: no cover


_U32_CODE: Final = _array_typecode(4)
_U64_CODE: Final = _array_typecode(8)


def _bucket_bounds(top16: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Per top-16-bit bucket b, the bounds ``[bounds[b], bounds[b + 1]]`` of
    ``bisect_right`` over the starts (65,537 entries).

    ``top16`` is the top 16 bits of every start (sorted). ``bounds[b]`` counts the starts in
    earlier buckets; ``bounds[b + 1]`` the starts up to bucket b. For an address in bucket b,
    ``bisect_right(starts, x)`` lies between them (a start exactly at the bucket's first
    address is found by the search itself). One table, so lo and hi share a cache line.
    """
    buckets = np.arange(65537, dtype=top16.dtype)
    return np.searchsorted(top16, buckets, side="left").astype(np.int64)


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


class Snapshot:
    """An immutable, compiled IP intelligence table (implements ``IntelLookup``).

    Build one with :func:`geogate.intel.build.build_snapshot`, load one with
    :meth:`load`, or use the shipped default with :meth:`embedded`.
    """

    __slots__ = (
        "__weakref__",
        "_anon",
        "_as_org_asn",
        "_as_org_ends",
        "_as_org_list",
        "_as_org_text",
        "_cols",
        "_country_codes",
        "_fast",
        "_memo",
        "_memo_old",
        "_meta",
        "_n4",
        "_n6",
        "_org_idx",
        "_org_names",
        "_org_text",
        "_places",
        "_provider_names",
        "_sub_codes",
        "_v4_bnp",
        "_v4_bounds",
        "_v4_np",
        "_v4_starts",
        "_v6_bounds",
        "_v6_hi",
        "_v6_hi_np",
        "_v6_lo",
        "_v6_lo_np",
    )

    def __init__(
        self,
        *,
        meta: SnapshotMeta,
        v4_starts: npt.NDArray[np.uint32],
        v6_starts_hi: npt.NDArray[np.uint64],
        v6_starts_lo: npt.NDArray[np.uint64],
        columns: Mapping[str, npt.NDArray[Any]],
        country_codes: Sequence[str],
        subdivision_codes: Sequence[str] = ("",),
        places: Sequence[Place | object] | None = None,
        as_orgs: Mapping[int, str] | None = None,
        _as_org_arrays: tuple[npt.NDArray[np.uint32], bytes] | None = None,
        provider_names: Sequence[str] = ("",),
        org_names: Sequence[str] | None = None,
    ) -> None:
        """Assemble a snapshot from its arrays; raises ``IntelDataError`` when inconsistent.

        ``v4_starts`` (uint32) and the v6 starts (hi/lo uint64 halves) must be strictly
        increasing and begin at 0; every column in :data:`_COLUMNS` must have
        ``len(v4_starts) + len(v6_starts_hi)`` entries; index 0 of both code tables is ``""``.
        ``subdivision_idx`` indexes ``places`` (:class:`~geogate.intel.places.Place` values or
        their stored forms; index 0 the empty place) or, without ``places``, the plain codes of
        ``subdivision_codes``.
        """
        n4 = len(v4_starts)
        n6 = len(v6_starts_hi)
        _check(n4 > 0 and n6 > 0, "both address families need at least one range")
        _check(len(v6_starts_lo) == n6, "v6 start halves differ in length")
        v4 = np.ascontiguousarray(v4_starts, dtype=np.uint32)
        v6h = np.ascontiguousarray(v6_starts_hi, dtype=np.uint64)
        v6l = np.ascontiguousarray(v6_starts_lo, dtype=np.uint64)
        _check(int(v4[0]) == 0 and int(v6h[0]) == 0 and int(v6l[0]) == 0, "ranges must start at 0")
        _check(bool(np.all(v4[1:] > v4[:-1])), "IPv4 starts are not strictly increasing")
        v6_up = (v6h[1:] > v6h[:-1]) | ((v6h[1:] == v6h[:-1]) & (v6l[1:] > v6l[:-1]))
        _check(bool(np.all(v6_up)), "IPv6 starts are not strictly increasing")
        cols: dict[str, npt.NDArray[Any]] = {}
        for name, dtype in _COLUMNS.items():
            col = columns.get(name)
            _check(col is not None, f"column {name} missing")
            assert col is not None  # for mypy; _check raised otherwise
            arr = np.ascontiguousarray(col, dtype=dtype)
            _check(arr.shape == (n4 + n6,), f"column {name} has {arr.shape}, want {n4 + n6}")
            cols[name] = _readonly(arr)
        for name, dtype in _EVIDENCE_COLUMNS.items():
            col = columns.get(name)
            arr = np.zeros(n4 + n6, dtype=dtype) if col is None else np.asarray(col, dtype=dtype)
            _check(arr.shape == (n4 + n6,), f"column {name} has {arr.shape}, want {n4 + n6}")
            cols[name] = _readonly(np.ascontiguousarray(arr))
        providers = tuple(provider_names)
        _check(bool(providers) and providers[0] == "", "provider name table must start with ''")
        _check(
            int(cols["anon_provider_idx"].max(initial=0)) < len(providers),
            "anon_provider_idx out of table",
        )
        _check(int(cols["anon_confidence"].max(initial=0)) <= 100, "anon_confidence above 100")
        codes = tuple(country_codes)
        _check(bool(codes) and codes[0] == "", "country code table must start with ''")
        if places is None:
            _check(
                bool(subdivision_codes) and subdivision_codes[0] == "",
                "subdivision code table must start with ''",
            )
            places = subdivision_codes
        try:
            place_values = place_table(places)
        except ValueError as exc:
            raise IntelDataError(str(exc)) from None
        subs = tuple(p.subdivision or "" for p in place_values)
        for name, table in (
            ("country_idx", codes),
            ("alt_country_idx", codes),
            ("subdivision_idx", subs),
        ):
            _check(int(cols[name].max(initial=0)) < len(table), f"{name} out of table")
        n_src = len(meta.sources)
        _check(n_src <= MAX_SOURCES, f"more than {MAX_SOURCES} sources")
        for name in ("location_src", "subdivision_src", "alt_country_src", "asn_src"):
            _check(int(cols[name].max(initial=0)) <= n_src, f"{name} names an unknown source")
        _check(int(cols["flags_src"].max(initial=0)) < (1 << n_src), "flags_src out of range")

        self._meta = meta
        self._provider_names = providers
        self._anon = bool(cols["anon_confidence"].any() or cols["anon_provider_idx"].any())
        # Optional: the AS organisation of each range as its source gave it (index into
        # org_names, 0 = the record named none); without it as_org comes from the AS table.
        self._org_idx: npt.NDArray[np.uint32] | None = None
        self._org_text = b""
        self._org_names: tuple[str, ...] | None = None
        org_col = columns.get(_ORG_COLUMN)
        if org_col is not None:
            names = tuple(org_names or ("",))
            _check(names[0] == "", "AS organisation name table must start with ''")
            org = np.ascontiguousarray(org_col, dtype=np.uint32)
            _check(org.shape == (n4 + n6,), f"column {_ORG_COLUMN} has {org.shape}")
            _check(int(org.max(initial=0)) < len(names), f"{_ORG_COLUMN} out of table")
            self._org_idx = _readonly(org)
            cols[_ORG_COLUMN] = self._org_idx
            self._org_text = "\n".join(n.replace("\n", " ") for n in names).encode()
            self._org_names = names
        self._n4 = n4
        self._n6 = n6
        self._cols = cols
        self._country_codes = codes
        self._sub_codes = subs
        self._places = place_values
        self._v4_np = _readonly(v4)
        self._v6_hi_np = _readonly(v6h)
        self._v6_lo_np = _readonly(v6l)
        # Memoryviews of the numpy arrays: bisect reads them as fast as an array.array, with no
        # 12 MB copy at load (every `geogate check` loads the snapshot).
        self._v4_starts = self._v4_np.data
        v4_bounds = _bucket_bounds(v4 >> np.uint32(16))
        self._v4_bounds = array.array(_U32_CODE, v4_bounds.astype(np.uint32).tobytes())
        self._v6_hi = self._v6_hi_np.data
        self._v6_lo = self._v6_lo_np.data
        v6_bounds = _bucket_bounds(v6h >> np.uint64(48))
        self._v6_bounds = array.array(_U32_CODE, v6_bounds.astype(np.uint32).tobytes())
        self._v4_bnp = (v4_bounds[:-1], v4_bounds[1:])
        if _as_org_arrays is not None:
            asns, text = _as_org_arrays
        else:
            items = sorted((as_orgs or {}).items())
            asns = np.array([a for a, _ in items], dtype=np.uint32)
            text = "\n".join(n.replace("\n", " ") for _, n in items).encode()
        _check(bool(np.all(asns[1:] > asns[:-1])), "AS organisation table not sorted")
        self._as_org_asn = _readonly(np.ascontiguousarray(asns, dtype=np.uint32))
        # bisect over an array.array: np.searchsorted with a Python int converts the whole
        # table on every call (measured 11 µs against 0.3 µs).
        self._as_org_list = array.array(_U32_CODE, self._as_org_asn.tobytes())
        self._as_org_text = text
        self._as_org_ends: array.array[int] | None = None
        self._memo: dict[int, IntelFacts] = {}
        self._memo_old: dict[int, IntelFacts] = {}
        self._fast: _FactsTables | None = None

    # ----- loading and saving -------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        """Load a snapshot file written by :meth:`save`.

        Raises ``IntelDataError(path=...)`` with a one-line message when the file is missing,
        truncated, corrupt or of another format version.
        """
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise IntelDataError(
                f"cannot read snapshot: {exc.strerror or exc}", path=str(p)
            ) from exc
        return cls._from_bytes(data, str(p))

    @classmethod
    def embedded(cls) -> Snapshot:
        """The default snapshot shipped inside the package (loaded once, then cached)."""
        return _embedded()

    @classmethod
    def _from_bytes(cls, data: bytes, where: str) -> Snapshot:
        try:
            with open_members(data) as npz:  # packed container or .npz
                members = set(npz.files)
                if "meta" not in members:
                    raise IntelDataError("not a geogate snapshot (no meta member)", path=where)
                raw_meta = json.loads(bytes(npz["meta"]).decode("utf-8"))
                version = raw_meta.get("format_version") if isinstance(raw_meta, dict) else None
                if version not in READABLE_VERSIONS or isinstance(version, bool):
                    raise IntelDataError(
                        f"snapshot format version {version!r}, this geogate reads "
                        f"{' and '.join(map(str, READABLE_VERSIONS))}; rebuild it with "
                        "`geogate data build`",
                        path=where,
                    )
                need = {
                    "meta",
                    "v4_starts",
                    "v6_starts_hi",
                    "v6_starts_lo",
                    "as_org_asn",
                    "as_org_text",
                    *_COLUMNS,
                    *_EVIDENCE_COLUMNS,
                }
                missing = sorted(need - members)
                if missing:
                    raise IntelDataError(
                        f"not a geogate snapshot (missing {', '.join(missing)})", path=where
                    )
                meta, countries, subs = _meta_from_json(raw_meta)
                optional = {_ORG_COLUMN, "org_text"} & members
                if optional and len(optional) != 2:
                    raise IntelDataError(
                        "not a geogate snapshot (as_org_idx without org_text)", path=where
                    )
                arrays, digest_job = _read_members(
                    npz, sorted((need | optional) - {"meta"}), raw_meta
                )
                providers = raw_meta.get("provider_names", [""])
                _check(
                    isinstance(providers, list) and all(isinstance(x, str) for x in providers),
                    "provider_names must be a list of strings",
                )
                v4 = arrays["v4_starts"]
                v6h = arrays["v6_starts_hi"]
                v6l = arrays["v6_starts_lo"]
                _check(v4.dtype == np.uint32, "v4_starts must be uint32")
                _check(v6h.dtype == np.uint64 and v6l.dtype == np.uint64, "v6 starts uint64")
                v4 = np.cumsum(v4, dtype=np.uint32) if raw_meta.get("v4_delta") else v4
                cols = {name: arrays[name] for name in (*_COLUMNS, *_EVIDENCE_COLUMNS)}
                if optional:
                    _check(arrays[_ORG_COLUMN].dtype == np.uint32, "as_org_idx must be uint32")
                    cols[_ORG_COLUMN] = arrays[_ORG_COLUMN]
                for name, dtype in (_COLUMNS | _EVIDENCE_COLUMNS).items():
                    _check(cols[name].dtype == dtype, f"column {name} must be {dtype.__name__}")
                asns = arrays["as_org_asn"]
                _check(asns.dtype == np.uint32, "as_org_asn must be uint32")
                text = bytes(arrays["as_org_text"])
                _check(
                    text.count(b"\n") + 1 == len(asns) if len(asns) else not text,
                    "AS organisation names do not match their numbers",
                )
                _check(
                    meta.v4_ranges == len(v4) and meta.v6_ranges == len(v6h),
                    "range counts in meta do not match the arrays",
                )
                snap = cls(
                    meta=meta,
                    v4_starts=v4,
                    v6_starts_hi=v6h,
                    v6_starts_lo=v6l,
                    columns=cols,
                    country_codes=countries,
                    places=subs,
                    _as_org_arrays=(asns, text),
                    provider_names=providers,
                    org_names=(
                        bytes(arrays["org_text"]).decode("utf-8").split("\n") if optional else None
                    ),
                )
                digest = raw_meta.get("content_sha256")
                if not isinstance(digest, str) or digest != digest_job.result():
                    raise IntelDataError(
                        "snapshot content does not match its digest (corrupt or altered); "
                        "rebuild it with `geogate data build`",
                        path=where,
                    )
                return snap
        except IntelDataError as exc:
            if exc.path is None:
                raise IntelDataError(str(exc), path=where) from exc
            raise
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            TypeError,
            zipfile.BadZipFile,
            NotImplementedError,
            RuntimeError,
            zlib.error,
            UnicodeDecodeError,
            json.JSONDecodeError,
        ) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise IntelDataError(f"corrupt snapshot: {msg}", path=where) from exc

    def save(self, path: str | Path, *, packed: bool = False) -> None:
        """Write the snapshot as a compressed ``.npz`` (see docs/snapshot-format.md), or with
        ``packed=True`` in the packed container (LZ4 blocks: loads about 5x faster; what the
        embedded default uses). Both hold the same arrays and the same content digest.

        The file is written to a temporary name beside ``path`` and renamed into place.
        """
        p = Path(path)
        meta = self._meta.to_dict()
        meta["format_version"] = FORMAT_VERSION  # a loaded version-2 snapshot is saved as 3
        meta["country_codes"] = list(self._country_codes)
        meta["places"] = [p.to_json() for p in self._places]
        meta["v4_delta"] = True
        meta["provider_names"] = list(self._provider_names)
        # Deltas of sorted starts compress far better than the starts (they are mostly
        # small powers of two); np.cumsum restores them in a few milliseconds on load.
        v4_delta = np.diff(self._v4_np, prepend=np.uint32(0)).astype(np.uint32)
        arrays: dict[str, npt.NDArray[Any]] = {
            "v4_starts": v4_delta,
            "v6_starts_hi": self._v6_hi_np,
            "v6_starts_lo": self._v6_lo_np,
            "as_org_asn": self._as_org_asn,
            "as_org_text": np.frombuffer(self._as_org_text, dtype=np.uint8),
            **self._cols,
        }
        if self._org_idx is not None:  # the column itself is in self._cols
            arrays["org_text"] = np.frombuffer(self._org_text, dtype=np.uint8)
        meta["content_sha256"] = _content_digest(arrays, meta)
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        tmp = p.with_name(p.name + ".tmp")
        try:
            with tmp.open("wb") as fh:
                if packed:
                    write_packed(fh, arrays)
                else:
                    np.savez_compressed(fh, allow_pickle=False, **arrays)
            tmp.replace(p)
        except OSError as exc:
            raise IntelDataError(
                f"cannot write snapshot: {exc.strerror or exc}", path=str(p)
            ) from exc

    # ----- metadata and columns -----------------------------------------------------------

    @property
    def meta(self) -> SnapshotMeta:
        """Build metadata: sources, dates, licences, precedence, range counts."""
        return self._meta

    @property
    def n4(self) -> int:
        """Number of IPv4 ranges (keys ``0 .. n4-1``)."""
        return self._n4

    @property
    def n6(self) -> int:
        """Number of IPv6 ranges (keys ``n4 .. n4+n6-1``)."""
        return self._n6

    def __len__(self) -> int:
        """Number of range keys (``n4 + n6``)."""
        return self._n4 + self._n6

    @property
    def country_codes(self) -> tuple[str, ...]:
        """ISO 3166-1 alpha-2 codes indexed by ``country_idx``/``alt_country_idx``; [0] = ""."""
        return self._country_codes

    @property
    def subdivision_codes(self) -> tuple[str, ...]:
        """The first ISO 3166-2 code of each place, indexed by ``subdivision_idx``; [0] = ""
        (none). A code repeats when places split it by city or name more subdivisions: find a
        subdivision's ranges with :meth:`subdivision_mask`, not ``subdivision_codes.index``."""
        return self._sub_codes

    @property
    def places(self) -> tuple[Place, ...]:
        """The place table indexed by ``subdivision_idx``: subdivisions and, where the build
        kept city precision, the city; [0] is the empty place."""
        return self._places

    def place_indices(self, subdivision: str, *, city: str | None = None) -> tuple[int, ...]:
        """Indexes of the places naming ``subdivision`` (at any level) and, when given, the
        city ``city`` (matched as a policy matches it: see :mod:`geogate.policy.cities`)."""
        want = city_key(subdivision, city) if city is not None else None
        out = []
        for i, place in enumerate(self._places):
            if subdivision not in place.subdivisions:
                continue
            if want is not None:
                got = {city_key(subdivision, place.city)} if place.city else set()
                if place.geoname_id is not None:
                    got.add(f"geonames:{place.geoname_id}")
                if want not in got:
                    continue
            out.append(i)
        return tuple(out)

    def subdivision_mask(
        self, subdivision: str, *, city: str | None = None
    ) -> npt.NDArray[np.bool_]:
        """Per range key, whether the range lies in ``subdivision`` (at any level of its place)
        and, when given, in city ``city`` (see :meth:`place_indices`)."""
        hit = np.zeros(len(self._places), dtype=bool)
        hit[list(self.place_indices(subdivision, city=city))] = True
        mask: npt.NDArray[np.bool_] = hit[self._cols["subdivision_idx"]]
        return mask

    @property
    def country_idx(self) -> npt.NDArray[np.uint16]:
        """Country index per key (uint16, read-only; 0 = unknown)."""
        return self._cols["country_idx"]

    @property
    def subdivision_idx(self) -> npt.NDArray[np.uint16]:
        """Subdivision index per key (uint16, read-only; 0 = none)."""
        return self._cols["subdivision_idx"]

    @property
    def alt_country_idx(self) -> npt.NDArray[np.uint16]:
        """Disagreeing lower-precedence country per key (uint16, read-only; 0 = none)."""
        return self._cols["alt_country_idx"]

    @property
    def asn(self) -> npt.NDArray[np.uint32]:
        """Autonomous system number per key (uint32, read-only; 0 = none)."""
        return self._cols["asn"]

    @property
    def flags(self) -> npt.NDArray[np.uint8]:
        """``NetworkFlag`` bits per key (uint8, read-only)."""
        return self._cols["flags"]

    @property
    def provider_names(self) -> tuple[str, ...]:
        """Anonymizer provider names indexed by ``anon_provider_idx``; [0] = "" (none)."""
        return self._provider_names

    def column(self, name: str) -> npt.NDArray[Any]:
        """Any stored column by name, including the provenance columns
        (``location_src`` ... 1 + index into ``meta.sources``, 0 = none; ``flags_src`` bit mask).
        """
        try:
            return self._cols[name]
        except KeyError:
            raise KeyError(f"no column {name!r}; have {', '.join(self._cols)}") from None

    @property
    def v4_starts(self) -> npt.NDArray[np.uint32]:
        """First address of each IPv4 range (uint32, sorted, read-only)."""
        return self._v4_np

    @property
    def v6_starts(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """First address of each IPv6 range as (high 64 bits, low 64 bits), read-only."""
        return self._v6_hi_np, self._v6_lo_np

    def as_org(self, asn: int) -> str | None:
        """The organisation name of an AS number, or None when unknown."""
        table = self._as_org_list
        if asn < 0 or asn > 0xFFFFFFFF:
            return None
        i = bisect_left(table, asn)
        if i >= len(table) or table[i] != asn:
            return None
        # The i-th line of the name text, by newline offsets (found once, ~2 ms; splitting the
        # text into 91,000 strings took 15 ms of every `geogate check` and 6 MB per process).
        ends = self._as_org_ends
        text = self._as_org_text
        if ends is None:
            found = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
            ends = self._as_org_ends = array.array(_U64_CODE, found.astype(np.uint64).tobytes())
        start = ends[i - 1] + 1 if i else 0
        end = ends[i] if i < len(ends) else len(text)
        return text[start:end].decode("utf-8") or None

    # ----- single lookups -----------------------------------------------------------------

    def locate(self, ip: str) -> int:
        """The range key of an address (IPv4, IPv6 or IPv4-mapped IPv6 text).

        Raises ``ClientIPError`` for a malformed address. About 0.5 µs for IPv4.
        """
        try:
            if ":" in ip:  # IPv6 text: not first a failed IPv4 parse (an exception, ~0.4 µs)
                return self._locate_v6_text(ip)
            x = _from_bytes(_inet_pton(_AF_INET, ip), "big")
        except (OSError, ValueError, TypeError) as exc:
            raise ClientIPError("malformed IP address", value=str(ip)) from exc
        h = x >> 16
        bounds = self._v4_bounds
        return bisect_right(self._v4_starts, x, bounds[h], bounds[h + 1]) - 1

    def _locate_v6_text(self, ip: str) -> int:
        try:
            raw = _inet_pton(_AF_INET6, ip)
        except (OSError, ValueError, TypeError) as exc:
            raise ClientIPError("malformed IP address", value=str(ip)) from exc
        xh = _from_bytes(raw[:8], "big")
        top32 = xh >> 32
        if top32 >> 16 in _EMBED_TOP16 or top32 in _EMBED_TOP32:
            # 6to4, Teredo, NAT64, mapped ...: the client is the embedded IPv4 address.
            found = embedded_ipv4(_from_bytes(raw, "big"))
            if found is not None:
                return self.locate_v4_int(found[0])
        return self._locate_v6(xh, _from_bytes(raw[8:], "big"))

    def _locate_v6(self, xh: int, xl: int) -> int:
        his = self._v6_hi
        b = xh >> 48
        bounds = self._v6_bounds
        lo_b = bounds[b]
        k = bisect_right(his, xh, lo_b, bounds[b + 1]) - 1
        if his[k] == xh:
            # Ranges starting inside this /64: refine on the low half. Nearly always range k
            # is the only one (no second search over the bucket: ~1 µs saved).
            if k == 0 or his[k - 1] != xh:
                return self._n4 + (k if self._v6_lo[k] <= xl else k - 1)
            j = bisect_left(his, xh, lo_b, k)
            r = bisect_right(self._v6_lo, xl, j, k + 1) - 1
            if r < j:
                r = j - 1
            k = r
        return self._n4 + k

    def locate_v4_int(self, x: int) -> int:
        """The range key of an IPv4 address given as an integer (0 .. 2**32-1)."""
        h = x >> 16
        bounds = self._v4_bounds
        return bisect_right(self._v4_starts, x, bounds[h], bounds[h + 1]) - 1

    def search_tables(self) -> tuple[memoryview, memoryview, memoryview, memoryview, memoryview]:
        """The tables :meth:`locate` searches, as read-only buffers: the IPv4 starts (uint32),
        the IPv4 bucket bounds (65,537 uint32, per top 16 bits), the IPv6 starts' high and low
        halves (uint64) and the IPv6 bucket bounds. The compiled decision path
        (``geogate._fastpath``) runs the same search over them without Python objects."""
        return (
            self._v4_np.data.toreadonly(),
            memoryview(self._v4_bounds).toreadonly(),
            self._v6_hi_np.data.toreadonly(),
            self._v6_lo_np.data.toreadonly(),
            memoryview(self._v6_bounds).toreadonly(),
        )

    def facts_at(self, key: int) -> IntelFacts:
        """The facts of range ``key`` (memoised). Key ``-1`` (the malformed-address marker
        of :meth:`locate_many`) gives ``IntelFacts.unknown()``; other keys outside
        ``0 .. len-1`` raise ``IndexError``.
        """
        facts = self._memo.get(key)
        if facts is None:
            # Two generations: when the young one is full it becomes the old one, and a hit
            # there moves the entry back, so the working set survives (no clear-all cliff).
            facts = self._memo_old.get(key)
            if facts is None:
                facts = self._with_evidence(key, self._compute_facts(key))
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo_old = self._memo
                self._memo = {}
            self._memo[key] = facts
        return facts

    def lookup(self, ip: str) -> IntelFacts:
        """Facts about one address (``IntelLookup``); ``ClientIPError`` when malformed.

        An IPv6 address carrying an IPv4 address (6to4, Teredo, NAT64 ...) gets the facts of
        that IPv4 address, with ``embedding`` and ``embedded_ipv4`` saying so (not for the
        IPv4-mapped form, which is how dual-stack sockets write every IPv4 peer).
        """
        key = self.locate(ip)
        facts = self._memo.get(key)
        if facts is None:
            facts = self.facts_at(key)
        if ":" in ip:
            raw = _inet_pton(_AF_INET6, ip)
            found = embedded_ipv4(_from_bytes(raw, "big")) if raw[:2] in _EMBED_HEADS else None
            if found is not None and found[1] != "ipv4-mapped":  # a dual-stack socket's form
                return dataclasses.replace(
                    facts,
                    embedding=found[1],
                    embedded_ipv4=format_address(4, found[0]),
                )
        return facts

    def _with_evidence(self, key: int, facts: IntelFacts) -> IntelFacts:
        """``facts`` with the range's anonymizer provider and confidence, when it has any,
        and the AS organisation its own record gave, when the snapshot keeps it per range."""
        if key < 0:
            return facts
        changes: dict[str, Any] = {}
        if self._org_idx is not None and facts.asn is not None and self._org_names is not None:
            org = self._org_names[int(self._org_idx[key])] or None
            if org != facts.as_org:
                changes["as_org"] = org
        if self._anon and facts.flags:
            conf = int(self._cols["anon_confidence"][key])
            prov = int(self._cols["anon_provider_idx"][key])
            if conf:
                changes["anonymizer_confidence"] = conf
            if prov:
                changes["anonymizer_provider"] = self._provider_names[prov]
        return dataclasses.replace(facts, **changes) if changes else facts

    @property
    def org_names(self) -> tuple[str, ...] | None:
        """AS organisation names indexed by the optional per-range column ``as_org_idx``
        ([0] = "": the record named none), or None when the snapshot keeps organisations
        per AS only (then ``column("as_org_idx")`` raises KeyError)."""
        return self._org_names

    def network_of(self, key: int) -> tuple[str, str]:
        """First and last address of range ``key`` as text."""
        if key < 0 or key >= self._n4 + self._n6:
            raise IndexError(f"range key {key} outside 0..{self._n4 + self._n6 - 1}")
        if key < self._n4:
            first = int(self._v4_np[key])
            last = int(self._v4_np[key + 1]) - 1 if key + 1 < self._n4 else V4_MAX
            return format_address(4, first), format_address(4, last)
        i = key - self._n4
        first6 = (int(self._v6_hi_np[i]) << 64) | int(self._v6_lo_np[i])
        if i + 1 < self._n6:
            last6 = ((int(self._v6_hi_np[i + 1]) << 64) | int(self._v6_lo_np[i + 1])) - 1
        else:
            last6 = V6_MAX
        return format_address(6, first6), format_address(6, last6)

    def _tables(self) -> _FactsTables:
        fast = self._fast
        if fast is None:
            fast = self._fast = _FactsTables(self)
        return fast

    def _compute_facts(self, key: int) -> IntelFacts:
        if key == -1:
            return IntelFacts.unknown()
        if key < 0 or key >= self._n4 + self._n6:
            raise IndexError(f"range key {key} outside 0..{self._n4 + self._n6 - 1}")
        t = self._tables()
        ci = t.country[key]
        si = t.subdivision[key]
        ai = t.alt_country[key]
        asn = t.asn[key]
        flags = t.flags[key]
        if not (ci or si or ai or asn or flags):
            return IntelFacts.unknown()
        prov_key = (
            t.location_src[key] if ci else 0,
            t.subdivision_src[key] if si else 0,
            t.alt_country_src[key] if ai else 0,
            t.asn_src[key] if asn else 0,
            t.flags_src[key] if flags else 0,
        )
        prov = t.provenance.get(prov_key)
        if prov is None:
            prov = t.provenance[prov_key] = self._provenance(prov_key)
        flag = t.flag_values.get(flags)
        if flag is None:
            flag = t.flag_values[flags] = NetworkFlag(flags)
        first, last = self._network_text(key)
        place = self._places[si] if si else EMPTY_PLACE
        return IntelFacts(
            country=self._country_codes[ci] or None,
            subdivision=place.subdivision,
            more_subdivisions=place.subdivisions[1:],
            city=place.city,
            city_geoname_id=place.geoname_id,
            alt_country=self._country_codes[ai] or None,
            asn=asn or None,
            as_org=self.as_org(asn) if asn else None,
            flags=flag,
            network=f"{first}-{last}",
            provenance=prov,
        )

    def _network_text(self, key: int) -> tuple[str, str]:
        """:meth:`network_of` on the array.array starts (no numpy scalars: the cold path)."""
        n4 = self._n4
        if key < n4:
            starts = self._v4_starts
            first = starts[key]
            last = starts[key + 1] - 1 if key + 1 < n4 else V4_MAX
            return _ntop(_AF_INET, first.to_bytes(4, "big")), _ntop(
                _AF_INET, last.to_bytes(4, "big")
            )
        i = key - n4
        his, los = self._v6_hi, self._v6_lo
        first6 = (his[i] << 64) | los[i]
        last6 = ((his[i + 1] << 64) | los[i + 1]) - 1 if i + 1 < self._n6 else V6_MAX
        return _ntop(_AF_INET6, first6.to_bytes(16, "big")), _ntop(
            _AF_INET6, last6.to_bytes(16, "big")
        )

    def _provenance(self, prov_key: tuple[int, int, int, int, int]) -> tuple[Provenance, ...]:
        sources = self._meta.sources
        prov: list[Provenance] = []
        for name, src in zip(
            ("location", "subdivision", "alt_country", "asn"), prov_key[:4], strict=True
        ):
            if src:
                s = sources[src - 1]
                prov.append(Provenance(field=name, source=s.name, date=s.date))
        mask = prov_key[4]
        for i, s in enumerate(sources):
            if mask >> i & 1:
                prov.append(Provenance(field="flags", source=s.name, date=s.date))
        return tuple(prov)

    # ----- batch lookups ------------------------------------------------------------------

    def locate_many_v4(self, addrs: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """Range keys of IPv4 addresses given as a uint32 array (vectorised)."""
        q = np.ascontiguousarray(addrs, dtype=np.uint32)
        lo_t, hi_t = self._v4_bnp
        bucket = q >> np.uint32(16)
        return _bounded_search(self._v4_np, q, lo_t[bucket], hi_t[bucket]) - 1

    def locate_many_v6(
        self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.int64]:
        """Range keys of IPv6 addresses given as high/low uint64 halves (vectorised).

        Addresses carrying an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64: see
        :func:`geogate.intel.addresses.embedded_ipv4`) are looked up as that IPv4 address.
        """
        qh = np.ascontiguousarray(hi, dtype=np.uint64)
        ql = np.ascontiguousarray(lo, dtype=np.uint64)
        his = self._v6_hi_np
        k = np.searchsorted(his, qh, side="right").astype(np.int64) - 1
        same = his[k] == qh
        if np.any(same):
            idx = np.nonzero(same)[0]
            sub_h = qh[idx]
            j = np.searchsorted(his, sub_h, side="left").astype(np.int64)
            r = _bounded_search(self._v6_lo_np, ql[idx], j, k[idx] + 1) - 1
            k[idx] = np.where(r < j, j - 1, r)
        keys = k + self._n4
        embedded, v4 = embedded_ipv4_arrays(qh, ql)
        if np.any(embedded):
            m = np.nonzero(embedded)[0]
            keys[m] = self.locate_many_v4(v4[m])
        return keys

    def parse_many_v4(self, texts: Sequence[str]) -> npt.NDArray[np.uint32] | None:
        """``texts`` as uint32 addresses when every one is an IPv4 dotted quad (read strictly,
        as :meth:`locate` reads them), else None (then use :meth:`locate_many`).

        ``inet_pton`` is mapped over the texts and the results joined in C, so no Python
        object is made per address: the fast path of batch decisions from text logs.
        """
        try:
            packed = b"".join(map(_PTON4, texts))
        except (OSError, TypeError, ValueError):
            return None
        return np.frombuffer(packed, dtype=">u4").astype(np.uint32)

    def locate_many(self, ips: Sequence[str]) -> npt.NDArray[np.int64]:
        """Range keys of addresses given as text; a malformed address gets key ``-1``."""
        n = len(ips)
        keys = np.full(n, -1, dtype=np.int64)
        v4_pos: list[int] = []
        v4_val: list[int] = []
        v6_pos: list[int] = []
        v6_hi: list[int] = []
        v6_lo: list[int] = []
        pton = _inet_pton
        for i, ip in enumerate(ips):
            try:
                v4_val.append(_from_bytes(pton(_AF_INET, ip), "big"))
                v4_pos.append(i)
                continue
            except (OSError, ValueError, TypeError):
                pass
            try:
                raw = pton(_AF_INET6, ip)
            except (OSError, ValueError, TypeError):
                continue
            if raw[:12] == _MAPPED:
                v4_val.append(_from_bytes(raw[12:], "big"))
                v4_pos.append(i)
            else:
                v6_pos.append(i)
                v6_hi.append(_from_bytes(raw[:8], "big"))
                v6_lo.append(_from_bytes(raw[8:], "big"))
        if v4_pos:
            keys[np.array(v4_pos, dtype=np.int64)] = self.locate_many_v4(
                np.array(v4_val, dtype=np.uint32)
            )
        if v6_pos:
            keys[np.array(v6_pos, dtype=np.int64)] = self.locate_many_v6(
                np.array(v6_hi, dtype=np.uint64), np.array(v6_lo, dtype=np.uint64)
            )
        return keys

    def __repr__(self) -> str:
        built = self._meta.built_at.date().isoformat()
        return f"<Snapshot built {built}: {self._n4} IPv4 + {self._n6} IPv6 ranges>"


class _FactsTables:
    """Per-key columns as memoryviews (indexing gives Python ints in ~30 ns, against ~100 ns
    for a numpy scalar) and the small memos of the cold ``facts_at`` path: provenance tuples
    by source combination and ``NetworkFlag`` values by bit mask."""

    __slots__ = (
        "alt_country",
        "alt_country_src",
        "asn",
        "asn_src",
        "country",
        "flag_values",
        "flags",
        "flags_src",
        "location_src",
        "provenance",
        "subdivision",
        "subdivision_src",
    )

    def __init__(self, snap: Snapshot) -> None:
        def view(name: str) -> memoryview:
            return snap.column(name).data

        self.country = view("country_idx")
        self.subdivision = view("subdivision_idx")
        self.alt_country = view("alt_country_idx")
        self.asn = view("asn")
        self.flags = view("flags")
        self.location_src = view("location_src")
        self.subdivision_src = view("subdivision_src")
        self.alt_country_src = view("alt_country_src")
        self.asn_src = view("asn_src")
        self.flags_src = view("flags_src")
        self.provenance: dict[tuple[int, int, int, int, int], tuple[Provenance, ...]] = {}
        self.flag_values: dict[int, NetworkFlag] = {}


def embedded_ipv4_arrays(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint32]]:
    """Vectorised :func:`geogate.intel.addresses.embedded_ipv4` over IPv6 addresses given as
    high/low uint64 halves: (which carry an IPv4 address, that address as uint32)."""
    u = np.uint64
    v4mask = u(0xFFFFFFFF)
    lo_up = lo >> u(32)
    top16 = hi >> u(48)
    zero_hi = hi == 0
    mapped = zero_hi & ((lo_up == 0xFFFF) | (lo_up == 0xFFFF0000) | ((lo_up == 0) & (lo > 1)))
    six_to_four = top16 == u(0x2002)
    teredo = (hi >> u(32)) == u(0x20010000)
    in_nat64 = (hi >> u(32)) == u(0x0064FF9B)
    nat64 = (hi == u(0x0064FF9B00000000)) & (lo_up == 0)
    local = (hi >> u(16)) == u(0x0064FF9B0001)
    v4 = lo & v4mask
    v4 = np.where(six_to_four, (hi >> u(16)) & v4mask, v4)
    v4 = np.where(teredo, ~lo & v4mask, v4)
    # RFC 6052 forms below /96 (see embedded_ipv4): the shortest whose u octet and suffix
    # are zero and whose IPv4 address does not start with 0; /48 at least in the local block.
    open_ = in_nat64 & ~nat64 & ((lo >> u(56)) == 0)
    for length in (32, 40, 48, 56, 64):
        before_u = max(0, 64 - length)
        after_u = 32 - before_u
        suffix_bits = 56 - after_u
        read = ((hi & u((1 << before_u) - 1)) << u(after_u)) | (
            (lo >> u(suffix_bits)) & u((1 << after_u) - 1)
        )
        hit = open_ & ((lo & u((1 << suffix_bits) - 1)) == 0) & ((read >> u(24)) != 0)
        if length < 48:
            hit &= ~local
        v4 = np.where(hit, read, v4)
        open_ &= ~hit
    embedded = mapped | six_to_four | teredo | in_nat64
    return embedded, v4.astype(np.uint32)


class _DigestThread:
    """:func:`_content_digest` computed in a daemon thread from arrays handed over one at a
    time in name order, while the loader decompresses the next ones and then builds the
    snapshot: LZ4 and hashlib release the GIL, so on a second core the digest (SHA-256 over
    ~40 MB, ~20 ms) costs `geogate check` no start-up time. ``add`` in sorted name order,
    then ``close`` (always, also after an error) and ``result``."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self._queue: queue.SimpleQueue[tuple[str, npt.NDArray[Any]] | None] = queue.SimpleQueue()
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(meta,), daemon=True)
        self._thread.start()

    def add(self, name: str, array: npt.NDArray[Any]) -> None:
        """Hash ``array`` as member ``name`` (names must come in sorted order)."""
        self._queue.put((name, array))

    def close(self) -> None:
        """No more arrays (idempotent)."""
        self._queue.put(None)

    def _run(self, meta: Mapping[str, Any]) -> None:
        try:
            h = _digest_begin(meta)
            while (item := self._queue.get()) is not None:
                _digest_member(h, *item)
            self._value = h.hexdigest()
        except BaseException as exc:  # handed to the waiting thread by result()
            self._error = exc

    def result(self) -> str:
        """The digest, once :meth:`close` was called (the thread's error re-raised here)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None  # set when no error was recorded
        return self._value


def _read_members(
    npz: Any, names: list[str], meta: Mapping[str, Any]
) -> tuple[dict[str, npt.NDArray[Any]], _DigestThread]:
    """The members ``names`` (sorted) of an opened snapshot container, with their content
    digest being computed alongside (:class:`_DigestThread`, closed here whatever happens)."""
    digest = _DigestThread(meta)
    arrays: dict[str, npt.NDArray[Any]] = {}
    try:
        for name in names:
            arrays[name] = npz[name]
            digest.add(name, arrays[name])
    finally:
        digest.close()
    return arrays, digest


def _content_digest(arrays: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> str:
    """SHA-256 over the metadata (without its digest) and every array member as stored."""
    h = _digest_begin(meta)
    for name in sorted(arrays):
        _digest_member(h, name, arrays[name])
    return str(h.hexdigest())


def _digest_begin(meta: Mapping[str, Any]) -> Any:
    """The content digest's hash, fed the metadata (without ``content_sha256``)."""
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "content_sha256"}
    h.update(json.dumps(body, sort_keys=True).encode())
    return h


def _digest_member(h: Any, name: str, array: npt.NDArray[Any]) -> None:
    """Feed one array member (name, dtype, shape, bytes) to the content digest ``h``."""
    a = np.ascontiguousarray(array)
    h.update(f"\n{name}:{a.dtype.str}:{a.shape}\n".encode())
    h.update(a.data)


def _bounded_search(
    starts: npt.NDArray[Any],
    q: npt.NDArray[Any],
    lo: npt.NDArray[np.int64],
    hi: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Vectorised ``bisect_right(starts, q[i], lo[i], hi[i])`` with a fixed number of rounds."""
    lo = lo.copy()
    hi = hi.copy()
    if len(q) == 0:
        return lo
    width = int((hi - lo).max())
    last = len(starts) - 1
    for _ in range(max(width, 1).bit_length()):
        mid = (lo + hi) >> 1
        go_right = starts[np.minimum(mid, last)] <= q
        active = lo < hi
        lo = np.where(active & go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
    return lo


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise IntelDataError(message)


def _meta_from_json(raw: dict[str, Any]) -> tuple[SnapshotMeta, list[str], tuple[Place, ...]]:
    try:
        sources = tuple(
            SourceInfo(
                name=str(s["name"]),
                kind=str(s["kind"]),
                date=str(s["date"]),
                license=str(s.get("license", "")),
                attribution=str(s.get("attribution", "")),
                ranges=int(s.get("ranges", 0)),
                origin=str(s.get("origin", "")),
            )
            for s in raw["sources"]
        )
        built_at = datetime.fromisoformat(str(raw["built_at"]))
        if built_at.tzinfo is None:
            built_at = built_at.replace(tzinfo=UTC)
        meta = SnapshotMeta(
            format_version=int(raw["format_version"]),
            built_at=built_at,
            sources=sources,
            precedence={str(k): tuple(str(x) for x in v) for k, v in raw["precedence"].items()},
            v4_ranges=int(raw["v4_ranges"]),
            v6_ranges=int(raw["v6_ranges"]),
        )
        countries = [str(c) for c in raw["country_codes"]]
        if raw["format_version"] == 2:
            places = place_table([str(c) for c in raw["subdivision_codes"]])
        else:
            places = place_table(raw["places"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntelDataError(f"bad snapshot metadata: {exc}") from exc
    return meta, countries, places


@functools.cache
def _embedded() -> Snapshot:
    ref = importlib.resources.files("geogate.intel") / "data" / _EMBEDDED_NAME
    where = f"geogate.intel/data/{_EMBEDDED_NAME}"
    try:
        data = ref.read_bytes()
    except OSError as exc:
        raise IntelDataError("embedded snapshot missing from the package", path=where) from exc
    return Snapshot._from_bytes(data, where)
