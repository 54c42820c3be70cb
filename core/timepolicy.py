"""Which time a reading gets: one pure policy for every source (network server, gateway, device, poll).

A collector lists the times an envelope offers as `TimeCandidate`s, best first (e.g. ChirpStack
`time`, each gateway's `gwTime`, `timeSinceGpsEpoch`, `nsTime`); `choose_time` takes the first
that lies within the policy's window around the receive time, else the receive time itself.
Nothing here raises: an unparsable, zero, sentinel or out-of-range time is a refused candidate
with a reason, and the result always lies inside InfluxDB's time range (1677-09-21 … 2262-04-11).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.rfc3339 import parse_rfc3339_ns

NS = 1_000_000_000
INFLUX_MIN_NS = -9_223_372_036_854_775_806
INFLUX_MAX_NS = 9_223_372_036_854_775_806
GPS_EPOCH_NS = 315_964_800 * NS
"""1980-01-06T00:00:00Z, the GPS epoch, in Unix ns."""
GPS_LEAP_S = 18
"""GPS time runs ahead of UTC by the leap seconds since 1980 (18 since 2017-01-01)."""
RECEIVED = "received"
"""`time_source` of a reading stamped with the broker/receive time."""
_DURATION = re.compile(r"(-?\d{1,12})(?:\.(\d{1,9}))?s", re.ASCII)


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """How far a source time may lie from the receive time and still be trusted.

    `max_future_s`: clocks ahead of the receiver by more are wrong (2 min covers NTP skew and
    network delay). `max_past_s`: live data older than this is a stuck or reset clock (7 days
    covers a network server's queue after an outage). `history_max_past_s`: how old a stored
    record a device retransmits (Milesight history, Dragino datalog) may be.
    """

    max_future_s: float = 120.0
    max_past_s: float = 7 * 86400.0
    history_max_past_s: float = 90 * 86400.0


DEFAULT_POLICY = TimePolicy()


@dataclass(frozen=True, slots=True)
class TimeCandidate:
    """One time an envelope offers: `source` names it (e.g. `gwTime`); `time_ns` None when unusable.

    `unit_ns` is the resolution it came in (1e9 for whole Unix seconds), so that frames of one
    device stamped within one tick can be told apart (see `spread`); `problem` says why a
    value could not be read (absent values are simply not listed).
    """

    source: str
    time_ns: int | None
    unit_ns: int = 1
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class TimeChoice:
    """The chosen time, where it came from, and why better candidates were refused."""

    time_ns: int
    source: str
    unit_ns: int = 1
    refused: tuple[tuple[str, str], ...] = ()


def from_rfc3339(source: str, text: object) -> TimeCandidate:
    """A candidate from an RFC 3339 string (Go's zero time and other out-of-range years included)."""
    if not isinstance(text, str):
        return TimeCandidate(source, None, problem="unparsable")
    try:
        return TimeCandidate(source, parse_rfc3339_ns(text))
    except ValueError:
        return TimeCandidate(source, None, problem="unparsable")


def from_number(source: str, value: object) -> TimeCandidate:
    """A candidate from a Unix timestamp whose unit (s, ms, µs, ns) is recognised by its magnitude.

    Below 1e11 it is seconds (up to year 5138), below 1e14 milliseconds, below 1e17
    microseconds, else nanoseconds; zero, negative, non-finite and non-numbers are refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return TimeCandidate(source, None, problem="unparsable")
    if isinstance(value, float) and not math.isfinite(value):
        return TimeCandidate(source, None, problem="unparsable")
    if value <= 0:
        return TimeCandidate(source, None, problem="zero")
    magnitude = abs(value)
    if magnitude < 1e11:
        unit = NS
    elif magnitude < 1e14:
        unit = 1_000_000
    elif magnitude < 1e17:
        unit = 1_000
    else:
        unit = 1
    if isinstance(value, float):
        return TimeCandidate(source, round(value * unit), unit if value.is_integer() else 1)
    return TimeCandidate(source, value * unit, unit)


def from_gps_duration(source: str, text: object) -> TimeCandidate:
    """A candidate from a protobuf-JSON duration since the GPS epoch (ChirpStack `timeSinceGpsEpoch`)."""
    if not isinstance(text, str):
        return TimeCandidate(source, None, problem="unparsable")
    m = _DURATION.fullmatch(text)
    if m is None:
        return TimeCandidate(source, None, problem="unparsable")
    whole, frac = m.groups()
    ns = int(whole) * NS + (int(frac.ljust(9, "0")) if frac else 0) * (-1 if whole.startswith("-") else 1)
    return TimeCandidate(source, GPS_EPOCH_NS + ns - GPS_LEAP_S * NS)


def choose_time(candidates: Iterable[TimeCandidate], received_ns: int,
                policy: TimePolicy = DEFAULT_POLICY, *, history: bool = False) -> TimeChoice:
    """The first candidate inside the policy's window around `received_ns`, else `received_ns`.

    `history` widens the past limit to `policy.history_max_past_s` (records a device stored and
    sends later). A `received_ns` outside InfluxDB's range (a broken host clock) is clamped.
    Never raises.
    """
    received_ns = min(max(received_ns, INFLUX_MIN_NS + 1), INFLUX_MAX_NS - 1)
    earliest = received_ns - int((policy.history_max_past_s if history else policy.max_past_s) * NS)
    latest = received_ns + int(policy.max_future_s * NS)
    refused: list[tuple[str, str]] = []
    for c in candidates:
        t = c.time_ns
        if t is None:
            refused.append((c.source, c.problem or "unparsable"))
        elif not INFLUX_MIN_NS < t < INFLUX_MAX_NS:
            refused.append((c.source, "out_of_range"))
        elif t > latest:
            refused.append((c.source, "future"))
        elif t < earliest:
            refused.append((c.source, "past"))
        else:
            return TimeChoice(t, c.source, c.unit_ns, tuple(refused))
    return TimeChoice(received_ns, RECEIVED, 1, tuple(refused))


def envelope_time(candidates: Iterable[TimeCandidate], received_ns: int) -> int:
    """The first readable candidate inside InfluxDB's range, else `received_ns`: the envelope's own
    time before any window is applied (what `Uplink.time_ns` holds). Never raises."""
    for c in candidates:
        if c.time_ns is not None and INFLUX_MIN_NS < c.time_ns < INFLUX_MAX_NS:
            return c.time_ns
    return received_ns


def spread(choice: TimeChoice, frame_counter: int | None) -> int:
    """The chosen time, made unique per frame when its source ticks coarsely (whole s or ms).

    Two different frames of one device stamped in the same second would otherwise be one
    InfluxDB point (same series, same time): the frame counter picks a deterministic µs
    offset inside the tick, so a retransmission of one frame still lands on its own point.
    """
    if frame_counter is None or choice.unit_ns < 1_000_000:
        return choice.time_ns
    slots = choice.unit_ns // 1_000
    return choice.time_ns + (frame_counter % slots) * 1_000
