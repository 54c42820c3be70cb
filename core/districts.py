"""One district matcher for every command that filters by district: what a technician types (`朝阳`)
against the district names devices carry (`朝阳区`)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

SHOWN = 20
"""At most this many known district names are listed in a note."""


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def district_matches(query: str, district: str) -> bool:
    """`query` is part of `district`, ignoring case, full-width forms and surrounding spaces:
    `朝阳` and `朝阳区` match `朝阳区`; an empty query matches nothing."""
    q = _fold(query)
    return bool(q) and q in _fold(district)


def matching_districts(query: str, districts: Iterable[str]) -> list[str]:
    """The distinct names among `districts` that `query` matches, sorted."""
    return sorted({d for d in districts if d and district_matches(query, d)})


def no_match_note(query: str, known: Iterable[str], *, what: str = "devices") -> str:
    """`0 devices matched district '朝阳' (known districts: 东城区, 朝阳区)`: for stderr when a filter found nothing."""
    names = sorted({d for d in known if d})
    if not names:
        return f"0 {what} matched district {query!r} (no device has a district)"
    shown = ", ".join(names[:SHOWN]) + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")
    return f"0 {what} matched district {query!r} (known districts: {shown})"
