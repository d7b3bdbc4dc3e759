"""Cross-site request forgery protection without cookies.

A witness should not need any cookie (nothing is left in the browser).  Each form carries a
short-lived token signed with a server key: ``v1.<payload>.<mac>`` where the payload is the hour
of issue and a random nonce, bound to nothing identifying.  A cross-site page cannot read a
token (same-origin policy, CORP), and the browser's own ``Sec-Fetch-Site`` / ``Origin`` headers
are checked as a second layer.  A token is spent when its submission commits; sending the same
form again is answered with the same receipt (app/web/codename_ahead.py), never stored twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections import OrderedDict

TOKEN_LIFETIME_HOURS = 24
_MAX_SPENT = 200_000


class FormTokens:
    """Issue and check form tokens; remembers spent nonces (bounded, in memory)."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"guwah.org/v1/form-token\x00" + key).digest()
        self._spent: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> str:
        payload = struct.pack(">I", _hour()) + secrets.token_bytes(16)
        return "v1." + _b64(payload) + "." + _b64(self._mac(payload))

    def check(self, token: str) -> bytes | None:
        """The token's nonce when the token is genuine and fresh, else None."""
        try:
            version, payload_s, mac_s = token.split(".")
            payload, mac = _unb64(payload_s), _unb64(mac_s)
        except ValueError:
            return None
        if version != "v1" or len(payload) != 20:
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        (hour,) = struct.unpack(">I", payload[:4])
        if not 0 <= _hour() - hour <= TOKEN_LIFETIME_HOURS:
            return None
        return payload[4:]

    def subkey(self, label: bytes) -> bytes:
        """A key for another use of the same secret (app/web/codename_ahead.py)."""
        return hmac.new(self._key, label, hashlib.sha256).digest()

    def is_spent(self, nonce: bytes) -> bool:
        with self._lock:
            return _spent_key(nonce) in self._spent

    def release(self, nonce: bytes) -> None:
        """Unspend a nonce whose submission could not be stored after all (sent again, it
        must be stored, not answered as already sent)."""
        with self._lock:
            self._spent.pop(_spent_key(nonce), None)

    def spend(self, nonce: bytes) -> bool:
        """Mark a nonce used; False if it already was (a second commit of the same form)."""
        key = _spent_key(nonce)
        with self._lock:
            if key in self._spent:
                return False
            self._spent[key] = _hour()
            cutoff = _hour() - TOKEN_LIFETIME_HOURS - 1
            while self._spent and (
                len(self._spent) > _MAX_SPENT or next(iter(self._spent.values())) < cutoff
            ):
                self._spent.popitem(last=False)
            return True

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]


def cross_site(headers: dict[str, str], host: str | None) -> bool:
    """True when the browser says this request was started by another site.

    ``Sec-Fetch-Site`` is sent by current Chromium and Firefox (Tor Browser) even under
    ``Referrer-Policy: no-referrer``; ``Origin`` is then often the string "null", which is
    not evidence of anything, so only a concrete foreign origin counts.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin and origin != "null" and host:
        bare = origin.split("://", 1)[-1]
        if bare != host:
            return True
    return False


def _spent_key(nonce: bytes) -> bytes:
    """What the spent list keeps: a hash, never the nonce (with the server key, a nonce gives
    the codename of a JavaScript-off form, app/web/codename_ahead.py)."""
    return hashlib.sha256(b"guwah.org/v1/spent\x00" + nonce).digest()[:16]


def _hour() -> int:
    return int(time.time() // 3600)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if len(text) > 64:
        raise ValueError("too long")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
