"""What the demo prints while it runs: a progress bar per phase, a line per event, a summary.

Plain text on stderr with no extra dependency. The bar redraws in place only when
stderr is a terminal (a CI log or a pipe gets the event lines and the summary, not a
thousand carriage returns); `--quiet` keeps only the summary.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

BAR_WIDTH = 28
# Redraw at most this often (seconds of wall time): a bar is for people, not for speed.
REDRAW_S = 0.1


class Progress:
    """Phase bars and event lines on one stream."""

    def __init__(
        self, stream: TextIO | None = None, *, quiet: bool = False, bars: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.bars = (isatty if bars is None else bars) and not quiet
        self._label = ""
        self._total = 0
        self._done = 0
        self._suffix = ""
        self._last_draw = 0.0
        self._drawn = False
        self.lines: list[str] = []

    # -- bars ----------------------------------------------------------------------------

    def phase(self, label: str, total: int) -> None:
        """Start a new bar (closing the previous one)."""
        self.end_phase()
        self._label, self._total, self._done, self._suffix = label, max(total, 0), 0, ""
        self._draw(force=True)

    def advance(self, n: int = 1, suffix: str | None = None) -> None:
        self._done = min(self._done + n, self._total) if self._total else self._done + n
        if suffix is not None:
            self._suffix = suffix
        self._draw()

    def end_phase(self) -> None:
        if self._drawn:
            self._done = self._total
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
        self._label = ""

    def _draw(self, force: bool = False) -> None:
        if not self.bars or not self._label:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        self.stream.write("\r" + render_bar(self._label, self._done, self._total, self._suffix))
        self.stream.flush()
        self._drawn = True

    # -- lines ---------------------------------------------------------------------------

    def event(self, text: str) -> None:
        """A line for something that matters (drift found, retraining, deploy, rollback)."""
        self.lines.append(text)
        if self.quiet:
            return
        self._clear_bar()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._draw(force=True)

    def info(self, text: str) -> None:
        """A set-up or hand-over line (where things went); hidden by --quiet."""
        self.event(text)

    def always(self, text: str) -> None:
        """Printed even with --quiet (the summary)."""
        self._clear_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _clear_bar(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")


def render_bar(label: str, done: int, total: int, suffix: str = "") -> str:
    """`label  [#####.....]  12/40  suffix` — one line, no newline."""
    if total > 0:
        filled = round(BAR_WIDTH * min(done, total) / total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        count = f"{done}/{total}"
    else:
        bar = "." * BAR_WIDTH
        count = str(done)
    text = f"{label:<14} [{bar}] {count:>11}"
    return f"{text}  {suffix}" if suffix else text


def render_table(rows: Sequence[tuple[str, str]], title: str = "") -> str:
    """A two-column text table with aligned values."""
    width = max((len(k) for k, _ in rows), default=0)
    vwidth = max((len(v) for _, v in rows), default=0)
    rule = "-" * (width + vwidth + 3)
    out = [title, rule] if title else [rule]
    out += [f"{k:<{width}} | {v}" for k, v in rows]
    out.append(rule)
    return "\n".join(out)
