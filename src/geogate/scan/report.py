"""The scan report: one self-contained HTML file that opens offline.

Charts are Plotly figures. plotly.js comes from the ``plotly`` Python package (MIT) and is
embedded once; the world map's geometry (Natural Earth 1:50m countries via the npm package
``world-atlas``, public domain; see DATA-LICENSES) is embedded as
``window.PlotlyGeoAssets.topojson``, which plotly.js reads before it would fetch the map from
its CDN — so the report makes no network request at all.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa
import pyarrow.compute as pc
import pycountry

_TOP = 15


@cache
def _topology() -> str:
    return (
        importlib.resources.files("geogate.scan")
        .joinpath("assets/world_50m.json")
        .read_text(encoding="utf-8")
    )


@cache
def _alpha3(code: str) -> str | None:
    country = pycountry.countries.get(alpha_2=code[:2]) if len(code) >= 2 else None
    return country.alpha_3 if country is not None else None


def _sum_by(table: pa.Table, keys: list[str], value: str = "requests") -> list[dict[str, Any]]:
    if table.num_rows == 0:
        return []
    out = table.group_by(keys).aggregate([(value, "sum")])
    return [{**{k: r[k] for k in keys}, value: r[f"{value}_sum"]} for r in out.to_pylist()]


def _figure_html(fig: Any, div_id: str) -> str:
    html: str = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return html


def _map(daily: pa.Table) -> str:
    import plotly.graph_objects as go  # noqa: PLC0415 - large import, only for the report

    rows = daily.filter(pc.is_in(daily.column("action"), pa.array(["deny", "warn"])))
    by_country: dict[str, dict[str, int]] = {}
    for r in _sum_by(rows, ["region", "action"]):
        iso3 = _alpha3(r["region"])
        if iso3 is None:
            continue
        entry = by_country.setdefault(iso3, {"deny": 0, "warn": 0})
        entry[r["action"]] += int(r["requests"])
    locations = sorted(by_country)
    fig = go.Figure(
        go.Choropleth(
            locations=locations,
            locationmode="ISO-3",
            z=[by_country[c]["deny"] + by_country[c]["warn"] for c in locations],
            text=[
                f"denied {by_country[c]['deny']:,}, warned {by_country[c]['warn']:,}"
                for c in locations
            ],
            hovertemplate="%{location}: %{text}<extra></extra>",
            colorscale="Reds",
            colorbar={"title": {"text": "requests"}},
            marker_line_color="#888",
            marker_line_width=0.3,
        )
    )
    fig.update_geos(
        resolution=50,
        showcoastlines=False,
        showland=True,
        landcolor="#eeeeee",
        showcountries=True,
        countrycolor="#bbbbbb",
        showocean=False,
        showlakes=False,
        showrivers=False,
        showframe=False,
        projection_type="natural earth",
        projection_rotation_lon=0,
        center={"lon": 0, "lat": 15},
        lonaxis_range=[-180, 180],
        lataxis_range=[-58, 85],
    )
    fig.update_layout(
        title="Denied and warned requests by country (territories counted in their country)",
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        height=460,
    )
    return _figure_html(fig, "map")


def _daily(daily: pa.Table, pivot: str) -> str:
    import plotly.graph_objects as go  # noqa: PLC0415

    rows = _sum_by(daily, ["day", "action"])
    days = sorted({r["day"] for r in rows})
    fig = go.Figure()
    colors = {"allow": "#4c9f70", "warn": "#e0a100", "deny": "#c0392b", "invalid": "#888888"}
    for action in ("allow", "warn", "deny", "invalid"):
        counts = {r["day"]: r["requests"] for r in rows if r["action"] == action}
        if counts:
            fig.add_trace(
                go.Bar(
                    x=[d.isoformat() for d in days],
                    y=[counts.get(d, 0) for d in days],
                    name=action,
                    marker_color=colors[action],
                )
            )
    fig.add_shape(
        type="line",
        x0=pivot[:10],
        x1=pivot[:10],
        y0=0,
        y1=1,
        yref="paper",
        line={"dash": "dot", "color": "#333"},
    )
    fig.update_layout(
        barmode="stack",
        title=f"Requests per day by action (dotted: {pivot[:10]})",
        height=360,
        margin={"t": 40},
    )
    return _figure_html(fig, "daily")


def _anonymizers(daily: pa.Table) -> str:
    import plotly.graph_objects as go  # noqa: PLC0415

    rows = _sum_by(daily, ["region", "kind"])
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["region"]] = totals.get(r["region"], 0) + int(r["requests"])
    top = sorted(totals, key=lambda k: -totals[k])[:20]
    fig = go.Figure()
    for kind in ("tor", "vpn", "residential_proxy", "proxy", "anonymous", "hosting", "relay"):
        share = {
            r["region"]: r["requests"] / totals[r["region"]] for r in rows if r["kind"] == kind
        }
        if any(share.get(g) for g in top):
            fig.add_trace(
                go.Bar(x=[g or "unknown" for g in top], y=[share.get(g, 0) for g in top], name=kind)
            )
    fig.update_layout(
        barmode="stack",
        title="Share of requests through anonymizers and datacenters, by region (top 20)",
        yaxis={"tickformat": ".0%"},
        height=360,
        margin={"t": 40},
    )
    return _figure_html(fig, "anonymizers")


def _compare(compare: pa.Table) -> str:
    import plotly.graph_objects as go  # noqa: PLC0415

    rows = _sum_by(compare, ["change", "region"])
    fig = go.Figure()
    for change in ("newly_denied", "released", "newly_warned", "warning_lifted", "other"):
        sel = sorted((r for r in rows if r["change"] == change), key=lambda r: -r["requests"])
        if sel:
            fig.add_trace(
                go.Bar(
                    x=[r["region"] or "unknown" for r in sel[:25]],
                    y=[r["requests"] for r in sel[:25]],
                    name=change,
                )
            )
    fig.update_layout(
        barmode="group",
        title="Policy comparison: requests whose outcome changes, by region",
        height=360,
        margin={"t": 40},
    )
    return _figure_html(fig, "compare")


def _top_accounts(accounts: pa.Table, links: pa.Table) -> list[dict[str, Any]]:
    if accounts.num_rows == 0:
        return []
    agg = (
        accounts.group_by(["account", "org"])
        .aggregate(
            [
                ("requests", "sum"),
                ("denied", "sum"),
                ("warned", "sum"),
                ("anonymized", "sum"),
                ("first_seen", "min"),
                ("last_seen", "max"),
            ]
        )
        .to_pylist()
    )
    agg.sort(key=lambda r: (-(r["denied_sum"] + r["warned_sum"]), -r["requests_sum"]))
    agg = agg[:_TOP]
    top = pa.array([r["account"] for r in agg], pa.string())
    regions: dict[str, list[tuple[int, str]]] = {}
    for r in accounts.filter(pc.is_in(accounts.column("account"), value_set=top)).to_pylist():
        regions.setdefault(r["account"], []).append((r["requests"], r["region"] or "unknown"))
    egress: dict[str, int] = {}
    mine = links.filter(pc.is_in(links.column("account"), value_set=top))
    for r in mine.group_by(["account"]).aggregate([("egress", "count_distinct")]).to_pylist():
        egress[r["account"]] = r["egress_count_distinct"]
    out = []
    for r in agg:
        top_regions = sorted(regions[r["account"]], reverse=True)
        by_region: dict[str, int] = {}
        for n, g in top_regions:
            by_region[g] = by_region.get(g, 0) + n
        out.append(
            {
                "account": r["account"],
                "org": r["org"] or "",
                "requests": r["requests_sum"],
                "denied": r["denied_sum"],
                "warned": r["warned_sum"],
                "anonymized_share": r["anonymized_sum"] / max(1, r["requests_sum"]),
                "regions": ", ".join(
                    f"{g} {n:,}" for g, n in sorted(by_region.items(), key=lambda x: -x[1])[:4]
                ),
                "egress": egress.get(r["account"], 0),
                "first_seen": r["first_seen_min"],
                "last_seen": r["last_seen_max"],
            }
        )
    return out


def _top_orgs(orgs: pa.Table, accounts: pa.Table) -> list[dict[str, Any]]:
    if orgs.num_rows == 0:
        return []
    agg = (
        orgs.group_by(["org"])
        .aggregate(
            [("requests", "sum"), ("denied", "sum"), ("warned", "sum"), ("anonymized", "sum")]
        )
        .to_pylist()
    )
    agg.sort(key=lambda r: (-(r["denied_sum"] + r["warned_sum"]), -r["requests_sum"]))
    agg = agg[:_TOP]
    top = pa.array([r["org"] for r in agg], pa.string())
    mine = accounts.filter(pc.is_in(accounts.column("org"), value_set=top))
    distinct = {
        r["org"]: r["account_count_distinct"]
        for r in mine.group_by(["org"]).aggregate([("account", "count_distinct")]).to_pylist()
    }
    return [
        {
            "org": r["org"],
            "requests": r["requests_sum"],
            "denied": r["denied_sum"],
            "warned": r["warned_sum"],
            "anonymized_share": r["anonymized_sum"] / max(1, r["requests_sum"]),
            "accounts": distinct.get(r["org"], 0),
        }
        for r in agg
    ]


def _top_egress(egress: pa.Table) -> list[dict[str, Any]]:
    order = [("pointing", "descending"), ("accounts", "descending"), ("requests", "descending")]
    rows: list[dict[str, Any]] = egress.sort_by(order).slice(0, _TOP).to_pylist()
    return rows


_TEMPLATE = jinja2.Environment(
    loader=jinja2.PackageLoader("geogate.scan", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_report(tables: Mapping[str, pa.Table], summary: Mapping[str, Any]) -> str:
    """The report as one HTML document (plotly.js and the map geometry inlined)."""
    from plotly.offline import get_plotlyjs  # noqa: PLC0415

    daily = tables["daily"]
    charts = {
        "map": _map(daily),
        "daily": _daily(daily, str(summary["pivot"])),
        "anonymizers": _anonymizers(daily),
        "compare": _compare(tables["compare"]) if "compare" in tables else "",
    }
    territories = []
    by_region = {r["region"]: r for r in _sum_by(daily, ["region"])}
    denied_by_region = {
        r["region"]: r["requests"]
        for r in _sum_by(daily.filter(pc.equal(daily.column("action"), "deny")), ["region"])
    }
    for t in summary.get("territory_rules", []):
        territories.append(
            {
                **t,
                "requests": by_region.get(t["region"], {}).get("requests", 0),
                "denied": denied_by_region.get(t["region"], 0),
            }
        )
    preview = tables.get("account_preview")
    return _TEMPLATE.get_template("report.html.j2").render(
        summary=summary,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        charts=charts,
        territories=territories,
        accounts=_top_accounts(tables["accounts"], tables["account_egress"]),
        orgs=_top_orgs(tables["orgs"], tables["accounts"]),
        egress=_top_egress(tables["egress"]),
        compare=tables["compare"].slice(0, 40).to_pylist() if "compare" in tables else None,
        preview=preview.slice(0, 50).to_pylist() if preview is not None else None,
        plotly_js=get_plotlyjs(),
        topology=_topology(),
        geo_assets_json=json.dumps,
    )


def write_report(out: Path, tables: Mapping[str, pa.Table], summary: Mapping[str, Any]) -> Path:
    """Write ``out/report.html``; returns its path."""
    path = out / "report.html"
    path.write_text(render_report(tables, summary), encoding="utf-8")
    return path
