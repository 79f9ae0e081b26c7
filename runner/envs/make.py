"""Environments by id: which ids runner plays, building them, and keeping BabyAI's prints quiet.

gymnasium imports any ``module:`` prefix of an id, so an id read from a spec or a
file is checked here (``check_env``) before ``make_env`` builds it.
"""
from __future__ import annotations

import contextlib
import difflib
import io
from typing import Any, Iterator

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid and BabyAI ids)

POLICIES = ("bot", "random")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow stdout (BabyAI level generation prints "Sampling rejected: ..." lines)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def make_env(env_id: str) -> Any:
    """The bare MiniGrid env (no gymnasium wrappers) registered as ``env_id``; ValueError for any other id."""
    problem = check_env(env_id)
    if problem:
        raise ValueError(problem)
    return gym.make(env_id, disable_env_checker=True).unwrapped


def _minigrid_ids() -> list[str]:
    return [k for k in gym.envs.registry if k.startswith(("MiniGrid-", "BabyAI-"))]


def check_env(env_id: str, policy: str | None = None) -> str | None:
    """None if ``policy`` can play ``env_id`` (any policy when None), else why not. No env is built.

    >>> check_env("BabyAI-GoToLocal-v0", "bot") is None
    True
    >>> check_env("MiniGrid-Empty-5x5-v0", "bot")[:40]
    "policy 'bot' needs a BabyAI level (BabyA"
    """
    if not isinstance(env_id, str) or ":" in env_id or env_id not in gym.envs.registry:
        by_lower = {k.lower(): k for k in _minigrid_ids()}
        close = [by_lower[k] for k in difflib.get_close_matches(str(env_id).lower(), by_lower, n=3, cutoff=0.6)]
        hint = f"; did you mean {', '.join(close)}?" if close else \
            " (MiniGrid and BabyAI ids start with MiniGrid- or BabyAI-)"
        return f"unknown environment {env_id!r}{hint}"
    entry = str(gym.envs.registry[env_id].entry_point)
    if not (env_id.startswith(("MiniGrid-", "BabyAI-")) and entry.startswith("minigrid")):
        return f"environment {env_id!r} is not a MiniGrid or BabyAI environment"
    if policy is not None and policy not in POLICIES:
        return f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}"
    if policy == "bot" and not entry.startswith("minigrid.envs.babyai"):
        return (f"policy 'bot' needs a BabyAI level (BabyAI-...), and {env_id!r} is not one: the bot "
                f"plans from a BabyAI instruction; use policy 'random' or a file of demonstrations")
    return None
