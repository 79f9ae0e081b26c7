"""Doctests run in a tiny project: ``specs/tiny.yaml`` (a token model scan) and a trained tiny agent.

Every docstring example in ``runner/`` runs (``pytest --doctest-modules``, on by
default in pyproject.toml) in that project folder, with ``runner``, ``np``,
``torch`` and ``agent_folder`` (a checkpoint folder) in its namespace.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

TINY = """\
name: tiny
model:
  transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
data:
  random_tokens: {batch: 4, length: 8, seed: 0}
intervention: {kind: steer, hook: resid_pre, layer: 0, position: last, vector: {random: {seed: 0, norm: match}}}
sweep:
  intervention.coefficient: {linspace: [-2, 2, 3]}
  intervention.layer: [0, 1]
metrics: [logits, kl]
"""

TINY_TRAIN = """\
name: tiny-train
kind: train
data:
  trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 20, seed: 0}
model: {architecture: behavior_clone, n_layers: 2, d_model: 32, n_heads: 2, context: 2}
train: {steps: 10, batch_size: 16}
eval: {episodes: 2}
"""


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with specs/tiny.yaml, specs/tiny_train.yaml and a trained tiny agent."""
    import runner

    folder = tmp_path_factory.mktemp("doctest-project")
    (folder / "specs").mkdir()
    (folder / "specs" / "tiny.yaml").write_text(TINY)
    (folder / "specs" / "tiny_train.yaml").write_text(TINY_TRAIN)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        runner.run("specs/tiny_train.yaml")
        runner.run("specs/tiny.yaml")
    finally:
        os.chdir(cwd)
    return folder


@pytest.fixture(autouse=True)
def _doctest_project(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    """Doctests run inside the tiny project, with its names at hand."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    import numpy as np
    import torch

    import runner
    import runner.envs

    folder = request.getfixturevalue("tiny_project")
    doctest_namespace.update(runner=runner, np=np, torch=torch, textwrap=textwrap,
                             agent_folder=str(folder / "results" / "tiny-train" / "models" / "model"))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
