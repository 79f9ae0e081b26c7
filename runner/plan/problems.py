"""Placing a point's problems in the spec file: at the sweep value that set the offending field."""
from __future__ import annotations

from typing import Any

from runner.errors import Problem
from runner.spec import LoadedSpec
from runner.spec.sweep import value_place
from runner.spec.yaml_loader import Located, dotted


def unique(problems: list[Problem]) -> list[Problem]:
    """Problems without repeats (the same message at the same place, from many grid points)."""
    seen, out = set(), []
    for p in problems:
        key = (p.file, p.line, p.col, p.path, p.message.split(" (at grid point")[0])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def at_point(problem: Problem, coords: dict[str, Any]) -> Problem:
    if not coords:
        return problem
    where = ", ".join(f"{k}={v!r}" for k, v in coords.items())
    return Problem(f"{problem.message} (at grid point {where})", problem.file, problem.line, problem.col, problem.path)


def locate(loaded: LoadedSpec, axes: Any, choice: tuple[int, ...], path: tuple, message: str,
           coords: dict[str, Any]) -> Problem:
    """Place a problem at the sweep value that set ``path``, else where the spec writes it."""
    located: Located = loaded.located
    for axis, i in zip(axes, choice):
        for member in axis.members:
            if member.path and path[: len(member.path)] == member.path:
                place = value_place(located, member, i)
                line, col = located.where(place)
                return Problem(f"sweep value {member.values[i]!r} for {member.key!r}: {message}",
                               located.file, line, col, dotted(place))
    return at_point(located.problem(path, message), coords)

