"""Cron schedules and rotation windows, in UTC. Pure.

``parse_cron`` reads the five-field cron of crontab(5) and Kubernetes CronJobs (minute,
hour, day of month, month, day of week; lists, ranges, steps, names such as ``MON`` and
``JAN``, and ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly``). As in cron,
when both day fields are restricted a day matches if either does. ``Cron.next_after``
finds the next matching minute by skipping whole days, hours and minutes, so it is fast
for sparse schedules too.

A window says when rotations may *start*: hours ``"02:00-05:00"`` (may wrap past
midnight) and days ``Mon``..``Sun``. ``CompiledWindow.next_open`` gives the first allowed
moment at or after a time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from kustos.durations import InvalidDurationError

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")  # fmt: skip
_MONTHS: Final = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_DAYS: Final = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_SEARCH_YEARS: Final = 5  # a schedule that matches nothing in 5 years (Feb 30) is refused


class InvalidScheduleError(InvalidDurationError):
    """A cron schedule or window cannot be read."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron schedule: the allowed values of each field."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month field was "*"
    any_weekday: bool  # day-of-week field was "*"

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after *moment* (an aware datetime)."""
        start = moment.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        limit = day + dt.timedelta(days=366 * _SEARCH_YEARS)
        first_day = True
        while day <= limit:
            if self._day_matches(day):
                hour_from = start.hour if first_day else 0
                for hour in sorted(h for h in self.hours if h >= hour_from):
                    minute_from = start.minute if first_day and hour == start.hour else 0
                    minute = next((m for m in sorted(self.minutes) if m >= minute_from), None)
                    if minute is not None:
                        return dt.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC
                        )
            day += dt.timedelta(days=1)
            first_day = False
        raise InvalidScheduleError(f"schedule {self.text!r} never matches")


def _value(token: str, names: dict[str, int] | None, what: str, low: int, high: int) -> int:
    upper = token.upper()
    if names is not None and upper in names:
        return names[upper]
    if not token.isdigit():
        raise InvalidScheduleError(f"{what}: {token[:20]!r} is not a number")
    number = int(token)
    if not low <= number <= high:
        raise InvalidScheduleError(f"{what}: {number} is outside {low}-{high}")
    return number


def _field(text: str, what: str, low: int, high: int) -> frozenset[int]:
    names = _MONTHS if what == "month" else _DAYS if what == "day of week" else None
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise InvalidScheduleError(f"{what}: bad step {step_text[:20]!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, names, what, low, high), _value(b, names, what, low, high)
            if first > last:
                raise InvalidScheduleError(f"{what}: range {base!r} runs backwards")
        else:
            first = _value(base, names, what, low, high)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


def parse_cron(text: str) -> Cron:
    """Parse a five-field cron schedule (UTC); ``InvalidScheduleError`` names the field."""
    expanded = _MACROS.get(text.strip().lower(), text)
    parts = expanded.split()
    if len(parts) != 5:
        raise InvalidScheduleError(
            f"schedule {text[:60]!r} needs 5 fields (minute hour day month weekday)"
        )
    fields = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in fields[4])  # 7 is Sunday too
    cron = Cron(
        text, fields[0], fields[1], fields[2], fields[3], weekdays,
        any_day=parts[2] == "*", any_weekday=parts[4] == "*",
    )  # fmt: skip
    cron.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))  # refuses "0 0 30 2 *"
    return cron


_HOURS: Final = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class CompiledWindow:
    """Allowed start times: minutes of the day ``[start, end)`` (may wrap) and weekdays."""

    start: int  # minute of day
    end: int  # minute of day; equal to start means all day
    weekdays: frozenset[int]  # 0 = Monday (datetime.weekday())

    def is_open(self, moment: dt.datetime) -> bool:
        """True if a rotation may start at *moment*."""
        moment = moment.astimezone(dt.UTC)
        minute = moment.hour * 60 + moment.minute
        if self.start == self.end:
            return moment.weekday() in self.weekdays
        if self.start < self.end:
            return self.start <= minute < self.end and moment.weekday() in self.weekdays
        # Wraps midnight: the part after midnight belongs to the previous day's window.
        if minute >= self.start:
            return moment.weekday() in self.weekdays
        if minute < self.end:
            return (moment.weekday() - 1) % 7 in self.weekdays
        return False

    def next_open(self, moment: dt.datetime) -> dt.datetime:
        """*moment* if the window is open then, else the next minute at which it opens."""
        moment = moment.astimezone(dt.UTC)
        if self.is_open(moment):
            return moment
        probe = moment.replace(second=0, microsecond=0)
        # The window opens at `start` on an allowed day; look at most 8 days ahead.
        for days in range(9):
            day = probe.date() + dt.timedelta(days=days)
            opening = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(
                minutes=self.start
            )
            if opening > moment and self.is_open(opening):
                return opening
        raise InvalidScheduleError("the rotation window never opens")


ALWAYS: Final = CompiledWindow(0, 0, frozenset(range(7)))
_DAY_NAMES: Final = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}


def parse_window(hours: str | None, days: tuple[str, ...] | list[str] = ()) -> CompiledWindow:
    """``("02:00-05:00", ["Sat", "Sun"])`` → a window; ``InvalidScheduleError`` otherwise."""
    start = end = 0
    if hours is not None:
        match = _HOURS.match(hours.strip())
        if match is None:
            raise InvalidScheduleError(f"window hours {hours[:40]!r}: use HH:MM-HH:MM (UTC)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise InvalidScheduleError(f"window hours {hours[:40]!r}: not a time of day")
        start, end_raw = h1 * 60 + m1, h2 * 60 + m2
        end = end_raw % 1440  # 00:00-24:00 is the whole day: start == end
        if start == end_raw:
            raise InvalidScheduleError(f"window hours {hours[:40]!r} is empty")
    weekdays = set()
    for day in days:
        key = day.strip().lower()[:3]
        if key not in _DAY_NAMES:
            raise InvalidScheduleError(f"window day {day[:20]!r}: use Mon, Tue, ... Sun")
        weekdays.add(_DAY_NAMES[key])
    return CompiledWindow(start, end, frozenset(weekdays) if weekdays else frozenset(range(7)))
