"""API keys: who presented a valid one, with which rights, compared so that timing reveals
nothing.

Two kinds of key. A key of ``LOOKALIKE_API_KEYS`` has every right. A key of
``LOOKALIKE_IDENTIFY_KEYS`` may ask who a photo shows and whether it is a given person, and
nothing else that changes data: it is the key a mobile app carries, and whoever extracts it
from the app cannot enrol or forget anyone with it.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured key
of both kinds (no early exit), so the time taken says nothing about how close a guess was nor
which kind of key it matched. The key itself is never kept past the check nor logged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

# valid: full rights; identify: identifyFace, identifyFaces and verifyFace only (and queries)
KeyStatus = Literal["valid", "identify", "missing", "unknown"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Caller:
    key: KeyStatus
    loopback: bool
    address: str | None = None  # the client's address, as the server saw it
    key_id: str | None = None  # which configured key matched: a digest, never the key

    @property
    def budget_id(self) -> str:
        """Whose budget a request spends (services/limits/budget.py): a full key's own, else
        the address's. An identify key is shared by every install of the app, so its
        requests count by address: one phone cannot spend everyone's budget. An IPv6 client
        controls its whole /64, so that is its address here."""
        if self.key == "valid" and self.key_id is not None:
            return f"key:{self.key_id}"
        return f"address:{_budget_address(self.address)}"


class ApiKeys:
    def __init__(self, keys: Sequence[SecretStr], identify_keys: Sequence[SecretStr] = ()) -> None:
        self._digests = [(_digest(k.get_secret_value()), "valid") for k in keys]
        self._digests += [(_digest(k.get_secret_value()), "identify") for k in identify_keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def caller(self, authorization: str | None, client_host: str | None) -> Caller:
        status, key_id = self._check(authorization)
        return Caller(status, _is_loopback(client_host), client_host, key_id)

    def _check(self, authorization: str | None) -> tuple[KeyStatus, str | None]:
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "missing", None
        digest = _digest(presented.strip())
        full = identify = False
        for known, kind in self._digests:
            matched = hmac.compare_digest(digest, known)
            full |= matched and kind == "valid"
            identify |= matched and kind == "identify"
        # a key configured as both keeps its full rights
        if full:  # named by half its digest: enough to tell keys apart, useless to a thief
            return "valid", digest[:16].hex()
        return ("identify" if identify else "unknown"), None


@functools.lru_cache(maxsize=1024)
def _budget_address(host: str | None) -> str:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:  # a Unix socket, or no address: one budget for all such clients
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@functools.lru_cache(maxsize=1024)  # the same few client addresses, request after request
def _is_loopback(host: str | None) -> bool:
    """127.0.0.0/8 and ::1, also as a dual-stack socket reports IPv4 (::ffff:127.0.0.1)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:  # no address (a Unix socket) or a name: not known to be local
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
