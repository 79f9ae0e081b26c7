"""Path patching: a sender's change between two runs, carried along one path into a receiver, all else clean.

As in path patching (Wang et al. 2022, with every other component frozen at the
clean run), for a sender S (a head's z·W_O, or an MLP's output) and the clean and
source runs:

    Δ = S(source) − S(clean)                      at the chosen positions, 0 elsewhere

The receiver reads the clean residual plus Δ, and only the receiver recomputes:

    head h of block L, input q (k, v)   the residual entering block L plus Δ, through
                                        ln1 (its scale recomputed) and W_Q[h] (W_K, W_V)
    the MLP of block L                  the block's resid_mid plus Δ, through ln2 and the MLP
    logits                              the final residual (the last block's hook_resid_post,
                                        before ln_final) plus Δ: the sender's direct effect

Each input is recomputed by the block itself, fed the clean residual of that
variant (hooks capture what it computes), so any norm and attention the model
has is the model's own. The point's edit is the patch primitive at the receiver's
site (``blocks.L.attn.hook_q`` head h, ``blocks.L.hook_mlp_out``, or the final
``hook_resid_post``): x + c·(x_path − x), written as the offset x_path − x_clean
(gain 0). That is the same thing, since everything before the receiver is the
clean run; and the offset is exactly 0 where Δ is, so a source equal to the data
changes nothing. Everything downstream of the receiver then recomputes normally.

Only the positions where Δ is non-zero change (a head's input and an MLP at a
position read the residual at that position only), so the edit's region is those
positions and a folded pass may start at the first of them.
"""
from __future__ import annotations

from typing import Any

import torch

from runner.models.sites import Site, resolve_site


def receiver_site(iv: Any, sizes: Any) -> Site:
    """The hook a path ends at: the receiver head's q / k / v, its MLP's output, or the last block's output."""
    if iv.receiver == "logits":
        last = sizes.n_layers - 1
        return Site(f"blocks.{last}.hook_resid_post", last, "resid_post")
    return resolve_site("mlp_out" if iv.receiver.mlp else iv.receiver.reads, iv.receiver.layer, sizes)


def receiver_head(iv: Any) -> int | None:
    return None if iv.receiver == "logits" else iv.receiver.head


def sender_site(iv: Any) -> str:
    """The activation a sender's write is computed from: the head's z, or the MLP's output."""
    layer = iv.sender.layer
    return f"blocks.{layer}.hook_mlp_out" if iv.sender.mlp else f"blocks.{layer}.attn.hook_z"


def sites(iv: Any, sizes: Any) -> set[str]:
    """What the task must cache in the clean and source runs, beyond the receiver site and its block's input."""
    return {sender_site(iv)}


def sender_delta(iv: Any, ctx: Any, positions: Any) -> torch.Tensor:
    """Δ [batch, pos, d_model]: the sender's residual write in the source run minus in the clean run, at
    ``positions`` (a list, or slice(None)); zero elsewhere."""
    name = sender_site(iv)
    diff = ctx.activation_of(iv.source, name) - ctx.clean_activation(name)
    if not iv.sender.mlp:
        body = getattr(ctx.model, "body", ctx.model)  # an agent's TransformerBridge, or the model itself
        head = iv.sender.head
        diff = diff[:, :, head] @ body.W_O[iv.sender.layer, head]      # [batch, pos, d_head] @ [d_head, d_model]
    delta = torch.zeros_like(diff)
    delta[:, positions] = diff[:, positions]
    return delta


def receiver_input(model: Any, layer: int, reads: str, resid: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """What block ``layer`` computes at the receiver's site when it reads ``resid`` and its receiver reads Δ more:
    ``attn.hook_q`` (k, v) with Δ added to the block's input; ``hook_mlp_out`` with Δ added to resid_mid.

    (TransformerLens 4's bridge reads ``hook_resid_mid`` as ln2's input: an edit there reaches the MLP alone.)
    """
    captured: dict[str, torch.Tensor] = {}

    def grab(x: torch.Tensor, hook: Any) -> None:
        captured["x"] = x

    if reads == "mlp":
        if getattr(getattr(model, "body", model).cfg, "parallel_attn_mlp", False):
            raise ValueError("an MLP receiver reads its block's resid_mid; this model's MLPs read the block's input "
                             "in parallel with attention (parallel_attn_mlp), which path_patch does not model")
        hooks = [(f"blocks.{layer}.hook_resid_mid", lambda x, hook: x + delta), (f"blocks.{layer}.hook_mlp_out", grab)]
    else:
        hooks, resid = [(f"blocks.{layer}.attn.hook_{reads}", grab)], resid + delta
    with model.hooks(fwd_hooks=hooks):
        model.blocks[layer](resid)
    return captured["x"]


def path_patch(iv: Any, site: Site, index: tuple, ctx: Any) -> tuple[torch.Tensor, float]:
    """The offset (gain 0) that moves the receiver's site from the clean run to the path-patched one."""
    delta = sender_delta(iv, ctx, index[1])
    if iv.receiver == "logits":
        return delta[index], 0.0
    layer, reads = iv.receiver.layer, iv.receiver.reads
    resid = ctx.clean_activation(f"blocks.{layer}.hook_resid_pre")
    memo = getattr(ctx, "vectors", {})  # the task's per-variant memo: the clean input once per receiver site
    key = ("path_patch clean input", layer, reads)
    if key not in memo:
        memo[key] = receiver_input(ctx.model, layer, reads, resid, torch.zeros_like(delta))
    return (receiver_input(ctx.model, layer, reads, resid, delta) - memo[key])[index], 0.0
