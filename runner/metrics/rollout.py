"""rollout: closed-loop episodes of an agent with its intervention applied at every step."""
from __future__ import annotations

from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from runner.envs.actions import N_ACTIONS
from runner.metrics.base import Loop, Metric, Variable, register


class Rollout(Metric):
    """Agents: closed-loop episodes, all played at once, with the intervention applied at every step."""

    kind: Literal["rollout"]
    episodes: int = Field(50, ge=1, description="Episodes, all played at once.")
    seed: int = Field(1_000_000, ge=0, description="Episode e uses env seed seed + e.")
    max_steps: int | None = Field(None, ge=1, description="Truncate episodes; default: the env's limit.")
    variables = {
        "return": Variable(("episode",), "episode return"),
        "success": Variable(("episode",), "episode reached its goal"),
        "episode_length": Variable(("episode",), units="steps"),
        "action_fraction": Variable(("episode", "action"), "fraction of the episode's steps taking each action", "1"),
        "episode_env_seed": Variable(("episode",), "seed of the episode's env reset", coord=True),
        "episode_mission": Variable(("episode",), "the episode's mission", coord=True),
        "target_in_data": Variable((), "the target return lies within the returns of the decision transformer's "
                                       "training episodes (1) or outside them (0)", "1",
                                   undefined="not a decision transformer, or a checkpoint that does not record "
                                             "its data's returns", optional=True),
    }
    families = ("agents",)
    closed_loop = True

    def companions(self) -> dict[str, Variable]:
        """Under ``reduce: mean``, the success rate's 95% Wilson score interval too."""
        out = super().companions()
        if out:
            out |= {f"success_ci_{end}": Variable(("episode",), f"{end}er end of the 95% Wilson score interval "
                                                                f"of the success rate", "1") for end in ("low", "high")}
        return out

    def spreads(self, name: str, values: np.ndarray, axes: tuple[int, ...]) -> dict[str, np.ndarray]:
        out = super().spreads(name, values, axes)
        if name == "success":
            out["success_ci_low"], out["success_ci_high"] = wilson(values.mean(axis=axes), values.shape[axes[0]])
        return out

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        kind = intervention.kind if intervention is not None else None
        if kind in ("patch", "path_patch") or (kind == "ablate" and intervention.method == "resample"):
            yield ("a rollout plays new episodes, so a per-sample reference (patch source, resample) has no sample to "
                   "pair with; use steer, scale, or ablate zero / mean")


def wilson(rate: Any, n: int, z: float = 1.959964) -> tuple[Any, Any]:
    """The Wilson score interval (95% by default) of a success rate measured on ``n`` episodes.

    >>> low, high = wilson(0.5, 50)
    >>> round(float(low), 3), round(float(high), 3)
    (0.366, 0.634)
    >>> wilson(1.0, 100)[1]
    np.float64(1.0)
    """
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the interval contains the rate within [0, 1]; at 0 or 1 float rounding would put it a hair outside
    return np.clip(centre - half, 0.0, rate), np.clip(centre + half, rate, 1.0)


class _Counting:
    """Wraps a batch policy and counts, per episode, how often it took each action."""

    def __init__(self, policy: Any):
        self.policy = policy

    def reset(self, missions: list[str]) -> None:
        self.counts = np.zeros((len(missions), N_ACTIONS), dtype=np.int64)
        self.policy.reset(missions)

    def act(self, images: np.ndarray, directions: np.ndarray, rewards: np.ndarray, live: np.ndarray) -> np.ndarray:
        actions = self.policy.act(images, directions, rewards, live)
        rows = np.flatnonzero(live)
        np.add.at(self.counts, (rows, actions[rows]), 1)
        return actions


@register(Rollout)
def rollouts(metric: Rollout, loop: Loop) -> dict[str, Any]:
    """Return, success, episode length and action frequencies of ``metric.episodes`` episodes, played at once.

    Each step runs the agent once on every live episode, with the point's hooks on.
    """
    from runner.envs.episodes import rollout as play
    from runner.models.policy import AgentPolicy

    agent_policy = AgentPolicy(loop.agent, loop.target_return, loop.device, hooks=loop.hooks)
    policy = _Counting(agent_policy)
    out = play(loop.agent.config.env_id, policy, metric.episodes, metric.seed, metric.max_steps)
    fractions = policy.counts / np.maximum(policy.counts.sum(axis=1, keepdims=True), 1)
    return {"return": out["return"], "success": out["success"].astype("float32"),
            "episode_length": out["episode_length"], "action_fraction": fractions.astype("float32"),
            "episode_env_seed": metric.seed + np.arange(metric.episodes), "episode_mission": out["mission"],
            "target_in_data": np.float32(in_range(agent_policy.target, loop.agent.config.return_range))}


def in_range(target: float | None, bounds: tuple[float, float] | None) -> float:
    """1.0 if ``target`` lies within ``bounds`` (inclusive), 0.0 if outside, NaN if either is unknown.

    >>> in_range(0.5, (0.0, 0.9)), in_range(1.0, (0.0, 0.9)), in_range(None, (0.0, 0.9))
    (1.0, 0.0, nan)
    """
    if target is None or bounds is None:
        return float("nan")
    return float(bounds[0] <= target <= bounds[1])
