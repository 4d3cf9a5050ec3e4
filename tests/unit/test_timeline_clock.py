"""The simulated clock and EventBridge rate() schedules the local loop runs on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftloop.errors import DriftloopError
from driftloop.local.clock import Schedule, SimClock, iso
from driftloop.local.progress import Progress, render_bar, render_table

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_rate_schedule_lists_each_firing_once_across_spans() -> None:
    # Given a rate(6 hours) rule anchored at T0
    rule = Schedule.rate("drift-check", "rate(6 hours)", T0)
    # When two adjacent spans are asked for
    first = rule.firings(T0, T0 + timedelta(hours=12))
    second = rule.firings(T0 + timedelta(hours=12), T0 + timedelta(hours=24))
    # Then every firing appears exactly once, the span end included and the start excluded
    assert first == [T0 + timedelta(hours=6), T0 + timedelta(hours=12)]
    assert second == [T0 + timedelta(hours=18), T0 + timedelta(hours=24)]
    # And a span before the anchor starts at the anchor
    assert rule.firings(T0 - timedelta(hours=1), T0) == [T0]
    assert rule.firings(T0 + timedelta(hours=3), T0 + timedelta(hours=3)) == []


def test_rate_expressions_are_parsed_or_refused() -> None:
    # Given rate expressions, Then periods are read and bad ones refused with the rule name
    assert Schedule.rate("a", "rate(30 minutes)", T0).period == timedelta(minutes=30)
    assert Schedule.rate("a", "rate(1 day)", T0).period == timedelta(days=1)
    for bad in ("cron(0 * * * ? *)", "rate(0 hours)", "rate(2 fortnights)", "rate(x hours)"):
        with pytest.raises(DriftloopError, match="schedule a"):
            Schedule.rate("a", bad, T0)


def test_scheduled_event_has_the_eventbridge_shape() -> None:
    # Given a rule, When it fires, Then the event looks like EventBridge's scheduled event
    event = Schedule.rate("q", "rate(1 hour)", T0).scheduled_event(
        T0 + timedelta(hours=1), account="123456789012", region="us-east-1"
    )
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-01-01T01:00:00Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/q"]


def test_clock_only_moves_forward() -> None:
    # Given a clock, When advanced, Then it moves; advance_to the past leaves it; negative fails
    clock = SimClock(datetime(2026, 1, 1))
    assert clock.now().tzinfo is UTC
    clock.advance(timedelta(hours=2))
    clock.advance_to(T0)
    assert iso(clock()) == "2026-01-01T02:00:00Z"
    with pytest.raises(DriftloopError):
        clock.advance(timedelta(seconds=-1))


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_progress_draws_bars_only_on_a_terminal_and_quiet_keeps_the_summary() -> None:
    # Given a pipe, a terminal and a quiet progress
    pipe, tty, quiet = _Stream(False), _Stream(True), _Stream(True)
    for stream, q in ((pipe, False), (tty, False), (quiet, True)):
        p = Progress(stream, quiet=q)  # type: ignore[arg-type]
        p.phase("replay", 10)
        p.advance(5)
        p.event("drift found")
        p.end_phase()
        p.always("summary")
    # Then only the terminal got a bar; the pipe got the lines; quiet only the summary
    assert "[" in tty.text and "\r" in tty.text
    assert pipe.text == "drift found\nsummary\n"
    assert quiet.text == "summary\n"


def test_bar_and_table_rendering() -> None:
    # Given half a phase, Then half the bar is filled; tables align their values
    assert "[" + "#" * 14 + "." * 14 + "]" in render_bar("x", 5, 10)
    table = render_table([("days", "14"), ("requests", "100")], title="t")
    assert "days     | 14" in table and "requests | 100" in table
