"""The YAML spec language: load a file into a validated Spec with its sweep axes.

>>> from runner.spec import load_spec
>>> loaded = load_spec("specs/tiny.yaml")
>>> loaded.spec.name, [a.dim for a in loaded.axes]
('tiny', ['coefficient', 'layer'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from typing import Annotated

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from runner.errors import Problem, RunnerError
from runner.ids import content_id
from runner.spec.base import Source, Strict
from runner.spec.explain import allowed_keys, data_path, model_has_path, problems_from
from runner.spec import interventions as _interventions, sources as _sources
from runner.spec.interventions import *  # noqa: F401,F403  (the whole language is importable from here)
from runner.spec.kinds import (AgentArchitecture, EvalOptions, Execution, Figure, Spec, SpecBase, TrainOptions,
                               TrainSpec, spec_kinds)
from runner.spec.paths import resolve_path
from runner.spec.schema import json_schema
from runner.spec.sources import *  # noqa: F401,F403
from runner.spec.sweep import Axis, Member, parse_sweep, set_path, value_place
from runner.spec.yaml_loader import Located, dotted, load_yaml

# What cannot change a point's numbers, left out of its identity.
IDENTITY_EXCLUDES = {"execution", "description", "sweep", "figure"}


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

    @property
    def run_id(self) -> str:
        """The content id of the run: its spec less what cannot change the numbers (sweep order included)."""
        identity = self.spec.model_dump(mode="json", exclude=IDENTITY_EXCLUDES, exclude_defaults=True)
        identity["sweep"] = [[key, axis] for key, axis in self.spec.sweep.items()]  # order names the dims
        return content_id(identity)

    def point_data(self, assignments: dict[tuple, Any]) -> dict:
        """The spec's raw data with the given path -> value assignments applied."""
        data = self.located.data
        for path, value in assignments.items():
            data = set_path(data, path, value)
        return data


def load_spec(path: str | FsPath) -> LoadedSpec:
    """A spec file read, parsed and validated, with its sweep axes; RunnerError names file, line and path.

    >>> loaded = runner.load_spec("specs/tiny.yaml")
    >>> loaded.spec.intervention.kind, loaded.axes[0].members[0].values
    ('steer', (-2.0, 0.0, 2.0))
    """
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
    kinds = spec_kinds()
    if kind not in kinds:
        import difflib

        close = difflib.get_close_matches(str(kind), list(kinds), n=1)
        raise RunnerError(located.problem(("kind",), f"unknown spec kind {kind!r}; expected intervene or train"
                                                     + (f" (did you mean {close[0]!r}?)" if close else "")))
    cls = kinds[kind]
    try:
        spec = cls.model_validate(located.data)
    except ValidationError as exc:
        raise RunnerError(problems_from(exc, located, cls)) from None
    axes = tuple(parse_sweep(located, spec.execution.max_points))
    check_grid_size(located, axes, spec.execution.max_points)
    _check_axes(located, axes, cls, spec)
    _check_figure(located, axes, spec)
    return LoadedSpec(spec, text, file, located, axes)


def _check_figure(located: Located, axes: tuple[Axis, ...], spec: SpecBase) -> None:
    """The ``figure:`` names a variable the metrics produce and dims the result will have.

    Dims a train run's grid adds (``model: {run: ...}``) are not known before that run is read: those
    specs' figure dims are checked when plotted, as are the variables of train specs.
    """
    if spec.figure is None:
        return
    problems = []
    dims: set[str] | None = {"step", "episode", "update", "eval_update"}
    if spec.kind != "train":
        produced = {name for m in spec.metrics for name in m.variables}
        var = spec.figure.var
        base = next((var[: -len(end)] for end in ("_sem", "_ci_low", "_ci_high") if var and var.endswith(end)), var)
        if var is not None and base not in produced:
            problems.append(located.problem(("figure", "var"), f"figure variable {var!r} is not one the metrics "
                                                               f"produce{_did_you_mean(var, produced)}"))
        dims = None if spec.model.kind == "run" else set().union(*(m.dim_names() for m in spec.metrics))
    if dims is not None:
        dims |= {axis.dim for axis in axes}
        for field in ("x", "hue", "col"):
            dim = getattr(spec.figure, field)
            if dim is not None and dim not in dims:
                problems.append(located.problem(("figure", field), f"figure {field} {dim!r} is not a dim of this "
                                                                   f"run's result{_did_you_mean(dim, dims)}"))
    if problems:
        raise RunnerError(problems)


def _did_you_mean(name: str, choices: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return (f" (did you mean {close[0]!r}?)" if close else "") + f"; it has: {', '.join(sorted(choices))}"


# Sweep paths whose values are plain numbers that nothing else in a spec depends on: each value is validated
# on its own, and points that differ only in them share a folded pass (and one validation of the rest).
FOLD_FREE = {("intervention", "coefficient"), ("data", "trajectories", "target_return")}


def check_grid_size(located: Located, axes: tuple[Axis, ...], limit: int) -> None:
    """Refuse a grid of more than ``limit`` points before anything is expanded (a typo can mean days of work)."""
    size = math.prod(len(a) for a in axes)
    if size > limit:
        shape = " x ".join(f"{a.dim}={len(a)}" for a in axes)
        raise RunnerError(located.problem(("sweep",), f"the grid has {size:,} points ({shape}), more than "
                                                      f"execution.max_points ({limit:,}); raise it if you mean it",
                                          key=True))


def _check_axes(located: Located, axes: tuple[Axis, ...], cls: type[SpecBase], spec: SpecBase) -> None:
    """Every sweep path exists in the schema and every swept value validates in place.

    A fold-free value (a plain number nothing else depends on) is validated against its
    field alone; only a value that fails is validated in place again, to say where and why.
    """
    problems: list[Problem] = []
    for axis in axes:
        for member in axis.members:
            if not model_has_path(cls, member.path):
                problems.append(_missing_path(located, member, cls))
                continue
            field = _field_check(spec, member.path)
            for i, value in enumerate(member.values):
                if field is not None:
                    try:
                        field.validate_python(value)
                        continue
                    except ValidationError:
                        pass
                data = set_path(located.data, member.path, value)
                try:
                    cls.model_validate(data)
                except ValidationError as exc:
                    problems += _value_problems(exc, located, member, i, data, cls)
    if problems:
        raise RunnerError(problems)


def _field_check(spec: SpecBase, path: tuple) -> TypeAdapter | None:
    """A validator of the field at a fold-free ``path`` alone (its type, constraints and the spec's config)."""
    if path not in FOLD_FREE:
        return None
    parent = spec
    for part in path[:-1]:
        parent = getattr(parent, part, None)
    if not isinstance(parent, BaseModel) or path[-1] not in type(parent).model_fields:
        return None
    info = type(parent).model_fields[path[-1]]
    config = type(parent).model_config
    return TypeAdapter(Annotated[info.annotation, info],
                       config=ConfigDict(strict=config.get("strict"), allow_inf_nan=config.get("allow_inf_nan", True)))


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


def point_identity(spec: SpecBase, reads: dict[str, Any] | None = None) -> str:
    """The content id of one resolved grid point: what it computes, and the content of what it reads.

    Defaults are left out so that a field added to the schema later keeps old runs
    resumable (writing a default explicitly is the same computation as leaving it out).
    ``reads`` holds the digests of the files and generated data the point reads.
    """
    identity = spec.model_dump(mode="json", exclude=IDENTITY_EXCLUDES, exclude_defaults=True)
    return content_id([identity, reads] if reads else identity)


__all__ = ["AgentArchitecture", "EvalOptions", "Execution", "Figure", "LoadedSpec", "Source", "Spec", "SpecBase",
           "Strict", "TrainOptions", "TrainSpec", "check_grid_size", "json_schema", "load_spec", "parse_spec",
           "point_identity", "resolve_path", "spec_kinds",
           *_interventions.__all__, *_sources.__all__]
