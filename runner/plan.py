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
from typing import Any, Iterator

import numpy as np
from pydantic import ValidationError

from runner.errors import Problem, RunnerError
from runner.sites import HEAD_HOOKS, Dims, SiteError, position_indices, resolve_site
from runner.spec import LoadedSpec, content_id, load_spec
from runner.spec.check import problems_from
from runner.spec.models import (CheckpointModel, FileData, RunModel, Spec, TokensData, TrainSpec, TrajectoryData,
                                 TransformerModel)
from runner.spec.sweep import value_place
from runner.spec.yaml_loader import Located, dotted

IDENTITY_EXCLUDES = {"execution", "description", "sweep"}
METRIC_DIMS = {"logits": ("sample", "vocab"), "probs": ("sample", "vocab"), "logit_diff": ("sample",), "kl": ("sample",)}
METRIC_VARIABLES = {"logits": ("logits",), "probs": ("probs",), "logit_diff": ("logit_diff",), "kl": ("kl",)}
RESULT_VARIABLES = ("status", "error", "point_id")
METRIC_DIMS |= {"action_logits": ("sample", "action"), "action_probs": ("sample", "action"), "rollout": ("episode",)}
METRIC_VARIABLES |= {"action_logits": ("action_logits",), "action_probs": ("action_probs",),
                     "rollout": ("return", "success", "episode_length")}
AGENT_METRICS = ("action_logits", "action_probs", "rollout")
TOKEN_METRICS = ("logits", "probs", "logit_diff")
TRAIN_DIMS = ("step", "episode", "loss", "success", "return", "episode_length")


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
            f"tasks     {len(self.tasks)}  ({self.points_per_task} points per task)",
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
        identity = point_spec.model_dump(mode="json", exclude=IDENTITY_EXCLUDES)
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


def point_folder(point: Point) -> str:
    """The name of a train point's model folder: its coordinates, ``n_layers=2,seed=0``."""
    if not point.coords:
        return "model"
    return ",".join(f"{k}={v}" for k, v in point.coords.items()).replace("/", "_").replace(" ", "")


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
                              f"(first: {missing[0]})"), hint=f"Rerun its train spec to finish it.")
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


# ---------------------------------------------------------------- model-dependent checks

def model_dims(spec: Spec, base_dir: Path | str = ".") -> Dims:
    """The sizes of the spec's model, read from its config without building it."""
    source = spec.model
    if isinstance(source, TransformerModel):
        c = source.transformer
        d_head = c.d_head or (c.d_model // c.n_heads)
        return Dims(c.n_layers, c.d_model, c.n_heads, d_head, c.d_mlp or 4 * c.d_model, c.d_vocab, c.n_ctx, c.attn_only)
    if isinstance(source, CheckpointModel):
        from runner.models.checkpoint import read_config

        c = read_config(resolve_path(source.checkpoint, base_dir))["config"]
        tokens_per_step = 3 if c["architecture"] == "decision_transformer" else 2
        n_ctx = c["mission_length"] + tokens_per_step * c["context"] - 1
        return Dims(c["n_layers"], c["d_model"], c["n_heads"], c["d_model"] // c["n_heads"],
                    c.get("d_mlp") or 4 * c["d_model"], 7, n_ctx)
    raise TypeError(f"unknown model source {type(source).__name__}")


def is_agent(spec: Spec) -> bool:
    """Whether the spec's model is a gridworld agent (a checkpoint) rather than a token model."""
    return isinstance(spec.model, CheckpointModel)


def data_shape(data: Any, spec: Spec, dims: Dims | None = None) -> tuple[int | None, int]:
    """(batch, length) of the model's input; agents read windows of their own n_ctx."""
    if isinstance(data, TokensData):
        return len(data.tokens), len(data.tokens[0])
    if isinstance(data, (TrajectoryData, FileData)):
        return None, (dims or model_dims(spec)).n_ctx
    return data.random_tokens.batch, data.random_tokens.length


def check_point(spec: Any, base_dir: Path) -> Iterator[tuple[tuple, str]]:
    """Yield (spec path, message) for every model-dependent problem of one resolved point."""
    if isinstance(spec, TrainSpec):
        yield from _check_agent_data(spec.data, ("data",), base_dir, spec.seed)
        return
    if isinstance(spec.model, RunModel):  # not expanded: its train run does not exist yet (validate only)
        return
    if isinstance(spec.model, TransformerModel):
        c = spec.model.transformer
        if c.d_head is None and c.d_model % c.n_heads:
            yield ("model", "transformer", "n_heads"), (
                f"n_heads ({c.n_heads}) must divide d_model ({c.d_model}), or give d_head")
            return
    try:
        dims = model_dims(spec, base_dir)
    except ValueError as exc:  # a missing or corrupt checkpoint
        yield ("model", "checkpoint"), str(exc)
        return
    agent_data = isinstance(spec.data, (TrajectoryData, FileData))
    if is_agent(spec) != agent_data:
        yield ("data",), ("an agent reads trajectories (data: {trajectories: ...} or {file: ...npz})" if is_agent(spec)
                          else "a token model reads tokens (data: {tokens: ...} or {random_tokens: ...})")
        return
    if agent_data:
        yield from _check_agent_data(spec.data, ("data",), base_dir, spec.seed)
    else:
        yield from _check_tokens(spec.data, ("data",), dims, spec)
    _, length = data_shape(spec.data, spec, dims)
    iv = spec.intervention
    if iv is not None:
        try:
            site = resolve_site(iv.hook, iv.layer, dims)
        except SiteError as exc:
            yield ("intervention", exc.field if exc.field == "hook" or iv.layer is not None else "hook"), str(exc)
            return
        if iv.head is not None:
            if not site.has_heads:
                yield ("intervention", "head"), f"hook {site.name} has no heads; head applies to {', '.join(HEAD_HOOKS)}"
            elif iv.head >= dims.n_heads:
                yield ("intervention", "head"), f"head {iv.head} is out of range: the model has {dims.n_heads} heads (0..{dims.n_heads - 1})"
        try:
            position_indices(iv.position, length)
        except ValueError as exc:
            yield ("intervention", "position"), str(exc)
        yield from _check_vector(iv, site, dims, base_dir, spec)
    for i, metric in enumerate(spec.metrics):
        if metric.kind in AGENT_METRICS and not is_agent(spec):
            yield ("metrics", i), f"metric {metric.kind!r} measures agents; a token model has logits, probs, logit_diff, kl"
        if metric.kind in TOKEN_METRICS and is_agent(spec):
            yield ("metrics", i), f"metric {metric.kind!r} measures token models; an agent has action_logits, action_probs, kl"
        for t in getattr(metric, "tokens", []):
            if t >= dims.d_vocab:
                yield ("metrics", i), f"token id {t} is out of range for d_vocab {dims.d_vocab}"


def _check_agent_data(data: Any, path: tuple, base_dir: Path, seed: int) -> Iterator[tuple[tuple, str]]:
    if isinstance(data, TrajectoryData):
        from runner.envs.trajectories import check_env

        message = check_env(data.trajectories.env, data.trajectories.policy)
        if message:
            yield path + ("trajectories", "env"), message
    else:
        file = resolve_path(data.file, base_dir)
        if not file.is_file():
            yield path + ("file",), f"trajectory file not found: {file}"
            return
        from runner.envs.trajectories import Trajectories

        try:
            Trajectories.load_npz(file)
        except ValueError as exc:
            yield path + ("file",), str(exc)


def _check_tokens(data: Any, path: tuple, dims: Dims, spec: Spec) -> Iterator[tuple[tuple, str]]:
    _, length = data_shape(data, spec)
    if length > dims.n_ctx:
        where = path + (("tokens",) if isinstance(data, TokensData) else ("random_tokens", "length"))
        yield where, f"sequences of length {length} exceed the model's context n_ctx={dims.n_ctx}"
    if isinstance(data, TokensData):
        top = max(max(row) for row in data.tokens)
        if top >= dims.d_vocab:
            yield path + ("tokens",), f"token id {top} is out of range for d_vocab {dims.d_vocab}"


def _check_vector(iv: Any, site: Any, dims: Dims, base_dir: Path, spec: Spec) -> Iterator[tuple[tuple, str]]:
    try:
        width = site.width(dims)
    except ValueError as exc:
        yield ("intervention", "hook"), f"cannot steer: {exc}"
        return
    source = iv.vector
    if hasattr(source, "file"):
        path = ("intervention", "vector", "file")
        file = resolve_path(source.file, base_dir)
        if not file.is_file():
            yield path, f"vector file {'is a directory' if file.is_dir() else 'not found'}: {file}"
            return
        try:
            shape = npy_shape(file)
        except (OSError, ValueError) as exc:
            yield path, f"not a readable .npy file: {file} ({exc})"
            return
        if shape != (width,):
            yield path, f"vector has shape {shape}, but {site.name} needs a vector of length {width}"
    elif hasattr(source, "contrast"):
        for side in ("positive", "negative"):
            yield from _check_tokens(getattr(source.contrast, side), ("intervention", "vector", "contrast", side), dims, spec)


def resolve_path(path: str, base_dir: Path | str) -> Path:
    """A spec path resolved against the directory runner was started in."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def npy_shape(file: Path) -> tuple[int, ...]:
    """The array shape a .npy file declares in its header (the data is not read)."""
    with open(file, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(shape)


def run_id_of(loaded: LoadedSpec) -> str:
    """The content id of a run: its spec less what cannot change the numbers (sweep order included)."""
    identity = loaded.spec.model_dump(mode="json", exclude=IDENTITY_EXCLUDES)
    identity["sweep"] = [[key, axis] for key, axis in loaded.spec.sweep.items()]  # order names the dims
    return content_id(identity)
