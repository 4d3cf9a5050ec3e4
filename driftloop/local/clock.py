"""A simulated clock and the EventBridge schedules it drives.

The demo replays weeks of traffic in a couple of minutes, so "now" is a value the loop
moves forward, never the wall clock. The same clock stamps captured requests, decides
when late labels arrive, fires the scheduled checks (`rate(N hours)` rules) and waits
out the retraining workflow's Wait states and the blue/green bake time.

EventBridge `rate()` schedules fire at fixed intervals from when the rule was created;
`Schedule` models that with an anchor and a period, and lists the firings that fall in
a span of simulated time so the loop can interleave them with traffic in time order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from driftloop.errors import DriftloopError


def utc(dt: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with a `Z`, to the second, as EventBridge and SageMaker write times."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimClock:
    """Simulated UTC time that only moves forward when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)

    def now(self) -> datetime:
        return self._now

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise DriftloopError(f"clock: cannot move backwards by {delta}")
        self._now += delta
        return self._now

    def advance_to(self, when: datetime) -> datetime:
        """Move to `when`; a time already passed leaves the clock where it is."""
        when = utc(when)
        if when > self._now:
            self._now = when
        return self._now


@dataclass(frozen=True)
class Schedule:
    """An EventBridge `rate()` rule: fires every `period` from `anchor` on."""

    name: str
    period: timedelta
    anchor: datetime

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise DriftloopError(
                f"schedule {self.name}: period must be positive, not {self.period}"
            )
        object.__setattr__(self, "anchor", utc(self.anchor))

    @classmethod
    def rate(cls, name: str, expression: str, anchor: datetime) -> Schedule:
        """Parse `rate(1 hour)`, `rate(6 hours)`, `rate(30 minutes)`, `rate(1 day)`."""
        text = expression.strip()
        if not (text.startswith("rate(") and text.endswith(")")):
            raise DriftloopError(f"schedule {name}: {expression!r} is not a rate() expression")
        parts = text[5:-1].split()
        units = {
            "minute": 60,
            "minutes": 60,
            "hour": 3600,
            "hours": 3600,
            "day": 86400,
            "days": 86400,
        }
        if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in units:
            raise DriftloopError(f"schedule {name}: cannot read {expression!r}")
        value = int(parts[0])
        if value <= 0:
            raise DriftloopError(f"schedule {name}: {expression!r} must be positive")
        return cls(name, timedelta(seconds=value * units[parts[1]]), anchor)

    def firings(self, after: datetime, until: datetime) -> list[datetime]:
        """Every firing time t with after < t <= until, oldest first."""
        after, until = utc(after), utc(until)
        if until <= after:
            return []
        # The first firing strictly after `after`.
        elapsed = after - self.anchor
        if elapsed < timedelta(0):
            first = self.anchor
        else:
            first = self.anchor + (elapsed // self.period + 1) * self.period
        out = []
        t = first
        while t <= until:
            if t > after:
                out.append(t)
            t += self.period
        return out

    def scheduled_event(self, when: datetime, *, account: str, region: str) -> dict[str, Any]:
        """The event EventBridge hands a Lambda target when this rule fires at `when`."""
        return {
            "version": "0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.name}/{iso(when)}")),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": account,
            "time": iso(when),
            "region": region,
            "resources": [f"arn:aws:events:{region}:{account}:rule/{self.name}"],
            "detail": {},
        }
