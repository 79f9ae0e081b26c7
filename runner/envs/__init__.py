"""MiniGrid / BabyAI: instruction vocabulary, observation encoding, demonstrations, rollouts.

No torch here: numpy, gymnasium and minigrid only (importing minigrid registers
its envs).

>>> from runner.envs import generate, rollout, RandomPolicy, observation_indices
>>> demos = generate("BabyAI-GoToLocal-v0", "bot", episodes=8, seed=0)        # doctest: +SKIP
>>> obs = observation_indices(demos.images, demos.directions)                 # doctest: +SKIP
>>> rollout("BabyAI-GoToLocal-v0", RandomPolicy(0), 100, seed=1)["success"]   # doctest: +SKIP
"""
from __future__ import annotations

from runner.spec.models import ACTIONS  # noqa: E402  (MiniGrid's order: index = action id)

from runner.envs.encoding import (  # noqa: E402
    CELL_FEATURES,
    N_CELLS,
    OBS_ACTIVE,
    OBS_FEATURES,
    decode_observation,
    edit_cell,
    observation_indices,
)
from runner.envs.rollout import BatchPolicy, RandomPolicy, rollout  # noqa: E402
from runner.envs.trajectories import (  # noqa: E402
    FORMAT_VERSION,
    Trajectories,
    cached,
    check_env,
    generate,
    make_env,
)
from runner.envs.vocab import (  # noqa: E402
    WORDS,
    decode_mission,
    encode_mission,
    encode_missions,
    mission_words_ok,
    tokenize,
)

__all__ = [
    "ACTIONS", "CELL_FEATURES", "N_CELLS", "OBS_ACTIVE", "OBS_FEATURES", "decode_observation",
    "edit_cell", "observation_indices", "BatchPolicy", "RandomPolicy", "rollout", "FORMAT_VERSION",
    "Trajectories", "cached", "check_env", "generate", "make_env", "WORDS", "decode_mission",
    "encode_mission", "encode_missions", "mission_words_ok", "tokenize",
]
