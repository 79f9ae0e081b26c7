"""Spec -> Plan: the grid points with their coordinates, content ids and task chunks.

Everything that can be known about a spec without running a model is checked
here (layer, head and position in range, vector lengths, files present), so
that ``runner validate`` and ``runner plan`` catch it before any work starts.
No torch, no ray: this module must stay fast to import.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from runner.errors import Problem, RunnerError
from runner.checks import METRIC_DIMS, METRIC_VARIABLES, RESULT_VARIABLES, check_point
from runner.spec import LoadedSpec, content_id, load_spec
from runner.spec.check import problems_from
from runner.spec.models import RunModel, Spec, TrainSpec
from runner.spec.sweep import value_place
from runner.spec.yaml_loader import Located, dotted

IDENTITY_EXCLUDES = {"execution", "description", "sweep"}
TRAIN_DIMS = ("step", "episode", "loss", "success", "return", "episode_length", "random_success", "random_return")


@dataclass(frozen=True)
class Point:
    """One grid point: its flat index (C order), coordinates, resolved spec and content id."""

    index: int
    coords: dict[str, Any]
    spec: Spec
    id: str
    seed: int


@dataclass(frozen=True)
class Task:
    """A chunk of points that one worker runs, loading the model once."""

    id: str
    points: tuple[Point, ...]
    base_dir: str
    threads: int
    gpus: float


@dataclass
class Plan:
    """What a run will compute and how it is split into tasks."""

    loaded: LoadedSpec
    run_id: str
    dims: list[str]
    shape: tuple[int, ...]
    coords: dict[str, tuple[str, list[Any]]]   # coord name -> (dim, values)
    points: list[Point]
    points_per_task: int
    out_dir: Path
    base_dir: Path
    tasks: list[Task] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> Spec:
        return self.loaded.spec

    def chunk(self, points: list[Point]) -> list[Task]:
        """Split points (in grid order) into tasks of at most points_per_task each."""
        ex = self.spec.execution
        tasks = []
        for start in range(0, len(points), self.points_per_task):
            chunk = tuple(points[start:start + self.points_per_task])
            tasks.append(Task(content_id([[p.index, p.id] for p in chunk]), chunk, str(self.base_dir),
                              ex.cpus_per_task, ex.gpus_per_task))
        return tasks

    def describe(self) -> str:
        """A human summary: dims and sizes, points, tasks, resources, output folder."""
        ex = self.spec.execution
        dims = " x ".join(f"{d}={n}" for d, n in zip(self.dims, self.shape)) or "(no sweep)"
        lines = [
            f"spec      {self.loaded.file}  (name {self.spec.name}, run id {self.run_id})",
            f"grid      {dims}",
            f"points    {len(self.points)}",
            f"tasks     {len(self.tasks)}  ({self.points_per_task} point{'s' if self.points_per_task != 1 else ''} per task)",
            f"executor  {ex.executor}" + (f" at {ex.address}" if ex.address else ""),
            f"resources {ex.cpus_per_task} CPU + {ex.gpus_per_task:g} GPU per task",
            f"metrics   {', '.join(m.kind for m in self.spec.metrics)}",
            f"output    {self.out_dir}",
        ]
        return "\n".join(lines)


def compile_plan(spec: str | Path | LoadedSpec, *, out: str | Path | None = None,
                 base_dir: str | Path | None = None, require_runs: bool = True) -> Plan:
    """Compile a spec (path or loaded) into a Plan; raise RunnerError on any problem.

    >>> plan = compile_plan("specs/quickstart.yaml")      # doctest: +SKIP
    >>> plan.dims, len(plan.points), len(plan.tasks)      # doctest: +SKIP
    (['coefficient', 'layer'], 34, 5)
    """
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    base = Path(base_dir or os.getcwd()).resolve()
    _check_dim_names(loaded)
    notes: list[str] = []
    run_axes: list[Any] = []
    run_folders: list[Path] = []
    if isinstance(getattr(loaded.spec, "model", None), RunModel):
        run_folder = base / "results" / loaded.spec.model.run
        if require_runs or (run_folder / "spec.yaml").is_file():
            run_axes, run_folders = _run_axes(loaded, base)
        else:  # validate before training: the spec is checked, the model-dependent checks wait for the run
            notes.append(f"train run {loaded.spec.model.run!r} does not exist yet ({run_folder}): "
                         "checks against its models happen once it does")
    axes = tuple(run_axes) + loaded.axes
    run_shape = tuple(len(a) for a in run_axes)
    shape = tuple(len(a) for a in axes)
    coords = {m.name: (a.dim, list(m.values)) for a in axes for m in a.members}
    points, problems = [], []
    for index, choice in enumerate(itertools.product(*(range(n) for n in shape))):
        assignments = {m.path: m.values[i] for a, i in zip(axes, choice) for m in a.members if m.path}
        if run_folders:
            train_index = int(np.ravel_multi_index(choice[: len(run_axes)], run_shape)) if run_axes else 0
            assignments[("model",)] = {"checkpoint": str(run_folders[train_index])}
        point_coords = {m.name: m.values[i] for a, i in zip(axes, choice) for m in a.members}
        try:
            point_spec = loaded.cls.model_validate(loaded.point_data(assignments))
        except ValidationError as exc:  # a combination of valid values that is invalid as a whole
            problems += [_at_point(p, point_coords) for p in problems_from(exc, loaded.located, loaded.cls)]
            continue
        for path, message in check_point(point_spec, base):
            problems.append(_locate(loaded, axes, choice, path, message, point_coords))
        # defaults left out: a field added to the schema later keeps old runs resumable, and writing a
        # default explicitly is the same computation as leaving it out
        identity = point_spec.model_dump(mode="json", exclude=IDENTITY_EXCLUDES, exclude_defaults=True)
        seed = int(content_id([point_spec.seed, point_coords], 8), 16)
        points.append(Point(index, point_coords, point_spec, content_id(identity), seed))
    if problems:
        raise RunnerError(_unique(problems))
    run_id = run_id_of(loaded)
    ppt = loaded.spec.execution.points_per_task
    if ppt == "auto":  # a train point is a whole training run: one per task
        ppt = 1 if isinstance(loaded.spec, TrainSpec) else max(1, min(32, math.ceil(len(points) / 8)))
    out_dir = Path(out).resolve() if out else base / "results" / loaded.spec.name
    plan = Plan(loaded, run_id, [a.dim for a in axes], shape, coords, points, ppt, out_dir, base, notes=notes)
    plan.tasks = plan.chunk(points)
    return plan


def point_folder(point: Point, default: str = "model") -> str:
    """A file name for a point's artifacts from its coordinates: ``n_layers=2,seed=0`` (``model`` without a sweep).

    Scalars are written as they are; lists and mappings (a swept vector source, say) by a short content id.
    """
    if not point.coords:
        return default

    def text(value: Any) -> str:
        plain = isinstance(value, (bool, int, float, str)) and len(str(value)) <= 40
        return str(value) if plain else content_id(value, 8)

    name = ",".join(f"{k}={text(v)}" for k, v in point.coords.items())
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in name)


def _run_axes(loaded: LoadedSpec, base: Path) -> tuple[list[Any], list[Path]]:
    """The train run's grid as axes of this spec, and the model folder of each of its points."""
    from runner.spec.sweep import Axis, Member

    run = loaded.spec.model.run
    folder = base / "results" / run
    if not (folder / "spec.yaml").is_file():
        raise RunnerError(loaded.located.problem(("model", "run"), f"no train run {run!r}: {folder / 'spec.yaml'} does not exist"),
                          hint=f"Run its train spec first (runner run SPEC writes results/{run}/).")
    train = compile_plan(folder / "spec.yaml", out=folder, base_dir=base)
    if not isinstance(train.spec, TrainSpec):
        raise RunnerError(loaded.located.problem(("model", "run"), f"results/{run} is not a train run (kind {train.spec.kind})"))
    folders = [folder / "models" / point_folder(p) for p in train.points]
    missing = [f for f in folders if not (f / "model.safetensors").is_file()]
    if missing:
        raise RunnerError(loaded.located.problem(
            ("model", "run"), f"train run {run!r} is unfinished: {len(missing)} of {len(folders)} models missing "
                              f"(first: {missing[0]})"), hint="Rerun its train spec to finish it.")
    own = {m.name for a in loaded.axes for m in a.members}
    for axis in train.loaded.axes:
        for m in axis.members:
            if m.name in own:
                raise RunnerError(loaded.located.problem(("sweep",), f"dim {m.name!r} is already a dim of train run "
                                                                     f"{run!r}; rename this spec's axis with name:"))
    axes = [Axis(a.dim, tuple(Member(m.key, (), m.name, m.values, ("model", "run")) for m in a.members))
            for a in train.loaded.axes]
    return axes, folders


def _check_dim_names(loaded: LoadedSpec) -> None:
    """A sweep dim may not share its name with a dim or variable of the result."""
    metrics = getattr(loaded.spec, "metrics", [])
    taken = {d: f"a dim of metric {m.kind!r}" for m in metrics for d in METRIC_DIMS[m.kind]}
    taken |= {v: f"a variable of metric {m.kind!r}" for m in metrics for v in METRIC_VARIABLES[m.kind]}
    if isinstance(loaded.spec, TrainSpec):
        taken |= {d: "a dim of train results" for d in TRAIN_DIMS}
    taken |= {v: "a variable of every result" for v in RESULT_VARIABLES}
    for axis in loaded.axes:
        for member in axis.members:
            if member.name in taken:
                raise RunnerError(loaded.located.problem(
                    member.where, f"dim name {member.name!r} clashes with {taken[member.name]}; "
                                  "rename the axis with {values: [...], name: ...}", key=True))


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        key = (p.file, p.line, p.col, p.path, p.message.split(" (at grid point")[0])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _at_point(problem: Problem, coords: dict[str, Any]) -> Problem:
    if not coords:
        return problem
    where = ", ".join(f"{k}={v!r}" for k, v in coords.items())
    return Problem(f"{problem.message} (at grid point {where})", problem.file, problem.line, problem.col, problem.path)


def _locate(loaded: LoadedSpec, axes: Any, choice: tuple[int, ...], path: tuple, message: str,
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
    return _at_point(located.problem(path, message), coords)


def run_id_of(loaded: LoadedSpec) -> str:
    """The content id of a run: its spec less what cannot change the numbers (sweep order included)."""
    identity = loaded.spec.model_dump(mode="json", exclude=IDENTITY_EXCLUDES, exclude_defaults=True)
    identity["sweep"] = [[key, axis] for key, axis in loaded.spec.sweep.items()]  # order names the dims
    return content_id(identity)
