"""rollout: closed-loop episodes of an agent with its intervention applied at every step."""
from __future__ import annotations

from typing import Any

import numpy as np

from runner.envs import ACTIONS
from runner.envs.rollout import rollout as play
from runner.metrics import Result, reduce
from runner.models.windows import AgentPolicy


class _Counting:
    """Wraps a batch policy and counts, per episode, how often it took each action."""

    def __init__(self, policy: Any):
        self.policy = policy

    def reset(self, missions: list[str]) -> None:
        self.counts = np.zeros((len(missions), len(ACTIONS)), dtype=np.int64)
        self.policy.reset(missions)

    def act(self, images: np.ndarray, directions: np.ndarray, rewards: np.ndarray, live: np.ndarray) -> np.ndarray:
        actions = self.policy.act(images, directions, rewards, live)
        rows = np.flatnonzero(live)
        np.add.at(self.counts, (rows, actions[rows]), 1)
        return actions


def rollout(metric: Any, agent: Any, edits: list, target_return: float | None, device: str) -> Result:
    """Return, success, episode length and action frequencies of ``metric.episodes`` episodes, played at once.

    Each step runs the agent once on every live episode; the point's edits apply to
    that whole batch (all its rows belong to this point).
    """
    hooks = [(site, lambda x, hook, fn=fn: fn(x)) for site, fn in edits]
    policy = _Counting(AgentPolicy(agent, target_return, device, hooks=hooks))
    out = play(agent.config.env_id, policy, metric.episodes, metric.seed, metric.max_steps)
    fractions = policy.counts / np.maximum(policy.counts.sum(axis=1, keepdims=True), 1)
    return reduce(metric, {
        "return": (("episode",), out["return"], {"long_name": "episode return"}),
        "success": (("episode",), out["success"].astype("float32"), {"long_name": "episode reached its goal"}),
        "episode_length": (("episode",), out["episode_length"], {"units": "steps"}),
        "action_fraction": (("episode", "action"), fractions.astype("float32"),
                            {"long_name": "fraction of the episode's steps taking each action", "units": "1"}),
    })
