"""Secure by default: a server reachable from the network needs API keys, or says it does not.

    guard("0.0.0.0", keys)                                   # InvalidInput: no keys, not loopback
    guard("0.0.0.0", keys, allow_unauthenticated=True)       # starts; admin routes are off
    guard("0.0.0.0", keys, allow_unauthenticated=True, admin_routes=True)   # on, by request
    guard("127.0.0.1", keys)                                 # loopback: open, admin routes on

``guard`` returns the keys the server checks with (admin routes off where they must be).
"""

from __future__ import annotations

import ipaddress
import socket

from modelport.errors import InvalidInput
from modelport.serving.auth import ApiKeys


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (``0.0.0.0`` and ``::`` are not)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # the bind reports an unknown name; here it only must not count as local
    return bool(found) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in found)


def guard(
    host: str, keys: ApiKeys, allow_unauthenticated: bool = False, admin_routes: bool | None = None
) -> ApiKeys:
    """The keys to serve ``host`` with, or an InvalidInput saying how to add keys."""
    exposed = not is_loopback(host)
    if keys.required or not exposed:
        keys.admin_routes = admin_routes is not False
        return keys
    if not allow_unauthenticated:
        raise InvalidInput(
            f"refusing to serve {host} without API keys: add --api-key admin:KEY (or "
            "MODELPORT_API_KEYS=admin:KEY), or pass --allow-unauthenticated"
        )
    keys.admin_routes = bool(admin_routes)
    return keys
