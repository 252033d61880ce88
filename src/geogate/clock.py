"""Time is passed in, never read from a global: the Clock protocol and two clocks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FixedClock:
    """A clock stopped at ``at``: for tests and for judging past events."""

    at: datetime

    def now(self) -> datetime:
        return self.at


EARLIEST_INSTANT: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest instant geogate accepts from input (event times, ``at`` parameters), inclusive."""
LATEST_INSTANT: Final = datetime(2101, 1, 1, tzinfo=UTC)
"""Instants from input must be before this: the years 1970 to 2100 are accepted. Anything
else is a typing error or an attack (``0001-01-01T00:00:00+01:00`` cannot even be converted to
UTC), and is rejected as such."""


def in_range(when: datetime, *, shown: str | None = None) -> datetime:
    """``when`` (aware) if it lies in the years 1970 to 2100; ValueError naming it otherwise."""
    if not EARLIEST_INSTANT <= when < LATEST_INSTANT:
        raise ValueError(f"{shown or when.isoformat()} is outside the years 1970 to 2100")
    return when


def parse_instant(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 date (``2024-07-10``, midnight UTC) or date-time as aware UTC.

    A date-time without an offset is taken as UTC; ``Z`` is accepted. Raises ValueError with a
    one-line message for malformed text and for instants outside the years 1970 to 2100.
    """
    value = text.strip()
    if len(value) > 64:
        raise ValueError("longer than 64 characters: not a date or date-time")
    try:
        when = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or RFC 3339 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    else:
        try:
            when = when.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value!r} is outside the years 1970 to 2100") from None
    return in_range(when, shown=repr(value))
