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
    """`attempt(user, address)` before verifying a password (a refusal, or None to go on); then `failed(...)`
    after a wrong one (returns the lockout it started, if any) or `succeeded(...)`.

    An attempt counts as a failure from the moment it begins, so a burst of concurrent guesses cannot all
    reach the (slow) password check before the first of them fails: once more than the limit are counted
    within the window, the rest are refused at once and the lockout starts.
    """

    def __init__(self, *, max_per_user: int, max_per_address: int, window_s: float, lockout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_per = {"user": max_per_user, "address": max_per_address}
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.clock = clock
        self._tracks: dict[str, OrderedDict[str, _Track]] = {"user": OrderedDict(), "address": OrderedDict()}

    def check(self, user: str, address: str) -> Lockout | None:
        """The lockout that refuses a try now (the longer of user's and address's), else None."""
        now = self.clock()
        found: Lockout | None = None
        for scope, key in (("user", user), ("address", address)):
            track = self._tracks[scope].get(key)
            if track is not None and track.locked_until > now:
                wait = track.locked_until - now
                if found is None or wait > found.retry_after_s:
                    found = Lockout(scope, key, wait)
        return found

    def attempt(self, user: str, address: str) -> tuple[Lockout | None, bool]:
        """Count one login attempt: (the lockout that refuses it, whether this attempt started it) — or
        (None, False) to check its password."""
        held = self.check(user, address)
        if held is not None:
            return held, False
        now = self.clock()
        for scope, key in (("user", user), ("address", address)):
            track = self._track(scope, key, now)
            track.failures.append(now)
            while track.failures and track.failures[0] <= now - self.window_s:
                track.failures.popleft()
        started = self._lock_over(user, address, now, strictly=True)
        return started, started is not None

    def failed(self, user: str, address: str) -> Lockout | None:
        """The attempt's password was wrong; returns the lockout this starts (user's first), else None."""
        return self._lock_over(user, address, self.clock(), strictly=False)

    def succeeded(self, user: str, address: str) -> None:
        """A right password: that user's count starts again, and the address no longer counts this attempt
        (its other failures stay: others may share it)."""
        self._tracks["user"].pop(user, None)
        track = self._tracks["address"].get(address)
        if track is not None and track.failures:
            track.failures.pop()

    def _lock_over(self, user: str, address: str, now: float, *, strictly: bool) -> Lockout | None:
        """Lock each key whose count reached (or, `strictly`, passed) its limit; the first lockout begun."""
        started: Lockout | None = None
        for scope, key in (("user", user), ("address", address)):
            track = self._tracks[scope].get(key)
            if track is None or track.locked_until > now:
                continue
            n, limit = len(track.failures), self.max_per[scope]
            if n > limit or (n == limit and not strictly):
                track.locked_until = now + self.lockout_s
                track.failures.clear()
                started = started or Lockout(scope, key, self.lockout_s)
        return started

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
