"""The YAML spec language: load a file into a validated Spec with its sweep axes.

>>> from runner.spec import load_spec
>>> loaded = load_spec("specs/quickstart.yaml")       # doctest: +SKIP
>>> loaded.spec.name, [a.dim for a in loaded.axes]    # doctest: +SKIP
('quickstart', ['coefficient', 'layer'])
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from runner.errors import Problem, RunnerError
from runner.spec.check import allowed_keys, data_path, model_has_path, problems_from
from runner.spec.models import SPEC_KINDS, Spec, SpecBase, TrainSpec
from runner.spec.sweep import Axis, Member, parse_sweep, set_path, value_place
from runner.spec.yaml_loader import Located, dotted, load_yaml


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec together with its text, its file and its parsed sweep."""

    spec: Any                # a Spec (kind: intervene) or a TrainSpec (kind: train)
    text: str
    file: str
    located: Located
    axes: tuple[Axis, ...]

    @property
    def cls(self) -> type[SpecBase]:
        return type(self.spec)

    def point_data(self, assignments: dict[tuple, Any]) -> dict:
        """The spec's raw data with the given path -> value assignments applied."""
        data = self.located.data
        for path, value in assignments.items():
            data = set_path(data, path, value)
        return data


def load_spec(path: str | FsPath) -> LoadedSpec:
    """Read, parse and validate a spec file; raise RunnerError naming file, line and path."""
    file = str(path)
    try:
        text = FsPath(path).read_text()
    except FileNotFoundError:
        raise RunnerError(Problem(f"spec file not found: {file}")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunnerError(Problem(f"cannot read spec file: {exc}", file)) from None
    return parse_spec(text, file)


def parse_spec(text: str, file: str = "<string>") -> LoadedSpec:
    """Validate spec text (see load_spec)."""
    located = load_yaml(text, file)
    if not isinstance(located.data, dict):
        raise RunnerError(located.problem((), "a spec is a mapping with keys name, model, data, ..."))
    kind = located.data.get("kind", "intervene")
    if kind not in SPEC_KINDS:
        import difflib

        close = difflib.get_close_matches(str(kind), list(SPEC_KINDS), n=1)
        raise RunnerError(located.problem(("kind",), f"unknown spec kind {kind!r}; expected intervene or train"
                                                     + (f" (did you mean {close[0]!r}?)" if close else "")))
    cls = SPEC_KINDS[kind]
    try:
        spec = cls.model_validate(located.data)
    except ValidationError as exc:
        raise RunnerError(problems_from(exc, located, cls)) from None
    axes = tuple(parse_sweep(located))
    _check_axes(located, axes, cls)
    return LoadedSpec(spec, text, file, located, axes)


def _check_axes(located: Located, axes: tuple[Axis, ...], cls: type[SpecBase]) -> None:
    """Every sweep path exists in the schema and every swept value validates in place."""
    problems: list[Problem] = []
    for axis in axes:
        for member in axis.members:
            if not model_has_path(cls, member.path):
                problems.append(_missing_path(located, member, cls))
                continue
            for i, value in enumerate(member.values):
                data = set_path(located.data, member.path, value)
                try:
                    cls.model_validate(data)
                except ValidationError as exc:
                    problems += _value_problems(exc, located, member, i, data, cls)
    if problems:
        raise RunnerError(problems)


def _missing_path(located: Located, member: Member, cls: type[SpecBase]) -> Problem:
    prefix: tuple = ()
    for part in member.path:
        if not model_has_path(cls, prefix + (part,)):
            break
        prefix += (part,)
    bad = member.path[len(prefix)]
    choices = allowed_keys(cls, prefix)
    import difflib

    close = difflib.get_close_matches(str(bad), choices, n=1, cutoff=0.6)
    hint = f" (did you mean {dotted(prefix + (close[0],))!r}?)" if close else (
        f"; {dotted(prefix) or 'the spec'} has keys: {', '.join(choices)}" if choices else "")
    line, col = located.where(member.where, key=True)
    return Problem(f"sweep path {member.key!r} does not name a field of the spec: no {bad!r}{hint}",
                   located.file, line, col, dotted(member.where))


def _value_problems(exc: ValidationError, located: Located, member: Member, index: int, data: dict,
                    cls: type[SpecBase]) -> list[Problem]:
    value = member.values[index]
    place = value_place(located, member, index)
    line, col = located.where(place)
    out = []
    for err in exc.errors():
        if data_path(data, err["loc"])[: len(member.path)] != member.path:
            continue  # not about the swept value
        single = ValidationError.from_exception_data(exc.title, [err])  # reuse the message wording
        (problem,) = problems_from(single, Located(data, located.file), cls)[:1]
        message = f"sweep value {value!r} for {member.key!r}: {problem.message}"
        out.append(Problem(message, located.file, line, col, dotted(place)))
    return out


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of plain data: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_id(obj: Any, length: int = 12) -> str:
    """A short sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


__all__ = ["LoadedSpec", "Spec", "TrainSpec", "load_spec", "parse_spec", "canonical_json", "content_id", "Axis"]
