"""Trajectories -> agent input windows: one window of ``context`` steps ending at each chosen step."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.envs.encoding import observation_indices
from runner.envs.vocab import encode_mission
from runner.models.agent import AgentConfig, AgentInputs


def mission_ids(missions: Any, config: AgentConfig) -> np.ndarray:
    """Word ids [n, mission_length] of each mission (empty when the agent has no instruction prefix)."""
    if not config.mission_length:
        return np.zeros((len(missions), 0), dtype=np.int64)
    return np.stack([encode_mission(str(m), config.mission_length) for m in missions])


def _window_steps(traj: Any, ends: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Step indices [n, k] of each window (padding repeats its last step) and which of them are real."""
    idx = ends[:, None] - (k - 1) + np.arange(k)[None, :]
    valid = idx >= traj.step_episode_starts[ends][:, None]
    return np.where(valid, idx, ends[:, None]), valid


def window_labels(traj: Any, ends: np.ndarray, config: AgentConfig) -> torch.Tensor:
    """The expert's action [n, context] int64 at each step of the windows ending at ``ends`` (0 on padding).

    Needs ``traj.labels`` (demonstrations with ``labels: bot``); the windows' action tokens stay the actions
    taken, which are what led to the next observation.
    """
    if traj.labels is None:
        raise ValueError("these trajectories hold no expert labels (only the bot's demonstrations record them: "
                         "policy: bot)")
    idx, valid = _window_steps(traj, ends, config.context)
    return torch.from_numpy(np.where(valid, traj.labels[idx], 0).astype(np.int64))


def windows(traj: Any, ends: np.ndarray, config: AgentConfig, target_return: float | None = None) -> AgentInputs:
    """The windows of ``config.context`` steps ending at global step indices ``ends`` (left-padded).

    RTG tokens hold the episodes' own returns-to-go, or, given ``target_return``, the
    target less what the episode had received before each step (as a rollout conditions
    a decision transformer).
    """
    idx, valid = _window_steps(traj, ends, config.context)
    obs = observation_indices(traj.images[idx], traj.directions[idx])
    if target_return is None:
        returns = traj.returns_to_go()
    else:
        received = np.repeat(traj.returns, traj.episode_lengths) - traj.returns_to_go()
        returns = (target_return - received).astype(np.float32)
    return AgentInputs(
        mission=torch.from_numpy(traj.mission_ids(traj.episode_of_step[ends], config.mission_length)),
        obs=torch.from_numpy(obs.astype(np.int64)),
        actions=torch.from_numpy(np.where(valid, traj.actions[idx], 0).astype(np.int64)),
        rtg=torch.from_numpy(np.where(valid, returns[idx], 0).astype(np.float32)),
        timesteps=torch.from_numpy(np.where(valid, traj.timesteps()[idx], 0).astype(np.int64)),
        valid=torch.from_numpy(valid),
    )
