"""Interventions: each kind turns its spec into edits ``(hook name, fn)`` on a batch of rows.

An edit function takes the activation of one point's rows at its hook and
returns the edited activation; the task folds many points into one batch and
applies each point's edits to its own rows (see ``runner.execute.task``).
Every kind has a coefficient c, and c = 0 leaves the model untouched:

    steer   x + c·v
    patch   x + c·(x_source − x)
    ablate  x + c·(r − x),  r = 0 | mean over samples | resampled
    scale   (1 + c)·x
"""
from __future__ import annotations

from typing import Any, Callable

from runner.sites import Site, position_indices, resolve_site

Edit = tuple[str, Callable[[Any], Any]]


def region(site: Site, head: int | None, positions: list[int] | None) -> tuple:
    """The index into an activation [batch, ...] that an address selects.

    z / q / k / v are [batch, pos, head, d_head]; pattern / attn_scores are
    [batch, head, query, key] (position selects queries); the rest [batch, pos, ...].
    """
    pos = slice(None) if positions is None else positions
    if site.short in ("pattern", "attn_scores"):
        return (slice(None), slice(None) if head is None else head, pos)
    return (slice(None), pos) if head is None else (slice(None), pos, head)


def address(iv: Any, ctx: Any) -> tuple[Site, tuple]:
    """The resolved site of an intervention and the index of its region."""
    site = resolve_site(iv.hook, iv.layer, ctx.dims)
    return site, region(site, iv.head, position_indices(iv.position, ctx.length, ctx.dims.roles))


def prepare(intervention: Any, ctx: Any, seed: int) -> list[Edit]:
    """The edits an intervention spec makes (none for a plain run)."""
    if intervention is None:
        return []
    return REGISTRY[intervention.kind](intervention, ctx, seed)


def sites(intervention: Any, dims: Any) -> list[str]:
    """Hook names whose clean activations the intervention may read."""
    if intervention is None:
        return []
    return [resolve_site(intervention.hook, intervention.layer, dims).name]


from runner.interventions.steer import steer  # noqa: E402  (the registry needs the helpers above)
from runner.interventions.towards import ablate, patch, scale  # noqa: E402

REGISTRY: dict[str, Callable[..., list[Edit]]] = {"steer": steer, "patch": patch, "ablate": ablate, "scale": scale}
