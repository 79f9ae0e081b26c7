"""MiniGrid's action set: one owner for the names and their ids (index = action id).

>>> ACTIONS[2], action_id("toggle"), N_ACTIONS
('forward', 5, 7)
"""
from __future__ import annotations

from typing import Literal

ACTIONS: tuple[str, ...] = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
N_ACTIONS = len(ACTIONS)
ActionName = Literal["left", "right", "forward", "pickup", "drop", "toggle", "done"]


def action_id(name: str) -> int:
    """The id of an action name; ValueError naming the valid ones."""
    if name not in ACTIONS:
        raise ValueError(f"unknown action {name!r}; actions are {', '.join(ACTIONS)}")
    return ACTIONS.index(name)
