"""Shared fixtures: a scratch project folder, spec writing, the CLI, one Ray session."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The determinism contract (README): identical bits for reruns and across executors at the same chunking;
# across points_per_task, float32 kernels on other CPUs round differently (worst measured: 9.5e-7), so:
CHUNKING_TOLERANCE = dict(atol=1e-5, rtol=1e-5)

BASE_SPEC = """\
name: base
seed: 0
model:
  transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
data:
  random_tokens: {batch: 4, length: 8, seed: 0}
intervention:
  kind: steer
  hook: resid_pre
  layer: 0
  position: all
  coefficient: 1.0
  vector: {random: {seed: 0}}
sweep:
  intervention.coefficient: {linspace: [-1, 1, 3]}
  intervention.layer: [0, 1]
metrics: [logits]
execution: {executor: local}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder, made the working directory (spec paths resolve against it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m runner ARGS`` in ``cwd`` as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (start-up costs ~5 s and ~1 GB)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def play_episode(policy, env, seed: int) -> int:
    """Play one whole episode of ``env`` with a ``load_policy`` policy; its number of steps."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    reward, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs, reward))
        steps, done = steps + 1, terminated or truncated
    return steps
