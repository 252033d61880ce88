"""The Tor bulk exit list: one exit address per line -> TOR flag.

Accepts the plain bulk list (``185.220.101.1``) and the ``exit-addresses`` format
(``ExitAddress 185.220.101.1 2026-06-01 10:00:00``; its other keyword lines are ignored).
Blank lines and ``#`` comments are ignored; anything else that is not an address is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

from geogate.errors import IntelDataError
from geogate.intel.addresses import parse_address
from geogate.intel.facts import NetworkFlag
from geogate.intel.sources import MAX_LINE_CHARS, ProblemLog, SourceRange

_EXIT_ADDRESSES_KEYWORDS: Final = frozenset({"ExitNode", "Published", "LastStatus"})


class TorExitListSource:
    """A Tor exit list as a :class:`~geogate.intel.sources.RangeSource` (single addresses)."""

    def __init__(self, path: str | Path, *, name: str, flag: NetworkFlag = NetworkFlag.TOR) -> None:
        """``flag`` is set on every listed address (TOR unless configured otherwise)."""
        self._path = Path(path)
        self._name = name
        self._flag = flag

    @property
    def name(self) -> str:
        """The source name used in provenance."""
        return self._name

    def ranges(self, problems: ProblemLog) -> Iterator[SourceRange]:
        """Yield one single-address range per listed exit."""
        where = self._path.name
        try:
            fh = self._path.open(encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            raise IntelDataError(
                f"cannot read: {exc.strerror or exc}", path=str(self._path)
            ) from exc
        with fh:
            for lineno, line in enumerate(fh, start=1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                if len(text) > MAX_LINE_CHARS:
                    problems.warn(
                        where, f"line longer than {MAX_LINE_CHARS} characters", line=lineno
                    )
                    continue
                words = text.split()
                if words[0] in _EXIT_ADDRESSES_KEYWORDS:
                    continue
                token = words[1] if words[0] == "ExitAddress" and len(words) > 1 else words[0]
                parsed = parse_address(token)
                if parsed is None or (len(words) > 1 and words[0] != "ExitAddress"):
                    problems.warn(where, f"not an address: {text[:45]!r}", line=lineno)
                    continue
                version, value = parsed
                yield SourceRange(version=version, first=value, last=value, flags=self._flag)
