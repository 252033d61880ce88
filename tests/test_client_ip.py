"""Client address resolution: nginx real_ip_recursive semantics, and spoofing never works."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geogate.client_ip import (
    MAX_HEADER_CHARS,
    MAX_HOPS,
    TrustedProxies,
    parse_ip,
    resolve_client_ip,
)
from geogate.errors import ClientIPError

TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"])

ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address)
any_ip = st.one_of(ipv4, ipv6)
junk = st.text(max_size=40)


@given(any_ip)
def test_parse_round_trips_every_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    parsed = parse_ip(str(ip))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        assert parsed == ip.ipv4_mapped
    else:
        assert parsed == ip


@given(junk)
def test_parse_accepts_only_addresses(text: str) -> None:
    try:
        ipaddress.ip_address(text.strip())
        valid = text.strip() != "" and "%" not in text
    except ValueError:
        valid = False
    if valid:
        parse_ip(text)
    else:
        with pytest.raises(ClientIPError):
            parse_ip(text)


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.4/32", "fe80::1%eth0", "example.com", "1"])
def test_parse_rejects_non_addresses(bad: str) -> None:
    with pytest.raises(ClientIPError):
        parse_ip(bad)


def test_untrusted_peer_headers_are_ignored() -> None:
    c = resolve_client_ip("203.0.113.9", x_forwarded_for="8.8.8.8", trusted=TRUSTED)
    assert str(c.ip) == "203.0.113.9"
    assert c.source == "peer"


def test_walk_right_to_left_skipping_trusted_proxies() -> None:
    # client spoofs 1.1.1.1, real client 198.51.100.7, then two trusted proxies
    c = resolve_client_ip(
        "127.0.0.1", x_forwarded_for="1.1.1.1, 198.51.100.7, 10.1.2.3", trusted=TRUSTED
    )
    assert str(c.ip) == "198.51.100.7"
    assert [str(p) for p in c.proxies] == ["127.0.0.1", "10.1.2.3"]


def test_all_hops_trusted_gives_leftmost() -> None:
    c = resolve_client_ip("127.0.0.1", x_forwarded_for="10.0.0.5, 10.0.0.6", trusted=TRUSTED)
    assert str(c.ip) == "10.0.0.5"


def test_forwarded_header_rfc7239() -> None:
    header = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'
    c = resolve_client_ip("::1", forwarded=header, trusted=TRUSTED)
    assert str(c.ip) == "2001:db8:cafe::17"
    assert c.source == "forwarded"
    c = resolve_client_ip("::1", forwarded="for=192.0.2.60:8080", trusted=TRUSTED)
    assert str(c.ip) == "192.0.2.60"


def test_multiple_header_lines_are_joined_in_order() -> None:
    c = resolve_client_ip(
        "127.0.0.1", x_forwarded_for=["9.9.9.9", "198.51.100.1, 10.0.0.1"], trusted=TRUSTED
    )
    assert str(c.ip) == "198.51.100.1"


def test_junk_left_of_the_client_is_never_parsed() -> None:
    c = resolve_client_ip("127.0.0.1", x_forwarded_for="<script>, 198.51.100.7", trusted=TRUSTED)
    assert str(c.ip) == "198.51.100.7"


@pytest.mark.parametrize(
    ("xff", "message"),
    [
        ("not-an-ip", "not an IP address"),
        ("unknown", "hides the client"),
        ("1.2.3.4, " * (MAX_HOPS + 1), "hops"),
        ("1" * (MAX_HEADER_CHARS + 1), "longer than"),
    ],
)
def test_hostile_headers_from_a_trusted_peer_are_rejected(xff: str, message: str) -> None:
    with pytest.raises(ClientIPError, match=message):
        resolve_client_ip("127.0.0.1", x_forwarded_for=xff, trusted=TRUSTED)


@given(peer=ipv4.filter(lambda ip: ip not in TRUSTED), xff=junk, fwd=junk)
def test_header_from_untrusted_peer_never_changes_the_client(
    peer: ipaddress.IPv4Address, xff: str, fwd: str
) -> None:
    c = resolve_client_ip(str(peer), x_forwarded_for=xff, forwarded=fwd, trusted=TRUSTED)
    assert c.ip == peer
    assert c.source == "peer"


@given(
    client=any_ip.filter(lambda ip: parse_ip(str(ip)) not in TRUSTED),
    spoof=st.lists(any_ip, max_size=5),
)
def test_spoofed_prefix_never_changes_the_client_behind_trusted_proxies(
    client: ipaddress.IPv4Address | ipaddress.IPv6Address,
    spoof: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    chain = ", ".join(str(s) for s in [*spoof, client])
    got = resolve_client_ip("10.9.9.9", x_forwarded_for=chain, trusted=TRUSTED)
    expected = client.ipv4_mapped if getattr(client, "ipv4_mapped", None) else client
    assert got.ip == expected
