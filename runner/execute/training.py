"""The training task: each grid point of a train spec is one agent, trained, evaluated and returned as files."""
from __future__ import annotations

from typing import Any

from runner.execute.records import Record, Records
from runner.results.folder import model_file, point_name


def train_points(points: tuple[Any, ...], base_dir: str, device: str, records: Records,
                 files: dict[str, bytes]) -> None:
    """Train every point into ``records``; each agent's checkpoint goes into ``files``."""
    from runner.models.checkpoint import checkpoint_files
    from runner.ppo import train_ppo
    from runner.train import train_point, training_record

    for point in points:
        try:
            label = point.spec.name + (f" {point_name(point.coords)}" if point.coords else "")
            train = train_ppo if point.spec.trains == "ppo" else train_point
            ds, agent = train(point.spec, point.seed, base_dir, device, label)
            checkpoint = checkpoint_files(agent, training_record(point.seed, device))
        except Exception:
            records.fail(point)
            continue
        records.ok(point, Record.of_dataset(ds))
        for name, data in checkpoint.items():
            files[model_file(point.coords, name)] = data
