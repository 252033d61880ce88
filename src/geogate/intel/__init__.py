"""IP intelligence: the compiled snapshot, its lookup port and the source adapters.

Most callers need only ``Snapshot.embedded()`` (or ``Snapshot.load(path)``) and
``snapshot.lookup(ip) -> IntelFacts``; batch scans use ``locate_many`` and the columns.
Building a snapshot from data files lives in :mod:`geogate.intel.build`.
"""

from __future__ import annotations

from geogate.intel.facts import IntelFacts, IntelLookup, NetworkFlag, Provenance
from geogate.intel.snapshot import Snapshot, SnapshotMeta, SourceInfo

__all__ = [
    "IntelFacts",
    "IntelLookup",
    "NetworkFlag",
    "Provenance",
    "Snapshot",
    "SnapshotMeta",
    "SourceInfo",
]
