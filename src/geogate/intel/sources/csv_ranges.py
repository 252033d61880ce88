"""CSV range files: ``start,end,value[,more]`` with addresses or integers.

Three value kinds:

- ``country``: value is an ISO 3166-1 alpha-2 code (``1.0.0.0,1.0.0.255,AU``);
- ``asn``: value is an AS number (``AS`` prefix allowed), ``more`` the organisation
  (ip-location-db ``asn-ipv4.csv``: ``1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."``);
- ``flag``: value names flags (``hosting``, ``tor``, ``vpn``, ``proxy``, ``relay``; several
  joined by ``|``); when the source is configured with a flag, the value may be omitted.

Integer forms (``16777216,16777471,13335,...``) are IPv6 when the source is configured with
``ip_version = 6``, when either bound exceeds 2**32-1, or when the file name says ``ipv6``.
Blank lines and lines starting with ``#`` are ignored; a first line that is not data is taken
as a header. Any other bad line is skipped and reported with its line number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

from geogate.errors import IntelDataError
from geogate.intel.addresses import V4_MAX, V6_MAX, IPVersion, parse_address
from geogate.intel.facts import NetworkFlag
from geogate.intel.sources import MAX_LINE_CHARS, ProblemLog, SourceRange

CsvKind = Literal["country", "asn", "flag"]
CSV_KINDS: Final = ("country", "asn", "flag")


# IP2Proxy's proxy_type codes (its PX2 and later CSV files: ip_from, ip_to, proxy_type, ...).
# SES (search engine robots) names no anonymizer, so such a row is skipped as unknown.
IP2PROXY_TYPES: Final = {
    "DCH": NetworkFlag.HOSTING,  # hosting provider, data center or CDN
    "PUB": NetworkFlag.PROXY,  # public proxy
    "WEB": NetworkFlag.PROXY,  # web proxy
    "RES": NetworkFlag.RESIDENTIAL_PROXY,  # residential proxy
    "CPN": NetworkFlag.RELAY,  # consumer privacy network (iCloud Private Relay and similar)
    "EPN": NetworkFlag.HOSTING,  # enterprise private network: a company's cloud egress
}


def parse_flags(text: str) -> NetworkFlag | None:
    """Flag names joined by ``|`` (``"vpn|proxy"``), or an IP2Proxy ``proxy_type`` code
    (``VPN``, ``TOR``, ``DCH``, ``PUB``, ``WEB``, ``RES``, ``CPN``, ``EPN``), as a NetworkFlag;
    None if one is unknown."""
    flags = NetworkFlag.NONE
    for part in text.replace(";", "|").split("|"):
        word = part.strip().upper()
        if not word:
            continue
        member = IP2PROXY_TYPES.get(word) or NetworkFlag.__members__.get(word)
        if member is None or member is NetworkFlag.NONE:
            return None
        flags |= member
    return flags


class CsvRangeSource:
    """A ``start,end,value[,more]`` CSV file as a :class:`~geogate.intel.sources.RangeSource`."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        kind: CsvKind,
        flag: NetworkFlag = NetworkFlag.NONE,
        ip_version: IPVersion | None = None,
    ) -> None:
        """``kind`` is ``"country"``, ``"asn"`` or ``"flag"``; ``flag`` is the flag set on
        every line of a flag file whose value column is empty or absent."""
        if kind not in CSV_KINDS:
            raise IntelDataError(f"unknown CSV kind {kind!r}", path=str(path))
        self._path = Path(path)
        self._name = name
        self._kind = kind
        self._flag = flag
        self._ip_version = ip_version
        self._int_v6 = ip_version == 6 or (ip_version is None and "ipv6" in self._path.name)

    @property
    def name(self) -> str:
        """The source name used in provenance."""
        return self._name

    def ranges(self, problems: ProblemLog) -> Iterator[SourceRange]:
        """Yield one range per valid line, in file order."""
        where = self._path.name
        try:
            fh = self._path.open(encoding="utf-8-sig", errors="replace", newline="")
        except OSError as exc:
            raise IntelDataError(
                f"cannot read: {exc.strerror or exc}", path=str(self._path)
            ) from exc
        with fh:
            for lineno, line in enumerate(fh, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if len(text) > MAX_LINE_CHARS:
                    problems.warn(
                        where, f"line longer than {MAX_LINE_CHARS} characters", line=lineno
                    )
                    continue
                try:
                    row = next(csv.reader(io.StringIO(text)))
                except (csv.Error, StopIteration):
                    problems.warn(where, "not a CSV line", line=lineno)
                    continue
                result = self._parse_row(row)
                if isinstance(result, str):
                    if lineno == 1 and _looks_like_header(row):
                        continue
                    problems.warn(where, result, line=lineno)
                    continue
                yield result

    def _parse_row(self, row: list[str]) -> SourceRange | str:
        need = 2 if (self._kind == "flag" and self._flag) else 3
        if len(row) < need:
            return f"want start,end,value; got {len(row)} field(s)"
        bounds = self._parse_bounds(row[0].strip(), row[1].strip())
        if isinstance(bounds, str):
            return bounds
        version, first, last = bounds
        value = row[2].strip() if len(row) > 2 else ""
        if self._kind == "country":
            code = value.upper()
            if len(code) != 2 or not code.isascii() or not code.isalpha():
                return f"not a country code: {value[:40]!r}"
            if code in ("ZZ", "XX"):
                return SourceRange(version=version, first=first, last=last)
            return SourceRange(version=version, first=first, last=last, country=code)
        if self._kind == "asn":
            digits = value.upper().removeprefix("AS")
            if not digits.isdigit() or not 0 <= int(digits) < 1 << 32:
                return f"not an AS number: {value[:40]!r}"
            asn = int(digits)
            org = row[3].strip() if len(row) > 3 and row[3].strip() else None
            if asn == 0:  # AS0: "not routed" in RouteViews-derived data
                return SourceRange(version=version, first=first, last=last)
            return SourceRange(version=version, first=first, last=last, asn=asn, as_org=org)
        flags = parse_flags(value) if value else self._flag
        if flags is None:
            return f"unknown flag name in {value[:40]!r}"
        if not flags:
            return "no flag given and the source has no default flag"
        return SourceRange(version=version, first=first, last=last, flags=flags)

    def _parse_bounds(self, a: str, b: str) -> tuple[IPVersion, int, int] | str:
        if a.isdigit() and b.isdigit():
            first, last = int(a), int(b)
            v6 = self._int_v6 or first > V4_MAX or last > V4_MAX
            top = V6_MAX if v6 else V4_MAX
            if last > top:
                return f"integer address out of range: {b[:45]}"
            if first > last:
                return f"start {a} is after end {b}"
            return (6 if v6 else 4), first, last
        pa = parse_address(a)
        pb = parse_address(b)
        if pa is None or pb is None:
            bad = a if pa is None else b
            return f"not an IP address: {bad[:45]!r}"
        if pa[0] != pb[0]:
            return "start and end are of different IP versions"
        if self._ip_version is not None and pa[0] != self._ip_version:
            return f"IPv{pa[0]} address in an IPv{self._ip_version} file"
        if pa[1] > pb[1]:
            return f"start {a} is after end {b}"
        return pa[0], pa[1], pb[1]


def _looks_like_header(row: list[str]) -> bool:
    first = row[0].strip()
    return bool(first) and not first[0].isdigit() and ":" not in first
