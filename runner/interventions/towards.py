"""patch, ablate and scale: x + c·(r − x) for a reference activation r.

    patch   r = the source run's activation at the site
    ablate  r = 0, the mean over the data's samples, or another sample's (resample)
    scale   r = 2x, so that x becomes (1 + c)·x
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.interventions import Edit, address


def _towards(site: str, index: tuple, c: float, reference: Any) -> list[Edit]:
    """One edit moving the addressed region a fraction c of the way to ``reference(x)``."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        r = reference(x)
        if c == 1:  # exactly r: x + (r - x) can differ from r in the last bit
            y[index] = r[index].expand_as(x[index])
        else:
            y[index] = x[index] + c * (r[index] - x[index])
        return y

    return [(site, edit)]


def scale(iv: Any, ctx: Any, seed: int) -> list[Edit]:
    site, index = address(iv, ctx)
    return _towards(site.name, index, iv.coefficient, lambda x: 2 * x)


def ablate(iv: Any, ctx: Any, seed: int) -> list[Edit]:
    site, index = address(iv, ctx)
    if iv.method == "zero":
        return _towards(site.name, index, iv.coefficient, torch.zeros_like)
    clean = ctx.clean_activation(site.name)
    if iv.method == "mean":  # one sample, broadcast: the same mean serves a rollout's live episodes
        reference = clean.mean(dim=0, keepdim=True)
    else:
        rng = np.random.default_rng(ctx.spec_seed if iv.seed is None else iv.seed)
        reference = clean[torch.from_numpy(rng.permutation(clean.shape[0])).to(clean.device)]
    return _towards(site.name, index, iv.coefficient, lambda x: reference)


def patch(iv: Any, ctx: Any, seed: int) -> list[Edit]:
    site, index = address(iv, ctx)
    source = ctx.activation_of(iv.source, site.name)
    return _towards(site.name, index, iv.coefficient, lambda x: source)
