"""Window planning: epoch-aligned, closed-plus-grace windows, every window exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.errors import DriftloopError
from driftloop.windows import (
    Window,
    count_windows,
    format_iso,
    hour_prefixes,
    hour_prefixes_between,
    last_closed_window_start,
    parse_iso,
    plan_windows,
    report_prefix,
    window_floor,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_never_ran_starts_at_first_window_and_lists_closed_windows_oldest_first() -> None:
    # Given a check that never ran and a first window start of 00:00
    # When it plans at 03:20 with hourly windows and 15 minutes of grace
    windows = plan_windows(
        None, at(3) + timedelta(minutes=20), window_hours=1, grace_minutes=15, first_window_start=T0
    )
    # Then the three closed hours are listed, oldest first, and the open hour is not
    assert windows == [Window(at(0), at(1)), Window(at(1), at(2)), Window(at(2), at(3))]


def test_grace_holds_back_a_window_that_just_closed() -> None:
    # Given the 02:00-03:00 window just closed
    # When the check runs at 03:10 with 15 minutes of grace
    windows = plan_windows(
        at(2),
        at(3) + timedelta(minutes=10),
        window_hours=1,
        grace_minutes=15,
        first_window_start=T0,
    )
    # Then nothing is due yet; at 03:15 it is
    assert windows == []
    assert plan_windows(
        at(2),
        at(3) + timedelta(minutes=15),
        window_hours=1,
        grace_minutes=15,
        first_window_start=T0,
    ) == [Window(at(2), at(3))]


def test_windows_align_to_the_epoch_not_to_the_first_start() -> None:
    # Given six-hour windows and a first start at 07:40
    windows = plan_windows(
        None, at(30), window_hours=6, grace_minutes=0, first_window_start=at(7.67)
    )
    # Then windows start at 06:00, 12:00, ... (multiples of six hours since the epoch)
    assert [w.start for w in windows] == [at(6), at(12), at(18), at(24)]
    assert all(w.hours == 6 for w in windows)


def test_off_grid_checkpoint_gives_one_short_window_up_to_the_next_boundary() -> None:
    # Given a checkpoint at 13:00 written when windows were hourly, now daily windows
    windows = plan_windows(at(13), at(50), window_hours=24, grace_minutes=0, first_window_start=T0)
    # Then the first window is [13:00, 24:00) and the next is a full day
    assert windows == [Window(at(13), at(24)), Window(at(24), at(48))]


def test_limit_caps_the_plan_and_count_reports_the_backlog() -> None:
    # Given a checkpoint 100 hours behind
    kwargs = {"window_hours": 1, "grace_minutes": 0, "first_window_start": T0}
    # When planning with a limit of 5
    windows = plan_windows(at(0), at(100.5), limit=5, **kwargs)
    # Then only the five oldest are returned, and the backlog count is the full 100
    assert windows[0] == Window(at(0), at(1)) and windows[-1] == Window(at(4), at(5))
    assert count_windows(at(0), at(100.5), **kwargs) == 100
    assert count_windows(at(5), at(100.5), **kwargs) == 95
    assert plan_windows(at(0), at(100.5), limit=0, **kwargs) == []


def test_checkpoint_in_the_future_plans_nothing() -> None:
    assert plan_windows(at(10), at(5), window_hours=1, grace_minutes=0, first_window_start=T0) == []
    assert count_windows(at(10), at(5), window_hours=1, grace_minutes=0, first_window_start=T0) == 0


def test_last_closed_window_start() -> None:
    # Given hourly windows, 15 minutes grace, now 05:10: the 04:00 hour is not past grace yet
    assert last_closed_window_start(
        at(5) + timedelta(minutes=10), window_hours=1, grace_minutes=15
    ) == at(3)
    assert last_closed_window_start(
        at(5) + timedelta(minutes=20), window_hours=1, grace_minutes=15
    ) == at(4)


def test_hour_prefixes_lists_each_hour_folder_of_a_window() -> None:
    # Given a window crossing midnight
    window = Window(datetime(2026, 12, 31, 22, tzinfo=UTC), datetime(2027, 1, 1, 1, tzinfo=UTC))
    # Then the folders are the capture layout's yyyy/mm/dd/hh
    assert hour_prefixes(window) == ["2026/12/31/22", "2026/12/31/23", "2027/01/01/00"]
    # And an off-hour start does not claim the hour it started in
    assert hour_prefixes_between(at(1.5), at(3)) == ["2026/11/01/02"]


def test_report_prefix_uses_the_window_start() -> None:
    assert report_prefix("drift", "ep", Window(at(5), at(6))) == "drift/ep/2026/11/01/05"


def test_iso_round_trip_and_errors() -> None:
    assert parse_iso("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert parse_iso("2026-11-01T12:00:00+02:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert parse_iso("2026-11-01T10:00:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert format_iso(datetime(2026, 11, 1, 10, 5, 7, 999, tzinfo=UTC)) == "2026-11-01T10:05:07Z"
    with pytest.raises(DriftloopError, match="checkpoint#drift#ep: not an ISO 8601"):
        parse_iso("yesterday", where="checkpoint#drift#ep")
    with pytest.raises(DriftloopError, match="expected an ISO 8601"):
        parse_iso("", where="x")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_window_hours_is_a_clear_error(bad: object) -> None:
    with pytest.raises(DriftloopError, match="window_hours"):
        plan_windows(None, at(5), window_hours=bad, grace_minutes=0, first_window_start=T0)  # type: ignore[arg-type]


def test_bad_window_is_rejected() -> None:
    with pytest.raises(DriftloopError, match="not after start"):
        Window(at(2), at(1))
    with pytest.raises(DriftloopError, match="timezone-aware"):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))  # noqa: DTZ001


def test_window_floor_is_epoch_aligned() -> None:
    assert window_floor(at(7.9), 6) == at(6)
    assert window_floor(datetime(1970, 1, 1, 5, tzinfo=UTC), 24) == datetime(1970, 1, 1, tzinfo=UTC)


# --- property: runs at arbitrary times, with failures, cover every window exactly once ----------

run_plan = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60 * 30),  # minutes since the previous run
        st.integers(min_value=0, max_value=5),  # windows processed before a failure (5 = all)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    runs=run_plan,
    window_hours=st.sampled_from([1, 2, 3, 6, 24]),
    grace=st.integers(min_value=0, max_value=90),
    first_offset_minutes=st.integers(min_value=0, max_value=60 * 48),
    limit=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
)
def test_runs_at_arbitrary_times_with_failures_cover_every_window_exactly_once(
    runs: list[tuple[int, int]],
    window_hours: int,
    grace: int,
    first_offset_minutes: int,
    limit: int | None,
) -> None:
    # Given a first window start and a series of scheduled runs at arbitrary times,
    # each of which may fail after processing some of its windows
    first = T0 + timedelta(minutes=first_offset_minutes)
    checkpoint: datetime | None = None
    processed: list[Window] = []
    now = first
    for gap, fail_after in runs:
        now += timedelta(minutes=gap)
        # When each run plans and advances the checkpoint after every finished window
        plan = plan_windows(
            checkpoint,
            now,
            window_hours=window_hours,
            grace_minutes=grace,
            first_window_start=first,
            limit=limit,
        )
        for i, window in enumerate(plan):
            if i == fail_after:
                break
            processed.append(window)
            checkpoint = window.end
    # And a final healthy run with no limit catches up
    plan = plan_windows(
        checkpoint, now, window_hours=window_hours, grace_minutes=grace, first_window_start=first
    )
    processed.extend(plan)

    # Then the processed windows tile time without gap or overlap from the first window
    # to the last closed one, each window processed exactly once
    expected = plan_windows(
        None, now, window_hours=window_hours, grace_minutes=grace, first_window_start=first
    )
    assert processed == expected
    for earlier, later in zip(processed, processed[1:], strict=False):
        assert earlier.end == later.start
    # And every capture hour folder is owned by exactly one window
    hours = [h for w in processed for h in hour_prefixes(w)]
    assert len(hours) == len(set(hours))
    assert len(hours) == len(processed) * window_hours


@settings(max_examples=200, deadline=None)
@given(
    checkpoint_h=st.one_of(st.none(), st.integers(min_value=0, max_value=500)),
    now_minutes=st.integers(min_value=0, max_value=60 * 600),
    window_hours=st.sampled_from([1, 2, 5, 24]),
    grace=st.integers(min_value=0, max_value=120),
)
def test_count_windows_equals_the_length_of_the_plan(
    checkpoint_h: int | None, now_minutes: int, window_hours: int, grace: int
) -> None:
    # Given any checkpoint (on or off the grid) and clock
    checkpoint = None if checkpoint_h is None else at(checkpoint_h)
    now = T0 + timedelta(minutes=now_minutes)
    kwargs = {"window_hours": window_hours, "grace_minutes": grace, "first_window_start": T0}
    # Then the backlog count is the number of windows the plan lists, all closed and in order
    plan = plan_windows(checkpoint, now, **kwargs)
    assert count_windows(checkpoint, now, **kwargs) == len(plan)
    assert all(w.end + timedelta(minutes=grace) <= now for w in plan)
    assert plan == sorted(plan)
