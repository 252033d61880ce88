"""Build the world map geometry embedded in the scan report (src/geogate/scan/assets).

Input: ``countries-50m.json`` of the npm package ``world-atlas`` (Natural Earth 1:50m admin-0
countries, public domain; packaging ISC). Output: the same TopoJSON with each country's id
rewritten from ISO 3166-1 numeric to alpha-3 (what Plotly's ``locationmode="ISO-3"``
matches), objects ``countries`` and ``land``, as Plotly's geo subplot expects them.

    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    python scripts/build_world_topology.py package/countries-50m.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pycountry

TARGET = Path(__file__).resolve().parents[1] / "src/geogate/scan/assets/world_50m.json"


def main(source: str) -> None:
    topo = json.loads(Path(source).read_text())
    kept = []
    for geom in topo["objects"]["countries"]["geometries"]:
        numeric = str(geom.get("id", "")).zfill(3)
        country = pycountry.countries.get(numeric=numeric) if numeric.strip("0") else None
        if country is None:
            continue  # Kosovo, Northern Cyprus, Somaliland ...: no ISO numeric code
        kept.append({**geom, "id": country.alpha_3, "properties": {"name": country.name}})
    topo["objects"]["countries"]["geometries"] = kept
    TARGET.write_text(json.dumps(topo, separators=(",", ":")))
    print(f"wrote {TARGET}: {len(kept)} countries")


if __name__ == "__main__":
    main(sys.argv[1])
