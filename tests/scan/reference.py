"""The scan's tables computed the plainest way, as a test oracle for the local engine.

Every judged row (one per request, :meth:`geogate.scan.judge.Verdicts.to_batch`) goes into
one table; each base table is Arrow's own multi-column group-by over the rows its
:class:`~geogate.scan.aggregate.TableSpec` selects, and the derived tables count distinct
accounts literally. No folding, classing, ranking or merging of partial results: what the
engine computes faster must come out equal to this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from geogate.scan.aggregate import BASE_TABLES, TableSpec, _normalise


def _sorted(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in keys])


def judged_rows(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    """Judged batches as one table, dictionary columns decoded."""
    tables = []
    for batch in batches:
        cols = [
            c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
            for c in batch.columns
        ]
        tables.append(pa.table(cols, names=batch.schema.names))
    return pa.concat_tables(tables)


def _where(table: pa.Table, spec: TableSpec) -> pa.Table:
    if spec.where == "has_account":
        return table.filter(pc.is_valid(table.column("account")))
    if spec.where == "has_egress":
        return table.filter(
            pc.and_(pc.is_valid(table.column("account")), pc.not_equal(table.column("egress"), ""))
        )
    if spec.where == "changed":
        return table.filter(pc.not_equal(table.column("change"), "same"))
    return table


def base_tables(judged: pa.Table, *, compare: bool) -> dict[str, pa.Table]:
    """The base tables of the judged rows."""
    rows = judged
    out = {}
    for spec in BASE_TABLES:
        if spec.needs_compare and not compare:
            continue
        selected = _where(rows, spec)
        grouped = selected.group_by(list(spec.keys), use_threads=False).aggregate(
            [(m.source, m.agg) for m in spec.measures]
        )
        names = {f"{m.source}_{m.agg}": m.name for m in spec.measures}
        grouped = grouped.rename_columns([names.get(c, c) for c in grouped.column_names])
        out[spec.name] = _sorted(_normalise(grouped, spec), spec.keys)
    return out


def _distinct(table: pa.Table, keys: list[str], column: str, out: str) -> pa.Table:
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


def _sum(table: pa.Table, keys: list[str], measures: Sequence[str]) -> pa.Table:
    grouped = table.group_by(keys, use_threads=False).aggregate([(m, "sum") for m in measures])
    return grouped.rename_columns([c.removesuffix("_sum") for c in grouped.column_names])


def derived_tables(base: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """``orgs``, ``egress`` (without AS names) and ``compare``, from the base tables."""
    out: dict[str, pa.Table] = {}
    accounts = base["accounts"]
    with_org = accounts.filter(pc.is_valid(accounts.column("org")))
    org_keys = ["org", "region", "phase"]
    flags = ["requests", "denied", "warned", "anonymized", "hosting", "unsupported"]
    sums = _sum(with_org, org_keys, flags)
    seen = with_org.group_by(org_keys, use_threads=False).aggregate(
        [("first_seen", "min"), ("last_seen", "max")]
    )
    seen = seen.rename_columns(
        [c.rsplit("_", 1)[0] if c.endswith(("_min", "_max")) else c for c in seen.column_names]
    )
    orgs = _join(
        _join(sums, seen, org_keys, []),
        _distinct(with_org, org_keys, "account", "accounts"),
        org_keys,
        ["accounts"],
    )
    out["orgs"] = _sorted(
        orgs.select([*org_keys, "accounts", *flags, "first_seen", "last_seen"]), org_keys
    )

    links = base["account_egress"]
    keys = ["egress", "asn", "kind"]
    per_account = _sum(accounts, ["account"], ["unsupported"])
    pointing = per_account.filter(pc.greater(per_account.column("unsupported"), 0))
    req = _sum(links, keys, ["requests"])
    n_acc = _distinct(links, keys, "account", "accounts")
    is_pointing = pc.is_in(links.column("account"), value_set=pointing.column("account"))
    n_point = _distinct(links.filter(is_pointing), keys, "account", "pointing")
    egress = _join(_join(req, n_acc, keys, ["accounts"]), n_point, keys, ["pointing"])
    share = pc.divide(
        pc.cast(egress.column("pointing"), pa.float64()),
        pc.cast(egress.column("accounts"), pa.float64()),
    )
    egress = egress.append_column("pointing_share", share)
    out["egress"] = _sorted(
        egress.select([*keys, "requests", "accounts", "pointing", "pointing_share"]), keys
    )

    if "changes" in base:
        changes = base["changes"]
        keys = ["region_b", "change", "reasons", "reasons_b"]
        req = _sum(changes, keys, ["requests"])
        acc = _distinct(changes, keys, "account", "accounts")
        org = _distinct(changes, keys, "org", "orgs")
        compare = _join(_join(req, acc, keys, ["accounts"]), org, keys, ["orgs"])
        compare = compare.rename_columns(
            ["region" if c == "region_b" else c for c in compare.column_names]
        )
        out["compare"] = _sorted(
            compare.select(
                ["change", "region", "reasons", "reasons_b", "requests", "accounts", "orgs"]
            ),
            ["change", "region", "reasons", "reasons_b"],
        )
    return out
