"""MiniGrid / BabyAI: actions, instruction vocabulary, observation encoding, demonstrations, rollouts.

No torch here: numpy, gymnasium and minigrid only. Names are loaded on first
use, so that reading the action names does not import gymnasium.

>>> from runner.envs import generate, rollout, RandomPolicy, observation_indices
>>> demos = generate("BabyAI-GoToRedBallGrey-v0", "bot", episodes=4, seed=0)
>>> observation_indices(demos.images, demos.directions).shape == (demos.n_steps, 148)
True
>>> rollout("BabyAI-GoToRedBallGrey-v0", RandomPolicy(0), 10, seed=1)["success"].shape
(10,)
"""
from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "runner.envs.actions": ("ACTIONS", "N_ACTIONS", "action_id"),
    "runner.envs.encoding": ("CELL_FEATURES", "N_CELLS", "OBS_ACTIVE", "OBS_FEATURES", "decode_observation",
                             "edit_cell", "observation_indices"),
    "runner.envs.episodes": ("BatchPolicy", "RandomPolicy", "rollout"),
    "runner.envs.trajectories": ("FORMAT_VERSION", "Trajectories"),
    "runner.envs.make": ("check_env", "make_env", "quiet"),
    "runner.envs.demos": ("demonstrations", "generate", "read_trajectories"),
    "runner.envs.vocab": ("WORDS", "decode_mission", "encode_mission", "encode_missions", "mission_has_word",
                          "mission_words_ok", "swap_word", "tokenize"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    if name not in _HOME_OF:
        raise AttributeError(f"module 'runner.envs' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME_OF[name]), name)
