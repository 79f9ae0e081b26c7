"""Benchmark: a resid_pre activation-patching heatmap (layer x position), runner vs TransformerLens's own
``transformer_lens.patching.get_act_patch_resid_pre``, same process, same numbers.

8 sequences of 32 tokens, 4 layers x 32 positions; the metric is the mean logit difference
between two tokens at the last position. TransformerLens runs one forward per (layer,
position); runner folds the points of a layer into shared passes, each starting at the
patched layer and computing only the positions from the patched one on. Each figure is the
best of three runs.

    .venv/bin/python bench/patch_heatmap.py [--threads T]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformer_lens import patching

import runner

CLEAN = np.random.default_rng(1).integers(0, 256, size=(8, 32)).tolist()
CORRUPT = np.random.default_rng(2).integers(0, 256, size=(8, 32)).tolist()
SPEC = f"""\
name: heatmap
model:
  transformer: {{n_layers: 4, d_model: 128, n_heads: 4, d_vocab: 256, n_ctx: 64, init_seed: 0}}
data:
  tokens: {CORRUPT}
intervention:
  kind: patch
  hook: resid_pre
  layer: 0
  position: 0
  source: {{tokens: {CLEAN}}}
sweep:
  intervention.layer: {{range: [0, 4]}}
  intervention.position: {{values: {list(range(32))}, name: pos}}
metrics: [{{logit_diff: {{tokens: [3, 7], reduce: mean}}}}]
execution: {{cpus_per_task: THREADS}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "heatmap.yaml"
        spec.write_text(SPEC.replace("THREADS", str(args.threads)))
        runner.run(spec, out=Path(tmp) / "warm")
        model = runner.load_model(spec)
        clean, corrupt = torch.tensor(CLEAN), torch.tensor(CORRUPT)

        def metric(logits: torch.Tensor) -> torch.Tensor:
            return (logits[:, -1, 3] - logits[:, -1, 7]).mean()

        t_runner = t_tl = float("inf")
        for i in range(3):  # the best of three runs each
            t0 = time.perf_counter()
            ds = runner.run(spec, out=Path(tmp) / f"timed-{i}")
            t_runner = min(t_runner, time.perf_counter() - t0)
            with torch.inference_mode():
                _, clean_cache = model.run_with_cache(clean)
                t0 = time.perf_counter()
                reference = patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric)
                t_tl = min(t_tl, time.perf_counter() - t0)
            batch = corrupt.repeat(64, 1)
            model(batch)
            t0 = time.perf_counter()
            model(batch)
            rate = batch.numel() / (time.perf_counter() - t0)
    np.testing.assert_allclose(ds.logit_diff.values, reference.numpy(), atol=1e-4)
    print(f"resid_pre patching heatmap: 4 layers x 32 positions = 128 points, 8 x 32 tokens, {args.threads} thread(s)")
    print(f"  get_act_patch_resid_pre            {t_tl:7.3f} s")
    print(f"  runner run (shards + result.nc)    {t_runner:7.3f} s")
    print(f"  ceiling: a plain forward runs {rate:,.0f} tokens/s; 128 full forwards of 8 x 32 tokens at that rate: "
          f"{128 * 256 / rate:.3f} s")
    print(f"  ratio get_act_patch_resid_pre / runner   {t_tl / t_runner:6.2f}x   (numbers equal within 1e-4)")


if __name__ == "__main__":
    main()
