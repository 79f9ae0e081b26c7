"""Spec -> Plan: the grid points with their coordinates, content ids and task chunks.

Everything that can be known about a spec without running a model is checked
here (layer, head and position in range, vector lengths, files present), so
that ``runner validate`` and ``runner plan`` catch it before any work starts.
Compiling writes nothing and generates no data: checks that need demonstrations
not generated yet wait for ``Plan.check_deferred``, which ``runner run`` calls
before any point runs. No torch, no ray: this module must stay fast to import.

>>> plan = compile_plan("specs/tiny.yaml")
>>> plan.dims, plan.shape, len(plan.points), len(plan.tasks)
(['coefficient', 'layer'], (3, 2), 6, 6)
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
from runner.ids import content_id
from runner.plan.checks import DataAccess, check_point
from runner.plan.facts import inputs_read
from runner.results.folder import RunFolder
from runner.spec import LoadedSpec, Spec, TrainSpec, check_grid_size, load_spec, point_identity
from runner.spec.explain import problems_from
from runner.spec.sweep import Axis, Member, value_place
from runner.spec.yaml_loader import Located, dotted

# What runner.train puts in a train run's result, and what every result holds: no sweep dim may take these names.
TRAIN_NAMES = ("step", "episode", "loss", "success", "return", "episode_length", "random_success", "random_return")
RESULT_VARIABLES = ("status", "error", "point_id")


@dataclass(frozen=True)
class Point:
    """One grid point: its flat index (C order), coordinates, resolved spec and content id.

    The id covers the spec and the content of every file the point reads (``reads``:
    path -> sha256), so a file rewritten in place makes the point run again.
    """

    index: int
    coords: dict[str, Any]
    spec: Spec
    id: str
    seed: int
    reads: dict[str, str] = field(default_factory=dict)


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
    deferred: list[tuple[tuple[int, ...], Point]] = field(default_factory=list, repr=False)
    axes: tuple[Axis, ...] = ()

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

    def check_deferred(self) -> None:
        """Run the checks that waited for demonstrations, generating them; RunnerError names the place."""
        access = DataAccess(self.base_dir, only_cached=False)
        problems = [_locate(self.loaded, self.axes, choice, path, message, point.coords)
                    for choice, point in self.deferred for path, message in check_point(point.spec, access)]
        if problems:
            raise RunnerError(_unique(problems))
        self.deferred = []

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
            (f"metrics   {', '.join(m.kind for m in self.spec.metrics)}" if self.spec.kind == "intervene" else
             f"trains    {self.spec.model.architecture} agents, {self.spec.train.steps} steps each"),
            f"output    {self.out_dir}",
        ]
        return "\n".join(lines + [f"note      {note}" for note in self.notes])


def compile_plan(spec: str | Path | LoadedSpec, *, out: str | Path | None = None,
                 base_dir: str | Path | None = None, require_runs: bool = True) -> Plan:
    """Compile a spec (path or loaded) into a Plan; raise RunnerError on any problem. Writes nothing.

    ``require_runs=False`` lets a spec over a train run that does not exist yet compile
    (``runner validate`` on a fresh clone): its model-dependent checks wait for the run.
    """
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    base = Path(base_dir or os.getcwd()).resolve()
    _check_dim_names(loaded)
    notes: list[str] = []
    run_axes: list[Axis] = []
    run_folders: list[Path] = []
    if loaded.spec.kind == "intervene" and loaded.spec.model.kind == "run":
        train = RunFolder.named(loaded.spec.model.run, base)
        if require_runs or train.spec_file.is_file():
            run_axes, run_folders = _run_axes(loaded, base)
        else:  # validate before training: the spec is checked, the model-dependent checks wait for the run
            notes.append(f"train run {loaded.spec.model.run!r} does not exist yet ({train.root}): "
                         "checks against its models happen once it does")
    axes = tuple(run_axes) + loaded.axes
    check_grid_size(loaded.located, axes, loaded.spec.execution.max_points)
    access = DataAccess(base, only_cached=True)
    points, deferred = _points(loaded, axes, len(run_axes), run_folders, access)
    if deferred:
        notes.append("demonstrations not generated yet: the checks that read them (contrast selections, swapped "
                     "words, patch sources) run when `runner run` has generated them, before any point runs")
    ppt = loaded.spec.execution.points_per_task
    if ppt == "auto":  # a train point is a whole training run: one per task
        ppt = 1 if isinstance(loaded.spec, TrainSpec) else max(1, min(32, math.ceil(len(points) / 8)))
    out_dir = Path(out).resolve() if out else RunFolder.named(loaded.spec.name, base).root
    coords = {m.name: (a.dim, list(m.values)) for a in axes for m in a.members}
    plan = Plan(loaded, loaded.run_id, [a.dim for a in axes], tuple(len(a) for a in axes), coords, points, ppt,
                out_dir, base, notes=notes, deferred=deferred, axes=axes)
    plan.tasks = plan.chunk(points)
    return plan


def _points(loaded: LoadedSpec, axes: tuple[Axis, ...], n_run_axes: int, run_folders: list[Path],
            access: DataAccess) -> tuple[list[Point], list[tuple[tuple[int, ...], Point]]]:
    """Every grid point, checked; and those whose checks wait for data not generated yet."""
    shape = tuple(len(a) for a in axes)
    points, deferred, problems = [], [], []
    for index, choice in enumerate(itertools.product(*(range(n) for n in shape))):
        assignments = {m.path: m.values[i] for a, i in zip(axes, choice) for m in a.members if m.path}
        if run_folders:
            train_index = int(np.ravel_multi_index(choice[:n_run_axes], shape[:n_run_axes])) if n_run_axes else 0
            assignments[("model",)] = {"checkpoint": str(run_folders[train_index])}
        point_coords = {m.name: m.values[i] for a, i in zip(axes, choice) for m in a.members}
        try:
            point_spec = loaded.cls.model_validate(loaded.point_data(assignments))
        except ValidationError as exc:  # a combination of valid values that is invalid as a whole
            problems += [_at_point(p, point_coords) for p in problems_from(exc, loaded.located, loaded.cls)]
            continue
        missed = access.missed
        for path, message in check_point(point_spec, access):
            problems.append(_locate(loaded, axes, choice, path, message, point_coords))
        seed = int(content_id([point_spec.seed, point_coords], 8), 16)
        files, generated = inputs_read(point_spec, access.base_dir)
        point = Point(index, point_coords, point_spec, point_identity(point_spec, {**files, **generated}), seed, files)
        points.append(point)
        if access.missed != missed:
            deferred.append((choice, point))
    if problems:
        raise RunnerError(_unique(problems))
    return points, deferred


def _run_axes(loaded: LoadedSpec, base: Path) -> tuple[list[Axis], list[Path]]:
    """The train run's grid as axes of this spec, and the model folder of each of its points."""
    run = loaded.spec.model.run
    folder = RunFolder.named(run, base)
    if not folder.spec_file.is_file():
        raise RunnerError(loaded.located.problem(("model", "run"), f"no train run {run!r}: {folder.spec_file} does not exist"),
                          hint=f"Run its train spec first (runner run SPEC writes {folder.root}/).")
    train = compile_plan(folder.spec_file, out=folder.root, base_dir=base)
    if not isinstance(train.spec, TrainSpec):
        raise RunnerError(loaded.located.problem(("model", "run"), f"{folder.root} is not a train run (kind {train.spec.kind})"))
    folders = [folder.model_dir(p.coords) for p in train.points]
    missing = [f for f in folders if not (f / "model.safetensors").is_file()]
    folders = [f.relative_to(base) if f.is_relative_to(base) else f for f in folders]  # ids survive a moved project
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
    taken = {d: f"a dim of metric {m.kind!r}" for m in metrics for d in m.dim_names()}
    taken |= {v: f"a variable of metric {m.kind!r}" for m in metrics for v in m.variables}
    if isinstance(loaded.spec, TrainSpec):
        taken |= {d: "a dim or variable of train results" for d in TRAIN_NAMES}
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
