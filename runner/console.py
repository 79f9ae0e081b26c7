"""What runner says: one logger, ``runner``, shown on the terminal and copied into each run's ``run.log``.

Every message has a level (debug: the detail ``-v`` adds; info: what runner says by
default; warning; error: all that ``-q`` keeps) and a stream: stdout for what a
command answers (the "wrote ..." line, a spec that validated), stderr for how it
goes (progress, notes, failed points). The terminal shows what the verbosity
allows; a run's ``run.log`` gets everything, debug included.

>>> say("6 of 6 points ok", stdout=True)
6 of 6 points ok
>>> detail("not shown without -v")
"""
from __future__ import annotations

import datetime as _dt
import logging
import sys
import time
from pathlib import Path

LOGGER = logging.getLogger("runner")
QUIET, NORMAL, VERBOSE = logging.ERROR, logging.INFO, logging.DEBUG
PULSE_SECONDS = 10.0  # how often a long loop (training, generating demonstrations) says how it goes


class _Terminal(logging.Handler):
    """Writes a record's message to stdout or stderr, looked up when it is written (pytest swaps them)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "terminal", True):  # drawn on the terminal already (the progress line)
            return
        stream = sys.stdout if getattr(record, "stdout", False) else sys.stderr
        stream.write(self.format(record) + "\n")  # no try: a closed pipe reaches the CLI, as from print
        stream.flush()


_TERMINAL = _Terminal(NORMAL)
LOGGER.addHandler(_TERMINAL)
LOGGER.setLevel(logging.DEBUG)  # a run.log takes debug lines whatever the terminal shows
LOGGER.propagate = False        # an application's root handlers would print every line twice


def say(message: str, *, stdout: bool = False, level: int = logging.INFO, terminal: bool = True) -> None:
    """Say ``message`` at ``level``: on the terminal if the verbosity allows, in the run's log if one is open.

    ``terminal=False``: for run.log only (what was drawn on the terminal another way).
    """
    LOGGER.log(level, message, extra={"stdout": stdout, "terminal": terminal})


def detail(message: str) -> None:
    """Say a debug line: shown with ``-v``, always in run.log."""
    say(message, level=logging.DEBUG)


def set_verbosity(level: int) -> int:
    """Show messages at ``level`` and above on the terminal (QUIET, NORMAL, VERBOSE); returns the level before."""
    before = _TERMINAL.level
    _TERMINAL.setLevel(level)
    return before


def shows(level: int = logging.INFO) -> bool:
    """Whether the terminal shows messages at ``level`` (``-q`` hides progress too)."""
    return _TERMINAL.level <= level


class Pulse:
    """The heartbeat of a long loop: ``due()`` at most every ``every`` seconds, ``pace`` its rate and time left.

    >>> pulse = Pulse(every=0.0)
    >>> pulse.due(), pulse.pace(0, 10, "episodes").endswith("ETA ?")
    (True, True)
    """

    def __init__(self, every: float | None = None) -> None:
        self.every = PULSE_SECONDS if every is None else every
        self.start = self.last = time.monotonic()

    def due(self) -> bool:
        """Whether a progress line is due now (then the next is ``every`` seconds away)."""
        now = time.monotonic()
        if now - self.last < self.every:
            return False
        self.last = now
        return True

    def pace(self, done: float, total: float, unit: str) -> str:
        """``"13.2 steps/s  ETA 120s"``: the rate since the start and the time the rest takes at it."""
        rate = done / max(time.monotonic() - self.start, 1e-9)
        eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
        return f"{rate:.0f} {unit}/s  ETA {eta}" if rate >= 100 else f"{rate:.1f} {unit}/s  ETA {eta}"


class RunLog(logging.Handler):
    """Appends what runner says to a run folder's ``run.log``, from the moment the folder is ready.

    Until ``open`` the records wait in memory, so a run refused before its folder is
    runner's leaves no file behind. A log that cannot be written (a full disk) is
    given up silently: the run's own files say what a disk fault did.
    """

    def __init__(self, header: str):
        super().__init__(logging.DEBUG)
        self.header, self.waiting, self.file, self.broken = header, [], None, False
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))

    def open(self, path: str | Path) -> None:
        """Start writing (appending) to ``path``: the header line, then what was said so far."""
        if self.file is not None or self.broken:
            return
        try:
            self.file = open(path, "a", encoding="utf-8")
        except OSError:
            self.broken = True
            return
        self._write(self.header)
        for record in self.waiting:
            self._write(self.format(record))
        self.waiting = []

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n    ")  # a message's own lines, indented under its stamp

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            if not self.broken:
                self.waiting.append(record)
        else:
            self._write(self.format(record))

    def _write(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except OSError:
            self.broken = True

    def close(self) -> None:
        LOGGER.removeHandler(self)
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None
        super().close()


def run_log(argv: list[str], executor: str) -> RunLog:
    """A RunLog attached to the ``runner`` logger, headed by this invocation: time, command, version, executor."""
    import shlex
    from importlib import metadata

    try:
        version = metadata.version("runner")
    except metadata.PackageNotFoundError:
        version = "unknown"
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    handler = RunLog(f"==== {now}  runner {shlex.join(argv)}  (runner {version}, executor {executor})")
    LOGGER.addHandler(handler)
    return handler


def close_run_logs() -> None:
    """Detach and close every RunLog (the CLI calls it when a command ends, however it ends)."""
    for handler in list(LOGGER.handlers):
        if isinstance(handler, RunLog):
            handler.close()

