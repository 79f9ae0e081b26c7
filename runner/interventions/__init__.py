"""Interventions: every kind is x + c·d(x) at one address, with d built by a small registry of builders.

    steer   d = v                                   (a steering vector; see ``vectors``)
    scale   d = x                                   (x becomes (1 + c)·x)
    ablate  d = r − x, r = 0 | the mean over samples | another sample's (resample)
    patch   d = x_source − x
    path_patch  d = x_path − x, x_path the receiver's input with only the sender's path patched (``paths``)

A builder returns d as data (``offset``, ``gain``; see ``edit``); ``prepare``
adds the address and the coefficient to make the point's ``Edit``, which the
task applies to the point's own rows of a folded batch (``apply``). c = 0
leaves the model untouched.

What a builder may ask of the task (``ctx``): ``sizes`` (the model's
``ModelSizes``), ``length`` (positions per sample), ``device``, ``seed`` (the
spec's), ``model``, ``resolve(path)``, ``clean_activation(site)``,
``activation_of(data, site)`` (another input's activations) and
``trajectories()`` (the data, for selections).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from runner.interventions import paths
from runner.interventions.edit import Edit, apply, region
from runner.interventions.vectors import steering_vector
from runner.models.sites import Site, position_indices, resolve_site

Builder = Callable[[Any, Site, tuple, Any], tuple[Any, float]]


def steer(iv: Any, site: Site, index: tuple, ctx: Any) -> tuple[torch.Tensor, float]:
    return steering_vector(iv.vector, site, ctx, head=iv.head, position=iv.position).to(ctx.device), 0.0


def scale(iv: Any, site: Site, index: tuple, ctx: Any) -> tuple[None, float]:
    return None, 1.0


def ablate(iv: Any, site: Site, index: tuple, ctx: Any) -> tuple[torch.Tensor | None, float]:
    if iv.method == "zero":
        return None, -1.0
    clean = ctx.clean_activation(site.name)
    if iv.method == "mean":  # one sample, broadcast: the same mean serves a rollout's live episodes
        return clean.mean(dim=0, keepdim=True)[index], -1.0
    rng = np.random.default_rng(ctx.seed if iv.seed is None else iv.seed)
    return clean[torch.from_numpy(rng.permutation(clean.shape[0])).to(clean.device)][index], -1.0


def patch(iv: Any, site: Site, index: tuple, ctx: Any) -> tuple[torch.Tensor, float]:
    return ctx.activation_of(iv.source, site.name)[index], -1.0


BUILDERS: dict[str, Builder] = {"steer": steer, "scale": scale, "ablate": ablate, "patch": patch,
                                 "path_patch": paths.path_patch}


def site_of(iv: Any, sizes: Any) -> Site:
    """The hook an intervention addresses."""
    if iv.kind == "path_patch":  # addressed by its receiver (see ``paths``)
        return paths.receiver_site(iv, sizes)
    return resolve_site(iv.hook, iv.layer, sizes)


def extra_sites(iv: Any, sizes: Any) -> set[str]:
    """Hooks a builder reads in the clean (and source) run beyond the site and its block's input."""
    return paths.sites(iv, sizes) if iv.kind == "path_patch" else set()


def prepare(iv: Any, ctx: Any) -> Edit | None:
    """The edit an intervention spec makes in the task's model and inputs (None for a plain run)."""
    if iv is None:
        return None
    site = site_of(iv, ctx.sizes)
    positions = position_indices(iv.position, ctx.length, ctx.sizes.roles)
    head = paths.receiver_head(iv) if iv.kind == "path_patch" else iv.head
    offset, gain = BUILDERS[iv.kind](iv, site, region(site.short, head, positions), ctx)
    return Edit(site.name, site.layer, site.short, head, None if positions is None else tuple(positions),
                iv.coefficient, offset, gain)


def hook(edit: Edit) -> tuple[str, Callable]:
    """A TransformerLens forward hook applying ``edit`` to every row (a rollout's batch belongs to one point)."""
    return edit.site, lambda x, hook: apply(edit, x)


__all__ = ["BUILDERS", "Edit", "apply", "extra_sites", "hook", "prepare", "region", "site_of"]
