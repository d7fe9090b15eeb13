"""Five-field cron expressions (minute hour day-of-month month day-of-week), for freeze windows.

Supports `*`, numbers, `a-b` ranges, `,` lists and `/n` steps, names for months and weekdays
(`mon`, `jan`), and 7 as Sunday. Day-of-month and day-of-week combine as in Vixie cron: when
both are restricted, either may match. The expression is checked here (problems name the field
and the value); the times it fires are the maintained `cronsim` library's, which walks local time
through daylight-saving changes as Debian's cron does: a start in the hour that does not exist
(spring forward) happens when the clocks have moved on, a start in the hour that happens twice
(fall back) happens once, the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

_NAMES = {
    3: {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


class CronError(ValueError):
    pass


def _value(text: str, field: int) -> int:
    text = text.lower()
    if text in _NAMES.get(field, {}):
        return _NAMES[field][text]
    if not text.isdigit():
        raise CronError(f"{text!r} is not a number{' or name' if field in _NAMES else ''}")
    return int(text)


def _field(text: str, field: int) -> frozenset[int]:
    low, high = _RANGES[field]
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise CronError(f"bad step in {part!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            if not a or not b:
                raise CronError(f"{part!r} is not a range (a-b)")
            start, end = _value(a, field), _value(b, field)
        else:
            start = _value(base, field)
            end = high if step else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{part!r} is outside {low}-{high}")
        out.update(range(start, end + 1, step or 1))
    if field == 4 and 7 in out:
        out = (out - {7}) | {0}
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> "Cron":
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"{text!r}: a cron expression has 5 fields (minute hour day month weekday)")
        minutes, hours, days, months, weekdays = (_field(p, i) for i, p in enumerate(parts))
        try:
            CronSim(text, datetime(2000, 1, 1))
        except CronSimError as e:  # what the fields allow but no date has (30 2 = 30 February)
            raise CronError(f"{text!r}: {e}") from None
        return cls(text, minutes, hours, days, months, weekdays, any_day=parts[2] == "*",
                   any_weekday=parts[4] == "*")

    def _day_matches(self, t: datetime) -> bool:
        if t.month not in self.months:
            return False
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        return self._day_matches(t) and t.hour in self.hours and t.minute in self.minutes

    def last_start(self, now: datetime, within: timedelta) -> datetime | None:
        """The latest start <= now (an aware time, in the window's zone), if one lies within
        `within` before now."""
        after = now.replace(second=0, microsecond=0) + timedelta(minutes=1)  # cronsim's reverse walk excludes its start
        found = next(CronSim(self.text, after, reverse=True), None)
        # Compared as instants: two wall times an hour apart across a fall-back compare as equal.
        if found is None or found.timestamp() > now.timestamp() or \
                found.timestamp() <= now.timestamp() - within.total_seconds():
            return None
        return found

    def next_start(self, now: datetime, horizon: timedelta = timedelta(days=400)) -> datetime | None:
        """The first start after now, within `horizon`."""
        found = next(CronSim(self.text, now.replace(second=0, microsecond=0)), None)
        return found if found is not None and found.timestamp() < now.timestamp() + horizon.total_seconds() else None
