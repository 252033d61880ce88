"""The effective client address of a request, from the peer address and forwarding headers.

The walk is the one nginx does with ``real_ip_recursive on``: headers are believed only when the
connection comes from a trusted proxy, and the chain is read right to left, skipping trusted
proxies, until the first address that is not one; that is the client. A header sent by an
untrusted peer is ignored entirely, so a client cannot choose its own location by spoofing it.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from socket import AF_INET, AF_INET6, inet_pton  # pure conversions, no I/O

from geogate.errors import ClientIPError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPV4 = ipaddress.IPv4Address
_IPV6 = ipaddress.IPv6Address
_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96
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
    # inet_pton is as strict as ipaddress for plain addresses (four decimal octets without
    # leading zeros, well-formed IPv6) and ~10× faster; what it refuses (zone ids, junk) takes
    # the slow way, which names the error.
    try:
        if ":" in value:
            packed = inet_pton(AF_INET6, value)
            if packed[:12] == _MAPPED:
                return _IPV4(packed[12:])
            return _IPV6(packed)
        return _IPV4(inet_pton(AF_INET, value))
    except (OSError, ValueError):
        pass
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
    # (version, first, last) per network as integers: membership without ipaddress objects.
    _ranges: tuple[tuple[int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ranges = tuple(
            (n.version, int(n.network_address), int(n.broadcast_address)) for n in self.networks
        )
        object.__setattr__(self, "_ranges", ranges)

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
        version, value = ip.version, int(ip)
        return any(kind == version and first <= value <= last for kind, first, last in self._ranges)

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


class ClientIPHeader(enum.StrEnum):
    """The one forwarding header a deployment's trusted proxies maintain (nginx's
    ``real_ip_header``).

    Only this header is read; the other is ignored entirely, even from a trusted peer: proxies
    pass headers they do not maintain through untouched, so a client could otherwise choose its
    own address by sending the one the proxies leave alone.
    """

    X_FORWARDED_FOR = "x-forwarded-for"
    FORWARDED = "forwarded"

    @classmethod
    def parse(cls, value: str | ClientIPHeader) -> ClientIPHeader:
        """``x-forwarded-for`` or ``forwarded`` (any case); raises :class:`ClientIPError`."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ClientIPError(
                "client_ip_header must be 'x-forwarded-for' or 'forwarded'", value=str(value)
            ) from None


# RFC 7230 token characters (the names and unquoted values of RFC 7239 parameters). Unquoted
# node values also get ":", "[" and "]": RFC 7239 wants "1.2.3.4:80" and IPv6 nodes quoted, but
# proxies send them bare, and accepting them widens nothing (the node is parsed strictly).
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_VALUE_CHAR = _TCHAR | frozenset(":[]")
_OBF = re.compile(r"_[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")
_WS = " \t"


def parse_forwarded(header: str) -> list[dict[str, str]]:
    """The elements of an RFC 7239 ``Forwarded`` header, each as {lower-case name: value}.

    Follows the grammar of RFC 7239 section 4: elements separated by commas, pairs by
    semicolons, values tokens or quoted strings with backslash escapes (a comma or semicolon
    inside quotes is part of the value). Raises :class:`ClientIPError` for anything else: an
    unterminated quote, a pair without ``=``, a bad character, a parameter given twice in one
    element. Empty elements (``a, , b``) are skipped, as RFC 7230's list rule allows.
    """
    if len(header) > MAX_HEADER_CHARS:
        raise ClientIPError(f"Forwarded header longer than {MAX_HEADER_CHARS} characters")
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    i, n = 0, len(header)
    while True:
        while i < n and header[i] in _WS:
            i += 1
        if i < n and header[i] not in ",;":
            start = i
            while i < n and header[i] in _TCHAR:
                i += 1
            name = header[start:i].lower()
            if not name or i >= n or header[i] != "=":
                raise ClientIPError(
                    "malformed Forwarded header (expected name=value)", value=header[:120]
                )
            i += 1
            if i < n and header[i] == '"':
                i += 1
                chars: list[str] = []
                while True:
                    if i >= n:
                        raise ClientIPError(
                            "malformed Forwarded header (unterminated quoted string)",
                            value=header[:120],
                        )
                    c = header[i]
                    if c == "\\":
                        if i + 1 >= n:
                            raise ClientIPError(
                                "malformed Forwarded header (dangling escape)", value=header[:120]
                            )
                        chars.append(header[i + 1])
                        i += 2
                        continue
                    if c == '"':
                        i += 1
                        break
                    if c < " " and c != "\t":
                        raise ClientIPError(
                            "malformed Forwarded header (control character)", value=header[:120]
                        )
                    chars.append(c)
                    i += 1
                value = "".join(chars)
            else:
                start = i
                while i < n and header[i] in _VALUE_CHAR:
                    i += 1
                value = header[start:i]
                if not value:
                    raise ClientIPError(
                        "malformed Forwarded header (empty value)", value=header[:120]
                    )
            if name in element:
                raise ClientIPError(
                    f"malformed Forwarded header ({name}= twice in one element)", value=header[:120]
                )
            element[name] = value
            while i < n and header[i] in _WS:
                i += 1
        if i >= n:
            break
        c = header[i]
        i += 1
        if c == ",":
            if element:
                elements.append(element)
            element = {}
        elif c != ";":
            raise ClientIPError(
                f"malformed Forwarded header (unexpected {c!r})", value=header[:120]
            )
    if element:
        elements.append(element)
    return elements


def _forwarded_nodes(header: str) -> list[str | None]:
    """The ``for=`` node of each element, oldest first (None for an element without one)."""
    return [element.get("for") for element in parse_forwarded(header)]


def _node_address(node: str) -> str | None:
    """The address of an RFC 7239 node (section 6), None for ``unknown`` or an obfuscated
    identifier (``_hidden``); raises :class:`ClientIPError` for a malformed node."""
    node = node.strip()
    if node.lower() == "unknown" or _OBF.fullmatch(node):
        return None
    if node.startswith("["):
        end = node.find("]")
        if end == -1:
            raise ClientIPError("unbalanced bracket in forwarded address", value=node)
        rest = node[end + 1 :]
        if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
            raise ClientIPError("malformed port in forwarded address", value=node)
        return node[1:end]
    if node.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        host, port = node.split(":", 1)
        if not _PORT.fullmatch(port):
            raise ClientIPError("malformed port in forwarded address", value=node)
        return host
    return node


def _strip_port(node: str) -> str:
    """An X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:443``) without
    brackets and port."""
    node = node.strip()
    if node.startswith("["):
        end = node.find("]")
        if end == -1:
            raise ClientIPError("unbalanced bracket in forwarded address", value=node)
        return node[1:end]
    if node.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        return node.split(":", 1)[0]
    return node


def _join(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ", ".join(value)


def _chain(
    header: ClientIPHeader, x_forwarded_for: str | None, forwarded: str | None
) -> tuple[list[str | None], str]:
    """The nodes of the configured header, oldest first (None: a hop that hides its address)."""
    if header is ClientIPHeader.FORWARDED:
        if not forwarded:
            return [], "peer"
        if len(forwarded) > MAX_HEADER_CHARS:
            raise ClientIPError(f"Forwarded header longer than {MAX_HEADER_CHARS} characters")
        nodes = _forwarded_nodes(forwarded)
        if len(nodes) > MAX_HOPS:
            raise ClientIPError(f"forwarding chain has more than {MAX_HOPS} hops")
        return nodes, "forwarded"
    if not x_forwarded_for:
        return [], "peer"
    if len(x_forwarded_for) > MAX_HEADER_CHARS:
        raise ClientIPError(f"X-Forwarded-For header longer than {MAX_HEADER_CHARS} characters")
    entries: list[str | None] = [v.strip() for v in x_forwarded_for.split(",") if v.strip()]
    if len(entries) > MAX_HOPS:
        raise ClientIPError(f"forwarding chain has more than {MAX_HOPS} hops")
    return entries, "x-forwarded-for"


def resolve_client_ip(
    peer: str,
    *,
    x_forwarded_for: str | Sequence[str] | None = None,
    forwarded: str | Sequence[str] | None = None,
    trusted: TrustedProxies = TrustedProxies(),
    header: ClientIPHeader | str = ClientIPHeader.X_FORWARDED_FOR,
) -> ClientIP:
    """The effective client address of a request.

    ``peer`` is the address of the connection. Only the ``header`` the deployment's proxies
    maintain is read (``x-forwarded-for`` by default, or ``forwarded`` for RFC 7239); the
    other argument is ignored entirely, so a client cannot pick its address by sending the
    header the proxies pass through untouched. Several header lines of the same name may be
    given as a sequence; they are joined in order, as RFC 7230 says. Raises
    :class:`ClientIPError` for a malformed peer, an over-long or malformed header, too many
    hops, or a malformed, ``unknown`` or obfuscated address that the walk reaches; entries left
    of the client are never parsed as addresses, so junk there cannot matter.
    """
    which = header if isinstance(header, ClientIPHeader) else ClientIPHeader.parse(header)
    peer_ip = parse_ip(peer)
    if not trusted or peer_ip not in trusted:
        return ClientIP(ip=peer_ip, source="peer")
    nodes, source = _chain(which, _join(x_forwarded_for), _join(forwarded))
    walked: list[IPAddress] = [peer_ip]
    for node in reversed(nodes):
        address = None if node is None else _hop_address(node, which)
        if address is None:
            raise ClientIPError("forwarding chain hides the client address", value=node)
        ip = parse_ip(address)
        if ip not in trusted:
            return ClientIP(ip=ip, source=source, proxies=tuple(walked))
        walked.append(ip)
    # Every hop is a trusted proxy: the leftmost one is the best we know (nginx does the same).
    return ClientIP(ip=walked[-1], source=source if nodes else "peer", proxies=tuple(walked[:-1]))


def _hop_address(node: str, header: ClientIPHeader) -> str | None:
    if header is ClientIPHeader.FORWARDED:
        return _node_address(node)
    if node.lower() == "unknown" or node.startswith("_"):
        return None
    return _strip_port(node)
