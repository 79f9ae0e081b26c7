"""Facts about a spec's model and data, known without running anything: sizes, shapes, trajectories. No torch.

The plan checks a spec against these, and a task reads its data through them,
so that both see the same model and the same demonstrations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.models.sizes import ModelSizes
from runner.results.folder import trajectory_cache
from runner.spec import resolve_path


def model_sizes(source: Any, base_dir: str | Path) -> ModelSizes:
    """The sizes of a spec's model (a transformer config, or a checkpoint's config.json; no weights are read).

    Raises ``CheckpointError`` (a ValueError) for a missing or corrupt checkpoint.
    """
    if source.kind == "transformer":
        c = source.transformer
        return ModelSizes.of_transformer(c.n_layers, c.d_model, c.n_heads, c.d_vocab, c.n_ctx, c.d_head, c.d_mlp,
                                         c.attn_only)
    if source.kind == "checkpoint":
        from runner.models.checkpoint import read_config

        return ModelSizes.of_agent(read_config(resolve_path(source.checkpoint, base_dir))["config"])
    raise ValueError(f"a {source.kind} model source names several models: the plan expands it into checkpoints")


def data_shape(data: Any, sizes: ModelSizes) -> tuple[int | None, int]:
    """(batch, length) of what the model reads; agents read windows of their own length (batch: one per step)."""
    if data.kind == "tokens":
        return len(data.tokens), len(data.tokens[0])
    if data.kind == "random_tokens":
        return data.random_tokens.batch, data.random_tokens.length
    return None, sizes.n_ctx


def trajectories(data: Any, base_dir: str | Path, default_seed: int, only_cached: bool = False) -> Any:
    """The demonstrations a data source names: generated once and cached, or read from an .npz.

    With ``only_cached``, generated demonstrations that are not cached yet give None (nothing is generated
    or written: ``runner validate`` and ``runner plan`` write nothing).
    """
    from runner.envs.demos import demonstrations, read_trajectories

    if data.kind == "file":
        return read_trajectories(resolve_path(data.file, base_dir))
    t = data.trajectories
    seed = default_seed if t.seed is None else t.seed
    return demonstrations(t.env, t.policy, t.episodes, seed, t.max_steps, t.epsilon, trajectory_cache(base_dir),
                          only_cached=only_cached)
