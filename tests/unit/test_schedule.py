"""Timer schedules: FC's seconds-first cron, CRON_TZ, @every, as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from funclet.triggers.schedule import parse_schedule


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("@every 1s", "2024-01-01T00:00:00.400", "2024-01-01T00:00:01"),
    ("@every 30s", "2024-01-01T00:00:30", "2024-01-01T00:01:00"),
    ("@every 5m", "2024-01-01T00:03:10", "2024-01-01T00:05:00"),
    ("@every 1h", "2024-01-01T00:59:59.999", "2024-01-01T01:00:00"),
    ("@every 1h30m", "2024-01-01T00:00:00", "2024-01-01T01:30:00"),
    ("0 0 4 * * *", "2024-01-01T04:00:00", "2024-01-02T04:00:00"),
    ("0 0 4 * * *", "2024-01-01T03:59:59.500", "2024-01-01T04:00:00"),
    ("*/10 * * * * *", "2024-01-01T00:00:05", "2024-01-01T00:00:10"),
    ("0 30 9 ? * MON-FRI", "2024-01-06T00:00:00", "2024-01-08T09:30:00"),  # a Saturday
    ("CRON_TZ=Asia/Shanghai 0 0 8 * * *", "2024-01-01T00:00:00", "2024-01-02T00:00:00"),
])
def test_next_fire_time(expression: str, after: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(ms(after)) == ms(expected)


@pytest.mark.parametrize(("expression", "at", "expected"), [
    ("@every 1s", "2024-01-01T00:00:07.900", "2024-01-01T00:00:07"),
    ("@every 5m", "2024-01-01T10:04:59", "2024-01-01T10:00:00"),
    ("0 0 4 * * *", "2024-01-03T12:00:00", "2024-01-03T04:00:00"),
    ("0 0 4 * * *", "2024-01-03T04:00:00", "2024-01-03T04:00:00"),  # at counts
    ("*/10 * * * * *", "2024-01-01T00:00:19.999", "2024-01-01T00:00:10"),
])
def test_latest_missed_fire_time(expression: str, at: str, expected: str) -> None:
    assert parse_schedule(expression).latest_at_or_before(ms(at)) == ms(expected)


@pytest.mark.parametrize(("expression", "says"), [
    ("0 4 * * *", "six fields"),
    ("* * * * * * *", "six fields"),
    ("61 * * * * *", "not a valid cron"),
    ("@every", "duration"),
    ("@every 5 minutes", "duration"),
    ("@every 0s", "at least 1 second"),
    ("CRON_TZ=Mars/Olympus 0 0 4 * * *", "unknown time zone"),
    ("", "six fields"),
    ("0 0 0 30 2 *", "'0 0 0 30 2 \\*' never fires"),
    ("0 0 0 31 4 *", "never fires"),
    ("@every 999999999999999999999h", "at most 8784h"),
    ("@every 8785h", "at most 8784h"),
])
def test_bad_expressions_say_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_schedule(expression)


def test_rare_but_real_dates_are_fine() -> None:
    leap_day = parse_schedule("0 0 0 29 2 *")
    assert leap_day.next_after(ms("2024-03-01T00:00:00")) == ms("2028-02-29T00:00:00")
    assert parse_schedule("@every 8784h").every_ms == 8784 * 3_600_000
