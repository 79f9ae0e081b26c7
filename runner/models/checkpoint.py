"""Checkpoints: ``model.safetensors`` + ``config.json`` in one folder. No pickle is ever loaded.

``read_config`` is torch-free, so ``runner validate`` can check an address
against a checkpoint's sizes without loading its weights. A config is data from
a file, so it is validated to the end (types, bounds, the env id) before any
model is sized from it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMAT = "runner-agent/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
MAX_PARAMETERS = 500_000_000  # a config that sizes a bigger agent is refused before anything is allocated


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or corrupt."""


class AgentConfigFile(BaseModel):
    """The ``config`` of a checkpoint's config.json, with the bounds a runner agent can have."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    architecture: Literal["behavior_clone", "decision_transformer"]
    n_layers: int = Field(ge=1, le=128)
    d_model: int = Field(ge=1, le=16384)
    n_heads: int = Field(ge=1, le=1024)
    context: int = Field(ge=1, le=4096)
    mission_length: int = Field(ge=0, le=256)
    max_timestep: int = Field(ge=1, le=1_000_000)
    env_id: str = ""
    d_mlp: int | None = Field(None, ge=1, le=131072)
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = "gelu"
    init_seed: int = Field(0, ge=0)
    rtg_scale: float = Field(1.0, gt=0)
    words: list[str] = Field(min_length=1, max_length=10000)
    algorithm: Literal["bc", "dt", "ppo"] | None = None
    value_head: bool = False
    return_range: list[float] | None = Field(None, min_length=2, max_length=2)

    @field_validator("env_id")
    @classmethod
    def _known_env(cls, env_id: str) -> str:
        from runner.envs.make import check_env

        problem = check_env(env_id) if env_id else None
        if problem:
            raise ValueError(problem)
        return env_id

    @model_validator(mode="after")
    def _sizes(self) -> "AgentConfigFile":
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        d_mlp = self.d_mlp or 4 * self.d_model
        tables = 984 + self.max_timestep + len(self.words) + self.mission_length + 16
        count = self.d_model * tables + self.n_layers * (4 * self.d_model ** 2 + 2 * self.d_model * d_mlp)
        if count > MAX_PARAMETERS:
            raise ValueError(f"it sizes an agent of about {count:,} parameters, more than runner builds "
                             f"({MAX_PARAMETERS:,})")
        return self


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
    try:
        data["config"] = AgentConfigFile.model_validate(data["config"]).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise CheckpointError(f"checkpoint {folder}: {CONFIG}: {where}: {first['msg'].replace('Value error, ', '')} "
                              f"(got {first.get('input')!r})"[:400]) from None
    try:  # reads the header only: a truncated or foreign file fails here, before any run starts
        from safetensors import safe_open

        with safe_open(str(folder / WEIGHTS), framework="numpy") as f:
            if not list(f.keys()):
                raise ValueError("it holds no tensors")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {folder}: {WEIGHTS} is corrupt ({str(exc).splitlines()[0]})") from None
    return data


def checkpoint_files(agent: Any, trained: dict[str, Any] | None = None) -> dict[str, bytes]:
    """An agent's checkpoint as file name -> bytes (a Ray worker returns these; the driver writes them).

    ``trained``: how it was trained (seed, torch thread count, device, torch version), kept in config.json
    beside the config: the same spec gives a bit-identical checkpoint only with the same of these.
    """
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in agent.state_dict().items()}
    record = {"format": FORMAT, "config": agent.config.to_json()} | ({"trained": trained} if trained else {})
    config = json.dumps(record, indent=2, sort_keys=True)
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
