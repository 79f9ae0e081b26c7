"""The one error type that user mistakes raise: it carries the place and a hint."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem: where (file, line, column, dotted path) and what."""

    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.col) if p is not None)
        parts = [p for p in (where, self.path) if p]
        return (": ".join(parts) + ": " if parts else "") + self.message


class RunnerError(Exception):
    """A user-facing error: the CLI prints it without a traceback and exits 2.

    It holds one or more located problems and an optional hint saying what to
    do about them.
    """

    exit_code = 2

    def __init__(self, problems: str | Problem | list[Problem], hint: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class EnvironmentFault(RunnerError):
    """The machine stopped a run (disk full, out of memory, cluster lost): exit 3, finished points kept."""

    exit_code = 3
