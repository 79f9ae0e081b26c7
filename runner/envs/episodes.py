"""Closed-loop evaluation: many episodes at once, one policy call per step for the whole batch.

>>> out = rollout("BabyAI-GoToRedBallGrey-v0", RandomPolicy(0), episodes=20, seed=0)
>>> sorted(out), out["success"].shape
(['episode_length', 'mission', 'return', 'success'], (20,))
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from runner.envs.actions import N_ACTIONS
from runner.envs.make import make_env, quiet


@runtime_checkable
class BatchPolicy(Protocol):
    """Plays n episodes at once; ``rollout`` calls ``reset`` once, then ``act`` once per step."""

    def reset(self, missions: list[str]) -> None:
        """Start len(missions) episodes (missions[e] is episode e's instruction)."""

    def act(self, images: np.ndarray, directions: np.ndarray, rewards: np.ndarray,
            live: np.ndarray) -> np.ndarray:
        """Action ids (n,) for every episode given its current observation.

        ``images`` (n, 7, 7, 3) uint8 and ``directions`` (n,) hold every episode's
        current observation, ``rewards`` (n,) float32 what its previous action
        earned (0 at the first step) and ``live`` (n,) bool which episodes are
        still running; entries for finished episodes are ignored. The arrays are
        fresh each step: a policy may keep them.
        """


class RandomPolicy:
    """Uniformly random actions, seeded: the baseline a trained agent is compared against."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, missions: list[str]) -> None:
        """Restart the random stream, so that every rollout with this policy plays the same."""
        self.rng = np.random.default_rng(self.seed)

    def act(self, images: np.ndarray, directions: np.ndarray, rewards: np.ndarray,
            live: np.ndarray) -> np.ndarray:
        """One uniformly random action id per episode."""
        return self.rng.integers(0, N_ACTIONS, size=len(live))


def rollout(env_id: str, policy: BatchPolicy, episodes: int, seed: int,
            max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Per-episode ``return`` (float32), ``success`` (bool), ``episode_length`` (int32) and ``mission`` (str).

    Episode e resets its own env with seed ``seed + e``; all episodes run at
    once and only live ones are stepped. An episode ends when its env ends it
    or after ``max_steps`` steps (None: the env's own limit).
    """
    envs = [make_env(env_id) for _ in range(episodes)]
    with quiet():
        first = [env.reset(seed=seed + e)[0] for e, env in enumerate(envs)]
    limits = np.array([env.max_steps if max_steps is None else min(max_steps, env.max_steps)
                       for env in envs], dtype=np.int64)
    images = np.stack([o["image"] for o in first]) if episodes else np.zeros((0, 7, 7, 3), np.uint8)
    directions = np.array([o["direction"] for o in first], dtype=np.int8)
    missions = [str(o["mission"]) for o in first]
    rewards = np.zeros(episodes, dtype=np.float32)
    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int32)
    live = np.ones(episodes, dtype=bool)

    policy.reset(missions)
    while live.any():
        actions = _checked(policy.act(images, directions, rewards, live.copy()), live)
        images, directions, rewards = images.copy(), directions.copy(), rewards.copy()
        with quiet():
            for e in np.flatnonzero(live):
                obs, reward, terminated, truncated, _ = envs[e].step(int(actions[e]))
                images[e], directions[e], rewards[e] = obs["image"], obs["direction"], reward
                returns[e] += reward
                lengths[e] += 1
                live[e] = not (terminated or truncated or lengths[e] >= limits[e])
    return {"return": returns.astype(np.float32), "success": returns > 0,
            "episode_length": lengths, "mission": np.array(missions, dtype=str)}


def _checked(actions: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The policy's actions as int64 (n,); ValueError on a wrong shape or an id outside 0..6."""
    actions = np.asarray(actions)
    if actions.shape != live.shape:
        raise ValueError(f"policy.act returned shape {actions.shape}, expected {live.shape} "
                         f"(one action per episode)")
    actions = actions.astype(np.int64)
    bad = live & ((actions < 0) | (actions >= N_ACTIONS))
    if bad.any():
        e = int(np.argmax(bad))
        raise ValueError(f"policy.act returned action {int(actions[e])} for episode {e}; "
                         f"action ids are 0..{N_ACTIONS - 1}")
    return actions
