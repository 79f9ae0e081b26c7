"""Benchmark: a steering coefficient x layer scan, runner vs a hand-written TransformerLens loop.

Both run in this process on the same model, inputs and grid. The baseline is
the notebook loop runner replaces: one run_with_hooks per grid point. runner
folds a task's points into the batch and writes shards plus result.nc.

    .venv/bin/python bench/steer_scan.py [--points-per-task N] [--threads T]

Prints wall times and the ratio baseline / runner (> 1: runner is faster).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import runner

SPEC = """\
name: bench-steer
model:
  transformer: {{n_layers: 4, d_model: 128, n_heads: 4, d_vocab: 256, n_ctx: 64, init_seed: 0}}
data:
  random_tokens: {{batch: 16, length: 32, seed: 0}}
intervention: {{kind: steer, hook: resid_pre, layer: 0, vector: {{random: {{seed: 0, norm: match}}}}}}
sweep:
  intervention.coefficient: {{linspace: [-8, 8, 33]}}
  intervention.layer: [0, 1, 2, 3]
metrics: [probs, kl]
execution: {{points_per_task: {ppt}, cpus_per_task: {threads}}}
"""


def baseline(model, tokens, coefficients, layers) -> np.ndarray:
    """The notebook loop: one forward per grid point, vectors and clean pass computed up front."""
    with torch.inference_mode():
        clean_logits, cache = model.run_with_cache(tokens)
        clean = torch.log_softmax(clean_logits[:, -1], -1)
        out = np.empty((len(coefficients), len(layers), tokens.shape[0]))
        for j, layer in enumerate(layers):
            name = f"blocks.{layer}.hook_resid_pre"
            v = np.random.default_rng(0).standard_normal(model.cfg.d_model)
            v = torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32) * cache[name].norm(dim=-1).mean()
            for i, c in enumerate(coefficients):
                logits = model.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook, d=c * v: x + d)])
                log_q = torch.log_softmax(logits[:, -1], -1)
                out[i, j] = (clean.exp() * (clean - log_q)).sum(-1).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points-per-task", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.yaml"
        spec.write_text(SPEC.format(ppt=args.points_per_task, threads=args.threads))
        model = runner.load_model(spec)
        tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(16, 32)))
        coefficients, layers = np.linspace(-8, 8, 33).tolist(), [0, 1, 2, 3]
        baseline(model, tokens, coefficients[:2], layers[:1])  # warm-up
        runner.run(spec, out=Path(tmp) / "warm")

        t0 = time.perf_counter()
        expected = baseline(model, tokens, coefficients, layers)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = runner.run(spec, out=Path(tmp) / "run")
        t_runner = time.perf_counter() - t0
    np.testing.assert_allclose(ds.kl.values, expected, atol=1e-4)
    n = len(coefficients) * len(layers)
    print(f"grid {len(coefficients)} coefficients x {len(layers)} layers = {n} points, batch 16 x 32 tokens, "
          f"{args.threads} thread(s), points_per_task {args.points_per_task}")
    print(f"hand-written TransformerLens loop  {t_base:7.3f} s  ({n / t_base:6.1f} points/s)")
    print(f"runner run (shards + result.nc)    {t_runner:7.3f} s  ({n / t_runner:6.1f} points/s)")
    print(f"ratio baseline / runner            {t_base / t_runner:7.2f}x")


if __name__ == "__main__":
    main()
