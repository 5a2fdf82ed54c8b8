"""Client addresses against lists of networks (trustedIPs, ipAllowList sourceRange): parsed
once per configuration generation, matched per connection or request."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(ranges: Iterable[str]) -> list[Network]:
    """IPs or CIDRs (checked when the configuration was loaded) as networks."""
    return [ipaddress.ip_network(r.strip(), strict=False) for r in ranges]


def within(ip: str, nets: Sequence[Network]) -> bool:
    """Whether the address ``ip`` is in one of ``nets`` (an unparsable one is not)."""
    if not nets or not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)
