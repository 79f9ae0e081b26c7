"""Data sources -> model inputs: token id tensors, or agent windows over trajectories."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import dataclasses
import re

from runner.spec.models import FileData, SameData, TokensData, TrajectoryData


def make_tokens(data: Any, d_vocab: int, default_seed: int, device: str = "cpu") -> torch.Tensor:
    """Token ids [batch, length] for a tokens or random_tokens source (numpy-seeded, so portable)."""
    if isinstance(data, TokensData):
        array = np.asarray(data.tokens, dtype=np.int64)
    else:
        opts = data.random_tokens
        rng = np.random.default_rng(default_seed if opts.seed is None else opts.seed)
        array = rng.integers(0, d_vocab, size=(opts.batch, opts.length), dtype=np.int64)
    return torch.from_numpy(array).to(device)


def make_inputs(data: Any, model: Any, dims: Any, base_dir: str | Path, default_seed: int, device: str = "cpu",
                base_data: Any = None) -> Any:
    """What ``model`` reads for a data source: token ids, or one agent window ending at every step.

    ``same: {...}`` sources change ``base_data`` (the spec's own data): its RTG target,
    a mission word, or one cell of every observation.
    """
    if isinstance(data, SameData):
        return _agent_inputs(base_data, model, base_dir, default_seed, device, data.same)
    if isinstance(data, (TrajectoryData, FileData)):
        return _agent_inputs(data, model, base_dir, default_seed, device)
    return make_tokens(data, dims.d_vocab, default_seed, device)


def _agent_inputs(data: Any, model: Any, base_dir: str | Path, default_seed: int, device: str, same: Any = None) -> Any:
    from runner.models.windows import windows
    from runner.sources import load_trajectories

    traj = load_trajectories(data, base_dir, default_seed)
    target = getattr(getattr(data, "trajectories", None), "target_return", None)
    if same is not None:
        traj = changed(traj, same)
        target = same.target_return if same.target_return is not None else target
    rtg = None
    if target is not None:  # the target less what each episode had received before the step
        received = np.repeat(traj.returns, traj.episode_lengths) - traj.returns_to_go()
        rtg = (target - received).astype(np.float32)
    return windows(traj, np.arange(len(traj.actions)), model.config, rtg=rtg).to(device)


def changed(traj: Any, same: Any) -> Any:
    """Trajectories with a mission word swapped and/or one cell of every observation edited."""
    missions, images = traj.missions, traj.images
    if same.swap_word:
        old, new = same.swap_word
        missions = np.array([re.sub(rf"\b{re.escape(old)}\b", new, str(m)) for m in missions], dtype=str)
    if same.edit_cell:
        from runner.envs.encoding import edit_cell

        e = same.edit_cell
        images = edit_cell(images, e.row, e.col, object=e.object, colour=e.colour)
    return dataclasses.replace(traj, missions=missions, images=images)


def batch_size(inputs: Any) -> int:
    """Samples in a batch of inputs of either kind."""
    return inputs.shape[0] if isinstance(inputs, torch.Tensor) else len(inputs)


def repeat_rows(inputs: Any, n: int) -> Any:
    """The batch stacked ``n`` times along its first dim (one copy per folded grid point)."""
    return inputs.repeat(n, 1) if isinstance(inputs, torch.Tensor) else inputs.repeat(n)

