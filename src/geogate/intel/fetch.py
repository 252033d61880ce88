"""Download data feeds from their vendors into a local cache (MaxMind, IPinfo, DB-IP, Tor, ...).

One feed is one URL. :func:`fetch_feed` downloads it with httpx into ``cache_dir``, decodes
it (a ``.tar.gz`` -> its single wanted member, ``.gz`` -> gunzipped, else as served) and
returns the path of the decoded file, which the source adapters then read like a local file.

- Conditional GET: the ``ETag`` and ``Last-Modified`` of the last download are stored beside
  the file (``feed.json``), so an unchanged feed costs one 304 reply.
- Atomic: everything is written to temporary files in the same directory and renamed into
  place; a failed or interrupted download leaves the previous copy intact.
- Bounded: timeouts, a size cap on the download and on the decoded file (gzip and tar bombs).
- Safe archives: a tarball with an absolute, ``..`` or link member is refused as a whole;
  nothing is extracted by name, the wanted member is copied into the cache under a name
  chosen here.
- Retries: 5xx replies, 429 and connection errors are retried with a small backoff.
- Secrets come from environment variables or files (:class:`SecretRef`), are held in
  :class:`~geogate.secret.Secret`, and are masked in every error and in httpx's log lines.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from geogate import __version__
from geogate.errors import ConfigError, IntelDataError
from geogate.secret import Secret

DEFAULT_MAX_BYTES: Final = 2 * 1024**3
"""Default cap on a download and on its decoded file (GeoIP2 City is about 120 MB)."""
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
"""Per-operation timeouts (seconds): connect 10, read/write/pool 30 between chunks."""
DEFAULT_RETRIES: Final = 3
"""Attempts per feed when the server answers 5xx/429 or the connection fails."""
DEFAULT_BACKOFF_SECONDS: Final = 1.0
"""Wait before the second attempt; doubled before each further one."""
META_FILE: Final = "feed.json"
_CHUNK: Final = 1024 * 1024
_MAX_TAR_MEMBERS: Final = 10_000  # vendor tarballs hold 3-5 files; a million is an attack
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_SAFE_NAME_RE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_LOGGERS: Final = ("httpx", "httpcore")


class FeedFormat(StrEnum):
    """How a downloaded feed is decoded (``format`` in a build config)."""

    AUTO = "auto"
    """Detected from the content: gzip magic -> tar.gz when it is a tarball, else gz."""
    TAR_GZ = "tar.gz"
    GZ = "gz"
    RAW = "raw"


def default_cache_dir() -> Path:
    """The per-user cache directory for downloaded feeds.

    ``$XDG_CACHE_HOME/geogate`` (default ``~/.cache/geogate``) on Linux and other Unix,
    ``~/Library/Caches/geogate`` on macOS, ``%LOCALAPPDATA%\\geogate\\Cache`` on Windows.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "geogate" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "geogate"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "geogate"


# ----- secrets and auth -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef:
    """Where a secret is read from: an environment variable or a file (never the value).

    A file's content is stripped of surrounding whitespace (a trailing newline).
    """

    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        """The variable name or file path, for messages (``MAXMIND_LICENSE_KEY``)."""
        return self.env if self.env is not None else str(self.file)

    def resolve(self, *, label: str) -> Secret:
        """Read the secret now; raises ``ConfigError`` naming ``label`` when it is missing."""
        if self.env is not None:
            value = os.environ.get(self.env, "").strip()
            if not value:
                raise ConfigError(f"{label}: environment variable {self.env} is not set")
            return Secret(value)
        if self.file is None:  # pragma: no cover - the config parser sets one of them
            raise ConfigError(f"{label}: no secret source configured")
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError(f"{label}: cannot read secret file {self.file}: {detail}") from exc
        if not value:
            raise ConfigError(f"{label}: secret file {self.file} is empty")
        return Secret(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedAuth:
    """Credentials for a feed: HTTP basic auth, or a token in a header or a query parameter.

    Basic auth uses ``username`` + ``password`` (MaxMind: account id + licence key). A
    ``token`` goes into ``query`` (``?license_key=``, ``?token=``) when set, else into
    ``header`` (default ``Authorization``) after ``prefix`` (default ``"Bearer "`` for the
    Authorization header, empty for others).
    """

    username: SecretRef | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    header: str | None = None
    prefix: str | None = None
    query: str | None = None

    def hint(self) -> str:
        """What to check after a 401/403: the names of the secret sources."""
        refs = [r.describe() for r in (self.username, self.password, self.token) if r]
        return " and ".join(refs)


@dataclass(frozen=True, slots=True)
class _Credentials:
    """Resolved credentials for one request; every secret value is also in ``secrets``."""

    basic: tuple[Secret, Secret] | None
    headers: dict[str, Secret]
    params: dict[str, Secret]

    @property
    def secrets(self) -> tuple[str, ...]:
        values = [s.reveal() for s in self.headers.values()]
        values += [s.reveal() for s in self.params.values()]
        if self.basic is not None:
            values += [self.basic[0].reveal(), self.basic[1].reveal()]
        return tuple(v for v in values if v)


def _resolve(auth: FeedAuth | None, *, label: str) -> _Credentials:
    if auth is None:
        return _Credentials(None, {}, {})
    basic = None
    if auth.username is not None and auth.password is not None:
        basic = (auth.username.resolve(label=label), auth.password.resolve(label=label))
    headers: dict[str, Secret] = {}
    params: dict[str, Secret] = {}
    if auth.token is not None:
        token = auth.token.resolve(label=label)
        if auth.query:
            params[auth.query] = token
        else:
            name = auth.header or "Authorization"
            prefix = auth.prefix
            if prefix is None:
                prefix = "Bearer " if name.lower() == "authorization" else ""
            headers[name] = Secret(prefix + token.reveal())
    return _Credentials(basic, headers, params)


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret value replaced by ``***`` (also URL-encoded forms)."""
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) < 3:
            continue
        text = text.replace(s, "***").replace(urlencode({"": s})[1:], "***")
    return text


class _MaskFilter(logging.Filter):
    """Masks secrets in log records of httpx/httpcore while a feed is being fetched."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage(), self._secrets)
        record.args = None
        return True


@contextlib.contextmanager
def _masked_logs(secrets: tuple[str, ...]) -> Iterator[None]:
    # httpx logs every request URL at INFO: a query-parameter token would land in the log.
    if not secrets:
        yield
        return
    filt = _MaskFilter(secrets)
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


# ----- feeds ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSpec:
    """One URL to download.

    ``label`` names the feed in errors (``"sources[2] maxmind-city"``). ``member_suffix``
    picks the tarball member (``".mmdb"``); None takes the only regular file. ``sha256`` pins
    the download *as served* (the ``.tar.gz``, the ``.gz``), hex. ``max_bytes`` caps both
    the download and the decoded file.
    """

    url: str
    label: str
    auth: FeedAuth | None = None
    format: FeedFormat = FeedFormat.AUTO
    sha256: str | None = None
    member_suffix: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def cache_key(self) -> str:
        """A directory name for this feed in the cache: label-safe name + URL hash."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        name = _SAFE_NAME_RE.sub("_", self.label.split()[-1])[:48] or "feed"
        return f"{name}-{digest}"


class FetchStatus(StrEnum):
    """How a feed's local copy came about."""

    DOWNLOADED = "downloaded"
    NOT_MODIFIED = "not modified"
    OFFLINE = "cached (offline)"


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedFeed:
    """A feed's decoded local copy.

    ``last_modified`` is the server's Last-Modified (aware UTC) or None; ``fetched_at`` when
    the copy was last downloaded. ``sha256`` and ``size_bytes`` describe the download as
    served; ``requests`` counts the HTTP requests made now (0 offline).
    """

    path: Path
    url: str
    status: FetchStatus
    last_modified: datetime | None
    fetched_at: datetime
    sha256: str
    size_bytes: int
    requests: int

    def data_date(self) -> tuple[str, str]:
        """(YYYY-MM-DD, where it came from): Last-Modified, else the download day."""
        if self.last_modified is not None:
            return self.last_modified.date().isoformat(), "Last-Modified"
        return self.fetched_at.date().isoformat(), "the download date"


def display_url(url: str, *, secret_params: tuple[str, ...] = ()) -> str:
    """``url`` fit to print: userinfo dropped, values of ``secret_params`` shown as ``***``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = [(k, "***" if k in secret_params else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (plain http is accepted only there)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def fetch_feed(
    spec: FeedSpec,
    *,
    cache_dir: Path,
    offline: bool = False,
    client: httpx.Client | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FetchedFeed:
    """Bring ``spec``'s cached copy up to date (or, ``offline``, just find it) and return it.

    Raises ``IntelDataError`` for HTTP errors (naming the status), an exhausted retry
    budget, a size cap, a sha256 mismatch, an unusable archive or a missing cached copy
    offline; ``ConfigError`` for missing credentials. No message contains a secret.
    """
    feed_dir = cache_dir / spec.cache_key()
    meta = _read_meta(feed_dir)
    cached = feed_dir / meta["file"] if meta and isinstance(meta.get("file"), str) else None
    if cached is not None and not cached.is_file():
        meta, cached = None, None
    if meta is not None and spec.sha256 and meta.get("sha256") != spec.sha256:
        meta, cached = None, None  # the pin changed: the cached copy is not the pinned one
    shown = display_url(spec.url, secret_params=_secret_params(spec.auth))
    if offline:
        if meta is None or cached is None:
            raise IntelDataError(
                f"{spec.label}: offline and no cached copy of {shown} in {cache_dir}"
                + ("" if not spec.sha256 else " matching the sha256 pin")
                + "; run the build once without --offline"
            )
        return _fetched(meta, cached, shown, FetchStatus.OFFLINE, requests=0)

    creds = _resolve(spec.auth, label=spec.label)
    secrets = creds.secrets
    feed_dir.mkdir(parents=True, exist_ok=True)
    owns_client = client is None
    http = client or httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=True)
    try:
        with _masked_logs(secrets):
            return _download(
                spec,
                feed_dir=feed_dir,
                meta=meta,
                cached=cached,
                shown=shown,
                creds=creds,
                http=http,
                retries=max(1, retries),
                backoff_seconds=backoff_seconds,
                sleep=sleep,
                now=now,
            )
    except (IntelDataError, ConfigError) as exc:
        # Belt and braces: no path may put a secret into a message.
        safe = mask(str(exc), secrets)
        if safe != str(exc):
            raise type(exc)(safe) from None
        raise
    finally:
        if owns_client:
            http.close()


def _secret_params(auth: FeedAuth | None) -> tuple[str, ...]:
    return (auth.query,) if auth is not None and auth.query and auth.token else ()


def _download(
    spec: FeedSpec,
    *,
    feed_dir: Path,
    meta: Mapping[str, Any] | None,
    cached: Path | None,
    shown: str,
    creds: _Credentials,
    http: httpx.Client,
    retries: int,
    backoff_seconds: float,
    sleep: Callable[[float], None],
    now: Callable[[], datetime],
) -> FetchedFeed:
    headers = {"User-Agent": f"geogate/{__version__}", "Accept-Encoding": "identity"}
    headers.update({k: v.reveal() for k, v in creds.headers.items()})
    if meta is not None and cached is not None:
        if isinstance(meta.get("etag"), str):
            headers["If-None-Match"] = meta["etag"]
        if isinstance(meta.get("last_modified"), str):
            headers["If-Modified-Since"] = meta["last_modified"]
    params = {k: v.reveal() for k, v in creds.params.items()}
    auth = (creds.basic[0].reveal(), creds.basic[1].reveal()) if creds.basic else None
    secrets = creds.secrets
    label = spec.label
    attempt = 0
    while True:
        attempt += 1
        try:
            with http.stream("GET", spec.url, headers=headers, params=params, auth=auth) as resp:
                status = resp.status_code
                if status == 304 and meta is not None and cached is not None:
                    return _fetched(meta, cached, shown, FetchStatus.NOT_MODIFIED, attempt)
                if status in _RETRY_STATUSES and attempt < retries:
                    pass  # retried below, after the response is closed
                elif status != 200:
                    raise IntelDataError(_status_message(spec, status, shown))
                else:
                    return _store(
                        spec, resp, feed_dir=feed_dir, shown=shown, now=now(), requests=attempt
                    )
        except httpx.TransportError as exc:  # connection refused/reset, timeouts
            if attempt >= retries:
                detail = mask(str(exc) or type(exc).__name__, secrets)
                raise IntelDataError(
                    f"{label}: cannot download {shown}: {detail} "
                    f"(after {attempt} attempt{'s' if attempt > 1 else ''})"
                ) from None
        except httpx.RequestError as exc:  # too many redirects, unusable URL: no retry
            detail = mask(str(exc) or type(exc).__name__, secrets)
            raise IntelDataError(f"{label}: cannot download {shown}: {detail}") from None
        sleep(backoff_seconds * 2 ** (attempt - 1))


def _status_message(spec: FeedSpec, status: int, shown: str) -> str:
    host = urlsplit(spec.url).hostname or "the server"
    what = {401: "unauthorized", 403: "forbidden", 404: "not found", 429: "rate limited"}
    msg = f"{spec.label}: HTTP {status} from {host}"
    if status in what:
        msg += f" ({what[status]})"
    if status in (401, 403):
        hint = spec.auth.hint() if spec.auth else ""
        msg += f": check {hint}" if hint else ": the feed needs credentials (auth)"
    elif status >= 500 or status == 429:
        msg += ": the vendor is failing; try again later"
    else:
        msg += f" for {shown}"
    return msg


def _store(
    spec: FeedSpec,
    resp: httpx.Response,
    *,
    feed_dir: Path,
    shown: str,
    now: datetime,
    requests: int,
) -> FetchedFeed:
    label = spec.label
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > spec.max_bytes:
        raise IntelDataError(
            f"{label}: {shown} is {int(length)} bytes, more than the cap of {spec.max_bytes}"
        )
    digest = hashlib.sha256()
    size = 0
    with _temp(feed_dir, ".download") as raw_path:
        with raw_path.open("wb") as fh:
            for chunk in resp.iter_raw(_CHUNK):
                size += len(chunk)
                if size > spec.max_bytes:
                    raise IntelDataError(
                        f"{label}: {shown} is larger than the cap of {spec.max_bytes} bytes"
                    )
                digest.update(chunk)
                fh.write(chunk)
        sha = digest.hexdigest()
        if spec.sha256 and sha != spec.sha256:
            raise IntelDataError(
                f"{label}: sha256 mismatch for {shown}: got {sha}, the config pins {spec.sha256}"
            )
        served_name = _served_name(resp, spec.url)
        with _temp(feed_dir, ".decoded") as decoded:
            file_name = _decode(spec, raw_path, decoded, served_name=served_name)
            final = feed_dir / file_name
            meta_path = feed_dir / META_FILE
            # Drop the old metadata first: a crash between the two renames then costs one
            # full download instead of pairing new data with the old validators.
            meta_path.unlink(missing_ok=True)
            for old in feed_dir.iterdir():
                if old.is_file() and old.name != decoded.name and not old.name.startswith("."):
                    old.unlink()
            decoded.replace(final)
    last_modified = _http_date(resp.headers.get("Last-Modified"))
    meta: dict[str, Any] = {
        "url": shown,
        "file": file_name,
        "etag": resp.headers.get("ETag"),
        "last_modified": resp.headers.get("Last-Modified") if last_modified else None,
        "fetched_at": now.isoformat(),
        "sha256": sha,
        "size_bytes": size,
    }
    _write_meta(feed_dir, meta)
    return _fetched(meta, final, shown, FetchStatus.DOWNLOADED, requests)


@contextlib.contextmanager
def _temp(directory: Path, suffix: str) -> Iterator[Path]:
    """A temporary file in ``directory`` (same filesystem, so a rename is atomic);
    removed on exit unless it was renamed away."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _served_name(resp: httpx.Response, url: str) -> str:
    """The file name the server gave (Content-Disposition), else the last URL segment."""
    cd = resp.headers.get("Content-Disposition", "")
    m = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", cd, re.IGNORECASE)
    if m:
        return Path(m[1].strip()).name
    return Path(urlsplit(str(resp.url) or url).path).name


def _decode(spec: FeedSpec, raw: Path, out: Path, *, served_name: str) -> str:
    """Decode ``raw`` into ``out``; return the cache file name for the result."""
    with raw.open("rb") as fh:
        magic = fh.read(4)
    fmt = spec.format
    if fmt == FeedFormat.AUTO:
        if magic.startswith(_GZIP_MAGIC):
            fmt = FeedFormat.TAR_GZ if _is_tar_gz(raw) else FeedFormat.GZ
        elif magic == _ZIP_MAGIC:
            raise IntelDataError(
                f"{spec.label}: the download is a zip archive; geogate reads .tar.gz, .gz "
                "or plain files (download the mmdb/CSV edition instead)"
            )
        else:
            fmt = FeedFormat.RAW
    if fmt == FeedFormat.RAW:
        shutil.copyfile(raw, out)
        return _cache_name(served_name, "")
    if fmt == FeedFormat.GZ:
        try:
            with gzip.open(raw, "rb") as src:
                _copy_capped(src, out, spec=spec)
        except (OSError, EOFError, zlib.error) as exc:
            raise IntelDataError(f"{spec.label}: not a valid gzip file: {exc}") from None
        return _cache_name(served_name, ".gz")
    return _extract_member(spec, raw, out)


def _is_tar_gz(raw: Path) -> bool:
    try:
        with tarfile.open(raw, "r:gz") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False


def _extract_member(spec: FeedSpec, raw: Path, out: Path) -> str:
    label = spec.label
    try:
        with tarfile.open(raw, "r:gz") as tar:
            members: list[tarfile.TarInfo] = []
            for m in tar:
                _check_member(m, label=label)
                members.append(m)
                if len(members) > _MAX_TAR_MEMBERS:
                    raise IntelDataError(
                        f"{label}: refusing a tarball with more than {_MAX_TAR_MEMBERS} members"
                    )
            files = [m for m in members if m.isreg()]
            if spec.member_suffix:
                files = [m for m in files if m.name.lower().endswith(spec.member_suffix)]
            want = f"{spec.member_suffix} file" if spec.member_suffix else "regular file"
            if len(files) != 1:
                names = ", ".join(m.name for m in files[:5]) or "none"
                raise IntelDataError(
                    f"{label}: the tarball must hold exactly one {want}; found {names}"
                )
            member = files[0]
            if member.size > spec.max_bytes:
                raise IntelDataError(
                    f"{label}: tar member {member.name} is {member.size} bytes, more than the "
                    f"cap of {spec.max_bytes}"
                )
            src = tar.extractfile(member)
            if src is None:  # pragma: no cover - isreg() members always have data
                raise IntelDataError(f"{label}: cannot read tar member {member.name}")
            with src:
                _copy_capped(src, out, spec=spec)
            return _cache_name(Path(member.name).name, "")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise IntelDataError(f"{label}: not a valid .tar.gz: {exc}") from None


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _check_member(m: tarfile.TarInfo, *, label: str) -> None:
    """Refuse the whole archive on an absolute, ``..``, link or device member."""
    name = m.name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise IntelDataError(f"{label}: refusing a tarball with an unsafe member path {m.name!r}")
    if not (m.isreg() or m.isdir()):
        raise IntelDataError(
            f"{label}: refusing a tarball with a link or special member {m.name!r}"
        )


def _copy_capped(src: _Readable, out: Path, *, spec: FeedSpec) -> None:
    size = 0
    with out.open("wb") as dst:
        while chunk := src.read(_CHUNK):
            size += len(chunk)
            if size > spec.max_bytes:
                raise IntelDataError(
                    f"{spec.label}: the decoded feed is larger than the cap of "
                    f"{spec.max_bytes} bytes"
                )
            dst.write(chunk)


def _cache_name(name: str, strip_suffix: str) -> str:
    if strip_suffix and name.lower().endswith(strip_suffix):
        name = name[: -len(strip_suffix)]
    name = _SAFE_NAME_RE.sub("_", name).lstrip(".")[:100]
    return name if name and name != META_FILE else "feed"


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _read_meta(feed_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((feed_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_meta(feed_dir: Path, meta: Mapping[str, Any]) -> None:
    with _temp(feed_dir, ".json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tmp.replace(feed_dir / META_FILE)


def _fetched(
    meta: Mapping[str, Any], path: Path, shown: str, status: FetchStatus, requests: int
) -> FetchedFeed:
    try:
        fetched_at = datetime.fromisoformat(str(meta.get("fetched_at"))).astimezone(UTC)
    except ValueError:
        fetched_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    size = meta.get("size_bytes")
    return FetchedFeed(
        path=path,
        url=shown,
        status=status,
        last_modified=_http_date(meta.get("last_modified")),
        fetched_at=fetched_at,
        sha256=str(meta.get("sha256", "")),
        size_bytes=size if isinstance(size, int) else path.stat().st_size,
        requests=requests,
    )


__all__ = [
    "DEFAULT_MAX_BYTES",
    "FeedAuth",
    "FeedFormat",
    "FeedSpec",
    "FetchStatus",
    "FetchedFeed",
    "SecretRef",
    "default_cache_dir",
    "display_url",
    "fetch_feed",
    "is_loopback_host",
    "mask",
]
