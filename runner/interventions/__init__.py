"""Interventions: each kind turns its spec into edits ``(hook name, fn)`` on a batch of rows.

An edit function takes the activation of one point's rows at its hook and
returns the edited activation; the task folds many points into one batch and
applies each point's edits to its own rows (see ``runner.execute.task``).
"""
from __future__ import annotations

from typing import Any, Callable

from runner.interventions.steer import steer

Edit = tuple[str, Callable[[Any], Any]]

REGISTRY: dict[str, Callable[..., list[Edit]]] = {"steer": steer}


def prepare(intervention: Any, ctx: Any, seed: int) -> list[Edit]:
    """The edits an intervention spec makes (none for a plain run)."""
    if intervention is None:
        return []
    return REGISTRY[intervention.kind](intervention, ctx, seed)


def sites(intervention: Any, dims: Any) -> list[str]:
    """Hook names whose clean activations the intervention may read."""
    from runner.sites import resolve_site

    if intervention is None:
        return []
    return [resolve_site(intervention.hook, intervention.layer, dims).name]
