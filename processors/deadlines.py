"""Legal deadlines counted in calendar months on the Belgian calendar.

GDPR Art. 12(3) gives "one month of receipt of the request". Months are counted as
Regulation (EEC, Euratom) No 1182/71 Art. 3 counts them: the period ends at the end of the
day bearing the same date as the day of the event, or at the end of the month's last day
when that date does not exist in it (31 January + 1 month = end of 28 February, or of 29
February in a leap year). Days are Belgian days (Europe/Brussels), so a letter received at
00:30 local time on 1 February (23:30 UTC on 31 January) is due at the end of 1 March.
Weekends and public holidays do not move the date (Art. 3(4) would allow it): the earlier
date is the safe side and needs no holiday calendar.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEADLINE_ZONE = ZoneInfo("Europe/Brussels")


class NaiveInstantError(ValueError):
    """A naive datetime was given where an instant is required."""


def add_months(day: date, months: int) -> date:
    """`day` plus calendar months, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    following = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, min(day.day, (following - timedelta(days=1)).day))


def deadline_after(event_at: datetime, months: int) -> datetime:
    """The last instant (UTC, to the microsecond) of the Belgian day `months` calendar
    months after the Belgian day of `event_at`: late means strictly after it."""
    if not isinstance(event_at, datetime) or event_at.utcoffset() is None:
        raise NaiveInstantError("the event instant must be a timezone-aware datetime")
    last_day = add_months(event_at.astimezone(DEADLINE_ZONE).date(), months)
    next_midnight = datetime.combine(last_day + timedelta(days=1), time(0), DEADLINE_ZONE)
    return next_midnight.astimezone(UTC) - timedelta(microseconds=1)
