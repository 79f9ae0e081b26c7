"""Benchmark: closed-loop episodes, runner's batched rollouts vs one environment at a time through load_policy.

128 BabyAI-GoToLocal-v0 episodes of a behaviour clone (2 layers, d_model 128, a context
of 4 steps; trained for a few hundred steps first, not timed) with no intervention. The
baseline is the loop a notebook writes: reset an env, then ``policy.act(obs)`` each step,
episode after episode. runner steps every live episode at once and runs the agent once
per step on all of them. Both play the same seeds and must return the same episodes.

    .venv/bin/python bench/rollouts.py [--episodes N]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import runner
from runner.envs import make_env, quiet

TRAIN = """\
name: bench-bc
kind: train
data:
  trajectories: {env: BabyAI-GoToLocal-v0, policy: bot, episodes: 300, seed: 0}
model: {architecture: behavior_clone, n_layers: 2, d_model: 128, n_heads: 4, context: 4}
train: {steps: 300, batch_size: 64, lr: 1.0e-3}
eval: {episodes: 0}
"""
ROLL = """\
name: bench-roll
model: {checkpoint: results/bench-bc/models/model}
data:
  trajectories: {env: BabyAI-GoToLocal-v0, policy: bot, episodes: 1, seed: 0}
metrics: [{rollout: {episodes: EPISODES, seed: 5000}}]
"""


def one_at_a_time(folder: str, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The notebook loop: one environment, one step, one forward at a time."""
    policy = runner.load_policy(folder)
    env = make_env("BabyAI-GoToLocal-v0")
    returns, lengths = [], []
    for e in range(episodes):
        with quiet():
            obs, _ = env.reset(seed=5000 + e)
        policy.reset()
        reward, total, steps, done = 0.0, 0.0, 0, False
        while not done:
            with quiet():
                obs, reward, terminated, truncated, _ = env.step(policy.act(obs, reward))
            total, steps, done = total + reward, steps + 1, terminated or truncated or steps + 1 >= env.max_steps
        returns.append(total)
        lengths.append(steps)
    return np.array(returns, dtype=np.float32), np.array(lengths)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path.cwd()
        import os

        os.chdir(tmp)
        try:
            Path("train.yaml").write_text(TRAIN)
            runner.run("train.yaml")
            Path("roll.yaml").write_text(ROLL.replace("EPISODES", str(args.episodes)))
            runner.run("roll.yaml", out="warm")
            t_runner = t_loop = float("inf")
            for i in range(3):  # the best of three runs each
                t0 = time.perf_counter()
                ds = runner.run("roll.yaml", out=f"timed-{i}")
                t_runner = min(t_runner, time.perf_counter() - t0)
                t0 = time.perf_counter()
                returns, lengths = one_at_a_time("results/bench-bc/models/model", args.episodes)
                t_loop = min(t_loop, time.perf_counter() - t0)
        finally:
            os.chdir(cwd)
    np.testing.assert_array_equal(ds["return"].values, returns)
    np.testing.assert_array_equal(ds["episode_length"].values, lengths)
    steps = int(lengths.sum())
    print(f"{args.episodes} closed-loop BabyAI-GoToLocal-v0 episodes ({steps} steps, success "
          f"{float((returns > 0).mean()):.0%}), 1 thread")
    print(f"  one env at a time through load_policy   {t_loop:7.3f} s  ({steps / t_loop:8.0f} steps/s)")
    print(f"  runner run (rollout metric)             {t_runner:7.3f} s  ({steps / t_runner:8.0f} steps/s)")
    print(f"  ratio one-at-a-time / runner            {t_loop / t_runner:6.2f}x")


if __name__ == "__main__":
    main()
