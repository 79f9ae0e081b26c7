"""Benchmark: a DTI-shaped steering scan, runner vs hand-written TransformerLens code, same process, same numbers.

The grid: 2 sequences x 128 coefficients x 4 layers on a 4-layer model (d_model 128, 32
tokens), steering at every position (``all``) and at the ``last`` one. Baselines:

- the per-point loop a notebook writes: one ``run_with_hooks`` per grid point;
- the hand-batched loop a careful notebook writes: the 128 coefficients folded into
  the batch, one ``run_with_hooks`` per layer.

The ceiling is the rate of a plain forward of the same model at a large batch (tokens
per second), so the distance to the limit is visible: a scan computes 2 x 32 tokens per
point from its first edited layer on.

    .venv/bin/python bench/steer_dti.py [--threads T]

Each figure is the best of three runs. Prints wall times, points per second and the ratios
baseline / runner (> 1: runner is faster).
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
name: NAME
model:
  transformer: {{n_layers: 4, d_model: 128, n_heads: 4, d_vocab: 256, n_ctx: 64, init_seed: 0}}
data:
  random_tokens: {{batch: 2, length: 32, seed: 0}}
intervention: {{kind: steer, hook: resid_pre, layer: 0, position: {position}, vector: {{random: {{seed: 0}}}}}}
sweep:
  intervention.coefficient: {{linspace: [-8, 8, 128]}}
  intervention.layer: [0, 1, 2, 3]
metrics: [logits]
execution: {{cpus_per_task: {threads}}}
"""


def unit_vector() -> torch.Tensor:
    v = np.random.default_rng(0).standard_normal(128)
    return torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32)


def per_point(model, tokens, coefficients, position) -> np.ndarray:
    """The notebook loop: one forward per grid point."""
    v, out = unit_vector(), []
    where = slice(None) if position == "all" else slice(-1, None)
    with torch.inference_mode():
        for c in coefficients:
            for layer in range(4):
                def add(x, hook, d=c * v):
                    x = x.clone()
                    x[:, where] += d
                    return x
                out.append(model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", add)])[:, -1])
    return torch.stack(out).reshape(len(coefficients), 4, *out[0].shape).numpy()


def hand_batched(model, tokens, coefficients, position) -> np.ndarray:
    """The careful notebook: every coefficient in one batch, one forward per layer."""
    v, n = unit_vector(), len(coefficients)
    delta = (torch.as_tensor(coefficients, dtype=torch.float32)[:, None] * v).repeat_interleave(tokens.shape[0], 0)
    batch = tokens.repeat(n, 1)
    where = slice(None) if position == "all" else slice(-1, None)
    out = []
    with torch.inference_mode():
        for layer in range(4):
            def add(x, hook):
                x = x.clone()
                x[:, where] += delta[:, None]
                return x
            logits = model.run_with_hooks(batch, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", add)])[:, -1]
            out.append(logits.reshape(n, tokens.shape[0], -1))
    return torch.stack(out, dim=1).numpy()


def ceiling(model, tokens) -> float:
    """Tokens per second of a plain forward at a large batch."""
    batch = tokens.repeat(256, 1)
    with torch.inference_mode():
        model(batch)
        t0 = time.perf_counter()
        for _ in range(3):
            model(batch)
    return 3 * batch.numel() / (time.perf_counter() - t0)


def timed(fn, *args, repeats: int = 3, **kwargs) -> tuple[float, object]:
    """The best wall time of ``repeats`` calls, and the last call's result."""
    best = float("inf")
    for i in range(repeats):
        if "out" in kwargs:  # a new run folder each time: every run computes every point
            kwargs["out"] = Path(f"{kwargs['out']}-{i}")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    coefficients = np.linspace(-8, 8, 128)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for position in ("all", "last"):
            spec = tmp / f"{position}.yaml"
            spec.write_text(SPEC.format(position=position, threads=args.threads).replace("NAME", f"dti-{position}"))
            runner.run(spec, out=tmp / f"warm-{position}")  # imports and model built, as a notebook has them
            model = runner.load_model(spec)
            tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(2, 32)))
            t_runner, ds = timed(runner.run, spec, out=tmp / f"timed-{position}")
            t_loop, loop = timed(per_point, model, tokens, coefficients, position)
            t_batched, batched = timed(hand_batched, model, tokens, coefficients, position)
            np.testing.assert_allclose(ds.logits.values, loop, atol=1e-4)
            np.testing.assert_allclose(ds.logits.values, batched, atol=1e-4)
            rate = ceiling(model, tokens)
            print(f"\nsteer scan, position {position}: 128 coefficients x 4 layers = 512 points, 2 x 32 tokens, "
                  f"{args.threads} thread(s)")
            for label, t in (("per-point run_with_hooks loop", t_loop), ("hand-batched run_with_hooks", t_batched),
                             ("runner run (shards + result.nc)", t_runner)):
                print(f"  {label:34s} {t:7.3f} s  ({512 / t:8.1f} points/s)")
            print(f"  ceiling: a plain forward at batch 512 runs {rate:,.0f} tokens/s; the scan's 512 x 64 tokens "
                  f"at that rate: {512 * 64 / rate:.3f} s")
            print(f"  ratio per-point loop / runner     {t_loop / t_runner:6.2f}x")
            print(f"  ratio hand-batched / runner       {t_batched / t_runner:6.2f}x")


if __name__ == "__main__":
    main()
