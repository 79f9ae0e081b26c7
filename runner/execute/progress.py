"""Progress on stderr: points done / total, rate, ETA, failures, and points per node on a cluster.

On a terminal one line is redrawn as tasks finish; elsewhere (a log file, a pipe,
a test) the run stays quiet and writes one summary line at the end. With ``-q``
nothing is drawn; the summary line goes to the run's ``run.log`` either way.

>>> import io
>>> progress = Progress(4, stream=io.StringIO())
>>> progress.update(3, node="10.0.0.1"); progress.update(1, failed=1, node="10.0.0.2")
>>> progress.line().split("  ")[0], progress.nodes()
('4/4 points, 1 failed', '10.0.0.1 3, 10.0.0.2 1')
"""
from __future__ import annotations

import sys
import time
from collections import Counter

from runner.console import say, shows


class Progress:
    """Counts finished points; redraws one line on a terminal, writes a final summary line otherwise."""

    def __init__(self, total: int, label: str = "points", stream=None, every: float = 0.2):
        self.total, self.label = total, label
        self.shown = stream is not None or shows()  # -q: nothing on the terminal
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every = every           # seconds between redraws on a terminal
        self.done = self.failed = 0
        self.by_node: Counter[str] = Counter()
        self.start = self.last = time.monotonic()

    def update(self, done: int, failed: int = 0, node: str | None = None) -> None:
        self.done += done
        self.failed += failed
        if node:
            self.by_node[node] += done
        final = self.done >= self.total
        now = time.monotonic()
        if self.shown and (final or (self.tty and now - self.last >= self.every)):
            self.last = now
            self._draw(final)
        if final:
            say(self.line(), terminal=False)

    def nodes(self) -> str:
        """Points done per node, when more than one node has run tasks."""
        return ", ".join(f"{node} {n}" for node, n in sorted(self.by_node.items())) if len(self.by_node) > 1 else ""

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        failed = f", {self.failed} failed" if self.failed else ""
        eta_text = _duration(eta) if eta != float("inf") else "?"
        speed = f"{rate:.1f}/s" if rate >= 1 or rate == 0 else f"{_duration(1 / rate)} each"
        nodes = f"  nodes: {self.nodes()}" if self.nodes() else ""
        return (f"{self.done}/{self.total} {self.label}{failed}  {speed}  elapsed {_duration(elapsed)}  "
                f"ETA {eta_text}{nodes}")

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
