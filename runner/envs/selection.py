"""Selections of a trajectory dataset's samples (one per step), for contrast vectors. No torch."""
from __future__ import annotations

from typing import Any

import numpy as np


def selection_mask(traj: Any, selection: Any) -> np.ndarray:
    """Which steps (one sample per step) a contrast selection keeps: by mission, mission word or object in view."""
    episode_of_step = np.repeat(np.arange(traj.n_episodes), traj.episode_lengths)
    if hasattr(selection, "mission"):
        keep = np.array([str(m) == selection.mission for m in traj.missions])
        return keep[episode_of_step]
    if hasattr(selection, "mission_word"):
        keep = np.array([selection.mission_word in str(m).replace(",", " ").split() for m in traj.missions])
        return keep[episode_of_step]
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

    *colour, name = selection.in_view.split()
    if name not in OBJECT_TO_IDX or (colour and colour[0] not in COLOR_TO_IDX):
        raise ValueError(f"in_view: unknown object {selection.in_view!r}; objects: {', '.join(OBJECT_TO_IDX)}, "
                         f"optionally after a colour: {', '.join(COLOR_TO_IDX)}")
    match = traj.images[..., 0] == OBJECT_TO_IDX[name]
    if colour:
        match &= traj.images[..., 1] == COLOR_TO_IDX[colour[0]]
    return match.any(axis=(1, 2))


def is_selection(side: Any) -> bool:
    """Whether a contrast side selects from the spec's own data (rather than naming other inputs)."""
    return any(hasattr(side, key) for key in ("mission", "mission_word", "in_view"))
