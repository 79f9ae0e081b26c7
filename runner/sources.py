"""Trajectory data sources -> Trajectories: generated once and cached, or read from an .npz. No torch."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.checks import resolve_path
from runner.envs.trajectories import Trajectories, cache_key, cached
from runner.spec.models import FileData


def load_trajectories(data: Any, base_dir: str | Path, default_seed: int) -> Trajectories:
    """The demonstrations a data source names: generated once and cached, or read from an .npz."""
    if isinstance(data, FileData):
        return Trajectories.load_npz(resolve_path(data.file, base_dir))
    t = data.trajectories
    seed = default_seed if t.seed is None else t.seed
    cache_dir = Path(base_dir) / "results" / ".cache" / "trajectories"
    if not (cache_dir / f"{cache_key(t.env, t.policy, t.episodes, seed, t.max_steps, t.epsilon)}.npz").is_file():
        print(f"  generating {t.episodes} {t.env} episodes with the {t.policy} policy (cached in {cache_dir})",
              file=sys.stderr, flush=True)
    return cached(t.env, t.policy, t.episodes, seed, t.max_steps, t.epsilon, cache_dir=cache_dir)
