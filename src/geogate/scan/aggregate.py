"""The aggregate tables of a scan, defined once, computed with Arrow compute.

Base tables are grouped from judged rows (:mod:`geogate.scan.judge`); each batch is grouped
on its own and the partial results are merged, and re-merged whenever they grow past
``compact_rows``, so memory holds the distinct keys of the output, never the rows of the log.
The Spark engine computes the same base tables with Spark SQL; both engines then derive the
remaining tables (orgs, egress networks, the comparison) from the base tables with
:func:`derive_tables`, so they cannot drift apart.

Why Arrow compute and not DuckDB or Polars: the judged batches already are Arrow record
batches in this process, the group-bys are hash aggregations on a few dictionary-encoded keys,
and pyarrow is already a dependency; measured on this machine, grouping one million judged rows
by day x region x kind x action takes about 50 ms, so the group-bys are not what limits a scan
(the per-account grouping, at about 0.2-0.3 µs a row, is the largest of them). See
bench/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True, slots=True)
class Measure:
    """One output column: ``agg`` of ``source`` per batch (count/sum/min/max), merged with
    ``merge`` (sum for counts and sums, min, max)."""

    name: str
    source: str
    agg: str
    merge: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A base table: rows passing ``where`` (a boolean column, or None), grouped by ``keys``."""

    name: str
    keys: tuple[str, ...]
    measures: tuple[Measure, ...]
    where: str | None = None
    needs_compare: bool = False


_REQUESTS = Measure("requests", "ts", "count", "sum")
BASE_TABLES: Final = (
    TableSpec(
        "daily",
        ("day", "region", "kind", "action", "reasons"),
        (_REQUESTS,),
    ),
    TableSpec(
        "accounts",
        ("account", "org", "region", "phase"),
        (
            _REQUESTS,
            Measure("denied", "denied", "sum", "sum"),
            Measure("warned", "warned", "sum", "sum"),
            Measure("anonymized", "anonymized", "sum", "sum"),
            Measure("hosting", "hosting", "sum", "sum"),
            Measure("unsupported", "unsupported", "sum", "sum"),
            Measure("first_seen", "ts", "min", "min"),
            Measure("last_seen", "ts", "max", "max"),
        ),
        where="has_account",
    ),
    TableSpec(
        "account_egress",
        ("account", "egress", "asn", "kind"),
        (_REQUESTS,),
        where="has_egress",
    ),
    TableSpec(
        "changes",
        ("region", "region_b", "change", "reasons", "reasons_b", "account", "org"),
        (_REQUESTS,),
        where="changed",
        needs_compare=True,
    ),
)
"""The tables grouped from judged rows (written as Parquet too: they are the per-account and
per-egress detail)."""

_OUT_TYPES: Final[Mapping[str, pa.DataType]] = {
    "day": pa.date32(),
    "asn": pa.int64(),
    "requests": pa.int64(),
    "denied": pa.int64(),
    "warned": pa.int64(),
    "anonymized": pa.int64(),
    "hosting": pa.int64(),
    "unsupported": pa.int64(),
    "first_seen": pa.timestamp("us", tz="UTC"),
    "last_seen": pa.timestamp("us", tz="UTC"),
}


def _normalise(table: pa.Table, spec: TableSpec) -> pa.Table:
    """Plain string keys and fixed measure types, columns in spec order."""
    cols = []
    for name in (*spec.keys, *(m.name for m in spec.measures)):
        col = table.column(name)
        want = _OUT_TYPES.get(name, pa.string())
        if col.type != want:
            col = pc.cast(col, want)
        cols.append(col)
    return pa.Table.from_arrays(cols, names=[*spec.keys, *(m.name for m in spec.measures)])


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of a key column (nulls get the last code) and the values they stand for
    (with a trailing null)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    values = pa.concat_arrays([array.dictionary, pa.nulls(1, array.dictionary.type)])
    codes = array.indices.fill_null(len(array.dictionary)).to_numpy().astype(np.int64)
    return codes, values


def group(table: pa.Table, spec: TableSpec, *, merging: bool) -> pa.Table:
    """Group ``table`` by the spec's keys (``merging``: combine partial results).

    The keys are folded into one int64 (mixed radix over each key's distinct values) before
    the hash aggregation and unfolded after it: measured several times faster than hashing
    several string or dictionary columns.
    """
    aggs = [(m.name if merging else m.source, m.merge if merging else m.agg) for m in spec.measures]
    rename = {f"{src}_{fn}": m.name for (src, fn), m in zip(aggs, spec.measures, strict=True)}
    coded = [_codes(table.column(k)) for k in spec.keys]
    radices = [len(values) for _, values in coded]
    if float(np.prod(np.array(radices, np.float64))) >= 2.0**62:
        out = table.group_by(list(spec.keys), use_threads=False).aggregate(aggs)
    else:
        composite = np.zeros(table.num_rows, np.int64)
        for codes, radix in zip((c for c, _ in coded), radices, strict=True):
            composite = composite * radix + codes
        narrow = pa.table({"__key": composite, **{src: table.column(src) for src, _ in aggs}})
        grouped = narrow.group_by(["__key"], use_threads=False).aggregate(aggs)
        key = grouped.column("__key").to_numpy()
        columns: dict[str, pa.Array] = {}
        for name, (_, values), radix in reversed(list(zip(spec.keys, coded, radices, strict=True))):
            columns[name] = values.take(pa.array(key % radix))
            key = key // radix
        out = pa.table(
            {
                **{k: columns[k] for k in spec.keys},
                **{c: grouped.column(c) for c in grouped.column_names if c != "__key"},
            }
        )
    out = out.rename_columns([rename.get(c, c) for c in out.column_names])
    return _normalise(out, spec)


def _not_equal(column: pa.ChunkedArray | pa.Array, value: str) -> pa.Array:
    """``column != value`` for a dictionary column, computed on the dictionary."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        return pc.fill_null(pc.not_equal(array.dictionary, value).take(array.indices), False)
    return pc.fill_null(pc.not_equal(array, value), False)


def _with_filters(batch: pa.RecordBatch) -> pa.Table:
    table = pa.Table.from_batches([batch])
    table = table.append_column("has_account", pc.is_valid(table.column("account")))
    table = table.append_column(
        "has_egress",
        pc.and_(pc.is_valid(table.column("account")), _not_equal(table.column("egress"), "")),
    )
    if "change" in table.column_names:
        table = table.append_column("changed", _not_equal(table.column("change"), "same"))
    # Account ids repeat within a batch: grouping on dictionary codes is several times faster
    # than hashing the strings.
    for name in ("account", "org"):
        i = table.column_names.index(name)
        column = table.column(name)
        if not pa.types.is_dictionary(column.type):
            table = table.set_column(i, name, pc.dictionary_encode(column))
    return table


class Accumulator:
    """Streams judged batches into the base tables with bounded memory."""

    def __init__(self, *, compare: bool, compact_rows: int = 2_000_000) -> None:
        self.specs = [s for s in BASE_TABLES if compare or not s.needs_compare]
        self.parts: dict[str, list[pa.Table]] = {s.name: [] for s in self.specs}
        self.sizes: dict[str, int] = dict.fromkeys(self.parts, 0)
        self.compact_rows = compact_rows

    def add(self, batch: pa.RecordBatch) -> None:
        """Group one judged batch and keep its partial results."""
        table = _with_filters(batch)
        for spec in self.specs:
            needed = list(dict.fromkeys([*spec.keys, *(m.source for m in spec.measures)]))
            rows = table.select(needed)
            if spec.where:
                rows = rows.filter(table.column(spec.where))
            if rows.num_rows == 0:
                continue
            part = group(rows, spec, merging=False)
            self.parts[spec.name].append(part)
            self.sizes[spec.name] += part.num_rows
            if self.sizes[spec.name] > self.compact_rows and len(self.parts[spec.name]) > 1:
                merged = group(pa.concat_tables(self.parts[spec.name]), spec, merging=True)
                self.parts[spec.name] = [merged]
                self.sizes[spec.name] = merged.num_rows

    def result(self) -> dict[str, pa.Table]:
        """The base tables (sorted by their keys, for stable output)."""
        out: dict[str, pa.Table] = {}
        for spec in self.specs:
            parts = self.parts[spec.name]
            if parts:
                table = group(pa.concat_tables(parts), spec, merging=True)
            else:
                table = empty_table(spec)
            out[spec.name] = sort_table(table, spec.keys)
        return out


def empty_table(spec: TableSpec) -> pa.Table:
    """A table of the spec's columns with no rows."""
    names = [*spec.keys, *(m.name for m in spec.measures)]
    return pa.table({n: pa.array([], _OUT_TYPES.get(n, pa.string())) for n in names})


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows in key order (nulls last), so that two engines' outputs compare row for row."""
    return table.sort_by([(k, "ascending") for k in keys])


def base_spec(name: str) -> TableSpec:
    """The spec of base table ``name``."""
    for spec in BASE_TABLES:
        if spec.name == name:
            return spec
    raise KeyError(name)


def _count_distinct(table: pa.Table, keys: list[str], column: str, out: str) -> pa.Table:
    valid = table.filter(pc.is_valid(table.column(column)))
    pairs = valid.group_by([*keys, column], use_threads=False).aggregate([])
    counted = pairs.group_by(keys, use_threads=False).aggregate([(column, "count")])
    return counted.rename_columns(
        [out if c == f"{column}_count" else c for c in counted.column_names]
    )


def _join(left: pa.Table, right: pa.Table, keys: list[str], fill: Sequence[str]) -> pa.Table:
    joined = left.join(right, keys=keys, join_type="left outer", use_threads=False)
    for name in fill:
        i = joined.column_names.index(name)
        joined = joined.set_column(
            i, name, pc.cast(pc.fill_null(joined.column(name), 0), pa.int64())
        )
    return joined


def derive_tables(base: Mapping[str, pa.Table], *, as_org: Any = None) -> dict[str, pa.Table]:
    """Tables derived from the base tables: ``orgs``, ``egress`` and ``compare``.

    ``as_org`` (``asn -> name or None``) names egress networks' AS organisations.
    """
    out: dict[str, pa.Table] = {}
    accounts = base["accounts"]

    # Per org x region x phase: the account measures summed, plus how many accounts.
    with_org = accounts.filter(pc.is_valid(accounts.column("org")))
    org_keys = ["org", "region", "phase"]
    sums = with_org.group_by(org_keys, use_threads=False).aggregate(
        [
            (m, "sum")
            for m in ("requests", "denied", "warned", "anonymized", "hosting", "unsupported")
        ]
        + [("first_seen", "min"), ("last_seen", "max")]
    )
    sums = sums.rename_columns(
        [
            c.rsplit("_", 1)[0] if c.endswith(("_sum", "_min", "_max")) else c
            for c in sums.column_names
        ]
    )
    counted = _count_distinct(with_org, org_keys, "account", "accounts")
    orgs = _join(sums, counted, org_keys, ["accounts"])
    out["orgs"] = sort_table(
        orgs.select(
            [
                *org_keys,
                "accounts",
                "requests",
                "denied",
                "warned",
                "anonymized",
                "hosting",
                "unsupported",
                "first_seen",
                "last_seen",
            ]
        ),
        org_keys,
    )

    # Per egress network: accounts behind it, and how many of them point to unsupported
    # regions (located requests from a region the policy denies or warns).
    links = base["account_egress"]
    egress_keys = ["egress", "asn", "kind"]
    per_account = accounts.group_by(["account"], use_threads=False).aggregate(
        [("unsupported", "sum")]
    )
    pointing = per_account.filter(pc.greater(per_account.column("unsupported_sum"), 0))
    is_pointing = pc.is_in(links.column("account"), value_set=pointing.column("account"))
    req = links.group_by(egress_keys, use_threads=False).aggregate([("requests", "sum")])
    req = req.rename_columns(["requests" if c == "requests_sum" else c for c in req.column_names])
    n_acc = _count_distinct(links, egress_keys, "account", "accounts")
    n_point = _count_distinct(links.filter(is_pointing), egress_keys, "account", "pointing")
    egress = _join(_join(req, n_acc, egress_keys, ["accounts"]), n_point, egress_keys, ["pointing"])
    share = pc.divide(
        pc.cast(egress.column("pointing"), pa.float64()),
        pc.cast(egress.column("accounts"), pa.float64()),
    )
    egress = egress.append_column("pointing_share", share)
    orgs_of = [
        (as_org(int(a)) if as_org is not None and a else None) or ""
        for a in egress.column("asn").to_pylist()
    ]
    egress = egress.append_column("as_org", pa.array(orgs_of, pa.string()))
    out["egress"] = sort_table(
        egress.select(
            [*egress_keys, "as_org", "requests", "accounts", "pointing", "pointing_share"]
        ),
        egress_keys,
    )

    if "changes" in base:
        changes = base["changes"]
        keys = ["region_b", "change", "reasons", "reasons_b"]
        req = changes.group_by(keys, use_threads=False).aggregate([("requests", "sum")])
        req = req.rename_columns(
            ["requests" if c == "requests_sum" else c for c in req.column_names]
        )
        acc = _count_distinct(changes, keys, "account", "accounts")
        org = _count_distinct(changes, keys, "org", "orgs")
        compare = _join(_join(req, acc, keys, ["accounts"]), org, keys, ["orgs"])
        compare = compare.rename_columns(
            ["region" if c == "region_b" else c for c in compare.column_names]
        )
        out["compare"] = sort_table(
            compare.select(
                ["change", "region", "reasons", "reasons_b", "requests", "accounts", "orgs"]
            ),
            ["change", "region", "reasons", "reasons_b"],
        )
    return out
