"""Progress on stderr: points done / total, rate, ETA."""
from __future__ import annotations

import sys
import time


class Progress:
    """Counts finished points; redraws one line on a terminal, prints every few seconds otherwise."""

    def __init__(self, total: int, label: str = "points", stream=None, every: float = 5.0):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every = every
        self.done = self.failed = 0
        self.start = self.last = time.monotonic()

    def update(self, done: int, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        now = time.monotonic()
        if self.tty or now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self._draw(final=self.done >= self.total)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        failed = f", {self.failed} failed" if self.failed else ""
        eta_text = _duration(eta) if eta != float("inf") else "?"
        speed = f"{rate:.1f}/s" if rate >= 1 or rate == 0 else f"{_duration(1 / rate)} each"
        return f"{self.done}/{self.total} {self.label}{failed}  {speed}  elapsed {_duration(elapsed)}  ETA {eta_text}"

    def _draw(self, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
