"""Checkpoints: ``model.safetensors`` + ``config.json`` in one folder. No pickle is ever loaded.

``read_config`` is torch-free, so ``runner validate`` can check an address
against a checkpoint's sizes without loading its weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "runner-agent/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or corrupt."""


def read_config(folder: str | Path) -> dict[str, Any]:
    """The agent config stored in a checkpoint folder (raises CheckpointError with the reason)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise CheckpointError(f"checkpoint {folder} has no {name}")
    try:
        data = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder}: {CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("config"), dict):
        raise CheckpointError(f"checkpoint {folder}: {CONFIG} is not a runner agent config (format {FORMAT})")
    try:  # reads the header only: a truncated or foreign file fails here, before any run starts
        from safetensors import safe_open

        with safe_open(str(folder / WEIGHTS), framework="numpy") as f:
            if not list(f.keys()):
                raise ValueError("it holds no tensors")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {folder}: {WEIGHTS} is corrupt ({str(exc).splitlines()[0]})") from None
    return data


def checkpoint_files(agent: Any) -> dict[str, bytes]:
    """An agent's checkpoint as file name -> bytes (a Ray worker returns these; the driver writes them)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in agent.state_dict().items()}
    config = json.dumps({"format": FORMAT, "config": agent.config.to_json()}, indent=2, sort_keys=True)
    return {WEIGHTS: save(state), CONFIG: config.encode()}


def save_agent(agent: Any, folder: str | Path) -> Path:
    """Write ``agent``'s weights and config into ``folder`` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in checkpoint_files(agent).items():
        (folder / name).write_bytes(data)
    return folder


def load_agent(folder: str | Path, device: str = "cpu") -> Any:
    """The agent stored in ``folder``, weights bit-identical to those saved, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from runner.models.agent import Agent, AgentConfig

    data = read_config(folder)
    try:
        config = AgentConfig.from_json(data["config"])
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {folder}: {CONFIG} does not describe an agent ({exc})") from None
    try:
        state = load_file(str(Path(folder) / WEIGHTS), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder}: {WEIGHTS} is corrupt ({exc})") from None
    agent = Agent(config)
    try:
        agent.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint {folder}: weights do not fit its config ({first})") from None
    return agent.to(device).eval()
