"""Timer schedules as Function Compute writes them: a six-field cron, seconds first
(``0 0 4 * * *``), UTC unless prefixed ``CRON_TZ=Area/City``; or ``@every 30s``.

``@every`` intervals are aligned to the epoch (``@every 5m`` fires at :00, :05, …), so a
schedule does not depend on when it was created or when funclet last started, and a
fire time is a whole second, exact in FC's ``triggerTime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_EVERY = re.compile(r"@every\s+(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_TZ = re.compile(r"CRON_TZ=(\S+)\s+(.*)")
MAX_EVERY_S = 366 * 86_400  # a timer fires at least once a year (and its times fit)
# Where a cron expression is tried once, to refuse one that matches no date at all.
_PROBE_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


@dataclass(frozen=True)
class Schedule:
    """When a timer fires; times are epoch milliseconds."""

    expression: str
    every_ms: int | None = None
    cron: str | None = None
    tz: tzinfo = UTC

    def next_after(self, ms: int) -> int:
        """The first fire time strictly after ``ms``."""
        if self.every_ms is not None:
            return (ms // self.every_ms + 1) * self.every_ms
        assert self.cron is not None
        start = datetime.fromtimestamp(ms // 1000, self.tz)
        found: datetime = croniter(self.cron, start, second_at_beginning=True).get_next(datetime)
        return int(found.timestamp()) * 1000

    def latest_at_or_before(self, ms: int) -> int:
        """The last fire time at or before ``ms``."""
        if self.every_ms is not None:
            return ms // self.every_ms * self.every_ms
        assert self.cron is not None
        start = datetime.fromtimestamp(ms // 1000 + 1, self.tz)
        found: datetime = croniter(self.cron, start, second_at_beginning=True).get_prev(datetime)
        return int(found.timestamp()) * 1000


def parse_schedule(expression: str) -> Schedule:
    """A ``Schedule``, or ``ValueError`` saying what is wrong with ``expression``."""
    text = expression.strip()
    tz: tzinfo = UTC
    if m := _TZ.fullmatch(text):
        try:
            tz = ZoneInfo(m.group(1))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{m.group(1)}' in CRON_TZ") from None
        text = m.group(2).strip()
    if text.startswith("@every"):
        m = _EVERY.fullmatch(text)
        if m is None or not any(m.groups()):
            raise ValueError(f"'{text}' is not '@every' with a duration like 30s, 5m, 1h or 1h30m")
        hours, minutes, seconds = (int(g or 0) for g in m.groups())
        every_s = hours * 3600 + minutes * 60 + seconds
        if every_s < 1:
            raise ValueError("an '@every' interval must be at least 1 second")
        if every_s > MAX_EVERY_S:
            raise ValueError(f"an '@every' interval must be at most {MAX_EVERY_S // 3600}h "
                             f"(366 days), got '{text}'")
        return Schedule(expression, every_ms=every_s * 1000, tz=tz)
    fields = text.split()
    if len(fields) != 6:
        raise ValueError(
            f"a cron expression has six fields, seconds first ('0 0 4 * * *'), got {len(fields)}")
    if not croniter.is_valid(text, second_at_beginning=True):
        raise ValueError(f"'{text}' is not a valid cron expression")
    schedule = Schedule(expression, cron=text, tz=tz)
    try:
        schedule.next_after(_PROBE_MS)
    except ValueError:  # croniter's CroniterBadDateError: no date within its 50 years
        raise ValueError(f"'{text}' never fires: no date matches it") from None
    return schedule
