"""MaxMind DB files: GeoIP2/GeoLite2 Country, City and ASN, DB-IP, IPinfo, ip-location-db.

The record layout is detected per record, so one adapter reads all of them:

- GeoIP2 / GeoLite2 / DB-IP GeoIP2-compatible: ``country.iso_code`` (else
  ``registered_country.iso_code``), every entry of ``subdivisions`` by its ``iso_code`` (the
  first one else by its English name), ``city.names.en`` with ``city.geoname_id``,
  ``autonomous_system_number`` / ``autonomous_system_organization`` (under ``traits`` in
  GeoIP2 Enterprise);
- ip-location-db flat files: ``country_code``, ``state1`` (a subdivision *name*), ``city``;
- IPinfo: ``country_code`` or ``country`` (a code), ``region``, ``city``, ``asn`` as
  ``"AS15169"``, ``as_name`` (``name`` in its ASN database).

The city is kept only for ranges in the subdivisions given as ``city_regions`` (the build's
city precision): elsewhere it would split ranges for no rule's sake.

Anonymizer flags (field ``flags``) come from:

- MaxMind GeoIP2 Anonymous-IP and Anonymous-Plus: ``is_anonymous_vpn`` (vpn),
  ``is_public_proxy`` (proxy), ``is_residential_proxy`` (residential_proxy),
  ``is_tor_exit_node`` (tor), ``is_hosting_provider`` (hosting), ``is_anonymous`` (anonymous,
  only when no specific kind is set), with Anonymous-Plus ``anonymizer_confidence`` and
  ``provider_name`` kept as evidence; the same keys under ``traits`` (GeoIP2 Enterprise);
- MaxMind GeoIP Residential Proxy (``database_type`` ``GeoIP-Residential-Proxy``) and
  IPinfo's residential proxy database (a ``database_type`` naming ``residential_proxy``):
  every record is a residential_proxy exit, with its ``provider_name`` or ``service`` and
  ``anonymizer_confidence``;
- IPinfo privacy: ``vpn``, ``proxy``, ``tor``, ``relay``, ``hosting`` (booleans or the
  strings ``"true"``/``"false"``), ``service`` (the provider's name, kept as evidence);
- ``is_*`` layouts (IPinfo, ipapi.is, ipregistry and similar): ``is_vpn``, ``is_proxy``,
  ``is_tor``/``is_tor_exit``, ``is_relay``, ``is_hosting``/``is_datacenter``/
  ``is_cloud_provider``, ``is_residential_proxy``, ``is_anonymous``, at the top of the record
  or in a ``privacy`` or ``security`` object
  (anonymous unless a VPN, proxy, Tor or relay flag names the kind: there a hosting flag
  does not, so IPinfo Core's anonymous datacenter exit is both hosting and anonymous).

Subdivision names are mapped to ISO 3166-2 codes by :mod:`geogate.intel.subdivisions`.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Final

import maxminddb

from geogate.errors import ClientIPError, IntelDataError
from geogate.intel.addresses import IPVersion, format_address, parse_address
from geogate.intel.facts import IntelFacts, NetworkFlag, Provenance
from geogate.intel.places import MAX_PLACE_SUBDIVISIONS, Place
from geogate.intel.sources import ProblemLog, SourceRange
from geogate.intel.sources.mmdb_verify import (
    MmdbCheck,
    first_bad_record,
    verify_data_section,
    verify_mmdb,
    walk_networks,
)
from geogate.intel.subdivisions import resolve_subdivision
from geogate.policy.cities import canonical_city

_VALUE_FIELDS: Final = ("location", "subdivision", "asn", "flags")

# (country, place, asn, as_org, flags, provider, confidence)
Values = tuple[
    str | None, Place | None, int | None, str | None, NetworkFlag, str | None, int | None
]
_NOTHING: Final[Values] = (None, None, None, None, NetworkFlag.NONE, None, None)

# Record key -> flag, for the anonymizer layouts (see the module doc).
_FLAG_KEYS: Final[tuple[tuple[str, NetworkFlag], ...]] = (
    ("is_anonymous_vpn", NetworkFlag.VPN),
    ("is_public_proxy", NetworkFlag.PROXY),
    ("is_residential_proxy", NetworkFlag.RESIDENTIAL_PROXY),
    ("is_tor_exit_node", NetworkFlag.TOR),
    ("is_hosting_provider", NetworkFlag.HOSTING),
    ("is_vpn", NetworkFlag.VPN),
    ("is_proxy", NetworkFlag.PROXY),
    ("is_tor", NetworkFlag.TOR),
    ("is_relay", NetworkFlag.RELAY),
    ("is_hosting", NetworkFlag.HOSTING),
    ("is_datacenter", NetworkFlag.HOSTING),
    ("is_cloud_provider", NetworkFlag.HOSTING),
    ("is_tor_exit", NetworkFlag.TOR),
    ("vpn", NetworkFlag.VPN),
    ("proxy", NetworkFlag.PROXY),
    ("tor", NetworkFlag.TOR),
    ("relay", NetworkFlag.RELAY),
    ("hosting", NetworkFlag.HOSTING),
)
_PROVIDER_KEYS: Final = ("provider_name", "service")
_NESTED_FLAG_KEYS: Final = ("traits", "privacy", "security")
_TRUE_TEXT: Final = frozenset({"true", "1", "yes", "y", "t"})


class MmdbSource:
    """A MaxMind DB file as a :class:`~geogate.intel.sources.RangeSource`.

    ``fields`` limits what is extracted (``"location"``, ``"subdivision"``, ``"asn"``,
    ``"flags"`` with the anonymizer evidence);
    adjacent networks with equal extracted values are merged, which shrinks a city database
    about threefold when only country and subdivision are kept. ``subdivision_countries``
    keeps subdivisions only when the code's country (``"UA"`` of ``"UA-43"``) is listed
    (None keeps all); ``city_regions`` (subdivision or country codes) keeps the city of
    ranges in those subdivisions (None or empty: no city). It also answers single lookups
    (``IntelLookup``) for comparisons.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        date: str = "",
        fields: Collection[str] = _VALUE_FIELDS,
        subdivision_countries: Collection[str] | None = None,
        city_regions: Collection[str] | None = None,
    ) -> None:
        """Open ``path``; raises ``IntelDataError`` when it is missing or not a MaxMind DB.

        ``fields`` may name ``"location"``, ``"subdivision"``, ``"asn"`` and ``"flags"``."""
        self._path = Path(path)
        self._name = name
        self._date = date
        self._fields = frozenset(fields)
        unknown = self._fields - set(_VALUE_FIELDS)
        if unknown:
            raise IntelDataError(
                f"mmdb source cannot give {', '.join(sorted(unknown))}", path=str(path)
            )
        self._sub_countries = (
            None if subdivision_countries is None else frozenset(subdivision_countries)
        )
        self._city_regions = frozenset(city_regions or ())
        try:
            self._reader = maxminddb.open_database(str(self._path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise IntelDataError(f"cannot open MaxMind DB: {exc}", path=str(path)) from exc
        # MaxMind's and IPinfo's residential proxy databases list only residential proxy
        # exits: their records carry the provider (provider_name, service) and MaxMind's
        # anonymizer_confidence, but no is_* key.
        self._every_record = (
            NetworkFlag.RESIDENTIAL_PROXY
            if "residential-proxy" in self.database_type.lower().replace("_", "-")
            else NetworkFlag.NONE
        )
        self.unmapped_subdivisions: Counter[tuple[str, str]] = Counter()
        """(country, name) of subdivision names that no rule or alias mapped, with counts."""

    @property
    def name(self) -> str:
        """The source name used in provenance."""
        return self._name

    @property
    def database_type(self) -> str:
        """The ``database_type`` from the file's metadata (e.g. ``"GeoLite2-City"``)."""
        return str(self._reader.metadata().database_type)

    def close(self) -> None:
        """Release the file."""
        self._reader.close()

    def ranges(self, problems: ProblemLog) -> Iterator[SourceRange]:
        """Yield every network in the file with the extracted values (adjacent equal
        networks merged). Networks under ``::/96`` of an IPv6 tree are IPv4 ones.

        The file is checked whole first (the search tree by
        :func:`~geogate.intel.sources.mmdb_verify.verify_mmdb`, the data section by
        :func:`~geogate.intel.sources.mmdb_verify.verify_data_section`) and a data record
        that does not decode stops the build: ``IntelDataError`` naming the file and the first
        bad offset, never a partial source.
        """
        check = verify_mmdb(self._path)
        verify_data_section(self._path, check)
        where = self._path.name
        pending: list[Any] | None = None  # [version, first, last, values]
        try:
            for net, record in self._networks(check):
                version: IPVersion = 4 if net.version == 4 else 6
                first = int(net.network_address)
                last = first + net.num_addresses - 1
                if version == 6 and isinstance(net, ipaddress.IPv6Network):
                    mapped = net.network_address.ipv4_mapped
                    if mapped is not None and net.prefixlen >= 96:
                        continue  # ::ffff:0:0/96 is looked up as IPv4; the IPv4 tree has it
                values = self._extract(record, problems, where)
                if values == _NOTHING:
                    if pending is not None:
                        yield _to_range(pending)
                        pending = None
                    continue
                if (
                    pending is not None
                    and pending[0] == version
                    and pending[2] + 1 == first
                    and pending[3] == values
                ):
                    pending[2] = last
                    continue
                if pending is not None:
                    yield _to_range(pending)
                pending = [version, first, last, values]
        except (maxminddb.InvalidDatabaseError, ValueError, UnicodeDecodeError, SystemError) as exc:
            bad = first_bad_record(self._path, check.data_offsets, tree_bytes=check.tree_bytes)
            at = f"first bad record at offset {bad}" if bad is not None else "offset not found"
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise IntelDataError(
                f"corrupt MaxMind DB: a data record does not decode ({at}): {detail}",
                path=str(self._path),
            ) from exc
        if pending is not None:
            yield _to_range(pending)

    def _networks(self, check: MmdbCheck) -> Iterator[tuple[Any, Any]]:
        """(network, record) of every network with data: the reader's own iterator, except
        for an IPv6 tree without an IPv4 subtree, which it cannot walk (see
        :func:`~geogate.intel.sources.mmdb_verify.walk_networks`)."""
        if check.ipv4_depth in (32, 96):
            yield from self._reader
            return
        for net in walk_networks(self._path, check):
            yield net, self._reader.get(str(net.network_address))

    def lookup(self, ip: str) -> IntelFacts:
        """Facts for one address straight from the file (``IntelLookup``)."""
        parsed = parse_address(ip)
        if parsed is None:
            raise ClientIPError("malformed IP address", value=ip)
        version, value = parsed
        try:
            record, prefix = self._reader.get_with_prefix_len(format_address(version, value))
        except ValueError:  # an IPv6 address in an IPv4-only database
            return IntelFacts.unknown()
        values = self._extract(record, ProblemLog(), self._path.name)
        country, place, asn, org, flags, provider, confidence = values
        if values == _NOTHING:
            return IntelFacts.unknown()
        prov = tuple(
            Provenance(field=f, source=self._name, date=self._date)
            for f, v in zip(_VALUE_FIELDS, (country, place, asn, flags or None), strict=True)
            if v is not None
        )
        place = place or Place()
        bits = 32 if version == 4 else 128
        net = ipaddress.ip_network((value >> (bits - prefix) << (bits - prefix), prefix))
        return IntelFacts(
            country=country,
            subdivision=place.subdivision,
            more_subdivisions=place.subdivisions[1:],
            city=place.city,
            city_geoname_id=place.geoname_id,
            asn=asn,
            as_org=org,
            flags=flags,
            network=f"{net.network_address}-{net.broadcast_address}",
            provenance=prov,
            anonymizer_provider=provider,
            anonymizer_confidence=confidence,
        )

    def _extract(self, record: object, problems: ProblemLog, where: str) -> Values:
        if not isinstance(record, dict):
            return _NOTHING
        fields = self._fields
        country: str | None = None
        place: Place | None = None
        asn: int | None = None
        org: str | None = None
        if "location" in fields or "subdivision" in fields:
            country = _country_of(record)
        if "subdivision" in fields:
            place = self._place_of(record, country)
        if "asn" in fields:
            asn, org = _asn_of(record)
        if "location" not in fields:
            country = None
        flags = NetworkFlag.NONE
        provider: str | None = None
        confidence: int | None = None
        if "flags" in fields:
            flags, provider, confidence = _anonymizer_of(record, every_record=self._every_record)
        return (country, place, asn, org, flags, provider, confidence)

    def _place_of(self, record: dict[str, Any], country: str | None) -> Place | None:
        """Every subdivision the record names (kept countries only) and, in a city-precision
        subdivision, its city; None when no subdivision is known."""
        codes: list[str] = []
        subs = record.get("subdivisions")
        if isinstance(subs, list) and subs:
            for level, sub in enumerate(subs[:MAX_PLACE_SUBDIVISIONS]):
                if not isinstance(sub, dict):
                    continue
                iso = sub.get("iso_code")
                if isinstance(iso, str) and iso and country:
                    codes.append(f"{country}-{iso.upper()}")
                    continue
                # A name resolves against first-level subdivisions only: a lower level's
                # name could only collide with another first-level unit, so it is not read.
                names = sub.get("names")
                if level == 0 and isinstance(names, dict) and isinstance(names.get("en"), str):
                    self._resolve_into(codes, country, names["en"])
        else:
            state = record.get("state1")  # state2 is a lower level, named only (see above)
            if isinstance(state, str):
                self._resolve_into(codes, country, state)
            elif isinstance(record.get("region"), str):  # IPinfo city layouts
                self._resolve_into(codes, country, record["region"])
        if self._sub_countries is not None:
            codes = [c for c in codes if c.split("-", 1)[0] in self._sub_countries]
        kept = tuple(dict.fromkeys(codes))  # a repeated level adds nothing
        if not kept:
            return None
        city: str | None = None
        geoname_id: int | None = None
        regions = self._city_regions
        if regions:
            home = next((c for c in kept if c in regions or c[:2] in regions), None)
            if home is not None:
                city, geoname_id = _city_of(record)
                city = canonical_city(home, city)
                if city is None:
                    geoname_id = None
        return Place(kept, city, geoname_id)

    def _resolve_into(self, codes: list[str], country: str | None, name: str) -> None:
        code = resolve_subdivision(country, name)
        if code is not None:
            codes.append(code)
        elif name and (self._sub_countries is None or country in self._sub_countries):
            self.unmapped_subdivisions[(country or "", name)] += 1


def _city_of(record: dict[str, Any]) -> tuple[str | None, int | None]:
    """The city name and GeoNames id of a record in any of the layouts."""
    city = record.get("city")
    if isinstance(city, dict):  # GeoIP2 layout
        names = city.get("names")
        name = names.get("en") if isinstance(names, dict) else None
        return name if isinstance(name, str) else None, _geoname_id(city.get("geoname_id"))
    # IPinfo's location layouts carry a top-level geoname_id, often as text.
    return (city if isinstance(city, str) else None), _geoname_id(record.get("geoname_id"))


def _geoname_id(value: object) -> int | None:
    """A GeoNames id given as a number or as decimal text; None for anything else."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32:
        return value
    return None


def _to_range(p: list[Any]) -> SourceRange:
    country, place, asn, org, flags, provider, confidence = p[3]
    return SourceRange(
        version=p[0],
        first=p[1],
        last=p[2],
        country=country,
        subdivision=place.subdivision if place else None,
        more_subdivisions=place.subdivisions[1:] if place else (),
        city=place.city if place else None,
        geoname_id=place.geoname_id if place else None,
        asn=asn,
        as_org=org,
        flags=flags,
        provider=provider,
        confidence=confidence,
    )


def _is_true(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return False


def _anonymizer_of(
    record: dict[str, Any], *, every_record: NetworkFlag = NetworkFlag.NONE
) -> tuple[NetworkFlag, str | None, int | None]:
    """Flags, provider name and confidence of an anonymizer record (see the module doc).

    ``every_record`` is the flag a database sets on every record it holds, whatever the
    record says (residential_proxy for MaxMind's GeoIP Residential Proxy database)."""
    flags = every_record
    anonymous = False
    # MaxMind sets is_anonymous for a hosting provider too, so there hosting explains it;
    # IPinfo's and ipapi's is_anonymous means VPN, proxy, Tor or relay, so their is_hosting
    # does not: an anonymous datacenter exit keeps both flags.
    hosting_explains = False
    provider: str | None = None
    confidence: int | None = None
    # The flags sit at the top, or in a nested object: GeoIP2 Enterprise "traits", IPinfo's
    # API layout "privacy", ipregistry's and similar "security".
    nested = (record.get(key) for key in _NESTED_FLAG_KEYS)
    for layer in (record, *(n for n in nested if isinstance(n, dict))):
        for key, flag in _FLAG_KEYS:
            if key in layer and _is_true(layer[key]):
                flags |= flag
        anonymous = anonymous or _is_true(layer.get("is_anonymous"))
        hosting_explains = hosting_explains or _is_true(layer.get("is_hosting_provider"))
        for key in _PROVIDER_KEYS:
            name = layer.get(key)
            if provider is None and isinstance(name, str) and name.strip():
                provider = name.strip()[:200]
        conf = layer.get("anonymizer_confidence")
        if (
            confidence is None
            and isinstance(conf, int)
            and not isinstance(conf, bool)
            and 0 < conf <= 100
        ):
            confidence = conf
    explained = flags if hosting_explains else flags & ~NetworkFlag.HOSTING
    if anonymous and not explained:
        flags |= NetworkFlag.ANONYMOUS
    if not flags:
        # Evidence without a flag (a provider name on a clean record) is not kept.
        return NetworkFlag.NONE, None, None
    return flags, provider, confidence


def _clean_country(value: object) -> str | None:
    if not isinstance(value, str) or len(value) != 2 or not value.isascii():
        return None
    code = value.upper()
    if not code.isalpha() or code in ("ZZ", "XX", "--"):
        return None
    return code


def _country_of(record: dict[str, Any]) -> str | None:
    flat = record.get("country_code")
    if flat is not None:
        return _clean_country(flat)
    country = record.get("country")
    if isinstance(country, str):  # IPinfo country layouts
        return _clean_country(country)
    if isinstance(country, dict):
        code = _clean_country(country.get("iso_code"))
        if code is not None:
            return code
    registered = record.get("registered_country")
    if isinstance(registered, dict):
        return _clean_country(registered.get("iso_code"))
    return None


def _asn_of(record: dict[str, Any]) -> tuple[int | None, str | None]:
    number = record.get("autonomous_system_number")
    org = record.get("autonomous_system_organization")
    traits = record.get("traits")
    if number is None and isinstance(traits, dict):  # GeoIP2 Enterprise keeps it in traits
        number = traits.get("autonomous_system_number")
        org = traits.get("autonomous_system_organization")
    if number is None:
        number = record.get("asn")
        # IPinfo country/Lite layouts say as_name; its ASN database says name.
        org = record.get("as_name", record.get("name", org))
    if isinstance(number, str):
        text = number.upper().removeprefix("AS")
        number = int(text) if text.isdigit() else None
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 1 << 32:
        return None, None
    return number, org if isinstance(org, str) and org else None
