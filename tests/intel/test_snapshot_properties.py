"""Range lookup agrees with a brute-force answer for random disjoint ranges (IPv4 and IPv6),
through every entry point: locate, locate_many, locate_many_v4/v6, facts_at, and a build."""

from __future__ import annotations

import itertools
import socket
import tempfile
from bisect import bisect_right
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geogate.intel.addresses import V4_MAX, V6_MAX, embedded_ipv4, format_address
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.snapshot import FORMAT_VERSION, Snapshot, SnapshotMeta, SourceInfo

COUNTRIES = ("", "CN", "RU", "US", "UA")
_U64 = (1 << 64) - 1


def make_snapshot(starts4: list[int], starts6: list[int], values: list[int]) -> Snapshot:
    """A snapshot whose range i has country COUNTRIES[values[i]] (sorted starts, from 0)."""
    n = len(starts4) + len(starts6)
    country = np.array(values, dtype=np.uint16)
    zeros16 = np.zeros(n, dtype=np.uint16)
    zeros8 = np.zeros(n, dtype=np.uint8)
    meta = SnapshotMeta(
        format_version=FORMAT_VERSION,
        built_at=datetime(2026, 6, 1, tzinfo=UTC),
        sources=(SourceInfo(name="t", kind="csv-country", date="2026-06-01"),),
        precedence={"location": ("t",)},
        v4_ranges=len(starts4),
        v6_ranges=len(starts6),
    )
    return Snapshot(
        meta=meta,
        v4_starts=np.array(starts4, dtype=np.uint32),
        v6_starts_hi=np.array([s >> 64 for s in starts6], dtype=np.uint64),
        v6_starts_lo=np.array([s & _U64 for s in starts6], dtype=np.uint64),
        columns={
            "country_idx": country,
            "subdivision_idx": zeros16,
            "alt_country_idx": zeros16,
            "asn": np.zeros(n, dtype=np.uint32),
            "flags": zeros8,
            "location_src": (country != 0).astype(np.uint8),
            "subdivision_src": zeros8,
            "alt_country_src": zeros8,
            "asn_src": zeros8,
            "flags_src": zeros16,
        },
        country_codes=COUNTRIES,
        subdivision_codes=("",),
    )


def brute_key(starts: list[int], x: int) -> int:
    """The last range whose start is <= x, by linear scan."""
    return max(i for i, s in enumerate(starts) if s <= x)


v4_addr = st.one_of(
    st.integers(0, V4_MAX),
    st.sampled_from([0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x0A000000, 0x7F000001]),
)
# IPv6 values drawn from few high halves so that many ranges start in the same /64
# (the case where the lookup must refine on the low half).
v6_hi = st.sampled_from([0, 1, 0x20010DB8 << 32, (0x2A02 << 48) | 5, _U64])
v6_addr = st.one_of(
    st.integers(0, V6_MAX),
    st.builds(lambda h, lo: (h << 64) | lo, v6_hi, st.integers(0, _U64)),
    st.builds(lambda h, lo: (h << 64) | lo, v6_hi, st.sampled_from([0, 1, _U64])),
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[int], list[int], list[int]]:
    s4 = sorted({0, *draw(st.lists(v4_addr, max_size=40))})
    s6 = sorted({0, *draw(st.lists(v6_addr, max_size=40))})
    values = draw(
        st.lists(
            st.integers(0, len(COUNTRIES) - 1),
            min_size=len(s4) + len(s6),
            max_size=len(s4) + len(s6),
        )
    )
    return s4, s6, values


@settings(max_examples=200, deadline=None)
@given(
    table=tables(),
    q4=st.lists(v4_addr, min_size=1, max_size=30),
    q6=st.lists(v6_addr, min_size=1, max_size=30),
)
def test_lookup_matches_brute_force(
    table: tuple[list[int], list[int], list[int]], q4: list[int], q6: list[int]
) -> None:
    s4, s6, values = table
    snap = make_snapshot(s4, s6, values)
    n4 = len(s4)
    # Queries: the random ones plus every range start and the address before it.
    q4 = q4 + s4 + [s - 1 for s in s4 if s]
    q6 = q6 + s6 + [s - 1 for s in s6 if s]
    want4 = [brute_key(s4, x) for x in q4]
    # IPv6 carrying an IPv4 address (mapped, 6to4, Teredo, NAT64 ...) is looked up as IPv4.
    embedded = [embedded_ipv4(x) for x in q6]
    want6 = [
        brute_key(s4, e[0]) if e is not None else n4 + brute_key(s6, x)
        for x, e in zip(q6, embedded, strict=True)
    ]
    texts4 = [format_address(4, x) for x in q4]
    texts6 = [format_address(6, x) for x in q6]
    assert [snap.locate(t) for t in texts4] == want4
    assert [snap.locate(t) for t in texts6] == want6
    assert [snap.locate("::ffff:" + t) for t in texts4] == want4
    assert snap.locate_many_v4(np.array(q4, dtype=np.uint32)).tolist() == want4
    got6 = snap.locate_many_v6(
        np.array([x >> 64 for x in q6], dtype=np.uint64),
        np.array([x & _U64 for x in q6], dtype=np.uint64),
    )
    assert got6.tolist() == want6
    assert snap.locate_many([*texts4, "bogus", *texts6]).tolist() == [*want4, -1, *want6]
    for text, key, x in zip(texts4 + texts6, want4 + want6, q4 + q6, strict=True):
        facts = snap.lookup(text)
        code = COUNTRIES[values[key]]
        assert facts.country == (code or None)
        if code and (key < n4) == (text in texts4):
            first, last = facts.network.split("-") if facts.network else ("", "")
            family = socket.AF_INET if key < n4 else socket.AF_INET6
            lo = int.from_bytes(socket.inet_pton(family, first), "big")
            hi = int.from_bytes(socket.inet_pton(family, last), "big")
            assert lo <= x <= hi


def _write_csv(path: Path, ranges: list[tuple[int, int, str]]) -> None:
    path.write_text("".join(f"{a},{b},{c}\n" for a, b, c in ranges))


@st.composite
def disjoint_ranges(draw: st.DrawFn) -> list[tuple[int, int, str]]:
    cuts = sorted(set(draw(st.lists(st.integers(0, V4_MAX), min_size=2, max_size=24))))
    out = []
    for a, b in itertools.pairwise(cuts):
        if draw(st.booleans()):
            out.append((a, b - 1, draw(st.sampled_from(COUNTRIES[1:]))))
    return out


@settings(max_examples=60, deadline=None)
@given(a=disjoint_ranges(), b=disjoint_ranges(), queries=st.lists(v4_addr, max_size=40))
def test_build_precedence_matches_brute_force(
    a: list[tuple[int, int, str]], b: list[tuple[int, int, str]], queries: list[int]
) -> None:
    """Built from two country CSVs (A over B): country = A's answer if any else B's, and
    alt_country = B's answer when both answer and differ."""

    def answer(ranges: list[tuple[int, int, str]], x: int) -> str | None:
        return next((c for lo, hi, c in ranges if lo <= x <= hi), None)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write_csv(d / "a.csv", a)
        _write_csv(d / "b.csv", b)
        (d / "build.toml").write_text(
            "[build]\nblank_special_purpose = false\n"
            '[[sources]]\nname = "a"\nkind = "csv-country"\npath = "a.csv"\ndate = "2026-06-01"\n'
            "min_networks = 0\n"  # an empty source is a case of the property
            '[[sources]]\nname = "b"\nkind = "csv-country"\npath = "b.csv"\ndate = "2026-06-02"\n'
            "min_networks = 0\n"
            '[precedence]\nlocation = ["a", "b"]\n'
        )
        snap = build_snapshot(load_build_config(d / "build.toml"))
    points = queries + [lo for lo, _, _ in a + b] + [hi for _, hi, _ in a + b]
    for x in points:
        facts = snap.lookup(format_address(4, x))
        ca, cb = answer(a, x), answer(b, x)
        assert facts.country == (ca or cb)
        assert facts.alt_country == (cb if ca and cb and ca != cb else None)
        sources = {p.field: p.source for p in facts.provenance}
        assert sources.get("location") == ("a" if ca else "b" if cb else None)
    # Adjacent ranges with identical values are merged: no two neighbours are equal.
    cols = [
        snap.country_idx[: snap.n4],
        snap.alt_country_idx[: snap.n4],
        snap.column("location_src")[: snap.n4],
    ]
    same = np.ones(snap.n4 - 1, dtype=bool)
    for c in cols:
        same &= c[1:] == c[:-1]
    assert not same.any()


def test_bisect_reference_for_a_dense_bucket() -> None:
    """Many starts in one top-16-bit bucket, and buckets with none: still exact."""
    starts = sorted({0, *range(0x0A0A0000, 0x0A0A0000 + 5000 * 7, 7), 0xFFFFFFFF})
    snap = make_snapshot(starts, [0], [1] * len(starts) + [0])
    rng = np.random.default_rng(7)
    q = np.concatenate(
        [rng.integers(0x0A0A0000 - 10, 0x0A0A0000 + 36000, 5000), rng.integers(0, 1 << 32, 5000)]
    ).astype(np.uint32)
    want = [bisect_right(starts, int(x)) - 1 for x in q]
    assert snap.locate_many_v4(q).tolist() == want
    assert [snap.locate_v4_int(int(x)) for x in q] == want
