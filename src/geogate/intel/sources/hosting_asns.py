"""A list of hosting / cloud / VPS autonomous systems -> HOSTING flag on their ranges.

Two file formats: CSV ``asn,name,note`` (``AS`` prefix allowed, optional header), or one
``AS64500 # operator name`` per line as in X4BNet's ``ASN.txt``; ``#`` starts a comment
everywhere. The shipped list is X4BNet's maintained datacenter ASN list
(``geogate/intel/data/x4bnet/datacenter-asns.txt``, MIT).
"""

from __future__ import annotations

import csv
import importlib.resources
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from geogate.errors import IntelDataError
from geogate.intel.facts import NetworkFlag
from geogate.intel.sources import MAX_LINE_CHARS, ProblemLog

SHIPPED_NAME: Final = "x4bnet/datacenter-asns.txt"


class HostingAsnSource:
    """A hosting-ASN list as an :class:`~geogate.intel.sources.AsnFlagSource`.

    ``path=None`` reads the list shipped with geogate.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        name: str = "hosting-asns",
        flag: NetworkFlag = NetworkFlag.HOSTING,
    ) -> None:
        """``flag`` is set on every range whose AS is listed (HOSTING unless configured)."""
        self._path = None if path is None else Path(path)
        self._name = name
        self._flag = flag
        self.names: dict[int, str] = {}
        """AS number -> operator name as listed (filled by :meth:`asn_flags`)."""

    @property
    def name(self) -> str:
        """The source name used in provenance."""
        return self._name

    def _read(self) -> tuple[str, str]:
        if self._path is None:
            ref = importlib.resources.files("geogate.intel").joinpath(
                "data", *SHIPPED_NAME.split("/")
            )
            return SHIPPED_NAME.rsplit("/", 1)[-1], ref.read_text(encoding="utf-8")
        try:
            return self._path.name, self._path.read_text(encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            raise IntelDataError(
                f"cannot read: {exc.strerror or exc}", path=str(self._path)
            ) from exc

    def asn_flags(self, problems: ProblemLog) -> Mapping[int, NetworkFlag]:
        """AS number -> the configured flag, for every valid line."""
        where, text = self._read()
        out: dict[int, NetworkFlag] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            item = line.strip()
            if not item or item.startswith("#"):
                continue
            if len(item) > MAX_LINE_CHARS:
                problems.warn(where, f"line longer than {MAX_LINE_CHARS} characters", line=lineno)
                continue
            body, _, comment = item.partition("#")
            if "," in body:
                row = next(csv.reader(io.StringIO(body)))
            else:
                row = [body.strip(), comment.strip()]
            digits = row[0].strip().upper().removeprefix("AS")
            if not digits.isdigit() or not 0 < int(digits) < 1 << 32:
                if row[0].strip().lower() != "asn":
                    problems.warn(where, f"not an AS number: {row[0][:40]!r}", line=lineno)
                continue
            asn = int(digits)
            out[asn] = self._flag
            self.names[asn] = row[1].strip() if len(row) > 1 else ""
        return out
