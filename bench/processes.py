"""Benchmark: whole `runner run` processes, as a user times them: the local executor vs Ray, and a finished rerun.

1,000 small points (a coefficient scan of a 2-layer token model). Each figure is the
wall time of a fresh `python -m runner run` process, imports included:

- the local executor;
- Ray, started by the runner on this machine for the run (the ratio Ray / local says what
  Ray's start-up and task submission cost);
- a rerun of the finished run (nothing to compute: no torch, no Ray imported).

    .venv/bin/python bench/processes.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: small
model:
  transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
data:
  random_tokens: {batch: 4, length: 8, seed: 0}
intervention: {kind: steer, hook: resid_pre, layer: 0, vector: {random: {seed: 0}}}
sweep:
  intervention.coefficient: {linspace: [-4, 4, 500]}
  intervention.layer: [0, 1]
metrics: [kl, {logit_diff: {tokens: [1, 2]}}]
"""


def run(cwd: Path, *args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "runner", "run", "spec.yaml", *args], cwd=cwd,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "spec.yaml").write_text(SPEC)
        run(folder, "--out", "warm")  # the page cache holds the packages, as after any earlier run
        local = min(run(folder, "--out", f"local-{i}") for i in range(2))
        ray = min(run(folder, "--executor", "ray", "--out", f"ray-{i}") for i in range(2))
        rerun = min(run(folder, "--out", "local-0") for _ in range(3))
    print("1,000 small points, whole `python -m runner run` processes (imports included), best of 2-3")
    print(f"  local executor                 {local:6.2f} s")
    print(f"  Ray, started for the run       {ray:6.2f} s   ratio Ray / local {ray / local:5.2f}x")
    print(f"  rerun of the finished run      {rerun:6.2f} s")


if __name__ == "__main__":
    main()
