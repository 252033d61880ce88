"""Address arithmetic shared by the snapshot and the source adapters.

Addresses are plain integers plus an IP version (4 or 6); IPv4-mapped IPv6 addresses
(``::ffff:a.b.c.d``) are folded into IPv4 because that is how they are looked up.

:func:`embedded_ipv4` finds the IPv4 address inside the IPv6 forms that carry one (mapped,
compatible, translated, 6to4, Teredo, NAT64): the snapshot locates such an address as that
IPv4 address, because that is where the client is. Data files often file ``2002::/16`` and
``2001::/32`` under the relay operator's country, which would let a client of a denied
country through by writing its address as 6to4 or Teredo.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Final, Literal

IPVersion = Literal[4, 6]

V4_MAX: Final = (1 << 32) - 1
V6_MAX: Final = (1 << 128) - 1
_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"
_V4: Final = 0xFFFFFFFF
_NAT64_WKP: Final = 0x0064_FF9B_0000_0000_0000_0000  # 64:ff9b::/96, top 96 bits
_NAT64_LOCAL: Final = 0x0064_FF9B_0001  # 64:ff9b:1::/48, top 48 bits (RFC 8215)
_NAT64_32: Final = 0x0064_FF9B  # 64:ff9b::/32, top 32 bits: holds both
_U64: Final = (1 << 64) - 1

EMBEDDINGS: Final = (
    "ipv4-mapped",
    "ipv4-compatible",
    "ipv4-translated",
    "6to4",
    "teredo",
    "nat64",
    "nat64-local",
)
"""Names of the IPv6 forms :func:`embedded_ipv4` unwraps (the ``embedding`` of IntelFacts)."""


def parse_address(text: str) -> tuple[IPVersion, int] | None:
    """Parse an IPv4 or IPv6 address; return ``(version, value)`` or None when malformed.

    IPv4-mapped IPv6 addresses come back as version 4. Zone ids (``fe80::1%eth0``),
    surrounding blanks and leading zeros in IPv4 octets are malformed.
    """
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError, TypeError):
        pass
    try:
        raw = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError, TypeError):
        return None
    if raw[:12] == _MAPPED_PREFIX:
        return 4, int.from_bytes(raw[12:], "big")
    return 6, int.from_bytes(raw, "big")


def parse_network(text: str) -> tuple[IPVersion, int, int] | None:
    """Parse a CIDR (``10.0.0.0/8``) or a bare address; return ``(version, first, last)``.

    Host bits set below the prefix are tolerated (``10.1.2.3/8`` means ``10.0.0.0/8``),
    as published lists often contain them. Returns None when malformed.
    """
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except (ValueError, TypeError):
        return None
    first = int(net.network_address)
    last = int(net.broadcast_address)
    if net.version == 6 and isinstance(net, ipaddress.IPv6Network):
        mapped = net.network_address.ipv4_mapped
        if mapped is not None and net.prefixlen >= 96:
            base = int(mapped)
            return 4, base, base + (last - first)
        return 6, first, last
    return 4, first, last


def format_address(version: IPVersion, value: int) -> str:
    """The text form of an address (``inet_ntop``)."""
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def family_max(version: IPVersion) -> int:
    """The largest address of the family (``2**32 - 1`` or ``2**128 - 1``)."""
    return V4_MAX if version == 4 else V6_MAX


def embedded_ipv4(value: int) -> tuple[int, str] | None:
    """The IPv4 address an IPv6 address (as an integer) carries, with the form's name.

    - ``::ffff:a.b.c.d`` ipv4-mapped; ``::a.b.c.d`` ipv4-compatible (RFC 4291, deprecated;
      ``::`` and ``::1`` excluded); ``::ffff:0:a.b.c.d`` ipv4-translated (RFC 2765);
    - ``2002:AABB:CCDD::/48`` 6to4 (RFC 3056): bits 16-47;
    - ``2001:0::/32`` Teredo (RFC 4380): the client address is the last 32 bits inverted;
    - ``64:ff9b::/96`` nat64 (RFC 6052 well-known prefix): the last 32 bits;
    - ``64:ff9b:1::/48`` nat64-local (RFC 8215) and the rest of ``64:ff9b::/32`` nat64: the
      operator picks the prefix length (RFC 6052: /32, /40, /48, /56, /64 or /96; at least
      /48 inside the local-use block), which the address does not say, so the form is
      inferred: the shortest length whose ``u`` octet (bits 64-71) and suffix are zero and
      whose IPv4 address does not start with 0 (``0.0.0.0/8`` is never a client), else /96
      (the last 32 bits). With the operator's subnet bits zero every form reads back exactly.

    Returns None for any other address.
    """
    top16 = value >> 112
    if top16 == 0:
        upper = value >> 32
        low = value & _V4
        if upper == 0xFFFF:
            return low, "ipv4-mapped"
        if upper == 0:
            return (low, "ipv4-compatible") if value > 1 else None
        if upper == 0xFFFF_0000:
            return low, "ipv4-translated"
        return None
    if top16 == 0x2002:
        return (value >> 80) & _V4, "6to4"
    if top16 == 0x2001:
        if value >> 96 == 0x2001_0000:
            return (~value) & _V4, "teredo"
        return None
    if value >> 96 == _NAT64_32:
        if (value >> 32) & _U64 == 0:
            return value & _V4, "nat64"
        local = value >> 80 == _NAT64_LOCAL
        form = "nat64-local" if local else "nat64"
        hi, lo = value >> 64, value & _U64
        if lo >> 56 == 0:  # the u octet: zero in every form but /96
            for length, read in _RFC6052_FORMS:
                if local and length < 48:
                    continue
                v4, suffix = read(hi, lo)
                if suffix == 0 and v4 >> 24:
                    return v4, form
        return value & _V4, form
    return None


def _read_form(length: int) -> Callable[[int, int], tuple[int, int]]:
    """RFC 6052 section 2.2: the IPv4 address of a ``/length`` prefix and the suffix bits after
    it, from the high and low 64 bits (the IPv4 bits skip bits 64-71, the ``u`` octet)."""
    before_u = max(0, 64 - length)  # IPv4 bits above bit 64
    after_u = 32 - before_u  # IPv4 bits below the u octet
    suffix_bits = 56 - after_u

    def read(hi: int, lo: int) -> tuple[int, int]:
        v4 = (hi & ((1 << before_u) - 1)) << after_u | (lo >> suffix_bits) & ((1 << after_u) - 1)
        return v4, lo & ((1 << suffix_bits) - 1)

    return read


_RFC6052_FORMS: Final = tuple((n, _read_form(n)) for n in (32, 40, 48, 56, 64))
"""(prefix length, reader) of the RFC 6052 forms below /96, shortest first."""


def embedded_ipv4_text(ip: str) -> tuple[str, str] | None:
    """:func:`embedded_ipv4` on address text: ``(ipv4 text, form)``, or None when ``ip`` is
    IPv4, malformed, or an IPv6 address without an embedded IPv4 address."""
    try:
        raw = socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError, TypeError):
        return None
    found = embedded_ipv4(int.from_bytes(raw, "big"))
    if found is None:
        return None
    return socket.inet_ntop(socket.AF_INET, found[0].to_bytes(4, "big")), found[1]
