"""The aggregate tables of a scan, defined once, computed with NumPy and Arrow compute.

Base tables are grouped from judged batches (:class:`geogate.scan.judge.Verdicts`); each
batch is grouped on its own and the partial results are merged, and re-merged whenever they
grow past ``compact_rows``, so memory holds the distinct keys of the output, never the rows of
the log. The Spark engine computes the same base tables from the same :data:`BASE_TABLES`
definitions with Spark SQL; both engines then derive the remaining tables (orgs, egress
networks, the comparison) from the base tables with :func:`derive_tables`, so they cannot drift
apart (a test checks them row for row).

Why not a general group-by (DuckDB, Polars, or Arrow's own on the judged rows): nearly every
key of a request is a function of its client address, and a batch has several times fewer
distinct clients than rows. So the keys are classed per distinct outcome, accounts become
dense integer ids once per distinct value, and each row costs a few gathers and one
``bincount`` or a single-integer hash aggregation (the per-account table, which needs the
first and last time). Measured on this machine, this made the grouping about 4x cheaper than
Arrow's hash aggregation on the judged rows with the keys folded into one integer, which was
itself several times faster than hashing the string keys (see bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from geogate.scan.judge import (
    ACTIONS,
    CHANGES,
    DAY_US,
    EGRESS_NAMED_BASE,
    KINDS,
    Verdicts,
    cached_reason_names,
    egress_names,
)


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


_LIMIT: Final = 2**62


def _classes(
    columns: Sequence[npt.NDArray[np.int64]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Dense class ids of the rows of ``columns`` (equal tuples, equal ids) and one
    representative row per class.

    The columns are folded into one integer (mixed radix, each column's radix its maximum plus
    one) and hashed once; a fold that would overflow is compacted by hashing it first.
    """
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    fold = np.zeros(n, np.int64)
    bound = 1
    for column in columns:
        radix = int(column.max()) + 1
        if bound * radix >= _LIMIT:
            encoded = pc.dictionary_encode(pa.array(fold))
            fold = encoded.indices.to_numpy().astype(np.int64)
            bound = len(encoded.dictionary)
        fold = fold * radix + column
        bound *= radix
    encoded = pc.dictionary_encode(pa.array(fold))
    cls = encoded.indices.to_numpy().astype(np.int64)
    rep = np.zeros(len(encoded.dictionary), np.int64)
    rep[cls] = np.arange(n)  # any row of a class represents it: all hold the same tuple
    return cls, rep


def _count(keys: npt.NDArray[np.int64], size: int) -> tuple[npt.NDArray[np.int64], ...]:
    """The distinct values of ``keys`` (all below ``size``) and how often each occurs."""
    if size <= 4 * len(keys) + 65_536:
        counts = np.bincount(keys, minlength=size)
        present = np.flatnonzero(counts)
        return present, counts[present]
    grouped = pa.table({"k": keys}).group_by(["k"], use_threads=False).aggregate([("k", "count")])
    return (
        grouped.column("k").to_numpy(),
        grouped.column("k_count").to_numpy(),
    )


def _local(array: pa.Array) -> tuple[npt.NDArray[np.int64], pa.Array]:
    """Per row, an index into the distinct values, and the values followed by a null (the
    index of rows without a value)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    values = array.dictionary
    if values.type != pa.string():
        values = values.cast(pa.string())
    indices = array.indices
    if indices.null_count:
        indices = indices.fill_null(len(values))
    codes = indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, pa.concat_arrays([values, pa.nulls(1, pa.string())])


def _take(values: pa.Array, indices: npt.NDArray[np.int64]) -> pa.Array:
    return values.take(pa.array(indices))


@dataclass
class _Entities:
    """One batch's accounts and (account, org) pairs as dense local ids."""

    account: npt.NDArray[np.int64]  # per row, index into account_values
    account_values: pa.Array  # the batch's distinct accounts, then null
    has_account: npt.NDArray[np.bool_] | None  # per row; None: every row has one
    pair: npt.NDArray[np.int64]  # per row, local (account, org) id
    pair_account: npt.NDArray[np.int64]  # per local pair: index into account_values
    pair_org: npt.NDArray[np.int64]  # per local pair: index into org_values
    org_values: pa.Array


class Accumulator:
    """Streams judged batches (:class:`~geogate.scan.judge.Verdicts`) into the base tables
    with bounded memory.

    Per batch, the rows are grouped by integer keys built from a few gathers — the batch's
    outcome entries are classed first (a batch has far fewer distinct outcomes than rows),
    accounts and orgs are the batch's dictionary ids — and counted with ``bincount`` or one
    hash aggregation. A batch's partial result holds integer codes for everything but the
    account and org (taken once per distinct key); partial results are merged with NumPy
    whenever they pass ``compact_rows``, and region, kind, reason and egress names come back
    only for the output's distinct keys at the end.
    """

    def __init__(self, *, compare: bool, compact_rows: int = 2_000_000) -> None:
        self.specs = [s for s in BASE_TABLES if compare or not s.needs_compare]
        self.parts: dict[str, list[dict[str, Any]]] = {s.name: [] for s in self.specs}
        self.sizes: dict[str, int] = dict.fromkeys(self.parts, 0)
        self.compact_rows = compact_rows
        self.limits: dict[str, int] = dict.fromkeys(self.parts, compact_rows)
        self.masks: dict[int, int] = {}  # reason mask -> dense id
        self.mask_values: list[int] = []
        # Names for the output: regions (the snapshot's), egress networks other than IPv4
        # /24s (by id from EGRESS_NAMED_BASE, numbered by the judge; see absorb()).
        self.region_values: pa.Array | None = None
        self.egress_names: list[str] = []

    # ----- per batch ------------------------------------------------------------------

    def _entities(self, v: Verdicts) -> _Entities:
        account, account_values = _local(v.account)
        org, org_values = _local(v.org)
        null_account = len(account_values) - 1
        has_account = account != null_account if v.account.null_count else None
        # Usually an account belongs to one org: then the account id is the pair id.
        org_of = np.zeros(null_account + 1, np.int64)
        org_of[account] = org
        if np.array_equal(org_of[account], org):
            pair, pair_account, pair_org = account, np.arange(null_account + 1), org_of
        else:
            width = len(org_values)
            encoded = pc.dictionary_encode(pa.array(account * width + org))
            pair = encoded.indices.to_numpy().astype(np.int64)
            folded = encoded.dictionary.to_numpy()
            pair_account, pair_org = folded // width, folded % width
        return _Entities(
            account, account_values, has_account, pair, pair_account, pair_org, org_values
        )

    def _mask_ids(self, masks: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        encoded = pc.dictionary_encode(pa.array(masks, pa.uint32()))
        ids = []
        for mask in encoded.dictionary.to_pylist():
            j = self.masks.get(mask)
            if j is None:
                j = self.masks[mask] = len(self.mask_values)
                self.mask_values.append(mask)
            ids.append(j)
        out: npt.NDArray[np.int64] = np.array(ids, np.int64)[encoded.indices.to_numpy()]
        return out

    def _keep(self, name: str, part: dict[str, Any]) -> None:
        parts = self.parts[name]
        parts.append(part)
        self.sizes[name] += len(part["requests"])
        if self.sizes[name] > self.limits[name]:
            merged = _merge(name, parts)
            self.parts[name] = [merged]
            self.sizes[name] = len(merged["requests"])
            # Merge again when the new parts match what is kept: linear in the input even
            # when the output has more distinct keys than compact_rows.
            self.limits[name] = max(self.compact_rows, 2 * self.sizes[name])

    def add(self, v: Verdicts) -> None:
        """Group one judged batch and keep its partial results."""
        if v.rows == 0:
            return
        self.region_values = v.region_values
        self.egress_names = v.egress_names
        ent = self._entities(v)
        rid = self._mask_ids(v.a.reasons)
        self._daily(v, rid)
        self._accounts(v, ent)
        self._account_egress(v, ent)
        if "changes" in self.parts and v.b is not None:
            self._changes(v, ent, rid)

    def _daily(self, v: Verdicts, rid: npt.NDArray[np.int64]) -> None:
        region = v.a.region.astype(np.int64)
        kind = v.kind.astype(np.int64)
        action = v.a.action.astype(np.int64)
        cls, rep = _classes([region, kind, action, rid])
        day = v.ts_us // DAY_US
        first = int(day.min())
        span = int(day.max()) - first + 1
        keys, counts = _count((day - first) * len(rep) + cls[v.code], span * len(rep))
        row = rep[keys % len(rep)]
        self._keep(
            "daily",
            {
                "day": keys // len(rep) + first,
                "region": region[row],
                "kind": kind[row],
                "action": action[row],
                "reasons": rid[row],
                "requests": counts,
            },
        )

    def _accounts(self, v: Verdicts, ent: _Entities) -> None:
        flags = (
            (v.a.action == 2).astype(np.int64) * 16  # denied
            + (v.a.action == 1) * 8  # warned
            + v.anonymized() * 4
            + v.hosting() * 2
            + v.unsupported()
        )
        profile = v.a.region.astype(np.int64) * 32 + flags
        radix = int(profile.max()) + 1
        key = (ent.pair * radix + profile[v.code]) * 2 + (v.ts_us >= v.pivot_us)
        ts = v.ts_us
        if ent.has_account is not None:
            key, ts = key[ent.has_account], ts[ent.has_account]
        if not len(key):
            return
        grouped = (
            pa.table({"k": key, "ts": ts})
            .group_by(["k"], use_threads=False)
            .aggregate([("ts", "count"), ("ts", "min_max")])
        )
        k = grouped.column("k").to_numpy()
        counts = grouped.column("ts_count").to_numpy()
        span = grouped.column("ts_min_max").combine_chunks()
        prof = (k >> 1) % radix
        pair = (k >> 1) // radix
        self._keep(
            "accounts",
            {
                "account": _take(ent.account_values, ent.pair_account[pair]),
                "org": _take(ent.org_values, ent.pair_org[pair]),
                "region": prof >> 5,
                "phase": k & 1,
                "requests": counts,
                "denied": counts * ((prof >> 4) & 1),
                "warned": counts * ((prof >> 3) & 1),
                "anonymized": counts * ((prof >> 2) & 1),
                "hosting": counts * ((prof >> 1) & 1),
                "unsupported": counts * (prof & 1),
                "first_seen": span.field("min").to_numpy(),
                "last_seen": span.field("max").to_numpy(),
            },
        )

    def _account_egress(self, v: Verdicts, ent: _Entities) -> None:
        tracked = np.flatnonzero(v.egress >= 0)
        if not len(tracked):
            return
        # Class the tracked entries only; the others get class -1.
        cls_tracked, rep_tracked = _classes(
            [v.egress[tracked], v.asn[tracked], v.kind[tracked].astype(np.int64)]
        )
        cls = np.full(len(v.egress), -1, np.int64)
        cls[tracked] = cls_tracked
        rep = tracked[rep_tracked]
        row_cls = cls[v.code]
        rows = row_cls >= 0
        if ent.has_account is not None:
            rows &= ent.has_account
        pos = np.flatnonzero(rows)
        if not len(pos):
            return
        width = len(rep)
        keys, counts = _count(
            ent.account[pos] * width + row_cls[pos], len(ent.account_values) * width
        )
        row = rep[keys % width]
        self._keep(
            "account_egress",
            {
                "account": _take(ent.account_values, keys // width),
                "egress": v.egress[row],
                "asn": v.asn[row],
                "kind": v.kind[row].astype(np.int64),
                "requests": counts,
            },
        )

    def _changes(self, v: Verdicts, ent: _Entities, rid: npt.NDArray[np.int64]) -> None:
        b = v.b
        if b is None:
            return
        change = v.change().astype(np.int64)
        pos = np.flatnonzero((change != 0)[v.code])
        if not len(pos):
            return
        rid_b = self._mask_ids(b.reasons)
        region = v.a.region.astype(np.int64)
        region_b = b.region.astype(np.int64)
        cls, rep = _classes([region, region_b, change, rid, rid_b])
        width = len(rep)
        keys, counts = _count(
            ent.pair[pos] * width + cls[v.code[pos]], len(ent.pair_account) * width
        )
        row = rep[keys % width]
        pair = keys // width
        self._keep(
            "changes",
            {
                "region": region[row],
                "region_b": region_b[row],
                "change": change[row],
                "reasons": rid[row],
                "reasons_b": rid_b[row],
                "account": _take(ent.account_values, ent.pair_account[pair]),
                "org": _take(ent.org_values, ent.pair_org[pair]),
                "requests": counts,
            },
        )

    # ----- the tables -------------------------------------------------------------------

    def result(self) -> dict[str, pa.Table]:
        """The base tables (sorted by their keys, for stable output)."""
        out: dict[str, pa.Table] = {}
        for spec in self.specs:
            parts = self.parts[spec.name]
            if parts and self.region_values is not None:
                merged = _merge(spec.name, parts, encoded=True)
                table = self._strings(spec, merged, self.region_values)
                out[spec.name] = _plain(sort_table(table, spec.keys))
            else:
                out[spec.name] = empty_table(spec)
        return out

    # ----- across processes -----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What :meth:`absorb` needs to add this accumulator's counts to another's (in
        another process): the merged partial tables, with reason masks and egress names
        instead of this process's own ids."""
        masks = np.array(self.mask_values, np.int64)
        tables: dict[str, dict[str, Any]] = {}
        for spec in self.specs:
            if not self.parts[spec.name]:
                continue
            merged = _merge(spec.name, self.parts[spec.name])
            for key in ("reasons", "reasons_b"):
                if key in merged:
                    merged[key] = masks[merged[key]]
            tables[spec.name] = merged
        return {
            "tables": tables,
            "region_values": self.region_values,
            "egress_names": list(self.egress_names),
        }

    def absorb(self, state: Mapping[str, Any]) -> None:
        """Add the counts of another accumulator's :meth:`state` to this one's (region ids,
        reason masks and egress networks renumbered through their names)."""
        regions = self._region_ids(state["region_values"])
        named = {name: i for i, name in enumerate(self.egress_names)}
        for name, their in state["tables"].items():
            part = dict(their)
            for key in ("region", "region_b"):
                if key in part:
                    part[key] = regions[part[key]]
            for key in ("reasons", "reasons_b"):
                if key in part:
                    part[key] = self._mask_ids(part[key].astype(np.uint32))
            if "egress" in part:
                ids = part["egress"].copy()
                for i in np.flatnonzero(ids >= EGRESS_NAMED_BASE).tolist():
                    text = state["egress_names"][int(ids[i]) - EGRESS_NAMED_BASE]
                    if text not in named:
                        named[text] = len(self.egress_names)
                        self.egress_names.append(text)
                    ids[i] = EGRESS_NAMED_BASE + named[text]
                part["egress"] = ids
            self._keep(name, part)

    def _region_ids(self, labels: pa.Array | None) -> npt.NDArray[np.int64]:
        """This accumulator's ids of another's region ``labels`` (added when new)."""
        theirs = labels.to_pylist() if labels is not None else [""]
        mine = self.region_values.to_pylist() if self.region_values is not None else [""]
        index = {label: i for i, label in enumerate(mine)}
        ids = []
        for label in theirs:
            if label not in index:
                index[label] = len(mine)
                mine.append(label)
            ids.append(index[label])
        self.region_values = pa.array(mine, pa.string())
        return np.array(ids, np.int64)

    def _strings(
        self, spec: TableSpec, merged: dict[str, Any], region_values: pa.Array
    ) -> pa.Table:
        """Integer ids back to the output's values and types (text keys dictionary-encoded
        until sorted)."""
        names = {
            "region": region_values,
            "region_b": region_values,
            "kind": pa.array(KINDS),
            "action": pa.array(ACTIONS),
            "change": pa.array(CHANGES),
            "phase": pa.array(["before", "after"]),
        }
        reasons = pa.array([cached_reason_names(m) for m in self.mask_values], pa.string())
        names["reasons"] = names["reasons_b"] = reasons
        cols: dict[str, pa.Array] = {}
        for key in spec.keys:
            values = merged[key]
            if isinstance(values, pa.Array):
                cols[key] = values
            elif key in names:
                cols[key] = _dictionary(values, names[key])
            elif key == "day":
                cols[key] = pa.array(values.astype(np.int32), pa.int32()).cast(pa.date32())
            elif key == "egress":
                ids, index = np.unique(values, return_inverse=True)
                cols[key] = _dictionary(index.reshape(-1), egress_names(ids, self.egress_names))
            else:
                cols[key] = pa.array(values, _OUT_TYPES.get(key, pa.int64()))
        for m in spec.measures:
            values = merged[m.name]
            if m.name in {"first_seen", "last_seen"}:
                cols[m.name] = pa.array(values, pa.int64()).cast(_OUT_TYPES[m.name])
            else:
                cols[m.name] = pa.array(values, pa.int64())
        return pa.table(cols)


_MERGE: Final[Mapping[str, tuple[tuple[str, ...], Mapping[str, str]]]] = {
    spec.name: (spec.keys, {m.name: m.merge for m in spec.measures}) for spec in BASE_TABLES
}


def _merge(name: str, parts: list[dict[str, Any]], *, encoded: bool = False) -> dict[str, Any]:
    """Partial results of table ``name`` combined: one row per distinct key (a batch's own
    part may hold several rows per key: the per-account part is keyed by outcome class).

    ``encoded``: text keys come back dictionary-encoded (for the final tables: sorting ranks
    their distinct values), else as plain text (to be merged again).
    """
    keys, measures = _MERGE[name]
    columns: dict[str, Any] = {}
    for c, first in parts[0].items():
        if isinstance(first, pa.Array):
            columns[c] = pa.concat_arrays([p[c] for p in parts])
        else:
            columns[c] = np.concatenate([p[c] for p in parts])
    codes = []
    texts: dict[str, pa.Array] = {}
    for k in keys:
        column = columns[k]
        if isinstance(column, pa.Array):
            found = pc.dictionary_encode(column)
            texts[k] = pa.concat_arrays([found.dictionary, pa.nulls(1, found.dictionary.type)])
            indices = found.indices
            if indices.null_count:
                indices = indices.fill_null(len(found.dictionary))
            column = indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes.append(column)
    cls, rows = _classes(codes)
    out: dict[str, Any] = {}
    for k, code in zip(keys, codes, strict=True):
        if k not in texts:
            out[k] = code[rows]
        elif encoded:
            out[k] = _dictionary(code[rows], texts[k])
        else:
            out[k] = _take(texts[k], code[rows])
    groups = len(rows)
    for m, fn in measures.items():
        values = columns[m]
        if fn == "sum":
            # Exact: float64 holds integers to 2**53, far above any count here.
            out[m] = np.bincount(cls, weights=values, minlength=groups).astype(np.int64)
        else:
            folded = values[rows]  # a start value each group has
            (np.minimum if fn == "min" else np.maximum).at(folded, cls, values)
            out[m] = folded
    return out


def _dictionary(indices: npt.NDArray[np.int64], values: pa.Array) -> pa.DictionaryArray:
    """``values[indices]`` as a dictionary array (a null value stays null)."""
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), values)


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns decoded to their values."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            column = table.column(i).cast(field.type.value_type)
            table = table.set_column(i, field.name, column)
    return table


def empty_table(spec: TableSpec) -> pa.Table:
    """A table of the spec's columns with no rows."""
    names = [*spec.keys, *(m.name for m in spec.measures)]
    return pa.table({n: pa.array([], _OUT_TYPES.get(n, pa.string())) for n in names})


def _ranks(column: pa.ChunkedArray | pa.Array) -> tuple[npt.NDArray[np.int64], int]:
    """Dense ascending ranks of a column (nulls after every value) and how many there are.

    The column's distinct values are ranked (a table of accounts has far fewer accounts than
    rows, of days far fewer days), not its rows.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    values = encoded.dictionary
    of_value = pc.rank(values, sort_keys="ascending", tiebreaker="dense").to_numpy()
    of_value = np.append(of_value.astype(np.int64) - 1, len(values))
    indices = encoded.indices.fill_null(len(values))
    return of_value[indices.to_numpy(zero_copy_only=False)], len(values) + 1


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows in key order (ascending, nulls last), so that two engines' outputs compare row
    for row.

    Equal to ``table.sort_by`` on the keys, computed by folding each key's dense ranks into
    one integer and sorting that (several times faster than comparing strings row by row).
    """
    if table.num_rows <= 1 or not keys:
        return table
    ranks = [_ranks(table.column(k)) for k in keys]
    fold = np.zeros(table.num_rows, np.int64)
    bound = 1
    for rank, radix in ranks:
        if bound * radix >= _LIMIT:  # re-rank the keys so far before they overflow
            fold = np.unique(fold, return_inverse=True)[1].reshape(-1).astype(np.int64)
            bound = int(fold.max()) + 1
        fold = fold * radix + rank
        bound *= radix
    return table.take(pa.array(np.argsort(fold, kind="stable")))


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


def _key_codes(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    """Per row, an integer standing for its value (null: one more)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    indices = encoded.indices.fill_null(len(encoded.dictionary))
    codes: npt.NDArray[np.int64] = indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes


def _group(table: pa.Table, keys: list[str], aggs: list[tuple[str, str]]) -> pa.Table:
    """``table.group_by(keys).aggregate(aggs)`` with the keys hashed once as one integer
    (the base tables' string keys hash slowly in a multi-column group-by)."""
    codes = [_key_codes(table.column(k)) for k in keys]
    if table.num_rows == 0:
        return table.group_by(keys, use_threads=False).aggregate(aggs)
    cls, rep = _classes(codes)
    narrow = pa.table(
        {"__group": cls, **{c: table.column(c) for c in dict.fromkeys(a for a, _ in aggs)}}
    )
    grouped = narrow.group_by(["__group"], use_threads=False).aggregate(aggs)
    rows = pa.array(rep[grouped.column("__group").to_numpy()])
    return pa.table(
        {
            **{k: table.column(k).take(rows) for k in keys},
            **{c: grouped.column(c) for c in grouped.column_names if c != "__group"},
        }
    )


def derive_tables(base: Mapping[str, pa.Table], *, as_org: Any = None) -> dict[str, pa.Table]:
    """Tables derived from the base tables: ``orgs``, ``egress`` and ``compare``.

    ``as_org`` (``asn -> name or None``) names egress networks' AS organisations.
    """
    out: dict[str, pa.Table] = {}
    accounts = base["accounts"]

    # Per org x region x phase: the account measures summed, plus how many accounts (the
    # base table has one row per account x org x region x phase: accounts are its rows).
    with_org = accounts.filter(pc.is_valid(accounts.column("org")))
    org_keys = ["org", "region", "phase"]
    sums = _group(
        with_org,
        org_keys,
        [
            (m, "sum")
            for m in ("requests", "denied", "warned", "anonymized", "hosting", "unsupported")
        ]
        + [("first_seen", "min"), ("last_seen", "max"), ("requests", "count")],
    )
    sums = sums.rename_columns(
        [
            "accounts"
            if c == "requests_count"
            else c.rsplit("_", 1)[0]
            if c.endswith(("_sum", "_min", "_max"))
            else c
            for c in sums.column_names
        ]
    )
    out["orgs"] = sort_table(
        sums.select(
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
    # regions (located requests from a region the policy denies or warns). The base table
    # has one row per account x egress x ASN x kind: accounts are its rows.
    links = base["account_egress"]
    egress_keys = ["egress", "asn", "kind"]
    per_account = _group(accounts, ["account"], [("unsupported", "sum")])
    pointing = per_account.filter(pc.greater(per_account.column("unsupported_sum"), 0))
    is_pointing = pc.is_in(links.column("account"), value_set=pointing.column("account"))
    links = links.append_column("is_pointing", pc.cast(is_pointing, pa.int64()))
    egress = _group(
        links, egress_keys, [("requests", "sum"), ("requests", "count"), ("is_pointing", "sum")]
    )
    egress = egress.rename_columns(
        [
            {"requests_sum": "requests", "requests_count": "accounts"}.get(
                c, "pointing" if c == "is_pointing_sum" else c
            )
            for c in egress.column_names
        ]
    )
    share = pc.divide(
        pc.cast(egress.column("pointing"), pa.float64()),
        pc.cast(egress.column("accounts"), pa.float64()),
    )
    egress = egress.append_column("pointing_share", share)
    # One name per distinct AS number (an AS has many egress networks).
    asns, index = np.unique(egress.column("asn").to_numpy(), return_inverse=True)
    names = pa.array(
        [(as_org(a) if as_org is not None and a else None) or "" for a in asns.tolist()],
        pa.string(),
    )
    egress = egress.append_column("as_org", names.take(pa.array(index.reshape(-1))))
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
