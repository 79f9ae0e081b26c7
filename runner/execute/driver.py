"""Run a Plan: pick an executor, skip finished points, write shards, merge the result.

>>> from runner.plan import compile_plan
>>> outcome = execute(compile_plan("specs/tiny.yaml"), log=lambda message: None)
>>> outcome.dataset.logits.dims, outcome.failed
(('coefficient', 'layer', 'sample', 'vocab'), [])
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.console import detail, say
from runner.errors import EnvironmentFault, RunnerError
from runner.execute.progress import Progress
from runner.plan import Plan
from runner.results.files import write_netcdf
from runner.results.folder import RunFolder
from runner.results.provenance import shard_stamp


@dataclass
class Outcome:
    """What a run produced: the merged dataset, where it is, and the coordinates and message of each failed point."""

    dataset: Any
    folder: RunFolder
    failed: list[tuple[dict[str, Any], str]]


def make_executor(kind: str, plan: Plan, address: str | None) -> Any:
    """The executor named ``kind`` (local or ray), not yet entered (Ray takes the files to ship to workers)."""
    if kind == "local":
        from runner.execute.local import LocalExecutor

        return LocalExecutor(plan.spec.execution)
    if kind == "ray":
        from runner.execute.ray_executor import RayExecutor

        return RayExecutor(plan.spec.execution, address, plan.input_files())
    raise RunnerError(f"unknown executor {kind!r}: expected local or ray")


def execute(plan: Plan, *, executor: str | None = None, address: str | None = None,
            fresh: bool = False, log=None, ready=None) -> Outcome:
    """Run the plan's unfinished points and write ``result.nc``; finished shards are kept and reused.

    In order, each step before anything is written in the run folder: the folder is
    checked (writable, runner's own or empty, the same spec unless ``fresh``) and
    locked (a second run on it is refused at once); the checks that waited for
    demonstrations run (generating them); the executor checks its resources. Then
    the points run and their shards land one by one. A fault of the machine (disk
    full, out of memory, cluster lost) raises EnvironmentFault (exit 3) and keeps
    every finished shard.

    ``log`` takes each progress message (default: said on stderr); ``ready`` is called
    with the RunFolder once it is runner's and the run may write there (the CLI opens
    the folder's run.log then).
    """
    log = log or say
    kind = executor or plan.spec.execution.executor
    address = address or plan.spec.execution.address or (os.environ.get("RAY_ADDRESS") if kind == "ray" else None)
    detail(f"executor {kind} ({'asked for' if executor else 'execution.executor'})"
           + (f" at {address}" if address else "") + f"; run folder {plan.out_dir}")
    folder = RunFolder(plan.out_dir)
    folder.check(plan.run_id, fresh, plan.loaded.text)
    ready = ready or (lambda folder: None)
    finished = None if fresh else _finished(plan, folder)
    if finished is not None:  # nothing to compute: no torch, no ray, no shard read
        ready(folder)
        log(f"{folder.root}: all {len(plan)} points already done")
        return _outcome(finished, plan, folder)
    with folder.locked():
        plan.check_deferred()
        return _run_guarded(plan, folder, kind, address, fresh, log, ready)


def _run_guarded(plan: Plan, folder: RunFolder, kind: str, address: str | None, fresh: bool, log,
                 ready) -> Outcome:
    """``_run``, with the machine's faults said as such."""
    try:
        return _run(plan, folder, kind, address, fresh, log, ready)
    except MemoryError:
        raise EnvironmentFault(f"out of memory; the finished points are kept in {folder.root}",
                               hint="Rerun the same command to resume (fewer points_per_task use less memory).") from None
    except OSError as exc:
        raise EnvironmentFault(f"stopped by the machine: {exc.strerror or exc} ({exc.filename or folder.root}); "
                               f"the finished points are kept in {folder.root}",
                               hint="Free the resource and rerun the same command to resume.") from None


DONE = ("ok", "not_applicable")   # statuses of points that need no (more) computing


def _run(plan: Plan, folder: RunFolder, kind: str, address: str | None, fresh: bool, log, ready) -> Outcome:
    from runner.results.merge import Merger

    merger = Merger(plan)
    if not fresh:  # what earlier runs finished (a damaged shard is moved aside: its points run again)
        state = folder.read_shards(repair=True, each=merger.add)
        for path, why in state.damaged:
            log(f"shard {path.name} is damaged ({why}): moved aside as {path.name}.damaged; its points run again")
        detail(f"read {len(state.shards)} shards of earlier runs")
    remaining = [int(i) for i in np.flatnonzero(~np.isin(merger.status, DONE))]
    if not remaining:  # only the merge is left: no executor, no torch
        _prepare(plan, folder, fresh, log, ready)
        log(f"{folder.root}: {len(plan)} of {len(plan)} points already done; merging their shards")
        return _finish(merger, kind, plan, folder)
    with make_executor(kind, plan, address) as ex:
        _prepare(plan, folder, fresh, log, ready)
        applicable = len(plan) - len(plan.not_applicable)
        if len(remaining) < applicable:
            log(f"resuming {folder.root}: {applicable - len(remaining)} of {applicable} points already done")
        log(f"running {plural(len(remaining), 'point')} in {plural(plan.n_tasks(len(remaining)), 'task')} "
            f"on {ex.describe()}")
        _compute(plan, folder, ex, remaining, merger)
    return _finish(merger, kind, plan, folder)


def _compute(plan: Plan, folder: RunFolder, ex: Any, remaining: list[int], merger: Any) -> None:
    """Run the tasks of the ``remaining`` points, writing each one's shard (and files) as it lands."""
    from runner.results.shards import Packer

    stamp = shard_stamp(plan)
    progress, packer = Progress(len(remaining)), Packer(folder.shard_dir, stamp)
    since = time.monotonic()
    for task, result in ex.map(plan.tasks(remaining)):
        folder.write_files(result.files)  # before the shard: a finished shard implies its files exist
        path = folder.write_shard(task.id, result.dataset, stamp)
        merger.add(result.dataset)
        failed = int((result.dataset["status"].values != "ok").sum())
        node = result.dataset.attrs.get("node")
        detail(f"task {task.id}: {plural(len(task.points), 'point')}, {failed} failed, landed after "
               f"{time.monotonic() - since:.2f}s from {node or result.dataset.attrs.get('device', '?')} -> {path.name}")
        waiting = sum(map(len, packer.waiting.values()))
        packer.add(path, result.dataset)
        packed = waiting + 1 - sum(map(len, packer.waiting.values()))
        if packed > 1:
            detail(f"packed {packed} small shards into one file")
        progress.update(len(task.points), failed, node)
        since = time.monotonic()


def _prepare(plan: Plan, folder: RunFolder, fresh: bool, log, ready) -> None:
    for path in folder.prepare(plan, fresh=fresh):
        log(f"removed a temporary file a stopped run left: {path}")
    ready(folder)


def _finish(merger: Any, kind: str, plan: Plan, folder: RunFolder) -> Outcome:
    from runner.metrics.base import without_unused
    from runner.metrics.direction import with_vector_cosine

    metrics = getattr(plan.spec, "metrics", [])
    dataset = without_unused(with_vector_cosine(merger.dataset(kind), metrics, folder.vectors_dir), metrics)
    write_netcdf(dataset, folder.result_file)
    return _outcome(dataset, plan, folder)


def _finished(plan: Plan, folder: RunFolder) -> Any:
    """The result of a run that has nothing left to compute (every point ok, the same ids), else None."""
    if not folder.result_file.is_file():
        return None
    import xarray as xr

    try:
        with xr.open_dataset(folder.result_file) as ds:
            if ds.attrs.get("run_id") != plan.run_id or "point_id" not in ds:
                return None
            ids = ds["point_id"].values.reshape(-1).tolist()
            if ids != plan.ids or not (ds["status"].values == "ok").all():
                return None
            return ds.load()
    except Exception:  # an unreadable result is written again
        return None


def _outcome(dataset: Any, plan: Plan, folder: RunFolder) -> Outcome:
    status = dataset["status"].values.reshape(-1)
    errors = dataset["error"].values.reshape(-1)
    failed = [(plan.coords_of(int(i)), str(errors[i])) for i in np.flatnonzero(~np.isin(status, DONE))]
    return Outcome(dataset, folder, failed)


def plural(n: int, noun: str) -> str:
    """``1 point``, ``2 points``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
