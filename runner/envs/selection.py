"""Selections of a trajectory dataset's samples (one per step): by mission, mission word or object in view. No torch."""
from __future__ import annotations

import numpy as np

from runner.envs.trajectories import Trajectories
from runner.envs.vocab import mission_has_word

SELECTIONS = ("mission", "mission_word", "in_view")


def selection_mask(traj: Trajectories, kind: str, value: str) -> np.ndarray:
    """Which steps (N,) bool a selection keeps: ``mission`` (exact text), ``mission_word`` or ``in_view``.

    ``in_view`` names an object, optionally after a colour ("key", "red key"): the steps
    whose 7x7 view shows it anywhere.
    """
    if kind == "mission":
        return np.array([str(m) == value for m in traj.missions])[traj.episode_of_step]
    if kind == "mission_word":
        return np.array([mission_has_word(str(m), value) for m in traj.missions])[traj.episode_of_step]
    if kind != "in_view":
        raise ValueError(f"unknown selection {kind!r}; selections are {', '.join(SELECTIONS)}")
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

    *colour, name = value.split()
    if name not in OBJECT_TO_IDX or len(colour) > 1 or (colour and colour[0] not in COLOR_TO_IDX):
        raise ValueError(f"in_view: unknown object {value!r}; objects: {', '.join(OBJECT_TO_IDX)}, "
                         f"optionally after a colour: {', '.join(COLOR_TO_IDX)}")
    match = traj.images[..., 0] == OBJECT_TO_IDX[name]
    if colour:
        match &= traj.images[..., 1] == COLOR_TO_IDX[colour[0]]
    return match.any(axis=(1, 2))


def selected_steps(traj: Trajectories, where: dict[str, str]) -> np.ndarray:
    """Indices of the steps every condition of ``where`` (selection kind -> value) keeps; all steps when empty."""
    mask = np.ones(traj.n_steps, dtype=bool)
    for kind, value in where.items():
        mask &= selection_mask(traj, kind, value)
    return np.flatnonzero(mask)
