"""Who the client is, behind a known number of proxies.

Each trusted proxy (the ALB) appends the address it received the request from to
X-Forwarded-For; anything further left was written by the client and proves nothing. So the
client is the entry `trusted_proxies` hops from the right, never the left-most one.
"""

from __future__ import annotations

import ipaddress


def client_ip(peer: str | None, forwarded_for: list[str], trusted_proxies: int) -> str | None:
    """The client's IP address (what a CAPTCHA service wants as remoteip); None when what
    stands in its place is not an address."""
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    address = peer or "unknown"
    if trusted_proxies > 0 and hops:
        # Fewer entries than proxies: the left-most was still written by one of ours.
        address = hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: list[str], trusted_proxies: int) -> str:
    """The rate-limit key: the client's address (an IPv6 client by its /64)."""
    return _key(client_ip(peer, forwarded_for, trusted_proxies), peer)


def _key(address: str | None, peer: str | None) -> str:
    if address is None:
        return peer or "unknown"  # not an address: never a key the client can vary
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        # One host usually holds a whole /64: per-address keys would be free to vary.
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
