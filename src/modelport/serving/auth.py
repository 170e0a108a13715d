"""Optional API keys with two roles: ``infer`` (inference and metadata) and ``admin`` (everything).

    keys = ApiKeys.parse(["ops=admin:s3cret-key", "infer:k2-k2-k2"])  # or MODELPORT_API_KEYS
    keys.check(token, "admin")      # Unauthorized (401) without a valid key, Forbidden (403) if the
                                    # key's role is not enough
    keys.name_of(token)             # "ops": who did it, for the audit log
A client sends ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (gRPC: the same metadata).
Keys are kept as SHA-256 digests and compared in constant time. A key without ``NAME=`` is named
by its role and the first hex digits of its digest (``admin-3fa2c1d0``), never by the key itself.
``admin_routes=False`` refuses the admin role to everyone (a server open without keys).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from modelport.errors import Forbidden, InvalidInput, Unauthorized

ROLES = ("infer", "admin")
_GRANTS = {"infer": {"infer"}, "admin": {"infer", "admin"}}


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class ApiKeys:
    def __init__(
        self, keys: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None,
        admin_routes: bool = True,
    ) -> None:  # fmt: skip
        self._keys: dict[bytes, tuple[str, str]] = {}
        self.admin_routes = admin_routes
        for key, role in (keys or {}).items():
            if role not in ROLES:
                raise InvalidInput(f"API key role {role!r} is not one of {', '.join(ROLES)}")
            if len(key) < 8:
                raise InvalidInput("an API key must be at least 8 characters long")
            digest = _digest(key)
            name = (names or {}).get(key) or f"{role}-{digest.hex()[:8]}"
            self._keys[digest] = (role, name)

    @classmethod
    def parse(cls, specs: Iterable[str], admin_routes: bool = True) -> ApiKeys:
        """Keys from ``ROLE:KEY`` or ``NAME=ROLE:KEY`` strings (comma-separated lists allowed)."""
        keys: dict[str, str] = {}
        names: dict[str, str] = {}
        for spec in specs:
            for item in spec.split(","):
                item = item.strip()
                if not item:
                    continue
                head, sep, key = item.partition(":")
                name, _, role = head.rpartition("=")
                if not sep or role not in ROLES or not key:
                    raise InvalidInput(
                        f"API key {item[:6]!r}... must be given as ROLE:KEY or NAME=ROLE:KEY with "
                        f"ROLE one of {', '.join(ROLES)}"
                    )
                keys[key] = role
                if name:
                    names[key] = name
        return cls(keys, names, admin_routes)

    @property
    def enabled(self) -> bool:
        """Whether requests are checked at all (keys exist, or admin routes are off)."""
        return bool(self._keys) or not self.admin_routes

    @property
    def required(self) -> bool:
        """Whether a request needs a key."""
        return bool(self._keys)

    def _lookup(self, token: str | bytes | None) -> tuple[str, str] | None:
        if not token:
            return None
        digest = _digest(token)
        found = None
        for known, entry in self._keys.items():  # constant time over every key
            if hmac.compare_digest(known, digest):
                found = entry
        return found

    def role_of(self, token: str | bytes | None) -> str | None:
        entry = self._lookup(token)
        return None if entry is None else entry[0]

    def name_of(self, token: str | bytes | None) -> str | None:
        """The key's name (for the audit log), or None for no key or an unknown one."""
        entry = self._lookup(token)
        return None if entry is None else entry[1]

    def check(self, token: str | bytes | None, needed: str) -> str | None:
        """The key's name if it grants ``needed`` (None on a server without keys), or raise."""
        if needed == "admin" and not self.admin_routes:
            raise Forbidden(
                "admin routes are off on this server: start it with an admin API key "
                "(--api-key admin:KEY) or --admin-routes"
            )
        if not self._keys:
            return None
        if not token:
            raise Unauthorized(
                "this server needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        entry = self._lookup(token)
        if entry is None:
            raise Unauthorized("the API key is not valid")
        role, name = entry
        if needed not in _GRANTS[role]:
            raise Forbidden(f"this call needs the {needed!r} role; the key has {role!r}")
        return name


def token_from(authorization: bytes | str | None, api_key: bytes | str | None) -> bytes | None:
    """The key a request carries, from ``Authorization: Bearer`` or ``X-API-Key``."""
    if api_key:
        return api_key.encode() if isinstance(api_key, str) else api_key
    if authorization:
        value = authorization.encode() if isinstance(authorization, str) else authorization
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return token.strip()
    return None
