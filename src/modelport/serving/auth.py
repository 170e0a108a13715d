"""Optional API keys with two roles: ``infer`` (inference and metadata) and ``admin`` (everything).

    keys = ApiKeys.parse(["admin:s3cret", "infer:k2"])   # or MODELPORT_API_KEYS="admin:s3cret"
    keys.check(token, "admin")      # Unauthorized (401) without a valid key, Forbidden (403) if the
                                    # key's role is not enough
A client sends ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (gRPC: the same metadata).
Keys are kept as SHA-256 digests and compared in constant time.
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
    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        self._roles: dict[bytes, str] = {}
        for key, role in (keys or {}).items():
            if role not in ROLES:
                raise InvalidInput(f"API key role {role!r} is not one of {', '.join(ROLES)}")
            if len(key) < 8:
                raise InvalidInput("an API key must be at least 8 characters long")
            self._roles[_digest(key)] = role

    @classmethod
    def parse(cls, specs: Iterable[str]) -> ApiKeys:
        """Keys from ``role:key`` strings (comma-separated lists allowed)."""
        keys: dict[str, str] = {}
        for spec in specs:
            for item in spec.split(","):
                item = item.strip()
                if not item:
                    continue
                role, sep, key = item.partition(":")
                if not sep or role not in ROLES or not key:
                    raise InvalidInput(
                        f"API key {item[:6]!r}... must be given as ROLE:KEY with ROLE one of "
                        f"{', '.join(ROLES)}"
                    )
                keys[key] = role
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._roles)

    def role_of(self, token: str | bytes | None) -> str | None:
        if not token:
            return None
        digest = _digest(token)
        found = None
        for known, role in self._roles.items():  # constant time over every key
            if hmac.compare_digest(known, digest):
                found = role
        return found

    def check(self, token: str | bytes | None, needed: str) -> None:
        if not self._roles:
            return
        if not token:
            raise Unauthorized(
                "this server needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        role = self.role_of(token)
        if role is None:
            raise Unauthorized("the API key is not valid")
        if needed not in _GRANTS[role]:
            raise Forbidden(f"this call needs the {needed!r} role; the key has {role!r}")


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
