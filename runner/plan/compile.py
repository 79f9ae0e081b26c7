"""Compiling a spec into a Plan: the run's axes, every point checked and identified, nothing written.

Each point is validated and checked, and its content id computed, one at a time
(a point's spec is not kept: the plan stores ids and rebuilds a point when a task
needs it), so memory stays flat in the number of points. Model-dependent checks
are made once per distinct combination of what they can see: sweeping a
coefficient does not check the same address again.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from pydantic import ValidationError

from runner.errors import RunnerError
from runner.ids import canonical_json, content_id
from runner.plan.checks import DataAccess, Inapplicable, check_point
from runner.plan.facts import inputs_read
from runner.plan.points import Plan, _replaced
from runner.plan.problems import at_point, locate, unique
from runner.results.folder import RunFolder
from runner.spec import IDENTITY_EXCLUDES, LoadedSpec, TrainSpec, check_grid_size, load_spec
from runner.spec.explain import problems_from
from runner.spec.sweep import Axis, Member

# What runner.train puts in a train run's result, and what every result holds: no sweep dim may take these names.
TRAIN_NAMES = ("step", "episode", "loss", "success", "return", "episode_length", "random_success", "random_return",
               "update", "eval_update", "eval_success", "eval_return", "env_steps", "train_return", "train_success",
               "train_episode_length", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
               "explained_variance", "learning_rate")
RESULT_VARIABLES = ("status", "error", "point_id")


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
    plan = Plan(loaded, axes, len(run_axes), run_folders, base,
                Path(out).resolve() if out else RunFolder.named(loaded.spec.name, base).root, notes=notes)
    _identify(plan, DataAccess(base, only_cached=True))
    if plan.deferred:
        notes.append("demonstrations not generated yet: the checks that read them (contrast selections, swapped "
                     "words, patch sources) run when `runner run` has generated them, before any point runs")
    return plan


def _identify(plan: Any, access: DataAccess) -> None:
    """Validate and check every point, and record its content id and what it reads (files and their digests).

    Points that differ only in fold-free values (a coefficient, a target return) share a
    structure: it is validated, its files digested and its identity serialised once, and each
    point's id is that text with its own numbers put in (the same id as serialising the point).
    """
    loaded, problems, checked, inapplicable = plan.loaded, [], {}, {}
    free = plan._free_axes
    ids = np.empty(len(plan), dtype=object)
    for flat, choices in _structures(plan):
        try:
            spec = plan.spec_of(tuple(int(i) for i in choices[0]))
        except ValidationError as exc:  # a combination of valid values that is invalid as a whole
            coords = plan.coords_of(int(flat[0]))
            problems += [at_point(p, coords) for p in problems_from(exc, loaded.located, loaded.cls)]
            continue
        files, generated = inputs_read(spec, access.base_dir)
        plan.reads.update(files)
        plan.generated.update(generated)
        ids_of = _Identities(plan, spec, {**files, **generated}, free)
        for index, choice in zip(flat.tolist(), map(tuple, choices.tolist())):
            key = ids_of.check_key(choice)
            if key not in checked:
                missed = access.missed
                found = list(check_point(plan.spec_of(choice) if free else spec, access))
                checked[key] = (found, access.missed != missed)
            found, deferred = checked[key]
            located = [locate(loaded, plan.axes, choice, path, message, plan.coords_of(index))
                       for path, message in found]
            if found and all(isinstance(message, Inapplicable) for _, message in found):
                inapplicable[index] = located
            else:
                problems += located
            ids[index] = ids_of.id(choice)
            if deferred:
                plan.deferred.append(index)
    if len(inapplicable) == len(plan):  # an address no model of the grid has: the spec is wrong
        problems += [p for located in inapplicable.values() for p in located]
    if problems:
        raise RunnerError(unique(problems))
    plan.not_applicable = sorted(inapplicable)
    plan.ids = ids.tolist()
    plan.deferred.sort()


def _structures(plan: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each structure (a choice on every fold axis): its points' flat indices and their choices on every axis."""
    shape, free, fold = plan.shape, plan._free_axes, plan._fold_axes
    free_grid = [g.ravel() for g in np.indices(tuple(shape[a] for a in free))] if free else []
    n_free = len(free_grid[0]) if free else 1
    for structure in itertools.product(*(range(shape[a]) for a in fold)):
        multi: list[Any] = [None] * len(shape)
        for a, i in zip(fold, structure):
            multi[a] = np.full(n_free, i)
        for a, g in zip(free, free_grid):
            multi[a] = g
        flat = np.ravel_multi_index(multi, shape) if shape else np.zeros(1, dtype=np.int64)
        yield flat, (np.stack(multi, axis=1) if shape else np.zeros((1, 0), dtype=np.int64))


class _Identities:
    """The content ids of a structure's points, from its identity text with each point's numbers put in."""

    def __init__(self, plan: Any, spec: Any, reads: dict[str, str], free: list[int]):
        self.plan, self.reads = plan, reads
        self.members = [(a, m) for a in free for m in plan.axes[a].members]
        marked = spec
        for n, (_, member) in enumerate(self.members):
            marked = _replaced(marked, member.path, _MARK.format(n))
        identity = marked.model_dump(mode="json", exclude=IDENTITY_EXCLUDES, exclude_defaults=True, warnings=False)
        text = canonical_json([identity, reads] if reads else identity)
        self.structure = hashlib.sha256(text.encode()).hexdigest()  # with the marks: the same for every point
        self.parts = re.split('"' + _MARK.format(r"(\d+)") + '"', text)  # text, mark number, text, ...
        self.defaults = [_default(spec, member.path) for _, member in self.members]

    def check_key(self, choice: tuple[int, ...]) -> tuple:
        """What the checks can see of a point: its structure and its fold-free values other than the coefficient."""
        return (self.structure, *(m.values[choice[a]] for a, m in self.members if m.path != ("intervention", "coefficient")))

    def id(self, choice: tuple[int, ...]) -> str:
        if not self.members:
            return self.structure[:12]
        values = [float(m.values[choice[a]]) for a, m in self.members]
        if any(v == d for v, d in zip(values, self.defaults)):  # a default is left out of the identity: serialise
            point = self.plan.spec_of(choice)
            identity = point.model_dump(mode="json", exclude=IDENTITY_EXCLUDES, exclude_defaults=True)
            return content_id([identity, self.reads] if self.reads else identity)
        # a finite float's JSON text is its repr (json.dumps uses float.__repr__)
        text = "".join(part if i % 2 == 0 else repr(values[int(part)]) for i, part in enumerate(self.parts))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


_MARK = "@runner-fold-free-{}@"  # stands for a point's own number in its structure's identity text


def _default(spec: Any, path: tuple) -> Any:
    parent = spec
    for part in path[:-1]:
        parent = getattr(parent, part)
    return type(parent).model_fields[path[-1]].default


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
    folders = [folder.model_dir(train.coords_of(i)) for i in range(len(train))]
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
    taken |= {v: f"a variable of metric {m.kind!r}" for m in metrics for v in m.produces()}
    if isinstance(loaded.spec, TrainSpec):
        taken |= {d: "a dim or variable of train results" for d in TRAIN_NAMES}
    taken |= {v: "a variable of every result" for v in RESULT_VARIABLES}
    for axis in loaded.axes:
        for member in axis.members:
            if member.name in taken:
                raise RunnerError(loaded.located.problem(
                    member.where, f"dim name {member.name!r} clashes with {taken[member.name]}; "
                                  "rename the axis with {values: [...], name: ...}", key=True))
