"""Benchmark: an RTG scan of a decision transformer, runner (targets folded into one batch)
vs a hand-written loop (one forward per target), in the same process on the same inputs.

    .venv/bin/python bench/rtg_scan.py [--targets 21] [--episodes 200]

Trains a small DT first (about 20 s, not timed). Prints wall times and the ratio baseline / runner.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import runner
from runner.models.windows import windows
from runner.plan.facts import trajectories as load_trajectories

TRAIN = """\
name: bench-dt
kind: train
data:
  trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 300, seed: 0, epsilon: 0.25}
model: {architecture: decision_transformer, n_layers: 2, d_model: 128, n_heads: 4, context: 4}
train: {steps: 100, batch_size: 64}
eval: {episodes: 0}
"""

SCAN = """\
name: bench-rtg
model: {{run: bench-dt}}
data:
  trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: {episodes}, seed: 5000, epsilon: 0.25, target_return: 0.5}}
sweep:
  data.trajectories.target_return: {{linspace: [0.0, 1.0, {targets}]}}
metrics: [action_logits]
execution: {{points_per_task: {targets}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=21)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.chdir(tmp)
        Path("train.yaml").write_text(TRAIN)
        runner.run("train.yaml")
        Path("scan.yaml").write_text(SCAN.format(targets=args.targets, episodes=args.episodes))
        runner.run("scan.yaml", out="warm")
        agent = runner.load_model("results/bench-dt/models/model")
        traj = load_trajectories(runner.load_spec("scan.yaml").spec.data, tmp, 0)
        targets = np.linspace(0.0, 1.0, args.targets)

        t0 = time.perf_counter()
        with torch.inference_mode():
            baseline = []
            for target in targets:  # the notebook loop: one forward per target
                inputs = windows(traj, np.arange(len(traj.actions)), agent.config, target_return=float(target))
                baseline.append(agent(inputs)[:, -1].numpy())
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = runner.run("scan.yaml", out="timed")
        t_runner = time.perf_counter() - t0
    np.testing.assert_allclose(ds.action_logits.isel(seed=0, drop=True).values if "seed" in ds.dims else
                               ds.action_logits.values, np.stack(baseline), atol=1e-4)
    print(f"{args.targets} targets x {len(traj.actions)} windows, 1 thread")
    print(f"hand-written loop (action logits only)    {t_base:7.3f} s")
    print(f"runner (action logits, shards, result.nc)  {t_runner:7.3f} s")
    print(f"ratio baseline / runner                    {t_base / t_runner:7.2f}x")


if __name__ == "__main__":
    main()
