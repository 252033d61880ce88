"""Feed files as they arrive: empty, with a byte-order mark, in ip2location's CSV layout.

An empty file used to build (0 ranges, exit 0): a Tor or VPN feed that came back empty for a
day silently dropped every flag it gave. A UTF-8 byte-order mark (CSV saved by a spreadsheet)
made the first line unreadable, so a one-line file failed as "no usable networks".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geogate.errors import IntelDataError
from geogate.intel.build import build_snapshot, load_build_config
from geogate.intel.facts import NetworkFlag
from geogate.intel.snapshot import Snapshot


def _build(tmp_path: Path, kind: str, name: str, extra: str = "") -> Snapshot:
    (tmp_path / "build.toml").write_text(
        f'[[sources]]\nname = "feed"\nkind = "{kind}"\npath = "{name}"\ndate = "2026-06-01"\n'
        f"{extra}"
    )
    return build_snapshot(load_build_config(tmp_path / "build.toml"))


KINDS = {
    "csv-country": "",
    "csv-asn": "",
    "csv-flag": 'flag = "vpn"\n',
    "cidr-list": 'flag = "vpn"\n',
    "tor": "",
    "cloud": "",
    "hosting-asns": "",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_empty_feed_file_is_refused(tmp_path: Path, kind: str) -> None:
    (tmp_path / "feed.txt").write_bytes(b"")
    with pytest.raises(IntelDataError) as info:
        _build(tmp_path, kind, "feed.txt", KINDS[kind])
    assert info.value.path == str(tmp_path / "feed.txt")
    assert "the file is empty" in str(info.value)
    assert "\n" not in str(info.value)


def test_min_networks_zero_allows_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "feed.txt").write_bytes(b"")
    snap = _build(tmp_path, "tor", "feed.txt", "min_networks = 0\n")
    assert snap.lookup("1.2.3.4").flags == NetworkFlag.NONE


@pytest.mark.parametrize(
    ("kind", "text", "extra"),
    [
        ("csv-country", "1.2.3.0,1.2.3.255,CN\n", ""),
        ("cidr-list", "1.2.3.0/24\n", 'flag = "vpn"\n'),
        ("tor", "1.2.3.4\n", ""),
        ("cloud", "1.2.3.0/24\n", ""),
    ],
)
def test_a_byte_order_mark_is_ignored(tmp_path: Path, kind: str, text: str, extra: str) -> None:
    (tmp_path / "feed.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    facts = _build(tmp_path, kind, "feed.txt", extra).lookup("1.2.3.4")
    assert facts.country == "CN" or facts.flags != NetworkFlag.NONE


def test_ip2location_style_csv(tmp_path: Path) -> None:
    """ip2location LITE DB1: quoted integers, country code, then the country's name."""
    (tmp_path / "IP2LOCATION-LITE-DB1.CSV").write_text(
        '"0","16777215","-","-"\n'
        '"16777216","16777471","US","United States of America"\n'
        '"16777472","16778239","CN","China"\n'
    )
    snap = _build(tmp_path, "csv-country", "IP2LOCATION-LITE-DB1.CSV")
    assert snap.lookup("1.0.0.1").country == "US"
    assert snap.lookup("1.0.2.1").country == "CN"
    assert snap.lookup("0.1.2.3").country is None


def test_ip2proxy_style_csv(tmp_path: Path) -> None:
    """IP2Proxy PX2: quoted integers and a proxy_type code; a robot (SES) row is skipped."""
    (tmp_path / "IP2PROXY-LITE-PX2.CSV").write_text(
        '"ip_from","ip_to","proxy_type","country_code","country_name"\n'
        '"16777216","16777471","VPN","US","United States of America"\n'
        '"16777472","16777727","TOR","DE","Germany"\n'
        '"16777728","16777983","DCH","NL","Netherlands"\n'
        '"16777984","16778239","PUB","CN","China"\n'
        '"16778240","16778495","RES","BR","Brazil"\n'
        '"16778496","16778751","CPN","US","United States of America"\n'
        '"16778752","16779007","SES","US","United States of America"\n'
    )
    snap = _build(tmp_path, "csv-flag", "IP2PROXY-LITE-PX2.CSV")
    want = {
        "1.0.0.1": NetworkFlag.VPN,
        "1.0.1.1": NetworkFlag.TOR,
        "1.0.2.1": NetworkFlag.HOSTING,
        "1.0.3.1": NetworkFlag.PROXY,
        "1.0.4.1": NetworkFlag.RESIDENTIAL_PROXY,
        "1.0.5.1": NetworkFlag.RELAY,
        "1.0.6.1": NetworkFlag.NONE,
    }
    assert {ip: snap.lookup(ip).flags for ip in want} == want
