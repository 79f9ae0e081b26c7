"""steer: x + c·v at (hook, layer, head, position)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.checks import resolve_path
from runner.envs.selection import is_selection, selection_mask
from runner.interventions import Edit, address, region
from runner.sites import position_indices


def steer(iv: Any, ctx: Any, seed: int) -> list[Edit]:
    """One edit adding coefficient · vector at the addressed site."""
    site, index = address(iv, ctx)
    vector = steering_vector(iv.vector, site, ctx, default_seed=ctx.spec_seed, head=iv.head, position=iv.position)
    delta = (iv.coefficient * vector).to(ctx.device)

    def edit(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[index] = x[index] + delta
        return y

    edit.vector = vector.numpy()  # the run folder keeps every vector used (vectors/<point>.npy)
    return [(site.name, edit)]


def steering_vector(source: Any, site: Any, ctx: Any, default_seed: int, head: int | None = None,
                    position: Any = "all") -> torch.Tensor:
    """The vector v a vector source gives at a site (at one head of it, when given), float32 on the CPU."""
    width = site.width(ctx.dims)
    if hasattr(source, "file"):
        array = np.load(resolve_path(source.file, ctx.base_dir), allow_pickle=False)
        return torch.as_tensor(np.asarray(array, dtype=np.float32).reshape(width))
    if hasattr(source, "random"):
        opts = source.random
        rng = np.random.default_rng(default_seed if opts.seed is None else opts.seed)
        v = rng.standard_normal(width)
        v /= np.linalg.norm(v)
        if opts.norm == "match":
            clean = ctx.clean_activation(site.name)
            v *= float(_at_positions(clean, site, head, "all", ctx).norm(dim=-1).mean())
        elif opts.norm is not None:
            v *= opts.norm
        return torch.as_tensor(v, dtype=torch.float32)
    if hasattr(source, "direction"):
        w_u = ctx.model.W_U.detach().float().cpu()                  # [d_model, vocab]
        toward, against = source.direction.ids()
        others = [i for i in range(w_u.shape[1]) if i != toward]
        away = w_u[:, against] if against is not None else w_u[:, others].mean(dim=1)
        return w_u[:, toward] - away
    sides = (_side_activation(getattr(source.contrast, side), site.name, ctx) for side in ("positive", "negative"))
    pos, neg = (_at_positions(acts, site, head, position, ctx) for acts in sides)
    return _mean_vector(pos) - _mean_vector(neg)


def _at_positions(acts: torch.Tensor, site: Any, head: int | None, position: Any, ctx: Any) -> torch.Tensor:
    """Activations [batch, pos, ...] at a head and positions, resolved against their own length."""
    return acts[region(site, head, position_indices(position, acts.shape[1], ctx.dims.roles))]


def _side_activation(side: Any, site: str, ctx: Any) -> torch.Tensor:
    """The activations a contrast side gives: other inputs, or the selected samples of the clean run."""
    if not is_selection(side):
        return ctx.activation_of(side, site)
    mask = selection_mask(ctx.trajectories(), side)
    if not mask.any():
        raise ValueError(f"the contrast selection {side.model_dump()} matches no sample of the data")
    return ctx.clean_activation(site)[torch.from_numpy(mask).to(ctx.device)]


def _mean_vector(acts: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the last (samples, positions, heads)."""
    return acts.reshape(-1, acts.shape[-1]).float().mean(dim=0).cpu()
