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


def forwarded(header: str, peer: str = "::1") -> str:
    """The client address resolved from a Forwarded header sent by a trusted proxy."""
    return str(resolve_client_ip(peer, forwarded=header, trusted=TRUSTED, header="forwarded").ip)


def test_forwarded_header_rfc7239() -> None:
    header = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'
    c = resolve_client_ip("::1", forwarded=header, trusted=TRUSTED, header="forwarded")
    assert str(c.ip) == "2001:db8:cafe::17"
    assert c.source == "forwarded"
    assert forwarded("for=192.0.2.60:8080") == "192.0.2.60"


@pytest.mark.parametrize(
    ("header", "client"),
    [
        # RFC 7239 section 4 and 7.1 examples
        ('for="_gazonk"', None),
        ('For="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
        # a comma or semicolon inside quotes belongs to the value (the reproducer)
        ('for=59.224.0.1;ext="x, for=8.8.8.8 y"', "59.224.0.1"),
        ('for=59.224.0.1;ext="a;for=8.8.8.8"', "59.224.0.1"),
        # escapes inside quoted strings
        ('for="192.0.2.7";ext="a\\"b, for=8.8.8.8"', "192.0.2.7"),
        # empty list elements and optional whitespace
        (" for=192.0.2.9 ; proto=https ,  , ", "192.0.2.9"),
        # trusted proxies to the right are walked over, obfuscated ones on the left never read
        ('for=_hidden, for=192.0.2.9, for="10.0.0.3:_port"', "192.0.2.9"),
    ],
)
def test_forwarded_follows_the_rfc7239_grammar(header: str, client: str | None) -> None:
    if client is None:
        with pytest.raises(ClientIPError, match="hides the client"):
            forwarded(header)
    else:
        assert forwarded(header) == client


@pytest.mark.parametrize(
    "header",
    [
        'for="192.0.2.1',  # unterminated quote
        "for",  # no value
        "for=",  # empty value
        "for=192.0.2.1;for=192.0.2.2",  # a parameter twice in one element
        "for=192.0.2.1 junk",  # junk after a pair
        'for="192.0.2.1:99999x"',  # bad port
        "for=[2001:db8::1",  # unbalanced bracket
        "proto=https",  # the hop names no client
        'for="\\',  # dangling escape
    ],
)
def test_malformed_forwarded_is_a_client_ip_error(header: str) -> None:
    with pytest.raises(ClientIPError):
        forwarded(header)


def test_only_the_configured_header_is_read() -> None:
    """A client-sent Forwarded never overrides the X-Forwarded-For the proxies set (and the
    other way round), whatever the caller passes."""
    both = {"x_forwarded_for": "198.51.100.7", "forwarded": "for=8.8.8.8"}
    assert str(resolve_client_ip("127.0.0.1", **both, trusted=TRUSTED).ip) == "198.51.100.7"
    got = resolve_client_ip("127.0.0.1", **both, trusted=TRUSTED, header="forwarded")
    assert str(got.ip) == "8.8.8.8"
    # Only the unconfigured header present: it is not read at all.
    only_fwd = resolve_client_ip("127.0.0.1", forwarded="for=8.8.8.8", trusted=TRUSTED)
    assert (str(only_fwd.ip), only_fwd.source) == ("127.0.0.1", "peer")
    with pytest.raises(ClientIPError, match="client_ip_header"):
        resolve_client_ip("127.0.0.1", trusted=TRUSTED, header="x-real-ip")


def test_decider_reads_only_its_configured_header() -> None:
    from geogate.decide import Decider  # noqa: PLC0415
    from geogate.intel.snapshot import Snapshot  # noqa: PLC0415
    from geogate.policy.parse import load_policy_set, resolve_policy_path  # noqa: PLC0415

    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    snap = Snapshot.embedded()
    xff_decider = Decider(policies, snap, trusted=TRUSTED)
    ip, _ = xff_decider.decide_request(
        "10.0.0.1", x_forwarded_for="198.51.100.7", forwarded="for=8.8.8.8"
    )
    assert ip == "198.51.100.7"
    fwd_decider = Decider(policies, snap, trusted=TRUSTED, client_ip_header="forwarded")
    ip, _ = fwd_decider.decide_request(
        "10.0.0.1", x_forwarded_for="198.51.100.7", forwarded="for=8.8.8.8"
    )
    assert ip == "8.8.8.8"


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
    for header in ("x-forwarded-for", "forwarded"):
        c = resolve_client_ip(
            str(peer), x_forwarded_for=xff, forwarded=fwd, trusted=TRUSTED, header=header
        )
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


def _near_address(draw: st.DrawFn) -> str:
    """An address text with a small edit: leading zeros, a dropped or doubled character, a
    zone id, a mapped or compat prefix, case and spaces (where a fast parser may differ)."""
    ip = draw(any_ip)
    text = draw(
        st.sampled_from(
            [str(ip), ip.exploded if isinstance(ip, ipaddress.IPv6Address) else str(ip)]
        )
    )
    edit = draw(st.integers(0, 7))
    at = draw(st.integers(0, max(0, len(text) - 1)))
    if edit == 1:
        text = text[:at] + "0" + text[at:]
    elif edit == 2:
        text = text[:at] + text[at + 1 :]
    elif edit == 3:
        text = text[:at] + text[at] + text[at:]
    elif edit == 4:
        text += draw(st.sampled_from(["%eth0", "%1", "/32", ".", ":"]))
    elif edit == 5 and isinstance(ip, ipaddress.IPv4Address):
        text = draw(st.sampled_from(["::ffff:", "::", "::FFFF:", "0::ffff:"])) + text
    elif edit == 6:
        text = text.upper()
    elif edit == 7:
        text = f" {text}\t"
    return text


@given(st.composite(_near_address)())
def test_parse_agrees_with_ipaddress_on_near_addresses(text: str) -> None:
    """The inet_pton fast path accepts exactly what ipaddress accepts (zone ids refused)."""
    value = text.strip()
    try:
        expected: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(value)
    except ValueError:
        expected = None
    if isinstance(expected, ipaddress.IPv6Address):
        if expected.scope_id is not None:
            expected = None
        elif expected.ipv4_mapped is not None:
            expected = expected.ipv4_mapped
    if expected is None:
        with pytest.raises(ClientIPError):
            parse_ip(text)
    else:
        assert parse_ip(text) == expected
        assert type(parse_ip(text)) is type(expected)


@given(any_ip, st.lists(st.tuples(any_ip, st.integers(0, 128)), max_size=6))
def test_trusted_membership_matches_ipaddress(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    nets: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]],
) -> None:
    networks = [
        ipaddress.ip_network(f"{base}/{min(bits, base.max_prefixlen)}", strict=False)
        for base, bits in nets
    ]
    trusted = TrustedProxies.parse([str(n) for n in networks] + [f"{ip}/{ip.max_prefixlen - 3}"])
    assert (ip in trusted) is True
    plain = TrustedProxies.parse([str(n) for n in networks])
    assert (ip in plain) == any(ip.version == n.version and ip in n for n in networks)
    for network in networks:  # both ends of every network are inside it
        assert network.network_address in plain
        assert network.broadcast_address in plain
