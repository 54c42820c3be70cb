"""Desk users and sessions: argon2 password hashes from the config, random session tokens that expire,
and a CSRF token per session that every action must echo."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verifying against this keeps an unknown user name as slow as a wrong password (made on first use:
    an argon2 hash costs tens of milliseconds, not to be paid by every `urbansense` command)."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash (salted, with its parameters) for the config's `[desk.users]`."""
    return _HASHER.hash(password)


@dataclass(slots=True, frozen=True)
class Session:
    user: str
    csrf: str
    expires: float


class Users:
    """Checks a user name and password against the configured argon2 hashes."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes = dict(hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def verify(self, user: str, password: str) -> bool:
        stored = self._hashes.get(user)
        try:
            return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class Sessions:
    """Server-side sessions: the cookie holds only a random token; each lasts `ttl_s` from login."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._by_token: dict[str, Session] = {}

    def create(self, user: str) -> tuple[str, Session]:
        self._purge()
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), self.clock() + self.ttl_s)
        self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._by_token[token]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _purge(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]
