"""Spec sources -> what a task computes with: models (built or loaded once per process), token ids, agent windows."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from runner.ids import content_id
from runner.plan.facts import pretrained_folder, token_array, trajectories
from runner.spec import resolve_path

_MODELS: dict[tuple, Any] = {}


def load_model(source: Any, base_dir: str | Path = ".", device: str = "cpu") -> Any:
    """The model a spec's model source names, cached for the life of the process (a Ray worker's too).

    A transformer config builds a TransformerBridge (same init_seed, same weights); a
    checkpoint loads an agent (again when its weights file changes); a pretrained model boots
    a TransformerBridge from its folder (again when its config or weights change). Models are built
    outside inference mode, so that the cached model also serves code that needs gradients.
    """
    with torch.inference_mode(False):
        return _load_model(source, base_dir, device)


def _load_model(source: Any, base_dir: str | Path, device: str) -> Any:
    if source.kind == "transformer":
        key = (content_id(source.model_dump(mode="json")), device)
        if key not in _MODELS:
            from runner.models.transformer import boot_native_body

            _MODELS[key] = boot_native_body(**source.transformer.model_dump(), device=device).eval()
        return _MODELS[key]
    if source.kind == "checkpoint":
        from runner.models.checkpoint import WEIGHTS, load_agent

        folder = resolve_path(source.checkpoint, base_dir)
        weights = folder / WEIGHTS
        key = (str(folder.resolve()), weights.stat().st_mtime_ns if weights.exists() else 0, device)
        if key not in _MODELS:
            _MODELS[key] = load_agent(folder, device)
        return _MODELS[key]
    if source.kind == "pretrained":
        from runner.models.pretrained import load, model_files

        folder = pretrained_folder(source, base_dir, weights=True)
        key = (str(folder.resolve()), tuple((p.name, p.stat().st_mtime_ns) for p in model_files(folder)), device)
        if key not in _MODELS:
            _MODELS[key] = load(folder, device)
        return _MODELS[key]
    raise ValueError(f"a {source.kind} model source names several models; load one of its checkpoints")


def make_tokens(data: Any, d_vocab: int, default_seed: int, device: str = "cpu") -> torch.Tensor:
    """Token ids [batch, length] for a tokens or random_tokens source (numpy-seeded, so portable)."""
    return torch.from_numpy(token_array(data, d_vocab, default_seed)).to(device)


def make_inputs(data: Any, model: Any, base_dir: str | Path, default_seed: int, device: str = "cpu",
                base_data: Any = None) -> Any:
    """What ``model`` reads for a data source: token ids (text: by the model's tokenizer), or one agent window
    ending at every step (that the source's ``where`` keeps).

    ``same: {...}`` sources change ``base_data`` (the spec's own data): its RTG target,
    a mission word, or one cell of every observation.
    """
    if data.kind == "same":
        return _agent_inputs(base_data, model, base_dir, default_seed, device, data.same)
    if data.agent_data:
        return _agent_inputs(data, model, base_dir, default_seed, device)
    if data.kind == "text":  # the checks made sure the rows tokenize to one length
        from runner.models.pretrained import encode

        return torch.tensor(encode(model.tokenizer, data.text), dtype=torch.int64, device=device)
    return make_tokens(data, model.cfg.d_vocab, default_seed, device)


def _agent_inputs(data: Any, model: Any, base_dir: str | Path, default_seed: int, device: str,
                  same: Any = None) -> Any:
    from runner.envs.selection import selected_steps
    from runner.models.windows import windows

    traj = trajectories(data, base_dir, default_seed)
    steps = selected_steps(traj, data.where)  # before a change: the changed samples pair with the data's
    target = data.target_return
    if same is not None:
        cell = same.edit_cell.model_dump(exclude_none=True) if same.edit_cell else None
        traj = traj.changed(swap_word=same.swap_word, cell=cell)
        target = same.target_return if same.target_return is not None else target
    return windows(traj, steps, model.config, target_return=target).to(device)


def batch_size(inputs: Any) -> int:
    """Samples in a batch of inputs of either kind."""
    return inputs.shape[0] if isinstance(inputs, torch.Tensor) else len(inputs)


def stack(batches: list[Any]) -> Any:
    """Batches of inputs of either kind stacked along the sample dim."""
    if isinstance(batches[0], torch.Tensor):
        return torch.cat(batches)
    from runner.models.agent import AgentInputs

    return AgentInputs.cat(batches)
