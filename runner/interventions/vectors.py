"""Steering vectors: the v that ``steer`` adds, from a file, a seeded random draw, a contrast or a direction.

Every function takes the vector source (``file``, ``random``, ``contrast`` or
``direction``), the resolved site and the task's context, and returns v as a
float32 vector on the CPU, as long as the site's activation's last dim.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from runner.envs.selection import SELECTIONS, selection_mask
from runner.interventions.edit import region
from runner.models.sites import Site, position_indices


def from_file(source: Any, site: Site, ctx: Any, head: int | None, position: Any) -> torch.Tensor:
    array = np.load(ctx.resolve(source.file), allow_pickle=False)
    if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise ValueError(f"{source.file} does not hold finite real numbers (it changed since the plan checked it?)")
    return torch.as_tensor(np.asarray(array, dtype=np.float32).reshape(site.width(ctx.sizes)))


def from_random(source: Any, site: Site, ctx: Any, head: int | None, position: Any) -> torch.Tensor:
    """A seeded unit direction, scaled to ``norm``: a number, the mean activation norm at the head and
    positions steered (``match``), or another vector's norm (``{like: ...}``)."""
    opts = source.random
    rng = np.random.default_rng(ctx.seed if opts.seed is None else opts.seed)
    v = rng.standard_normal(site.width(ctx.sizes))
    v /= np.linalg.norm(v)
    if opts.norm == "match":
        clean = ctx.clean_activation(site.name)
        v *= float(_at_positions(clean, site, head, position, ctx).norm(dim=-1).mean())
    elif isinstance(opts.norm, (int, float)):
        v *= opts.norm
    elif opts.norm is not None:
        v *= float(steering_vector(opts.norm.like, site, ctx, head, position).norm())
    return torch.as_tensor(v, dtype=torch.float32)


def from_direction(source: Any, site: Site, ctx: Any, head: int | None, position: Any) -> torch.Tensor:
    """W_U[:, toward] minus W_U[:, against] (or the mean of every other column)."""
    w_u = ctx.model.W_U.detach().float().cpu()                  # [d_model, vocab]
    toward, against = source.direction.ids()
    others = [i for i in range(w_u.shape[1]) if i != toward]
    away = w_u[:, against] if against is not None else w_u[:, others].mean(dim=1)
    return w_u[:, toward] - away


def from_contrast(source: Any, site: Site, ctx: Any, head: int | None, position: Any) -> torch.Tensor:
    """Mean activation of the positive side minus the negative side's, at the steered head and positions."""
    sides = (_side_activation(getattr(source.contrast, side), site.name, ctx) for side in ("positive", "negative"))
    pos, neg = (_at_positions(acts, site, head, position, ctx) for acts in sides)
    return _mean_vector(pos) - _mean_vector(neg)


SOURCES: dict[str, Callable[..., torch.Tensor]] = {
    "file": from_file, "random": from_random, "direction": from_direction, "contrast": from_contrast,
}


def steering_vector(source: Any, site: Site, ctx: Any, head: int | None = None, position: Any = "all") -> torch.Tensor:
    """The vector v a vector source gives at a site (at one head of it, when given), float32 on the CPU.

    When the context offers a ``vectors`` dict, each distinct vector is computed once in it
    (a coefficient scan asks for the same vector at every coefficient).
    """
    memo = getattr(ctx, "vectors", None)
    try:
        key = (source, site.name, head, position if not isinstance(position, list) else tuple(position))
        hash(key)
    except TypeError:  # a source holding lists (token contrasts): computed each time
        memo = None
    if memo is None:
        return SOURCES[source.kind](source, site, ctx, head, position)
    if key not in memo:
        memo[key] = SOURCES[source.kind](source, site, ctx, head, position)
    return memo[key]


def _at_positions(acts: torch.Tensor, site: Site, head: int | None, position: Any, ctx: Any) -> torch.Tensor:
    """Activations [batch, pos, ...] at a head and positions, resolved against their own length."""
    return acts[region(site.short, head, position_indices(position, acts.shape[1], ctx.sizes.roles))]


def _side_activation(side: Any, site: str, ctx: Any) -> torch.Tensor:
    """The activations a contrast side gives: other inputs, or the selected samples of the clean run."""
    if side.kind not in SELECTIONS:
        return ctx.activation_of(side, site)
    mask = selection_mask(ctx.trajectories(), side.kind, side.value)[ctx.samples()]
    if not mask.any():
        raise ValueError(f"the contrast selection {side.model_dump()} matches no sample of the data")
    return ctx.clean_activation(site)[torch.from_numpy(mask).to(ctx.device)]


def _mean_vector(acts: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the last (samples, positions, heads)."""
    return acts.reshape(-1, acts.shape[-1]).float().mean(dim=0).cpu()
