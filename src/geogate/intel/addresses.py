"""Address arithmetic shared by the snapshot and the source adapters.

Addresses are plain integers plus an IP version (4 or 6); IPv4-mapped IPv6 addresses
(``::ffff:a.b.c.d``) are folded into IPv4 because that is how they are looked up.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final, Literal

IPVersion = Literal[4, 6]

V4_MAX: Final = (1 << 32) - 1
V6_MAX: Final = (1 << 128) - 1
_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"


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
