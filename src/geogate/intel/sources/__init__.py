"""Source adapters: each turns one published data file into ranges with values.

Every adapter implements :class:`RangeSource` (or :class:`AsnFlagSource` for lists keyed by
AS number). Raw records stop here: what crosses into the build is :class:`SourceRange`.
Bad lines are skipped and reported to a :class:`ProblemLog` with file and line; valid lines
are never lost because of a bad neighbour.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from geogate.intel.addresses import IPVersion
from geogate.intel.facts import NetworkFlag

MAX_LINE_CHARS: Final = 4096
"""Input lines longer than this are rejected before parsing (hostile-input limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRange:
    """One range of addresses (``first``..``last`` inclusive, as integers) and what a source
    says about it. ``subdivision`` is an ISO 3166-2 code, ``more_subdivisions`` the further
    ones of the same record (a second level); ``city`` (with the source's GeoNames id, when it
    has one) is given only for ranges in the subdivisions built with city precision. Fields a
    source does not know are None (``flags`` NONE). ``provider`` and ``confidence`` (1-99) are
    anonymizer evidence (the VPN or proxy operator's name, the vendor's confidence), kept with
    the flags.
    """

    version: IPVersion
    first: int
    last: int
    country: str | None = None
    subdivision: str | None = None
    asn: int | None = None
    as_org: str | None = None
    flags: NetworkFlag = NetworkFlag.NONE
    provider: str | None = None
    confidence: int | None = None
    more_subdivisions: tuple[str, ...] = ()
    city: str | None = None
    geoname_id: int | None = None


@dataclass(slots=True)
class ProblemLog:
    """Collects one-line warnings about skipped input (file:line: message).

    At most ``keep_per_file`` lines are kept per file; ``counts`` has the full tally.
    """

    keep_per_file: int = 50
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def warn(self, where: str, message: str, *, line: int | None = None) -> None:
        """Record a skipped input item at ``where`` (a file name) and ``line`` (1-based)."""
        n = self.counts.get(where, 0) + 1
        self.counts[where] = n
        if n <= self.keep_per_file:
            loc = f"{where}:{line}" if line is not None else where
            self.lines.append(f"{loc}: {message}")
        elif n == self.keep_per_file + 1:
            self.lines.append(f"{where}: further problems not listed")

    @property
    def total(self) -> int:
        """How many problems were reported in all."""
        return sum(self.counts.values())


class RangeSource(Protocol):
    """A data source that yields ranges with values (see :class:`SourceRange`)."""

    @property
    def name(self) -> str:
        """The source name used in provenance (e.g. ``"dbip-city"``)."""
        ...

    def ranges(self, problems: ProblemLog) -> Iterator[SourceRange]:
        """Yield the source's ranges; report and skip bad input."""
        ...


class AsnFlagSource(Protocol):
    """A data source that flags whole autonomous systems (e.g. a hosting-ASN list)."""

    @property
    def name(self) -> str:
        """The source name used in provenance."""
        ...

    def asn_flags(self, problems: ProblemLog) -> Mapping[int, NetworkFlag]:
        """AS number -> flags to set on every range announced by that AS."""
        ...


__all__ = ["MAX_LINE_CHARS", "AsnFlagSource", "ProblemLog", "RangeSource", "SourceRange"]
