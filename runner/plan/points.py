"""What a plan is: a grid of points, each with an id, and the tasks that compute them, built on demand.

A plan holds each point's id, not its spec: points and tasks are built when they
are needed, so a million-point grid plans in bounded memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from runner.errors import RunnerError
from runner.ids import content_id
from runner.plan.checks import DataAccess, check_point
from runner.plan.problems import locate, unique
from runner.spec import FOLD_FREE, LoadedSpec, Spec, TrainSpec
from runner.spec.sweep import Axis

# Tokens (rows x positions) a folded forward pass computes at most; tasks are sized to fill passes.
PASS_TOKENS = 32768


@dataclass(frozen=True)
class Point:
    """One grid point: its flat index (C order), coordinates, resolved spec and content id.

    The id covers the spec and the content of every file the point reads, so a file
    rewritten in place makes the point run again.
    """

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
    """What a run will compute and how it is split into tasks (points and tasks are built on demand)."""

    loaded: LoadedSpec
    axes: tuple[Axis, ...]
    n_run_axes: int                     # leading axes that come from a train run's grid
    run_folders: list[Path]             # that run's model folders, one per point of its grid
    base_dir: Path
    out_dir: Path
    ids: list[str] = field(default_factory=list)              # each point's content id, grid order
    reads: dict[str, str] = field(default_factory=dict)       # every file the points read -> sha256
    generated: dict[str, str] = field(default_factory=dict)   # demonstrations the points read -> cache key
    deferred: list[int] = field(default_factory=list)         # points whose checks wait for data
    not_applicable: list[int] = field(default_factory=list)   # points at an address their model lacks
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> Spec:
        return self.loaded.spec

    @property
    def run_id(self) -> str:
        return self.loaded.run_id

    @property
    def dims(self) -> list[str]:
        return [a.dim for a in self.axes]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def coords(self) -> dict[str, tuple[str, list[Any]]]:
        """Coordinate name -> (dim, values), one per swept path (zipped paths share a dim)."""
        return {m.name: (a.dim, list(m.values)) for a in self.axes for m in a.members}

    def __len__(self) -> int:
        return math.prod(self.shape)

    # ---------------------------------------------------------------- points

    def choice(self, index: int) -> tuple[int, ...]:
        """The index into each axis of the point at flat (C order) ``index``."""
        return tuple(int(i) for i in np.unravel_index(index, self.shape)) if self.shape else ()

    def coords_of(self, index: int) -> dict[str, Any]:
        return {m.name: m.values[i] for a, i in zip(self.axes, self.choice(index)) for m in a.members}

    def assignments(self, choice: tuple[int, ...]) -> dict[tuple, Any]:
        """Spec path -> value of a point (a train run's axes choose the checkpoint)."""
        out = {m.path: m.values[i] for a, i in zip(self.axes, choice) for m in a.members if m.path}
        if self.run_folders:
            run_shape = self.shape[:self.n_run_axes]
            at = int(np.ravel_multi_index(choice[:self.n_run_axes], run_shape)) if self.n_run_axes else 0
            out[("model",)] = {"checkpoint": str(self.run_folders[at])}
        return out

    def spec_of(self, choice: tuple[int, ...]) -> Spec:
        """The resolved spec of a point, validated (raises pydantic's ValidationError for an invalid combination).

        Points that differ only in fold-free values (a coefficient, a target return: plain
        numbers, each validated on its own when the spec was loaded) share one validation.
        """
        structure = tuple(choice[i] for i in self._fold_axes)
        if structure not in self._validated:
            if len(self._validated) > 1024:  # a structure's spec: a few KB
                self._validated.clear()
            self._validated[structure] = self.loaded.cls.model_validate(self.loaded.point_data(self.assignments(choice)))
        spec = self._validated[structure]
        for axis, i in ((self.axes[a], choice[a]) for a in self._free_axes):
            for member in axis.members:
                spec = _replaced(spec, member.path, float(member.values[i]))
        return spec

    def point(self, index: int) -> Point:
        """The point at flat ``index`` (checked when the plan was compiled)."""
        spec = self.spec_of(self.choice(index))
        coords = self.coords_of(index)
        return Point(index, coords, spec, self.ids[index], int(content_id([spec.seed, coords], 8), 16))

    @cached_property
    def _free_axes(self) -> list[int]:
        def numbers(member: Any) -> bool:  # a null target return is not a number: its points are serialised
            return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in member.values)

        return [i for i, a in enumerate(self.axes) if all(m.path in FOLD_FREE and numbers(m) for m in a.members)]

    @cached_property
    def _fold_axes(self) -> list[int]:
        return [i for i in range(len(self.axes)) if i not in self._free_axes]

    @cached_property
    def _validated(self) -> dict[tuple, Spec]:
        return {}

    @property
    def points(self) -> Sequence[Point]:
        """Every point, built as it is read."""
        return _Points(self)

    # ---------------------------------------------------------------- tasks

    @cached_property
    def points_per_task(self) -> int:
        ppt = self.spec.execution.points_per_task
        if ppt != "auto":
            return ppt
        if isinstance(self.spec, TrainSpec):  # a train point is a whole training run
            return 1
        batch, length = _tokens_per_point(self.spec)
        fill = max(1, PASS_TOKENS // (batch * length))  # points one folded pass can hold
        # a task fills a pass (fewer, larger tasks fold better and pay per-task costs less often), holds at
        # least 32 points, and a large grid is still cut into at least 16 tasks (progress, resume, parallelism)
        return max(1, min(max(fill, 32, math.ceil(len(self) / 16)), len(self), 8192))

    @cached_property
    def order(self) -> np.ndarray:
        """Grid indices in task order: points that can share folded passes next to each other."""
        if not self.shape:
            return np.zeros(1, dtype=np.int64)
        grid = np.unravel_index(np.arange(len(self)), self.shape)
        keys = [grid[i] for i in reversed(self._free_axes)] + [grid[i] for i in reversed(self._fold_axes)]
        # np.lexsort sorts by its last key first: points that fold together end up next to each other
        return np.lexsort(keys)

    def n_tasks(self, count: int | None = None) -> int:
        return math.ceil((len(self) if count is None else count) / self.points_per_task)

    def tasks(self, indices: Iterable[int] | None = None) -> Iterator[Task]:
        """The tasks that compute ``indices`` (default: every point), built one at a time."""
        order = self.order if indices is None else self.order[np.isin(self.order, np.fromiter(indices, np.int64))]
        ordered = order.tolist()
        ex = self.spec.execution
        for start in range(0, len(ordered), self.points_per_task):
            chunk = tuple(self.point(i) for i in ordered[start:start + self.points_per_task])
            yield Task(content_id([[p.index, p.id] for p in chunk]), chunk, str(self.base_dir),
                       ex.cpus_per_task, ex.gpus_per_task)

    def input_files(self) -> dict[str, Path]:
        """The files inside the project that the points read, by path relative to it (what a worker needs)."""
        from runner.results.folder import trajectory_cache

        cache = trajectory_cache(self.base_dir)
        labels = [label for label in self.reads if not Path(label).is_absolute()]
        labels += [str((cache / f"{key}.npz").relative_to(self.base_dir)) for key in set(self.generated.values())]
        return {label: self.base_dir / label for label in labels if (self.base_dir / label).is_file()}

    # ---------------------------------------------------------------- checks and summary

    def check_deferred(self) -> None:
        """Run the checks that waited for demonstrations, generating them; RunnerError names the place."""
        access = DataAccess(self.base_dir, only_cached=False)
        problems = []
        for index in self.deferred:
            point = self.point(index)
            problems += [locate(self.loaded, self.axes, self.choice(index), path, message, point.coords)
                         for path, message in check_point(point.spec, access)]
        if problems:
            raise RunnerError(unique(problems))
        self.deferred = []

    def describe(self) -> str:
        """A human summary: dims and sizes, points, tasks, resources, output folder."""
        ex = self.spec.execution
        dims = " x ".join(f"{d}={n}" for d, n in zip(self.dims, self.shape)) or "(no sweep)"
        ppt = self.points_per_task
        lines = [
            f"spec      {self.loaded.file}  (name {self.spec.name}, run id {self.run_id})",
            f"grid      {dims}",
            f"points    {len(self)}",
            f"tasks     {self.n_tasks()}  ({ppt} point{'s' if ppt != 1 else ''} per task)",
            f"executor  {ex.executor}" + (f" at {ex.address}" if ex.address else ""),
            f"resources {ex.cpus_per_task} CPU + {ex.gpus_per_task:g} GPU per task",
            (f"metrics   {', '.join(m.kind for m in self.spec.metrics)}" if self.spec.kind == "intervene" else
             f"trains    {_trains(self)}"),
            f"output    {self.out_dir}",
        ]
        if self.not_applicable:
            lines.insert(3, f"          {len(self.not_applicable)} not applicable (an address their model lacks: "
                            "status not_applicable, values NaN)")
        return "\n".join(lines + [f"note      {note}" for note in self.notes])


def _trains(plan: Plan) -> str:
    """What a train plan trains: each algorithm of its grid and how long."""
    algorithms = {plan.spec.trains} | {v for a in plan.axes for m in a.members if m.path == ("algorithm",)
                                        for v in m.values}
    steps = f"agents, {plan.spec.train.steps} steps each"
    says = {"bc": f"behavior_clone {steps}", "dt": f"decision_transformer {steps}",
            "ppo": f"ppo agents, {plan.spec.ppo.updates} updates of {plan.spec.ppo.batch_size} env steps each"}
    return "; ".join(says[a] for a in ("bc", "dt", "ppo") if a in algorithms)


def _replaced(model: Any, path: tuple, value: Any) -> Any:
    """A copy of a frozen pydantic model with the field at ``path`` set to ``value`` (not validated again)."""
    head, *rest = path
    return model.model_copy(update={head: _replaced(getattr(model, head), tuple(rest), value) if rest else value})


class _Points(Sequence):
    """A plan's points as a sequence, each built when read."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int | slice) -> Point | list[Point]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self.plan.point(i) for i in range(len(self))[index]]
        return self.plan.point(range(len(self))[index])


def _tokens_per_point(spec: Any) -> tuple[int, int]:
    """(rows, positions) one point reads, as far as the spec says (agents: a guess of 1,000 windows of 16)."""
    data = spec.data
    if data.kind == "tokens":
        return len(data.tokens), len(data.tokens[0])
    if data.kind == "random_tokens":
        return data.random_tokens.batch, data.random_tokens.length
    return 1000, 16

