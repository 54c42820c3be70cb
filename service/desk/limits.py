"""Login-failure handling for the desk console (等保三级): after too many failed logins for one user name,
or from one address, within a window, further tries are refused for a while without checking a password.

Pure bookkeeping with an injectable clock; the server turns a refusal into HTTP 429 with Retry-After.
Memory is bounded: entries older than the window and lockout are dropped, and at most `MAX_KEYS` user
names and addresses are tracked (the oldest forgotten first), so a flood of invented names cannot grow it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 10_000


@dataclass(slots=True)
class _Track:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Lockout:
    """A refusal: which key is locked (`user` or `address`), its value, and seconds until it lifts."""

    scope: str
    key: str
    retry_after_s: float

    @property
    def retry_after(self) -> str:
        """The Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class LoginLimiter:
    """`check(user, address)` before verifying a password; `failed(...)` after a wrong one (returns the
    lockout it started, if any); `succeeded(user)` clears that user's failures."""

    def __init__(self, *, max_per_user: int, max_per_address: int, window_s: float, lockout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_per = {"user": max_per_user, "address": max_per_address}
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self._tracks: dict[str, OrderedDict[str, _Track]] = {"user": OrderedDict(), "address": OrderedDict()}

    def check(self, user: str, address: str) -> Lockout | None:
        """The lockout that refuses this try now (the longer of user's and address's), else None."""
        now = self.clock()
        found: Lockout | None = None
        for scope, key in (("user", user), ("address", address)):
            track = self._tracks[scope].get(key)
            if track is not None and track.locked_until > now:
                wait = track.locked_until - now
                if found is None or wait > found.retry_after_s:
                    found = Lockout(scope, key, wait)
        return found

    def failed(self, user: str, address: str) -> Lockout | None:
        """Count one failed login; returns the lockout it begins (user's first), else None."""
        now = self.clock()
        started: Lockout | None = None
        for scope, key in (("user", user), ("address", address)):
            track = self._track(scope, key, now)
            track.failures.append(now)
            while track.failures and track.failures[0] <= now - self.window_s:
                track.failures.popleft()
            if len(track.failures) >= self.max_per[scope] and track.locked_until <= now:
                track.locked_until = now + self.lockout_s
                track.failures.clear()
                started = started or Lockout(scope, key, self.lockout_s)
        return started

    def succeeded(self, user: str) -> None:
        """A correct password: that user's count starts again (the address's stays: others may share it)."""
        self._tracks["user"].pop(user, None)

    def _track(self, scope: str, key: str, now: float) -> _Track:
        tracks = self._tracks[scope]
        track = tracks.get(key)
        if track is None:
            self._forget(tracks, now)
            track = tracks[key] = _Track()
        else:
            tracks.move_to_end(key)
        return track

    def _forget(self, tracks: OrderedDict[str, _Track], now: float) -> None:
        """Drop stale entries from the oldest end; past `MAX_KEYS`, the oldest at all."""
        while tracks:
            key, track = next(iter(tracks.items()))
            stale = track.locked_until <= now and (not track.failures or track.failures[-1] <= now - self.window_s)
            if not stale and len(tracks) < MAX_KEYS:
                break
            del tracks[key]
