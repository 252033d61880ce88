"""Downloading feeds: a real HTTP server on 127.0.0.1 serves vendor-shaped files.

The server (http.server in a thread) serves a MaxMind-style ``.tar.gz`` behind basic auth,
a raw ``.mmdb`` behind a bearer token, an IPinfo-style ``.mmdb.gz`` with a ``?token=``, a Tor
bulk exit list and an AWS ``ip-ranges.json``. It answers conditional GETs with 304 and
records every request, so the tests can prove what was (not) downloaded. Nothing here
contacts an address other than 127.0.0.1.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from geogate.errors import ConfigError, IntelDataError
from geogate.intel.build import (
    BuildReport,
    build_snapshot,
    fetch_url_sources,
    load_build_config,
    parse_build_config,
    render_build_config,
)
from geogate.intel.facts import NetworkFlag
from geogate.intel.fetch import FeedSpec, FetchStatus, fetch_feed

from .conftest import write_mmdb

ACCOUNT = "123456"
LICENSE_KEY = "lk_Secret0123456789abcdef"
BEARER = "bearer-tok-9f8e7d6c"
IPINFO_TOKEN = "ipinfo-tok-abc123xyz"
TOR_LAST_MODIFIED = datetime(2026, 6, 20, 6, 0, tzinfo=UTC)

TOR = """\
# Tor bulk exit list
5.8.4.10
2001:db9::5
"""

AWS = """\
{"syncToken": "1718000000", "createDate": "2026-06-21-00-00-00",
 "prefixes": [{"ip_prefix": "8.8.8.128/25", "region": "us-east-1", "service": "EC2",
               "network_border_group": "us-east-1"}],
 "ipv6_prefixes": [{"ipv6_prefix": "2001:db9:1::/48", "region": "eu-central-1",
                    "service": "EC2", "network_border_group": "eu-central-1"}]}
"""

PROBE_IPS = (
    "1.0.0.5",
    "5.8.1.1",
    "5.8.4.10",
    "8.8.8.8",
    "8.8.8.200",
    "9.9.9.9",
    "2001:db9::5",
    "2001:db9:1::1",
    "2a02:6b8::1",
    "203.0.113.9",
)


# ----- the local vendor server --------------------------------------------------------------


@dataclass
class Route:
    """One file the server offers and how it guards it."""

    body: bytes
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    query_token: str | None = None
    last_modified: datetime | None = None
    filename: str | None = None
    fail_first: int = 0  # answer 503 to this many requests first
    content_type: str = "application/octet-stream"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class FeedServer:
    """Routes by path; ``log`` holds (path, status, body bytes sent) of every request."""

    base: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def requests(self, path: str) -> list[tuple[int, int]]:
        with self.lock:
            return [(status, sent) for p, status, sent in self.log if p == path]


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads server.log instead

        def _reply(self, path: str, status: int, body: bytes = b"", **headers: str) -> None:
            with server.lock:  # before replying: the client may look as soon as it has read
                server.log.append((path, status, len(body)))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            route = server.routes.get(parts.path)
            if route is None:
                self._reply(parts.path, 404, b"no such file\n")
                return
            if route.fail_first > 0:
                route.fail_first -= 1
                self._reply(parts.path, 503, b"try later\n")
                return
            if not self._authorized(route, parse_qs(parts.query)):
                self._reply(parts.path, 401, b"bad credentials\n", WWW_Authenticate="Basic")
                return
            headers = {"ETag": route.etag, "Content_Type": route.content_type}
            if route.last_modified is not None:
                headers["Last_Modified"] = email.utils.format_datetime(
                    route.last_modified, usegmt=True
                )
            if route.filename:
                headers["Content_Disposition"] = f"attachment; filename={route.filename}"
            if self.headers.get("If-None-Match") == route.etag:
                self._reply(parts.path, 304, **headers)
                return
            self._reply(parts.path, 200, route.body, **headers)

        def _authorized(self, route: Route, query: dict[str, list[str]]) -> bool:
            given = self.headers.get("Authorization", "")
            if route.basic is not None:
                want = base64.b64encode(":".join(route.basic).encode()).decode()
                return given == f"Basic {want}"
            if route.bearer is not None:
                return given == f"Bearer {route.bearer}"
            if route.query_token is not None:
                return query.get("token") == [route.query_token]
            return True

    return Handler


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A vendor stand-in on 127.0.0.1 (an ephemeral port), stopped after the test."""
    feeds = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(feeds))
    feeds.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield feeds
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def _direct_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy between the test and 127.0.0.1; the vendor credentials in the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("MAXMIND_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("MAXMIND_LICENSE_KEY", LICENSE_KEY)
    monkeypatch.setenv("ASN_TOKEN", BEARER)
    monkeypatch.setenv("IPINFO_TOKEN", IPINFO_TOKEN)


# ----- sample files in each vendor's shape ---------------------------------------------------


def _tar_gz(members: dict[str, bytes], *, dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Samples:
    country_mmdb: Path
    asn_mmdb: Path
    ipinfo_mmdb: Path
    tor: Path
    aws: Path


@pytest.fixture
def samples(tmp_path: Path, tiny_sources: dict[str, Any]) -> Samples:
    """The plain files, written once; the server offers them packed the vendors' way."""
    src = tmp_path / "plain"
    src.mkdir()
    country = tiny_sources["city"] | {"database_type": "GeoLite2-Country"}
    out = Samples(
        country_mmdb=write_mmdb(src / "GeoLite2-Country.mmdb", country),
        asn_mmdb=write_mmdb(src / "GeoLite2-ASN.mmdb", tiny_sources["asn"]),
        ipinfo_mmdb=write_mmdb(src / "country_asn.mmdb", tiny_sources["ipinfo"]),
        tor=src / "exit-addresses.txt",
        aws=src / "ip-ranges.json",
    )
    out.tor.write_text(TOR)
    out.aws.write_text(AWS)
    return out


MAXMIND_PATH = "/geoip/databases/GeoLite2-Country/download"
ASN_PATH = "/data/GeoLite2-ASN.mmdb"
IPINFO_PATH = "/data/free/country_asn.mmdb.gz"
TOR_PATH = "/torbulkexitlist"
AWS_PATH = "/ip-ranges.json"


def _serve_samples(server: FeedServer, s: Samples) -> None:
    mmdb = s.country_mmdb.read_bytes()
    server.routes[MAXMIND_PATH] = Route(
        body=_tar_gz(
            {
                "GeoLite2-Country_20260601/COPYRIGHT.txt": b"Database and Contents Copyright\n",
                "GeoLite2-Country_20260601/LICENSE.txt": b"GeoLite2 End User License\n",
                "GeoLite2-Country_20260601/GeoLite2-Country.mmdb": mmdb,
            },
            dirs=("GeoLite2-Country_20260601",),
        ),
        basic=(ACCOUNT, LICENSE_KEY),
        filename="GeoLite2-Country_20260601.tar.gz",
        last_modified=datetime(2026, 6, 2, 14, 0, tzinfo=UTC),
        content_type="application/gzip",
    )
    server.routes[ASN_PATH] = Route(body=s.asn_mmdb.read_bytes(), bearer=BEARER)
    server.routes[IPINFO_PATH] = Route(
        body=gzip.compress(s.ipinfo_mmdb.read_bytes()), query_token=IPINFO_TOKEN
    )
    server.routes[TOR_PATH] = Route(
        body=s.tor.read_bytes(), last_modified=TOR_LAST_MODIFIED, content_type="text/plain"
    )
    server.routes[AWS_PATH] = Route(body=s.aws.read_bytes(), content_type="application/json")


def _url_config(server: FeedServer, *, aws_sha256: str) -> str:
    return f"""\
[[sources]]
name = "maxmind-country"
kind = "mmdb"
url = "{server.url(MAXMIND_PATH)}?suffix=tar.gz"
auth = {{ username_env = "MAXMIND_ACCOUNT_ID", password_env = "MAXMIND_LICENSE_KEY" }}
date = "2026-06-01"
fields = ["location", "subdivision"]

[[sources]]
name = "maxmind-asn"
kind = "mmdb"
url = "{server.url(ASN_PATH)}"
auth = {{ token_env = "ASN_TOKEN" }}
date = "2026-06-01"
fields = ["asn"]

[[sources]]
name = "ipinfo"
kind = "mmdb"
url = "{server.url(IPINFO_PATH)}"
auth = {{ token_env = "IPINFO_TOKEN", query = "token" }}
date = "2026-06-03"
fields = ["location", "asn"]

[[sources]]
name = "tor"
kind = "tor"
url = "{server.url(TOR_PATH)}"

[[sources]]
name = "aws"
kind = "cloud"
url = "{server.url(AWS_PATH)}"
sha256 = "{aws_sha256}"
date = "2026-06-21"

[precedence]
location = ["maxmind-country", "ipinfo"]
asn = ["maxmind-asn", "ipinfo"]
"""


def _local_config(s: Samples) -> str:
    return f"""\
[[sources]]
name = "maxmind-country"
kind = "mmdb"
path = "{s.country_mmdb.name}"
date = "2026-06-01"
fields = ["location", "subdivision"]

[[sources]]
name = "maxmind-asn"
kind = "mmdb"
path = "{s.asn_mmdb.name}"
date = "2026-06-01"
fields = ["asn"]

[[sources]]
name = "ipinfo"
kind = "mmdb"
path = "{s.ipinfo_mmdb.name}"
date = "2026-06-03"
fields = ["location", "asn"]

[[sources]]
name = "tor"
kind = "tor"
path = "{s.tor.name}"
date = "{TOR_LAST_MODIFIED.date().isoformat()}"

[[sources]]
name = "aws"
kind = "cloud"
path = "{s.aws.name}"
date = "2026-06-21"

[precedence]
location = ["maxmind-country", "ipinfo"]
asn = ["maxmind-asn", "ipinfo"]
"""


@pytest.fixture
def url_build_toml(tmp_path: Path, server: FeedServer, samples: Samples) -> Path:
    """A build config whose every source is a URL on the local server."""
    _serve_samples(server, samples)
    sha = hashlib.sha256(samples.aws.read_bytes()).hexdigest()
    path = tmp_path / "build.toml"
    path.write_text(_url_config(server, aws_sha256=sha))
    return path


def _geogate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost,::1"
    return subprocess.run(
        [sys.executable, "-m", "geogate.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


# ----- tests -----------------------------------------------------------------------------------


def test_snapshot_from_urls_answers_like_one_from_the_same_local_files(
    tmp_path: Path, url_build_toml: Path, samples: Samples
) -> None:
    report = BuildReport()
    config = fetch_url_sources(
        load_build_config(url_build_toml), cache_dir=tmp_path / "cache", report=report
    )
    from_urls = build_snapshot(config, report=report)
    (samples.country_mmdb.parent / "build.toml").write_text(_local_config(samples))
    local = build_snapshot(load_build_config(samples.country_mmdb.parent / "build.toml"))

    for ip in PROBE_IPS:
        assert from_urls.lookup(ip) == local.lookup(ip), ip
    assert from_urls.meta.sources == local.meta.sources
    # Not vacuous: every vendor's file contributed.
    assert from_urls.lookup("1.0.0.5").country == "AU"  # from the tarball
    assert from_urls.lookup("1.0.0.5").asn == 13335  # from the raw ASN mmdb
    assert from_urls.lookup("9.9.9.9").country == "CH"  # only the gzipped IPinfo knows it
    assert from_urls.lookup("5.8.4.10").flags & NetworkFlag.TOR
    assert from_urls.lookup("8.8.8.200").flags & NetworkFlag.HOSTING
    # The tarball's mmdb member is cached under its own name, nothing else was extracted.
    assert config.sources[0].paths[0].name == "GeoLite2-Country.mmdb"
    assert not list((tmp_path / "cache").rglob("*.txt"))
    # The tor source had no date: it came from Last-Modified, and the report says so.
    assert config.sources[3].date == "2026-06-20"
    assert (
        "source tor: date 2026-06-20 taken from Last-Modified (no `date` in the config)"
        in report.lines()
    )


def test_second_build_sends_conditional_gets_and_downloads_nothing(
    tmp_path: Path, url_build_toml: Path, server: FeedServer
) -> None:
    cache = tmp_path / "cache"
    first = fetch_url_sources(load_build_config(url_build_toml), cache_dir=cache)
    report = BuildReport()
    second = fetch_url_sources(load_build_config(url_build_toml), cache_dir=cache, report=report)

    for path in (MAXMIND_PATH, ASN_PATH, IPINFO_PATH, TOR_PATH, AWS_PATH):
        (status1, sent1), (status2, sent2) = server.requests(path)
        assert (status1, status2) == (200, 304), path
        assert sent1 > 0
        assert sent2 == 0
    assert [s.paths for s in second.sources] == [s.paths for s in first.sources]
    assert sum("not modified" in line for line in report.lines()) == 5
    # The date kept from the first download's Last-Modified survives a 304.
    assert second.sources[3].date == "2026-06-20"


def test_a_changed_feed_is_downloaded_again(
    tmp_path: Path, url_build_toml: Path, server: FeedServer
) -> None:
    cache = tmp_path / "cache"
    fetch_url_sources(load_build_config(url_build_toml), cache_dir=cache)
    server.routes[TOR_PATH].body = b"185.220.101.1\n"
    config = fetch_url_sources(load_build_config(url_build_toml), cache_dir=cache)
    assert [s for s, _ in server.requests(TOR_PATH)] == [200, 200]
    assert config.sources[3].paths[0].read_text() == "185.220.101.1\n"


def test_wrong_licence_key_is_one_line_naming_source_and_status_without_the_secret(
    tmp_path: Path, url_build_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "lk_WrongKey_0000000000"
    monkeypatch.setenv("MAXMIND_LICENSE_KEY", wrong)
    with pytest.raises(IntelDataError) as info:
        fetch_url_sources(load_build_config(url_build_toml), cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("sources[0] maxmind-country: HTTP 401 from 127.0.0.1")
    assert "check MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY" in message
    assert wrong not in message
    assert ACCOUNT not in message


def test_wrong_query_token_is_masked_in_the_error_and_in_httpx_logs(
    tmp_path: Path,
    server: FeedServer,
    samples: Samples,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _serve_samples(server, samples)
    wrong = "ipinfo-wrong-token-42"
    monkeypatch.setenv("IPINFO_TOKEN", wrong)
    spec = FeedSpec(
        url=server.url(IPINFO_PATH),
        label="sources[2] ipinfo",
        auth=parse_build_config(
            {
                "sources": [
                    {
                        "name": "ipinfo",
                        "kind": "mmdb",
                        "url": server.url(IPINFO_PATH),
                        "auth": {"token_env": "IPINFO_TOKEN", "query": "token"},
                    }
                ]
            },
            base_dir=tmp_path,
        )
        .sources[0]
        .auth,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(IntelDataError) as info:
        fetch_feed(spec, cache_dir=tmp_path / "cache")
    assert (
        str(info.value)
        == "sources[2] ipinfo: HTTP 401 from 127.0.0.1 (unauthorized): check IPINFO_TOKEN"
    )
    assert any("token=***" in r.getMessage() for r in caplog.records)
    assert all(wrong not in r.getMessage() for r in caplog.records)


def test_cli_wrong_credentials_exit_code_and_one_line(tmp_path: Path, url_build_toml: Path) -> None:
    wrong = "lk_WrongKey_1111111111"
    env_file = tmp_path / "key"
    env_file.write_text(wrong + "\n")
    # Secrets may also come from files: point the licence key at one.
    text = url_build_toml.read_text().replace(
        'password_env = "MAXMIND_LICENSE_KEY"', 'password_file = "key"'
    )
    url_build_toml.write_text(text)
    r = _geogate(
        "data", "build", "--config", str(url_build_toml), "--out", str(tmp_path / "x.snap"),
        "--cache", str(tmp_path / "cache"),
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("geogate: error: sources[0] maxmind-country: HTTP 401")
    assert str(env_file) in lines[0]
    assert wrong not in r.stderr + r.stdout
    assert not (tmp_path / "x.snap").exists()


def test_missing_credentials_variable_is_a_config_error(
    tmp_path: Path, url_build_toml: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAXMIND_LICENSE_KEY")
    with pytest.raises(ConfigError, match=r"sources\[0\] maxmind-country: environment variable "
                       r"MAXMIND_LICENSE_KEY is not set"):  # fmt: skip
        fetch_url_sources(load_build_config(url_build_toml), cache_dir=tmp_path / "cache")
    assert server.requests(MAXMIND_PATH) == []  # nothing was sent without the key


def test_sha256_mismatch_is_refused_and_nothing_is_cached(
    tmp_path: Path, url_build_toml: Path
) -> None:
    text = url_build_toml.read_text()
    pinned = text.split('sha256 = "')[1].split('"')[0]
    url_build_toml.write_text(text.replace(pinned, "0" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(IntelDataError, match=r"sources\[4\] aws: sha256 mismatch") as info:
        fetch_url_sources(load_build_config(url_build_toml), cache_dir=cache)
    assert pinned in str(info.value)
    assert not [p for p in cache.rglob("*") if "aws" in str(p) and p.is_file()]


def test_tarball_with_parent_member_is_refused(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/evil.tar.gz"] = Route(
        body=_tar_gz({"GeoLite2-Country_20260601/../../evil.mmdb": b"not really an mmdb"})
    )
    cache = tmp_path / "sub" / "cache"
    spec = FeedSpec(url=server.url("/evil.tar.gz"), label="sources[0] evil", member_suffix=".mmdb")
    with pytest.raises(IntelDataError, match=r"sources\[0\] evil: refusing a tarball with an "
                       r"unsafe member path"):  # fmt: skip
        fetch_feed(spec, cache_dir=cache)
    assert not list(tmp_path.rglob("evil.mmdb"))


def test_tarball_with_symlink_member_is_refused(tmp_path: Path, server: FeedServer) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("GeoLite2-Country.mmdb")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    server.routes["/link.tar.gz"] = Route(body=buf.getvalue())
    spec = FeedSpec(url=server.url("/link.tar.gz"), label="sources[0] l", member_suffix=".mmdb")
    with pytest.raises(IntelDataError, match="link or special member"):
        fetch_feed(spec, cache_dir=tmp_path / "cache")


def test_tarball_without_exactly_one_mmdb_is_refused(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/two.tar.gz"] = Route(body=_tar_gz({"a/x.mmdb": b"1", "a/y.mmdb": b"2"}))
    spec = FeedSpec(url=server.url("/two.tar.gz"), label="sources[0] two", member_suffix=".mmdb")
    with pytest.raises(IntelDataError, match=r"exactly one \.mmdb file; found a/x.mmdb, a/y"):
        fetch_feed(spec, cache_dir=tmp_path / "cache")


def test_offline_with_empty_cache_is_a_clear_error(tmp_path: Path, url_build_toml: Path) -> None:
    r = _geogate(
        "data", "build", "--config", str(url_build_toml), "--out", str(tmp_path / "x.snap"),
        "--cache", str(tmp_path / "empty-cache"), "--offline",
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "sources[0] maxmind-country: offline and no cached copy of " in lines[0]
    assert "run the build once without --offline" in lines[0]


def test_cli_builds_from_urls_then_offline_without_any_request(
    tmp_path: Path, url_build_toml: Path, server: FeedServer
) -> None:
    cache = tmp_path / "cache"
    args = ("data", "build", "--config", str(url_build_toml), "--cache", str(cache))
    r = _geogate(*args, "--out", str(tmp_path / "a.snap"))
    assert r.returncode == 0, r.stderr
    assert "source tor: date 2026-06-20 taken from Last-Modified" in r.stderr
    assert LICENSE_KEY not in r.stderr + r.stdout
    assert IPINFO_TOKEN not in r.stderr + r.stdout
    before = len(server.log)
    r = _geogate(*args, "--out", str(tmp_path / "b.snap"), "--offline")
    assert r.returncode == 0, r.stderr
    assert len(server.log) == before
    assert r.stderr.count("cached (offline)") == 5
    check = _geogate("check", "5.8.4.10", "--json", "--snapshot", str(tmp_path / "b.snap"))
    assert check.returncode == 0, check.stderr
    assert '"tor"' in check.stdout


def test_5xx_is_retried_then_succeeds(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/flaky.txt"] = Route(body=TOR.encode(), fail_first=2)
    spec = FeedSpec(url=server.url("/flaky.txt"), label="sources[0] tor")
    feed = fetch_feed(spec, cache_dir=tmp_path / "cache", backoff_seconds=0.01)
    assert feed.status == FetchStatus.DOWNLOADED
    assert feed.requests == 3
    assert [s for s, _ in server.requests("/flaky.txt")] == [503, 503, 200]
    assert feed.path.read_text() == TOR


def test_persistent_5xx_names_the_status(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/down.txt"] = Route(body=b"", fail_first=10)
    spec = FeedSpec(url=server.url("/down.txt"), label="sources[1] tor")
    with pytest.raises(IntelDataError, match=r"^sources\[1\] tor: HTTP 503 from 127.0.0.1"):
        fetch_feed(spec, cache_dir=tmp_path / "cache", retries=3, backoff_seconds=0.01)
    assert len(server.requests("/down.txt")) == 3


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = FeedSpec(url=f"http://127.0.0.1:{port}/x", label="sources[0] gone")
    with pytest.raises(IntelDataError, match=r"sources\[0\] gone: cannot download .*3 attempts"):
        fetch_feed(spec, cache_dir=tmp_path / "cache", retries=3, backoff_seconds=0.01)


def test_size_cap_stops_a_large_download(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/big.txt"] = Route(body=b"1.2.3.4\n" * 300_000)  # 2.4 MB
    spec = FeedSpec(url=server.url("/big.txt"), label="sources[0] big", max_bytes=1024 * 1024)
    with pytest.raises(IntelDataError, match="more than the cap of 1048576"):
        fetch_feed(spec, cache_dir=tmp_path / "cache")


def test_gzip_bomb_is_stopped_by_the_decoded_size_cap(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/bomb.gz"] = Route(body=gzip.compress(b"\0" * (3 * 1024 * 1024)))
    spec = FeedSpec(url=server.url("/bomb.gz"), label="sources[0] bomb", max_bytes=1024 * 1024)
    with pytest.raises(IntelDataError, match="decoded feed is larger than the cap"):
        fetch_feed(spec, cache_dir=tmp_path / "cache")


# ----- config ----------------------------------------------------------------------------------


def _parse(source: dict[str, Any], tmp_path: Path) -> None:
    parse_build_config({"sources": [source]}, base_dir=tmp_path, where="b.toml")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"path": "x.mmdb"}, "sources[0].url: give either path or url, not both"),
        (
            {"auth": {"password": "hunter2", "username_env": "U"}},
            "use password_env or password_file",
        ),
        ({"auth": {"token": "t0ken"}}, "use token_env or token_file"),
        ({"url": "https://x.example/db?license_key=abc"}, "'license_key' looks like a secret"),
        ({"url": "https://u:p@x.example/db"}, "credentials in the URL are refused"),
        ({"url": "ftp://x.example/db"}, "not an http(s) URL"),
        ({"url": "http://x.example/db", "auth": {"token_env": "T"}}, "sent only over https"),
        ({"auth": {"username_env": "U"}}, "needs both"),
        ({"auth": {"token_env": "T", "header": "X-K", "query": "k"}}, "header or query"),
        ({"auth": {"token_env": "not a name"}}, "environment variable name"),
        ({"sha256": "abc"}, "64 hex digits"),
        ({"format": "zip"}, "must be one of auto, tar.gz, gz, raw"),
        ({"max_size_mb": 0}, "whole number of MB"),
    ],
)
def test_url_config_mistakes_name_the_key(
    tmp_path: Path, extra: dict[str, Any], fragment: str
) -> None:
    source = {"name": "m", "kind": "mmdb", "url": "https://x.example/db.mmdb"} | extra
    with pytest.raises(ConfigError) as info:
        _parse(source, tmp_path)
    assert fragment in str(info.value)
    assert str(info.value).startswith("b.toml:sources[0]")
    assert "hunter2" not in str(info.value)
    assert "t0ken" not in str(info.value)


def test_path_only_keys_need_a_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\].sha256: only a source with a url"):
        _parse({"name": "t", "kind": "tor", "path": "t.txt", "date": "2026-06-01",
                "sha256": "0" * 64}, tmp_path)  # fmt: skip


def test_url_config_round_trips_through_render(tmp_path: Path) -> None:
    raw = {
        "sources": [
            {
                "name": "geolite2-city",
                "kind": "mmdb",
                "url": "https://download.maxmind.com/geoip/databases/GeoLite2-City/download?suffix=tar.gz",
                "auth": {"username_env": "MAXMIND_ACCOUNT_ID", "password_file": "key.txt"},
                "sha256": "a" * 64,
                "max_size_mb": 200,
            },
            {
                "name": "ipinfo",
                "kind": "mmdb",
                "url": ["https://ipinfo.io/data/free/country_asn.mmdb"],
                "auth": {
                    "token_env": "IPINFO_TOKEN",
                    "header": "Authorization",
                    "prefix": "Bearer ",
                },
                "format": "raw",
                "date": "2026-06-01",
            },
        ]
    }
    config = parse_build_config(raw, base_dir=tmp_path)
    (tmp_path / "b.toml").write_text(render_build_config(config, base_dir=tmp_path))
    again = load_build_config(tmp_path / "b.toml")
    assert again == config
