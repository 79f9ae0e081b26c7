"""The sweep grammar: axes of values over dotted spec paths.

An axis is written as one of::

    intervention.layer: [0, 1, 2]                      # a list
    intervention.coefficient: {linspace: [-4, 4, 17]}  # numpy.linspace, float64
    intervention.coefficient: {logspace: [-2, 1, 4]}   # numpy.logspace
    seed: {range: [0, 3]}                              # Python range; [a, b, step] too
    intervention.coefficient: {values: [0, 1], name: coef}   # any axis may rename its dim
    zip: [{intervention.layer: [0, 1]}, {seed: [5, 6]}]      # move together along one dim
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import Problem, RunnerError
from runner.spec.yaml_loader import Located, Path

_GENERATORS = ("values", "linspace", "logspace", "range")
_UNSWEEPABLE = ("name", "kind", "sweep", "execution", "description")
RESERVED_DIMS = ("point",)  # metric dims are checked against the spec's own metrics in plan.py


@dataclass(frozen=True)
class Member:
    """One swept spec path and its values, named ``name`` in the result."""

    key: str            # the dotted path as written
    path: Path          # the same, parsed
    name: str
    values: tuple[Any, ...]
    where: Path         # where the axis sits in the YAML file, for errors


@dataclass(frozen=True)
class Axis:
    """A dim of the grid: one member, or several zipped members moving together."""

    dim: str
    members: tuple[Member, ...]

    def __len__(self) -> int:
        return len(self.members[0].values)


def parse_path(key: str) -> Path:
    """``'metrics.0.tokens'`` -> ``('metrics', 0, 'tokens')``."""
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.split("."))


def set_path(node: Any, path: Path, value: Any) -> Any:
    """A copy of ``node`` with ``value`` at ``path``; only the containers on the path are copied."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, list) and isinstance(head, int) and -len(node) <= head < len(node):
        copy = list(node)
        copy[head] = set_path(node[head], rest, value)
        return copy
    copy = dict(node) if isinstance(node, dict) else {}
    copy[head] = set_path(copy.get(head), rest, value)
    return copy


def parse_sweep(located: Located, limit: int) -> list[Axis]:
    """The axes of a spec's ``sweep:`` mapping, in the order written."""
    sweep = located.data.get("sweep") if isinstance(located.data, dict) else None
    if not sweep:
        return []
    if not isinstance(sweep, dict):
        raise RunnerError(located.problem(("sweep",), "expected a mapping of dotted paths to axes"))
    axes: list[Axis] = []
    for key, spec in sweep.items():
        where = ("sweep", key)
        if key == "zip":
            axes.append(_parse_zip(located, spec, where, limit))
        else:
            member = _parse_member(located, str(key), spec, where, limit)
            axes.append(Axis(member.name, (member,)))
    _check_names(located, axes)
    return axes


def _parse_zip(located: Located, spec: Any, where: Path, limit: int) -> Axis:
    if not isinstance(spec, list) or len(spec) < 2 or not all(isinstance(m, dict) and len(m) == 1 for m in spec):
        raise RunnerError(located.problem(where, "zip expects a list of at least two single-key mappings, "
                                                 "e.g. [{intervention.layer: [0, 1]}, {seed: [3, 4]}]"))
    members = []
    for i, item in enumerate(spec):
        (key, axis), = item.items()
        members.append(_parse_member(located, str(key), axis, where + (i, key), limit))
    lengths = [len(m.values) for m in members]
    if len(set(lengths)) > 1:
        raise RunnerError(located.problem(where, f"zipped axes must have equal lengths, got {lengths}"))
    return Axis(members[0].name, tuple(members))


def _parse_member(located: Located, key: str, spec: Any, where: Path, limit: int) -> Member:
    path = parse_path(key)
    if path[0] in _UNSWEEPABLE:
        raise RunnerError(located.problem(where, f"{path[0]!r} cannot be swept", key=True))
    name = next((str(p) for p in reversed(path) if isinstance(p, str)), key)
    if isinstance(spec, list):
        values = spec
    elif isinstance(spec, dict):
        extra = sorted(set(spec) - set(_GENERATORS) - {"name"})
        given = [g for g in _GENERATORS if g in spec]
        if extra or len(given) != 1:
            raise RunnerError(located.problem(where, "an axis is a list, or a mapping with exactly one of "
                                                     "values | linspace | logspace | range, and optionally name"
                                                     + (f"; unknown key {extra[0]!r}" if extra else "")))
        name = spec.get("name", name)
        if not isinstance(name, str) or not name.isidentifier():
            raise RunnerError(located.problem(where + ("name",), f"a dim name must be an identifier, got {name!r}"))
        values = _generate(located, given[0], spec[given[0]], where + (given[0],), limit)
    else:
        raise RunnerError(located.problem(where, f"expected a list of values or a mapping like {{linspace: [a, b, n]}}, got {spec!r}"))
    if len(values) == 0:
        raise RunnerError(located.problem(where, "an axis needs at least one value"))
    return Member(key, path, name, tuple(values), where)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _generate(located: Located, kind: str, args: Any, where: Path, limit: int) -> list[Any]:
    if kind == "values":
        if not isinstance(args, list):
            raise RunnerError(located.problem(where, f"values expects a list, got {args!r}"))
        return args
    if kind in ("linspace", "logspace"):
        ok = isinstance(args, list) and len(args) == 3 and all(_number(a) and math.isfinite(a) for a in args[:2]) \
            and isinstance(args[2], int) and not isinstance(args[2], bool) and args[2] >= 1
        if not ok:
            raise RunnerError(located.problem(where, f"{kind} expects [start, stop, count], start and stop finite "
                                                     f"numbers and count a positive integer, got {args!r}"))
        _check_length(located, where, args[2], limit)
        fn = np.linspace if kind == "linspace" else np.logspace
        with np.errstate(over="ignore"):
            values = fn(float(args[0]), float(args[1]), args[2], dtype=np.float64)
        if not np.isfinite(values).all():
            raise RunnerError(located.problem(where, f"{kind} {args!r} overflows float64: some values would be infinite"))
        return [float(v) for v in values]
    ok = isinstance(args, list) and len(args) in (2, 3) and all(isinstance(a, int) and not isinstance(a, bool) for a in args)
    if not ok or (len(args) == 3 and args[2] == 0):
        raise RunnerError(located.problem(where, f"range expects integers [start, stop] or [start, stop, step] (step not 0), got {args!r}"))
    _check_length(located, where, len(range(*args)), limit)
    return list(range(*args))


def _check_length(located: Located, where: Path, length: int, limit: int) -> None:
    if length > limit:
        raise RunnerError(located.problem(where, f"this axis has {length:,} values, more than the grid limit "
                                                 f"execution.max_points ({limit:,}); raise it if you mean it"))


def _check_names(located: Located, axes: list[Axis]) -> None:
    seen: dict[str, Member] = {}
    for axis in axes:
        for m in axis.members:
            if m.name in RESERVED_DIMS:
                raise RunnerError(located.problem(m.where, f"dim name {m.name!r} is reserved; "
                                                           "rename the axis with {values: [...], name: ...}"))
            if m.name in seen:
                raise RunnerError(located.problem(
                    m.where, f"dim name {m.name!r} is already used by sweep axis {seen[m.name].key!r}; "
                             "give one of them another name with {values: [...], name: ...}", key=True))
            seen[m.name] = m


def value_place(located: Located, member: Member, index: int) -> Path:
    """Where the ``index``-th value of an axis is written (the axis itself for generated values)."""
    for place in (member.where + (index,), member.where + ("values", index)):
        if place in located.values:
            return place
    return member.where


__all__ = ["Axis", "Member", "parse_sweep", "parse_path", "set_path", "value_place", "RESERVED_DIMS", "Problem"]
