"""Trajectory data sources -> Trajectories: generated once and cached, or read from an .npz. No torch."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.checks import resolve_path
from runner.envs.trajectories import Trajectories, cache_key, cached
from runner.spec.models import FileData


_LOADED: dict[tuple[str, int], Trajectories] = {}


def _load_npz(path: Path) -> Trajectories:
    """An .npz read once per process while the file is unchanged (a task reads its data many times)."""
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = Trajectories.load_npz(path)
    return _LOADED[key]


def load_trajectories(data: Any, base_dir: str | Path, default_seed: int) -> Trajectories:
    """The demonstrations a data source names: generated once and cached, or read from an .npz."""
    if isinstance(data, FileData):
        path = resolve_path(data.file, base_dir)
        return _load_npz(path) if path.is_file() else Trajectories.load_npz(path)
    t = data.trajectories
    seed = default_seed if t.seed is None else t.seed
    cache_dir = Path(base_dir) / "results" / ".cache" / "trajectories"
    path = cache_dir / f"{cache_key(t.env, t.policy, t.episodes, seed, t.max_steps, t.epsilon)}.npz"
    if path.is_file():
        try:
            return _load_npz(path)
        except ValueError:
            pass  # damaged: cached() regenerates it
    print(f"  generating {t.episodes} {t.env} episodes with the {t.policy} policy (cached in {cache_dir})",
          file=sys.stderr, flush=True)
    return cached(t.env, t.policy, t.episodes, seed, t.max_steps, t.epsilon, cache_dir=cache_dir)
