"""The effective client address of a request, from the peer address and forwarding headers.

The walk is the one nginx does with ``real_ip_recursive on``: headers are believed only when the
connection comes from a trusted proxy, and the chain is read right to left, skipping trusted
proxies, until the first address that is not one; that is the client. A header sent by an
untrusted peer is ignored entirely, so a client cannot choose its own location by spoofing it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from geogate.errors import ClientIPError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Longest forwarding header accepted; longer ones are rejected before any parsing.
MAX_HEADER_CHARS = 4096
#: Most hops accepted in one chain (nginx itself stops at far fewer in practice).
MAX_HOPS = 32


def parse_ip(text: str) -> IPAddress:
    """Parse one address; IPv4-mapped IPv6 (``::ffff:1.2.3.4``) becomes the IPv4 address.

    Raises :class:`ClientIPError` for anything that is not a plain IPv4 or IPv6 address
    (zone ids, CIDRs, host names and empty strings included).
    """
    value = text.strip()
    if not value or len(value) > 64:
        raise ClientIPError("not an IP address", value=text)
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ClientIPError("not an IP address", value=text) from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            raise ClientIPError("IPv6 zone ids are not accepted", value=text)
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The networks whose forwarding headers are believed (nginx ``set_real_ip_from``)."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> TrustedProxies:
        """Parse CIDRs or single addresses; raises :class:`ClientIPError` naming a bad one."""
        nets: list[IPNetwork] = []
        for cidr in cidrs:
            try:
                nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ClientIPError("not a trusted-proxy network (CIDR)", value=cidr) from None
        return cls(tuple(nets))

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(ip.version == n.version and ip in n for n in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIP:
    """The resolved client: its address, where it came from, and the proxies walked over."""

    ip: IPAddress
    source: str  # "peer", "x-forwarded-for" or "forwarded"
    proxies: tuple[IPAddress, ...] = ()

    def __str__(self) -> str:
        return str(self.ip)


_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for\s*=\s*("([^"]*)"|[^;,\s]*)')


def _forwarded_for_values(header: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    values = []
    for element in header.split(","):
        m = _FORWARDED_FOR.search(element)
        if m:
            values.append(m.group(2) if m.group(2) is not None else m.group(1))
    return values


def _strip_port(node: str) -> str:
    """An RFC 7239 node (``"[2001:db8::1]:4711"``, ``1.2.3.4:80``) without brackets and port."""
    node = node.strip()
    if node.startswith("["):
        end = node.find("]")
        if end == -1:
            raise ClientIPError("unbalanced bracket in forwarded address", value=node)
        return node[1:end]
    if node.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        return node.split(":", 1)[0]
    return node


def _chain(x_forwarded_for: str | None, forwarded: str | None) -> tuple[list[str], str]:
    if forwarded:
        if len(forwarded) > MAX_HEADER_CHARS:
            raise ClientIPError(f"Forwarded header longer than {MAX_HEADER_CHARS} characters")
        return [_strip_port(v) for v in _forwarded_for_values(forwarded)], "forwarded"
    if x_forwarded_for:
        if len(x_forwarded_for) > MAX_HEADER_CHARS:
            raise ClientIPError(f"X-Forwarded-For header longer than {MAX_HEADER_CHARS} characters")
        return [_strip_port(v) for v in x_forwarded_for.split(",") if v.strip()], (
            "x-forwarded-for"
        )
    return [], "peer"


def resolve_client_ip(
    peer: str,
    *,
    x_forwarded_for: str | Sequence[str] | None = None,
    forwarded: str | Sequence[str] | None = None,
    trusted: TrustedProxies = TrustedProxies(),
) -> ClientIP:
    """The effective client address of a request.

    ``peer`` is the address of the connection. Several header lines of the same name may be
    given as a sequence; they are joined in order, as RFC 7230 says. ``Forwarded`` (RFC 7239)
    wins over ``X-Forwarded-For`` when both are present. Raises :class:`ClientIPError` for a
    malformed peer, an over-long header, too many hops, or a malformed address that the walk
    reaches; entries left of the client are never parsed, so junk there cannot matter.
    """
    peer_ip = parse_ip(peer)
    if not trusted or peer_ip not in trusted:
        return ClientIP(ip=peer_ip, source="peer")
    if not isinstance(x_forwarded_for, str | None):
        x_forwarded_for = ", ".join(x_forwarded_for)
    if not isinstance(forwarded, str | None):
        forwarded = ", ".join(forwarded)
    nodes, source = _chain(x_forwarded_for, forwarded)
    if len(nodes) > MAX_HOPS:
        raise ClientIPError(f"forwarding chain has more than {MAX_HOPS} hops")
    walked: list[IPAddress] = [peer_ip]
    for node in reversed(nodes):
        if node.lower() == "unknown" or node.startswith("_"):
            raise ClientIPError("forwarding chain hides the client address", value=node)
        ip = parse_ip(node)
        if ip not in trusted:
            return ClientIP(ip=ip, source=source, proxies=tuple(walked))
        walked.append(ip)
    # Every hop is a trusted proxy: the leftmost one is the best we know (nginx does the same).
    return ClientIP(ip=walked[-1], source=source if nodes else "peer", proxies=tuple(walked[:-1]))
