"""A world map as inline SVG, from the vendored Natural Earth TopoJSON (``world-atlas``).

The geometry is ``static/vendor/world-atlas/countries-110m.json`` (npm ``world-atlas@2.0.2``,
ISC; Natural Earth 1:110m Admin 0 boundaries, public domain; see DATA-LICENSES). It is decoded
here once (TopoJSON delta-encoded arcs, plain equirectangular projection) into one SVG path per
country, keyed by ISO 3166-1 alpha-2 code. No JavaScript draws the map: pages embed the SVG.

Natural Earth draws de facto boundaries at this scale; subdivisions (``UA-43``) are not on
the map, so callers fold a subdivision into its country and list it in text as well.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from html import escape
from importlib import resources
from typing import Any, Final

import pycountry

GEOMETRY: Final = "static/vendor/world-atlas/countries-110m.json"
#: The SVG viewBox: longitude -180..180 -> 0..360, latitude 85..-85 -> 0..170 (Antarctica cut).
WIDTH: Final = 360
HEIGHT: Final = 150
_TOP: Final = 84.0


def _alpha2(numeric: str | None) -> str | None:
    if not numeric or not numeric.isdigit():
        return None
    country = pycountry.countries.get(numeric=numeric.zfill(3))
    return None if country is None else str(country.alpha_2)


def _decode_arcs(topo: Mapping[str, Any]) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    out = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        out.append(points)
    return out


def _ring(arcs: list[list[tuple[float, float]]], indexes: list[int]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        points.extend(arc if not points else arc[1:])
    return points


def _path(rings: list[list[tuple[float, float]]]) -> str:
    parts = []
    for ring in rings:
        if ring and max(p[0] for p in ring) - min(p[0] for p in ring) > 180:
            # A ring across the antimeridian (Chukotka, Fiji): draw it east of 180 degrees,
            # where the viewBox cuts it, instead of as a band across the whole map.
            ring = [(lon + 360 if lon < 0 else lon, lat) for lon, lat in ring]  # noqa: PLW2901
        coords = []
        last = None
        for lon, lat in ring:
            pt = (round(lon + 180, 1), round(_TOP - max(min(lat, _TOP), _TOP - HEIGHT), 1))
            if pt != last:
                coords.append(f"{pt[0]:g} {pt[1]:g}")
                last = pt
        if len(coords) >= 3:
            parts.append("M" + "L".join(coords) + "Z")
    return "".join(parts)


@functools.cache
def country_paths() -> dict[str, str]:
    """ISO alpha-2 code -> SVG path data of that country (viewBox ``0 0 360 150``)."""
    text = resources.files("geogate.console").joinpath(GEOMETRY).read_text("utf-8")
    topo = json.loads(text)
    arcs = _decode_arcs(topo)
    paths: dict[str, str] = {}
    for geom in topo["objects"]["countries"]["geometries"]:
        code = _alpha2(geom.get("id"))
        if code is None or code == "AQ":  # Antarctica: no traffic, a third of the height
            continue
        if geom["type"] == "Polygon":
            polygons = [geom["arcs"]]
        elif geom["type"] == "MultiPolygon":
            polygons = geom["arcs"]
        else:
            continue
        rings = [_ring(arcs, ring) for polygon in polygons for ring in polygon]
        paths[code] = paths.get(code, "") + _path(rings)
    return paths


def world_svg(
    values: Mapping[str, float],
    *,
    title: str,
    classes: Mapping[str, str] | None = None,
) -> str:
    """An inline ``<svg>`` world map: each country in ``values`` is shaded by its share of the
    largest value (five steps, CSS classes ``m1``..``m5``), or given the CSS class in
    ``classes`` (which wins). Countries carry a ``<title>`` with their code and value, and the
    SVG an accessible name (``title``); the same numbers must also be shown as text nearby."""
    top = max(values.values(), default=0.0)
    items = []
    for code, d in sorted(country_paths().items()):
        css = (classes or {}).get(code)
        label = code
        if css is None and code in values and top > 0:
            step = min(5, 1 + int(4 * values[code] / top))
            css = f"m{step}"
        if code in values:
            label = f"{code}: {values[code]:g}"
        cls = f' class="{css}"' if css else ""
        items.append(f'<path{cls} d="{d}"><title>{escape(label)}</title></path>')
    return (
        f'<svg class="worldmap" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(items)}</svg>"
    )
