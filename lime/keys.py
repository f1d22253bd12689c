"""API keys: how they look, how they are stored, and how a client presents them.

A key is ``lime-sk-`` plus 43 url-safe characters (256 random bits). Only its SHA-256 is stored: with that
much entropy a slow password hash buys nothing, and a lookup by hash compares no secret byte by byte, so the
time a lookup takes says nothing about the key's value.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["KEY_HEADERS", "KEY_PREFIX", "KeyRecord", "NewKey", "generate_key", "hash_key", "looks_like_key",
           "presented_key"]

KEY_PREFIX = "lime-sk-"
_DISPLAY_CHARS = 12
_SHAPE = re.compile(r"lime-sk-[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class NewKey:
    id: str
    secret: str = ""
    hash: str = ""
    #: The first characters of the key, safe to show in listings so a user can tell keys apart.
    display_prefix: str = ""

    def __repr__(self) -> str:  # the secret must never reach a log line
        return f"NewKey(id={self.id!r}, display_prefix={self.display_prefix!r})"


def generate_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(
        id="key_" + secrets.token_hex(8),
        secret=secret,
        hash=hash_key(secret),
        display_prefix=secret[:_DISPLAY_CHARS],
    )


def looks_like_key(secret: str) -> bool:
    """Whether ``secret`` could be a Lime key at all: anything else is refused without a lookup."""
    return _SHAPE.fullmatch(secret) is not None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


#: The headers a client may present its key in.
KEY_HEADERS = ("authorization", "x-api-key")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key`` (header names lower case), else ``None``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


@dataclass(frozen=True)
class KeyRecord:
    """What the gateway knows about a stored key; never the key itself."""

    id: str
    tenant_id: str
    active: bool
    expires_at: float | None = None  # unix seconds

    def usable(self, now: float) -> bool:
        return self.active and (self.expires_at is None or now < self.expires_at)
