"""The task function both executors run: a chunk of grid points -> a shard Dataset over ``point`` and files.

A measure task (intervene specs) runs in ``runner.execute.measure``; a training
task (train specs) in ``runner.execute.training``. Either records a point that
raises as failed, with its message, and finishes the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskResult:
    """What a task sends back: its shard dataset and files for the run folder (checkpoints, vectors)."""

    dataset: Any
    files: dict[str, bytes] = field(default_factory=dict)


def run_task(task: Any) -> TaskResult:
    """Run every point of a task; its dataset is over dim ``point`` with ``status``, ``error`` and ``point_id``."""
    import torch

    from runner.execute.records import Records
    from runner.models.devices import device_name, pick_device

    torch.set_num_threads(task.threads)  # a reused worker keeps its first thread count otherwise
    device = pick_device(task.gpus)
    records, files = Records(task.points), {}
    if task.points[0].spec.kind == "train":
        from runner.execute.training import train_points

        train_points(task.points, task.base_dir, device, records, files)
    else:
        from runner.execute.measure import measure_points

        measure_points(task.points, task.base_dir, device, records, files)
    dataset = records.dataset()
    dataset.attrs = {"device": device_name(device)}
    return TaskResult(dataset, files)


def failed_result(task: Any, message: str) -> TaskResult:
    """A shard recording every point of a task as failed (the worker itself died)."""
    from runner.execute.records import Failure, Records

    records = Records(task.points)
    for point in task.points:
        records.fail(point, Failure(message))
    return TaskResult(records.dataset())
