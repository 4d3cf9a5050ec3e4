"""Errors a user sees, and the ledger of input that was skipped.

driftloop never crashes on bad data and never loses it silently: a problem that stops
the work is a `DriftloopError` with a one-line message naming the file (and line); a bad
record that can be skipped is counted in a `MalformedLog`, which travels into the report.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MAX_EXAMPLES = 20


class DriftloopError(Exception):
    """A clear, one-line error for the user (the CLI exits 2 with this message)."""


class MalformedLog:
    """Counts skipped input by reason and keeps the first few examples (`file:line: detail`)."""

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()
        self.examples: list[str] = []

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def add(self, reason: str, where: str, detail: str = "", count: int = 1) -> None:
        self.by_reason[reason] += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}" + (f": {detail[:200]}" if detail else ""))

    def merge(self, other: MalformedLog) -> None:
        self.by_reason.update(other.by_reason)
        room = MAX_EXAMPLES - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": dict(self.by_reason),
            "examples": list(self.examples),
        }
