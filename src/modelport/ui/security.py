"""Sessions and cross-site request forgery protection of the dashboard.

    guard = Guard(keys)
    sid, fresh = guard.session_of(headers)       # the ``mp_session`` cookie, or a new id
    guard.token(sid)                             # the CSRF token pages embed and send back
    guard.check_origin(headers, scheme)          # Forbidden for a cross-site request
    guard.check_token(headers, form_token, sid)  # Forbidden without the session's token
    guard.sign_in(sid, key) / guard.key_of(sid) / guard.sign_out(sid)

Every browser gets a random session id in an ``HttpOnly; SameSite=Strict`` cookie. The CSRF
token is an HMAC of that id under a key made at start-up, so it cannot be guessed from outside
and dies with the process. A state-changing request must (1) not be cross-site by its
``Sec-Fetch-Site`` or ``Origin`` header, and (2) carry the token in ``X-CSRF-Token`` or a
``csrf`` form field. A request carrying an API key in its own header (a script, not a browser
with ambient cookies) needs only (1). Signing in keeps the key in this process's memory only,
against the session id; the cookie holds nothing but the random id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

from modelport.errors import Forbidden

COOKIE = "mp_session"
MAX_SESSIONS = 10_000  # signed-in sessions kept; the oldest are dropped past this
SESSION_SECONDS = 12 * 3600


class Guard:
    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._keys: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    # -- the session id --------------------------------------------------------------------

    def session_of(self, headers: dict[bytes, bytes]) -> tuple[str, bool]:
        """The request's session id and whether it is new (then set it with ``cookie``)."""
        sid = cookies(headers.get(b"cookie", b"")).get(COOKIE, "")
        if 20 <= len(sid) <= 64 and sid.replace("-", "").replace("_", "").isalnum():
            return sid, False
        return secrets.token_urlsafe(32), True

    def cookie(self, sid: str, secure: bool) -> bytes:
        flags = "; Secure" if secure else ""
        return f"{COOKIE}={sid}; Path=/ui; HttpOnly; SameSite=Strict{flags}".encode()

    def token(self, sid: str) -> str:
        return hmac.new(self._secret, sid.encode(), hashlib.sha256).hexdigest()

    # -- the checks ------------------------------------------------------------------------

    def check_origin(self, headers: dict[bytes, bytes], scheme: str) -> None:
        """Refuse a request a browser marks as coming from another site."""
        site = headers.get(b"sec-fetch-site")
        if site is not None and site not in (b"same-origin", b"none"):
            raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site.decode()})")
        origin = headers.get(b"origin")
        if origin is None:
            return
        host = headers.get(b"host", b"").decode("latin-1")
        if origin.decode("latin-1") != f"{scheme}://{host}":
            raise Forbidden(f"cross-site request refused (Origin: {origin.decode('latin-1')})")

    def check_token(
        self, headers: dict[bytes, bytes], form_token: str | None, sid: str, fresh: bool
    ) -> None:
        """Refuse a request without this session's CSRF token."""
        sent = headers.get(b"x-csrf-token", b"").decode("latin-1") or (form_token or "")
        if fresh or not sent or not hmac.compare_digest(sent, self.token(sid)):
            raise Forbidden("the request has no valid CSRF token: reload the page and try again")

    # -- signed-in keys --------------------------------------------------------------------

    def sign_in(self, sid: str, key: bytes) -> None:
        with self._lock:
            self._keys[sid] = (key, time.monotonic() + SESSION_SECONDS)
            self._keys.move_to_end(sid)
            while len(self._keys) > MAX_SESSIONS:
                self._keys.popitem(last=False)

    def key_of(self, sid: str) -> bytes | None:
        with self._lock:
            found = self._keys.get(sid)
            if found is None:
                return None
            if found[1] < time.monotonic():
                del self._keys[sid]
                return None
            return found[0]

    def sign_out(self, sid: str) -> None:
        with self._lock:
            self._keys.pop(sid, None)


def cookies(header: bytes) -> dict[str, str]:
    """The name -> value pairs of a ``Cookie`` header (the first of a repeated name)."""
    found: dict[str, str] = {}
    for part in header.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in found:
            found[name] = value.strip().strip('"')
    return found
