"""Folded passes: many points' edits, each on its own rows of one forward, computing only what they change.

A model is causal, so a point whose edit starts at layer L and position p
changes nothing before layer L and nothing before position p. A pass starts at
layer L from the cached clean residual of each point's variant and, where the
model allows it (``reuses_prefix``), computes positions p.. only, their queries
attending to the clean keys and values of the positions before p: a steer at
``last`` recomputes one position per layer, a patch at position p the positions
from p. Points that share a layer are packed into passes of at most MAX_TOKENS
computed tokens (rows x positions).

Readouts a metric wants at every position come back whole: the positions
before the pass's first are the clean run's (an edit cannot reach them), and
so are the activations of blocks the pass skipped.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from runner import interventions, metrics
from runner.execute.inputs import batch_size, stack
from runner.metrics.base import position_axis
from runner.models.transformer import run_from
from runner.plan import PASS_TOKENS

# Tokens (rows x positions) in one folded forward pass. Larger passes were measured slower on CPU
# (activations no longer fit in cache: an RTG scan of 35k windows x 12 tokens in one pass ran 3x
# slower than 21 passes of 1.7k windows), smaller ones pay per-pass overhead. The plan sizes tasks by it.
MAX_TOKENS = PASS_TOKENS


def kv_names(layer: int, n_layers: int) -> set[str]:
    """The clean keys and values a pass from ``layer`` needs for a cached prefix."""
    return {f"blocks.{later}.attn.hook_{kv}" for later in range(layer, n_layers) for kv in ("k", "v")}


def chunks(items: list, length: int, reuse: bool) -> list[list]:
    """The points of one layer, (point, variant, edit) each, packed into passes of at most MAX_TOKENS tokens.

    With ``reuse`` a pass computes from the earliest position its points change, so points are
    grouped by that position and consecutive groups share a pass where that costs fewer tokens
    than a pass of their own (PASS_OVERHEAD) would: an exact partition, by dynamic programming.
    """
    if not reuse:
        return _packed(items, 0, length)
    by_first: dict[int, list] = defaultdict(list)
    for item in items:
        by_first[item[2].first].append(item)
    groups = sorted(by_first.items(), key=lambda g: -g[0])   # latest first: suffixes grow along the list
    pieces = [piece for first, group in groups for piece in _packed(group, first, length)]
    return [sum(pieces[j:i], []) for j, i in _partition(pieces, length)]


def _packed(items: list, first: int, length: int) -> list[list]:
    """Items in order, cut into passes of at most MAX_TOKENS (rows x positions from ``first`` on)."""
    out: list[list] = []
    for item in items:
        rows = batch_size(item[1].inputs)
        if out and (len(out[-1]) + 1) * rows * (length - first) <= MAX_TOKENS:
            out[-1].append(item)
        else:
            out.append([item])
    return out


PASS_OVERHEAD = 128  # a pass's own cost in tokens: ~3 ms of Python for 4 blocks, ~25 us a token (d_model 128, CPU)


def _partition(pieces: list[list], length: int) -> list[tuple[int, int]]:
    """The cheapest cut of pieces (latest start first) into passes: each pass costs overhead + rows x suffix."""
    rows = [sum(batch_size(item[1].inputs) for item in piece) for piece in pieces]
    suffix = [length - min(item[2].first for item in piece) for piece in pieces]
    best, cut = [0.0] + [float("inf")] * len(pieces), [0] * (len(pieces) + 1)
    for i in range(1, len(pieces) + 1):
        total = 0
        for j in range(i - 1, -1, -1):
            total += rows[j]
            tokens = total * suffix[i - 1]
            if tokens > MAX_TOKENS and j < i - 1:
                break
            if best[j] + PASS_OVERHEAD + tokens < best[i]:
                best[i], cut[i] = best[j] + PASS_OVERHEAD + tokens, j
    spans, i = [], len(pieces)
    while i:
        spans.append((cut[i], i))
        i = cut[i]
    return spans[::-1]


def _start(chunk: list, reuse: bool) -> int:
    return min(edit.first for _, _, edit in chunk) if reuse else 0


def folded_pass(group: Any, chunk: list, reuse: bool) -> list[tuple[torch.Tensor, dict, dict]]:
    """Last-position logits, readouts and every-position readouts of each point in ``chunk``, from one forward
    over their stacked rows (last-position readouts of the blocks the pass skipped are not among them)."""
    layer = chunk[0][2].layer
    start = _start(chunk, reuse) if layer is not None else 0
    rows, at = [], 0
    for _, variant, _ in chunk:
        rows.append(slice(at, at + batch_size(variant.inputs)))
        at += batch_size(variant.inputs)
    by_site: dict[str, list] = defaultdict(list)
    for r, (_, _, edit) in zip(rows, chunk):
        by_site[edit.site].append((r, edit.shifted(start)))
    captured: dict[str, torch.Tensor] = {}
    computed: dict[str, torch.Tensor] = {}  # every-position readouts at the positions the pass computes
    at_input = layer is not None and set(by_site) == {f"blocks.{layer}.hook_resid_pre"}
    hooks = [] if at_input else [(site, _edit_rows(edits)) for site, edits in by_site.items()]
    hooks += [(name, lambda x, hook, name=name: captured.__setitem__(name, metrics.last_position(name, x)))
              for name in sorted(group.readouts)]
    hooks += [(name, lambda x, hook, name=name: computed.__setitem__(name, x)) for name in sorted(group.sequences)]
    if layer is None:  # an edit before the blocks (embeddings): run from the inputs
        logits = group.model.run_with_hooks(stack([v.inputs for _, v, _ in chunk]), fwd_hooks=hooks)[:, -1]
    else:
        resid = torch.cat([v.cache[f"blocks.{layer}.hook_resid_pre"][:, start:] for _, v, _ in chunk])
        if at_input:  # the edits are to the residual the pass starts from: made to it, no edit sits in a block
            resid = _edit_rows(by_site[f"blocks.{layer}.hook_resid_pre"])(resid, None)
        variants = [v for _, v, _ in chunk] if len({id(v) for _, v, _ in chunk}) > 1 else [chunk[0][1]]  # shared
        prefix = {later: tuple(torch.cat([v.cache[f"blocks.{later}.attn.hook_{kv}"][:, :start] for v in variants])
                               for kv in ("k", "v"))
                  for later in range(layer, group.sizes.n_layers)} if start else None
        with group.model.hooks(fwd_hooks=hooks):
            # the final block computes the last position alone unless an edit sits in it or a metric reads it all
            last_only = (at_input or layer < group.sizes.n_layers - 1) and not group.sequences
            logits = run_from(group.model, resid, layer, slice(-1, None), prefix=prefix, last_only=last_only)[:, -1]
    return [(logits[r], {name: value[r] for name, value in captured.items()},
             _whole(group.sequences, variant.cache, {name: value[r] for name, value in computed.items()}, start))
            for r, (_, variant, _) in zip(rows, chunk)]


def _whole(names: set[str], clean: dict[str, torch.Tensor], computed: dict[str, torch.Tensor],
           start: int) -> dict[str, torch.Tensor]:
    """A point's activations at every position: the clean run's before ``start``, then what the pass computed.

    Causality makes this exact: an edit from position ``start`` on changes nothing before it, and
    a block the pass skipped (before the edit's layer) is the clean run's at every position.
    """
    out = {}
    for name in names:
        if name not in computed:
            out[name] = clean[name]
        else:
            axis = position_axis(name)
            out[name] = torch.cat([clean[name].narrow(axis, 0, start), computed[name]], dim=axis)
    return out


def _edit_rows(edits: list) -> Any:
    """A hook applying each point's edit to its own rows."""
    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        for r, edit in edits:
            x[r] = interventions.apply(edit, x[r])
        return x
    return hook
