"""What IP intelligence says about one address: the IntelFacts value and the IntelLookup port."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class NetworkFlag(enum.IntFlag):
    """Network kinds a source can attest. Stored as a bit mask in the snapshot."""

    NONE = 0
    HOSTING = 1  # datacenter / cloud / hosting provider network
    TOR = 2  # Tor exit relay
    VPN = 4  # commercial VPN egress
    PROXY = 8  # open or public proxy
    RELAY = 16  # location-preserving relay (iCloud Private Relay and similar)
    RESIDENTIAL_PROXY = 32  # proxy egress through home or mobile lines (paid proxy networks)
    ANONYMOUS = 64  # a vendor calls it anonymous without naming a kind (MaxMind is_anonymous)

    def names(self) -> tuple[str, ...]:
        """Lower-case names of the set flags, in bit order (e.g. ``("hosting", "tor")``)."""
        return tuple(f.name.lower() for f in NetworkFlag if f and f in self and f.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Which source answered a field, and how old its data is."""

    field: str  # "location", "subdivision", "asn", "flags", ...
    source: str  # source name as given at build time, e.g. "dbip-city"
    date: str  # the source's data date, ISO 8601 (YYYY-MM-DD)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntelFacts:
    """Everything the snapshot knows about one network range.

    ``country`` is an ISO 3166-1 alpha-2 code or None when no source knows the address.
    ``subdivision`` is an ISO 3166-2 code (``"UA-43"``) when a source has it; note that it may
    belong to another country than ``country`` (DB-IP files most Crimean networks under RU with
    subdivision UA-43). ``alt_country`` is what the lower-precedence location source said when it
    disagrees with ``country`` (None when it agrees or has nothing).
    ``more_subdivisions`` are the record's further subdivisions (a second level: a territory
    rule on any of them matches), ``city`` the city the location source gave (with its
    GeoNames id ``city_geoname_id`` when the source has one), kept only where the snapshot was
    built with city precision for the subdivision (``city_regions``); empty/None otherwise.
    ``network`` is the range the facts hold for, as ``"first-last"`` addresses.
    ``anonymizer_provider`` and ``anonymizer_confidence`` (1-99) are what an anonymizer
    database said about the flagged network (MaxMind Anonymous-Plus ``provider_name`` and
    ``anonymizer_confidence``, IPinfo privacy ``service``), None when it said nothing.
    ``embedding`` names how the looked-up address carried an IPv4 address (``"6to4"``,
    ``"teredo"``, ``"nat64"``, ``"ipv4-compatible"``, ``"ipv4-mapped"``, ...) when the facts are
    those of the embedded IPv4 address ``embedded_ipv4``; both are None otherwise.
    """

    country: str | None = None
    subdivision: str | None = None
    alt_country: str | None = None
    asn: int | None = None
    as_org: str | None = None
    flags: NetworkFlag = NetworkFlag.NONE
    network: str | None = None
    provenance: tuple[Provenance, ...] = field(default=())
    anonymizer_provider: str | None = None
    anonymizer_confidence: int | None = None
    embedding: str | None = None
    embedded_ipv4: str | None = None
    more_subdivisions: tuple[str, ...] = ()
    city: str | None = None
    city_geoname_id: int | None = None

    @classmethod
    def unknown(cls) -> IntelFacts:
        """Facts for an address no source knows."""
        return _UNKNOWN

    @property
    def subdivisions(self) -> tuple[str, ...]:
        """Every subdivision the record names, most general first (empty when none)."""
        if self.subdivision is None:
            return self.more_subdivisions
        return (self.subdivision, *self.more_subdivisions)

    @property
    def is_known(self) -> bool:
        """True when some source gave a location for the address."""
        return self.country is not None or self.subdivision is not None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view, used by the CLI, the service and the audit log.

        The anonymizer evidence, the embedding, ``subdivisions`` (all of them, when the record
        names more than one) and ``city`` keys appear only when set.
        """
        out: dict[str, object] = {
            "country": self.country,
            "subdivision": self.subdivision,
            "alt_country": self.alt_country,
            "asn": self.asn,
            "as_org": self.as_org,
            "flags": list(self.flags.names()),
            "network": self.network,
            "provenance": [
                {"field": p.field, "source": p.source, "date": p.date} for p in self.provenance
            ],
        }
        if self.more_subdivisions:
            out["subdivisions"] = list(self.subdivisions)
        if self.city is not None:
            out["city"] = self.city
            if self.city_geoname_id is not None:
                out["city_geoname_id"] = self.city_geoname_id
        if self.anonymizer_provider is not None:
            out["anonymizer_provider"] = self.anonymizer_provider
        if self.anonymizer_confidence is not None:
            out["anonymizer_confidence"] = self.anonymizer_confidence
        if self.embedding is not None:
            out["embedding"] = self.embedding
            out["embedded_ipv4"] = self.embedded_ipv4
        return out


_UNKNOWN = IntelFacts()


class IntelLookup(Protocol):
    """Port for IP intelligence: anything that turns an address into IntelFacts.

    ``lookup`` takes an address as text (IPv4 dotted quad or IPv6) and raises
    ``ClientIPError`` for a malformed one; an address no source knows gives
    ``IntelFacts.unknown()``, not an error.
    """

    def lookup(self, ip: str) -> IntelFacts: ...
