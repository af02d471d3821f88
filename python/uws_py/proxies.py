"""Client addresses behind reverse proxies: ``X-Forwarded-For`` and ``Forwarded`` (RFC 7239),
believed only when the peer is a trusted proxy. No I/O.

Each proxy appends the address it received the request from, so the header reads left to
right from the original client to the last proxy. Anyone can send the header with made-up
entries on the left; only the entries that trusted proxies appended are true. The client is
therefore the right-most entry that is not itself a trusted proxy: walking from the right,
trusted hops are skipped and the first other address is the answer.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Optional, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# for=... in one Forwarded element: a token or a quoted string.
_FORWARDED_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.IGNORECASE)


def parse_address(text: str) -> Optional[Address]:
    """An IP address from a header entry or a peer address, None when it is not one.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]:443`` and
    IPv4-mapped IPv6 (``::ffff:1.2.3.4``, read as the IPv4 address).

    Args:
        text: the entry.
    """
    text = text.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_chain(x_forwarded_for: Optional[str], forwarded: Optional[str]) -> list[str]:
    """The hops the headers list, client first. ``Forwarded`` wins when both are present
    (it is the standard one); an element without ``for=`` counts as an unknown hop.

    Args:
        x_forwarded_for: the ``X-Forwarded-For`` value (repeated headers joined by ", ").
        forwarded: the ``Forwarded`` value.
    """
    if forwarded:
        hops = []
        for element in forwarded.split(","):
            match = _FORWARDED_FOR.search(element)
            hops.append(match.group(1).strip('"') if match else "unknown")
        return hops
    if x_forwarded_for:
        return [hop.strip() for hop in x_forwarded_for.split(",")]
    return []


class TrustedProxies:
    """Which peers may tell us the client's address, and what they said.

    Args:
        networks: addresses or CIDRs (``"10.0.0.0/8"``, ``"127.0.0.1"``, ``"::1"``); a bad
            one raises ValueError naming it.
    """

    __slots__ = ("networks",)

    def __init__(self, networks: Iterable[str]) -> None:
        parsed: list[Network] = []
        for entry in networks:
            try:
                parsed.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR") from None
        self.networks = tuple(parsed)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Optional[Address]) -> bool:
        """Whether ``address`` is one of the trusted proxies.

        Args:
            address: a parsed address (None: not an address, never trusted).
        """
        if address is None:
            return False
        return any(address.version == network.version and address in network for network in self.networks)

    def client_address(self, peer: str, x_forwarded_for: Optional[str], forwarded: Optional[str]) -> str:
        """The client's address: ``peer`` itself unless it is a trusted proxy; then the
        right-most hop of the headers that is not a trusted proxy (the left-most hop when
        every one is trusted). A hop that is not an IP address (``unknown``, an obfuscated
        identifier, garbage) ends the walk: the trusted proxy after it is answered instead.

        Args:
            peer: the TCP peer's address.
            x_forwarded_for: the ``X-Forwarded-For`` header, or None.
            forwarded: the ``Forwarded`` header, or None.
        """
        if not self.networks or not self.trusts(parse_address(peer)):
            return peer
        client = peer
        for hop in reversed(forwarded_chain(x_forwarded_for, forwarded)):
            address = parse_address(hop)
            if address is None:
                return client
            client = str(address)
            if not self.trusts(address):
                return client
        return client
