"""Which time windows a scheduled check must look at, given its checkpoint and the clock.

The drift and quality checks run on an EventBridge schedule, but schedules drift, runs
fail, and Lambda may stop a run half-way. Counting on "the last hour" would skip or
double-count data. Instead every check keeps a checkpoint (the end of the last window it
finished) and asks `plan_windows` for every window that closed since then. Windows are
aligned to the Unix epoch in UTC, so every run, whenever it fires, cuts time at the same
boundaries; a run advances the checkpoint after each window, so a failure leaves no gap
and a rerun counts nothing twice.

Capture files live in hourly folders (`yyyy/mm/dd/hh`, the capture time in UTC), so a
window is a whole number of hours and `hour_prefixes` lists the folders it owns. Each
folder belongs to exactly one window, which is what makes "exactly once" hold per file.

Everything here is pure: no clock, no I/O. The handlers pass `now` in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from driftloop.errors import DriftloopError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, order=True)
class Window:
    """A half-open time interval [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise DriftloopError("window: start and end must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise DriftloopError(
                f"window: end {format_iso(self.end)} is not after start {format_iso(self.start)}"
            )

    @property
    def hours(self) -> float:
        return (self.end - self.start) / HOUR

    def to_dict(self) -> dict[str, str]:
        return {"window_start": format_iso(self.start), "window_end": format_iso(self.end)}

    def __str__(self) -> str:
        return f"[{format_iso(self.start)}, {format_iso(self.end)})"


def format_iso(when: datetime) -> str:
    """ISO 8601 in UTC with a `Z` suffix, to the second (the format of the state table)."""
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str, *, where: str = "timestamp") -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC. DriftloopError if malformed."""
    if not isinstance(text, str) or not text:
        raise DriftloopError(f"{where}: expected an ISO 8601 timestamp, got {text!r}")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise DriftloopError(f"{where}: not an ISO 8601 timestamp: {text!r}") from exc
    return _utc(parsed)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check_hours(window_hours: int) -> None:
    if isinstance(window_hours, bool) or not isinstance(window_hours, int) or window_hours < 1:
        raise DriftloopError(
            f"window_hours must be a whole number of hours >= 1, not {window_hours!r}"
        )


def window_floor(when: datetime, window_hours: int) -> datetime:
    """The start of the epoch-aligned window of `window_hours` hours that holds `when`."""
    _check_hours(window_hours)
    size = timedelta(hours=window_hours)
    return EPOCH + ((_utc(when) - EPOCH) // size) * size


def last_closed_window_start(now: datetime, *, window_hours: int, grace_minutes: int) -> datetime:
    """The start of the most recent window that has closed (end + grace <= now).

    Handlers use it as `first_window_start` when a check has never run: it looks at the
    latest complete window instead of replaying history nobody asked for.
    """
    cutoff = _utc(now) - timedelta(minutes=grace_minutes)
    return window_floor(cutoff, window_hours) - timedelta(hours=window_hours)


def iter_windows(
    checkpoint: datetime | None,
    now: datetime,
    *,
    window_hours: int,
    grace_minutes: int,
    first_window_start: datetime,
) -> Iterator[Window]:
    """Lazily yield the windows `plan_windows` lists (use it when a backlog may be long)."""
    _check_hours(window_hours)
    if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int) or grace_minutes < 0:
        raise DriftloopError(f"grace_minutes must be a whole number >= 0, not {grace_minutes!r}")
    size = timedelta(hours=window_hours)
    cutoff = _utc(now) - timedelta(minutes=grace_minutes)
    start = (
        _utc(checkpoint)
        if checkpoint is not None
        else window_floor(first_window_start, window_hours)
    )
    while True:
        # A checkpoint off the grid (window_hours changed since it was written) gives one
        # short window up to the next boundary: nothing before the checkpoint is re-counted
        # and nothing after it is skipped.
        end = window_floor(start, window_hours) + size
        if end > cutoff:
            return
        yield Window(start, end)
        start = end


def plan_windows(
    checkpoint: datetime | None,
    now: datetime,
    *,
    window_hours: int,
    grace_minutes: int,
    first_window_start: datetime,
    limit: int | None = None,
) -> list[Window]:
    """Every window that closed (plus grace) after `checkpoint`, oldest first.

    `checkpoint` is the end of the last window already checked (None: never ran, start at
    the window holding `first_window_start`). A window [s, e) is closed once
    `e + grace_minutes <= now`; the grace lets late capture files land (SageMaker writes
    capture in batches, a few minutes behind). `limit` caps the list (a backlog is picked
    up by the following runs, oldest first).
    """
    out: list[Window] = []
    if limit is not None and limit <= 0:
        return out
    for window in iter_windows(
        checkpoint,
        now,
        window_hours=window_hours,
        grace_minutes=grace_minutes,
        first_window_start=first_window_start,
    ):
        out.append(window)
        if limit is not None and len(out) >= limit:
            break
    return out


def count_windows(
    checkpoint: datetime | None,
    now: datetime,
    *,
    window_hours: int,
    grace_minutes: int,
    first_window_start: datetime,
) -> int:
    """How many closed windows wait after `checkpoint` (the backlog), without listing them."""
    _check_hours(window_hours)
    size = timedelta(hours=window_hours)
    cutoff = _utc(now) - timedelta(minutes=grace_minutes)
    start = (
        _utc(checkpoint)
        if checkpoint is not None
        else window_floor(first_window_start, window_hours)
    )
    first_end = window_floor(start, window_hours) + size
    if first_end > cutoff:
        return 0
    return 1 + (window_floor(cutoff, window_hours) - first_end) // size


def hour_prefixes(window: Window) -> list[str]:
    """The `yyyy/mm/dd/hh` folders (capture time, UTC) whose hour starts inside the window."""
    return hour_prefixes_between(window.start, window.end)


def hour_prefixes_between(start: datetime, end: datetime) -> list[str]:
    """The `yyyy/mm/dd/hh` folders for every hour that starts in [start, end)."""
    start, end = _utc(start), _utc(end)
    hour = start.replace(minute=0, second=0, microsecond=0)
    if hour < start:
        hour += HOUR
    out: list[str] = []
    while hour < end:
        out.append(hour.strftime("%Y/%m/%d/%H"))
        hour += HOUR
    return out


def report_prefix(kind: str, endpoint: str, window: Window) -> str:
    """`{kind}/{endpoint}/yyyy/mm/dd/hh` (the window start): where a window's report lives."""
    return f"{kind}/{endpoint}/{window.start.strftime('%Y/%m/%d/%H')}"
