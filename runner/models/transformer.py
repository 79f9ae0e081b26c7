"""TransformerLens bodies: build one offline from sizes, and run its blocks from a given layer on.

>>> body = boot_native_body(n_layers=2, d_model=32, n_heads=4, d_vocab=20, n_ctx=16)
>>> tokens = torch.tensor([[1, 2, 3, 4]])
>>> logits, cache = body.run_with_cache(tokens, names_filter=lambda n: n == "blocks.1.hook_resid_pre")
>>> late = run_from(body, cache["blocks.1.hook_resid_pre"], 1)
>>> torch.allclose(late, logits, atol=1e-6)
True
"""
from __future__ import annotations

from typing import Any

import torch


def boot_native_body(n_layers: int, d_model: int, n_heads: int, d_vocab: int, n_ctx: int, d_head: int | None = None,
                     d_mlp: int | None = None, act_fn: str = "gelu", normalization: str = "LN",
                     attn_only: bool = False, init_seed: int = 0, device: str = "cpu") -> Any:
    """A randomly initialised TransformerBridge (TransformerLens 4) built offline; same init_seed, same weights."""
    from transformer_lens.model_bridge import TransformerBridge
    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native)

    cfg = {
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "d_head": d_head or d_model // n_heads,
        "d_mlp": d_mlp or 4 * d_model,
        "d_vocab": d_vocab,
        "n_ctx": n_ctx,
        "act_fn": act_fn,
        "normalization_type": normalization,
        "attn_only": attn_only,
        "seed": init_seed,
    }
    return TransformerBridge.boot_native(cfg, device=device)


def run_from(model: Any, resid: torch.Tensor, layer: int, positions: slice = slice(None)) -> torch.Tensor:
    """Logits at ``positions`` from the residual stream entering block ``layer`` (hooks fire as usual).

    ``model`` is a TransformerBridge or an agent (which exposes its body's blocks,
    final norm and unembedding). TransformerLens 4's ``start_at_layer`` still runs
    the earlier blocks; this skips them and gives the same numbers.
    """
    for block in model.blocks[layer:]:
        out = block(resid)
        resid = out[0] if isinstance(out, tuple) else out
    return model.unembed(model.ln_final(resid[:, positions]))
