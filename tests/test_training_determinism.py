"""Training is deterministic on a given machine: same spec, same thread count -> the same checkpoint, bit for bit."""
from __future__ import annotations

import json

import pytest
import torch

import runner
from tests.conftest import write_spec

TRAIN = """\
name: det
kind: train
seed: 0
data:
  trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 30, seed: 0, epsilon: 0.2}
model: {architecture: ARCH, n_layers: 2, d_model: 32, n_heads: 2, context: 3}
train: {steps: 30, batch_size: 16, log_every: 5, lr: 1.0e-3}
eval: {episodes: 0}
sweep:
  seed: [0, 1]
"""


def train_twice(folder, arch: str) -> list[dict[str, bytes]]:
    """Run the same train spec twice from scratch in one process; each run's files of the seed=0 and seed=1 models."""
    spec = write_spec(folder, TRAIN.replace("ARCH", arch), f"{arch}.yaml")
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for _ in range(2):
            ds = runner.run(spec, fresh=True)
            assert (ds.status == "ok").all()
            models = folder / "results" / "det" / "models"
            runs.append({f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(models.glob("*/*"))})
    return runs


@pytest.mark.parametrize("arch", ["behavior_clone", "decision_transformer"])
def test_the_same_spec_trains_bit_identical_checkpoints(tmp_path, arch):
    first, second = train_twice(tmp_path, arch)
    assert sorted(first) == ["seed=0/config.json", "seed=0/model.safetensors",
                             "seed=1/config.json", "seed=1/model.safetensors"]
    assert first == second, "a rerun of the same spec changed a checkpoint"
    assert first["seed=0/model.safetensors"] != first["seed=1/model.safetensors"], "the seed must matter"
    trained, other = (json.loads(first[f"seed={s}/config.json"])["trained"] for s in (1, 0))
    assert trained["seed"] != other["seed"], "each point records the seed it was trained with"
    assert trained["torch_threads"] == 1 and trained["device"] == "cpu"
    assert trained["torch"] == torch.__version__
    assert not torch.are_deterministic_algorithms_enabled(), "training leaves torch's settings as it found them"
    assert runner.load(tmp_path / "results" / "det").attrs["torch_threads"] == 1
