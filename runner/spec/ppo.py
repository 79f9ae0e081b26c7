"""The ``ppo:`` block of a train spec: CleanRL's names and meanings (``ppo.py``), defaults for small MiniGrid levels.

The defaults were measured on MiniGrid-DoorKey-5x5-v0: with 16 envs and an entropy weight of 0.01 one seed in
two never found the goal in 100k steps (its policy drifted from uniform before any reward); 32 envs and 0.02
solved the same seed (94% greedy success by 60k steps).
"""
from __future__ import annotations

from pydantic import Field, model_validator

from runner.spec.base import Strict


class PPOOptions(Strict):
    """PPO (clipped objective, GAE, entropy bonus) as CleanRL's ppo.py, on the agent's own TransformerLens body."""

    num_envs: int = Field(32, ge=1, le=1024, description="Environments stepped together (one batched forward per "
                                                         "step).")
    num_steps: int = Field(32, ge=1, le=100_000, description="Steps per environment per rollout: a rollout is "
                                                              "num_envs * num_steps transitions.")
    total_timesteps: int = Field(150_000, ge=1, le=10**10, description="Environment steps in all; updates = "
                                                                       "total_timesteps // (num_envs * num_steps), "
                                                                       "at least 1.")
    lr: float = Field(1.0e-3, gt=0, le=1, description="Adam learning rate (eps 1e-5).")
    anneal_lr: bool = Field(True, description="Anneal lr linearly to 0 over the updates.")
    gamma: float = Field(0.99, ge=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (1: Monte-Carlo advantages, 0: one-step TD).")
    update_epochs: int = Field(4, ge=1, le=100, description="Passes over each rollout.")
    num_minibatches: int = Field(4, ge=1, description="Minibatches per pass (must divide num_envs * num_steps).")
    norm_adv: bool = Field(True, description="Normalise advantages within each minibatch.")
    clip_coef: float = Field(0.2, gt=0, le=10, description="Clipping of the probability ratio in the policy loss.")
    clip_vloss: bool = Field(True, description="Clip the value loss around the rollout's values (by clip_coef).")
    ent_coef: float = Field(0.02, ge=0, le=10, description="Weight of the entropy bonus.")
    vf_coef: float = Field(0.5, ge=0, le=100, description="Weight of the value loss.")
    max_grad_norm: float = Field(0.5, gt=0, description="Gradient norm clip.")
    target_kl: float | None = Field(None, gt=0, description="Stop an update's epochs early once the approximate KL "
                                                            "exceeds this; null: never.")
    eval_every: int = Field(0, ge=0, description="Evaluation episodes (eval.seed on, played as eval.sampling) every "
                                                 "this many updates and after the last, as eval_success / eval_return "
                                                 "over eval_update; 0: none.")
    eval_episodes: int = Field(32, ge=1, le=100_000, description="Episodes per periodic evaluation.")

    @model_validator(mode="after")
    def _minibatches_divide(self) -> "PPOOptions":
        batch = self.num_envs * self.num_steps
        if self.num_minibatches > batch or batch % self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must divide the rollout of num_envs * "
                             f"num_steps = {batch} transitions")
        return self

    @property
    def batch_size(self) -> int:
        """Transitions per rollout."""
        return self.num_envs * self.num_steps

    @property
    def updates(self) -> int:
        """Rollout-and-update iterations."""
        return max(1, self.total_timesteps // self.batch_size)
