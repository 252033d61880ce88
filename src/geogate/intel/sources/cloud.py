"""Cloud-provider address lists -> HOSTING flag.

Reads AWS ``ip-ranges.json`` (``prefixes[].ip_prefix``, ``ipv6_prefixes[].ipv6_prefix``),
Google ``cloud.json`` / ``goog.json`` (``prefixes[].ipv4Prefix`` / ``ipv6Prefix``), Azure
service tags (``values[].properties.addressPrefixes[]``), Oracle (``regions[].cidrs[].cidr``),
and plain text lists with one CIDR or address per line (``#`` comments allowed). JSON is
recognised by its first character; in JSON every string under one of the keys above counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from geogate.errors import IntelDataError
from geogate.intel.addresses import parse_network
from geogate.intel.facts import NetworkFlag
from geogate.intel.sources import MAX_LINE_CHARS, ProblemLog, SourceRange

PREFIX_KEYS: Final = frozenset(
    {"ip_prefix", "ipv6_prefix", "ipv4Prefix", "ipv6Prefix", "addressPrefixes", "cidr", "prefix"}
)
MAX_JSON_BYTES: Final = 256 * 1024 * 1024


class CloudRangesSource:
    """A cloud provider's published ranges as a :class:`~geogate.intel.sources.RangeSource`."""

    def __init__(
        self, path: str | Path, *, name: str, flag: NetworkFlag = NetworkFlag.HOSTING
    ) -> None:
        """``flag`` is set on every listed network (HOSTING unless configured otherwise)."""
        self._path = Path(path)
        self._name = name
        self._flag = flag

    @property
    def name(self) -> str:
        """The source name used in provenance."""
        return self._name

    def ranges(self, problems: ProblemLog) -> Iterator[SourceRange]:
        """Yield every listed network; bad entries are reported with line or JSON path."""
        try:
            if self._path.stat().st_size > MAX_JSON_BYTES:
                raise IntelDataError("file too large for a range list", path=str(self._path))
            text = self._path.read_text(encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            raise IntelDataError(
                f"cannot read: {exc.strerror or exc}", path=str(self._path)
            ) from exc
        if text.lstrip().startswith("{"):
            yield from self._json_ranges(text, problems)
        else:
            yield from self._text_ranges(text, problems)

    def _json_ranges(self, text: str, problems: ProblemLog) -> Iterator[SourceRange]:
        where = self._path.name
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.warn(where, f"not valid JSON: {exc.msg}", line=exc.lineno)
            return
        found = 0
        for path, value in _prefix_strings(doc, "$"):
            parsed = parse_network(value) if isinstance(value, str) else None
            if parsed is None:
                problems.warn(where, f"{path}: not a network: {str(value)[:45]!r}")
                continue
            found += 1
            version, first, last = parsed
            yield SourceRange(version=version, first=first, last=last, flags=self._flag)
        if not found:
            problems.warn(where, "no network prefixes found in JSON")

    def _text_ranges(self, text: str, problems: ProblemLog) -> Iterator[SourceRange]:
        where = self._path.name
        for lineno, line in enumerate(text.splitlines(), start=1):
            item = line.split("#", 1)[0].strip()
            if not item:
                continue
            if len(item) > MAX_LINE_CHARS:
                problems.warn(where, f"line longer than {MAX_LINE_CHARS} characters", line=lineno)
                continue
            parsed = parse_network(item.split(",", 1)[0])
            if parsed is None:
                problems.warn(where, f"not a network: {item[:45]!r}", line=lineno)
                continue
            version, first, last = parsed
            yield SourceRange(version=version, first=first, last=last, flags=self._flag)


def _prefix_strings(node: object, path: str) -> Iterator[tuple[str, object]]:
    """(JSON path, value) of every item stored under a prefix key, depth first."""
    stack: list[tuple[object, str]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, value in reversed(list(item.items())):
                sub = f"{where}.{key}"
                if key in PREFIX_KEYS:
                    values = value if isinstance(value, list) else [value]
                    for i, v in enumerate(values):
                        if isinstance(v, dict | list):
                            stack.append((v, f"{sub}[{i}]"))
                        else:
                            yield (f"{sub}[{i}]" if isinstance(value, list) else sub), v
                elif isinstance(value, dict | list):
                    stack.append((value, sub))
        elif isinstance(item, list):
            for i in range(len(item) - 1, -1, -1):
                stack.append((item[i], f"{where}[{i}]"))
