"""Agents that play MiniGrid: many episodes at once (rollouts) or one at a time (``runner.load_policy``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.envs.encoding import OBS_ACTIVE, observation_indices
from runner.models.agent import AgentConfig, AgentInputs
from runner.models.windows import mission_ids


class AgentPolicy:
    """Plays an agent in many episodes at once (runner.envs.episodes.BatchPolicy), greedily.

    A decision transformer is conditioned on ``target_return``: its first RTG token
    holds the target and each later one the target less the rewards received so far.
    """

    def __init__(self, agent: Any, target_return: float | None = None, device: str = "cpu",
                 hooks: list | None = None):
        self.agent, self.device, self.hooks = agent, device, hooks or []
        final = f"blocks.{agent.config.n_layers - 1}."
        self.last_only = not any(site.startswith(final) for site, _ in self.hooks)  # see Agent.action_logits
        self.config: AgentConfig = agent.config
        self.target = 1.0 if target_return is None else float(target_return)

    def reset(self, missions: list[str]) -> None:
        n, k = len(missions), self.config.context
        self.mission = torch.from_numpy(mission_ids(missions, self.config))
        self.obs = np.zeros((n, k, OBS_ACTIVE), dtype=np.int64)
        self.actions = np.zeros((n, k), dtype=np.int64)
        self.rtg = np.zeros((n, k), dtype=np.float32)
        self.timesteps = np.zeros((n, k), dtype=np.int64)
        self.valid = np.zeros((n, k), dtype=bool)
        self.t = np.zeros(n, dtype=np.int64)
        self.next_rtg = np.full(n, self.target, dtype=np.float32)

    def act(self, images: np.ndarray, directions: np.ndarray, rewards: np.ndarray, live: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(live)
        self.next_rtg[rows] -= rewards[rows].astype(np.float32)
        for array, value in ((self.obs, observation_indices(images[rows], directions[rows])),
                             (self.rtg, self.next_rtg[rows]), (self.timesteps, self.t[rows]),
                             (self.valid, True), (self.actions, 0)):
            array[rows] = np.roll(array[rows], -1, axis=1)
            array[rows, -1] = value
        inputs = AgentInputs(self.mission[rows], *(torch.from_numpy(a[rows]) for a in
                                                   (self.obs, self.actions, self.rtg, self.timesteps, self.valid)))
        with torch.inference_mode(), self.agent.hooks(self.hooks):
            logits = self.agent.action_logits(inputs.to(self.device), last_only=self.last_only)
        if not torch.isfinite(logits).all():
            raise ValueError("the agent's action logits are not finite: under this intervention it picks no action")
        chosen = np.zeros(len(live), dtype=np.int64)
        chosen[rows] = self.choose(logits, rows)
        self.actions[rows, -1] = chosen[rows]
        self.t[rows] += 1
        return chosen

    def choose(self, logits: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """The action of each live episode ``rows`` from its logits [len(rows), 7]: the most probable."""
        return logits.argmax(-1).cpu().numpy()


class SampledPolicy(AgentPolicy):
    """Plays an agent drawing each action from softmax(logits / temperature) (a demonstrator whose returns spread).

    Episode e's draws come from its own generator, seeded by ``seed + e`` (the rollout's env seed): a smaller
    run is a prefix of a larger one, as with the bot.
    """

    def __init__(self, agent: Any, seed: int, temperature: float = 1.0, device: str = "cpu",
                 target_return: float | None = None):
        super().__init__(agent, target_return, device)
        self.seed, self.temperature = seed, float(temperature)

    def reset(self, missions: list[str]) -> None:
        super().reset(missions)
        self.rngs = [np.random.default_rng([self.seed + e, 0x5A3B1E]) for e in range(len(missions))]

    def choose(self, logits: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        probs = torch.softmax(logits.double() / self.temperature, -1).cpu().numpy()
        draws = np.array([self.rngs[r].random() for r in rows])
        return np.minimum((probs.cumsum(-1) < draws[:, None]).sum(-1), probs.shape[-1] - 1)


class Policy:
    """One agent playing one MiniGrid episode at a time: ``reset()``, then ``act(obs, reward)`` each step.

    >>> import gymnasium as gym
    >>> policy = runner.load_policy(agent_folder)
    >>> env = gym.make("BabyAI-GoToRedBallGrey-v0")
    >>> obs, _ = env.reset(seed=1); policy.reset(); reward, done = 0.0, False
    >>> while not done:
    ...     obs, reward, terminated, truncated, _ = env.step(policy.act(obs, reward))
    ...     done = terminated or truncated
    """

    def __init__(self, agent: Any, target_return: float | None = None, device: str = "cpu"):
        self.agent = agent
        self._batch = AgentPolicy(agent, target_return, device)
        self._started = False

    def reset(self) -> None:
        """Forget the episode: the next ``act`` starts a new one."""
        self._started = False

    def act(self, obs: dict, reward: float = 0.0) -> int:
        """The action (0..6) for a MiniGrid observation dict; ``reward`` is what the previous action earned."""
        if not self._started:
            self._batch.reset([str(obs.get("mission", ""))])
            self._started, reward = True, 0.0
        action = self._batch.act(np.asarray(obs["image"])[None], np.array([obs["direction"]]),
                                 np.array([reward], dtype=np.float32), np.array([True]))
        return int(action[0])
