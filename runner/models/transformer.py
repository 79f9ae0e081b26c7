"""TransformerLens bodies: build one offline from sizes, and run its blocks from a given layer on.

A model is causal: an edit at position p of layer L changes nothing before
layer L, nor at positions before p. ``run_from`` starts at layer L from a cached
residual; given the cached keys and values of the positions before p
(``prefix``), it computes positions p.. only, their queries attending to the
cached prefix. Hooks fire as in a full forward, on the positions computed.

>>> body = boot_native_body(n_layers=2, d_model=32, n_heads=4, d_vocab=20, n_ctx=16)
>>> tokens = torch.tensor([[1, 2, 3, 4, 5]])
>>> names = ["blocks.1.hook_resid_pre", "blocks.1.attn.hook_k", "blocks.1.attn.hook_v"]
>>> logits, cache = body.run_with_cache(tokens, names_filter=lambda n: n in names)
>>> late = run_from(body, cache["blocks.1.hook_resid_pre"], 1)
>>> torch.allclose(late, logits, atol=1e-6)
True
>>> prefix = {1: (cache["blocks.1.attn.hook_k"][:, :3], cache["blocks.1.attn.hook_v"][:, :3])}
>>> suffix = run_from(body, cache["blocks.1.hook_resid_pre"][:, 3:], 1, prefix=prefix)
>>> torch.allclose(suffix, logits[:, 3:], atol=1e-5)
True
>>> last = run_from(body, cache["blocks.1.hook_resid_pre"], 1, slice(-1, None), last_only=True)
>>> torch.allclose(last, logits[:, -1:], atol=1e-5)
True
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F


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


Prefix = dict[int, tuple[torch.Tensor, torch.Tensor]]  # layer -> (keys, values) [batch, pos, head, d_head]


def run_from(model: Any, resid: torch.Tensor, layer: int, positions: slice = slice(None),
             prefix: Prefix | None = None, last_only: bool = False) -> torch.Tensor:
    """Logits at ``positions`` from the residual stream entering block ``layer`` (hooks fire as usual).

    ``model`` is a TransformerBridge or an agent (which exposes its body's blocks,
    final norm and unembedding). TransformerLens 4's ``start_at_layer`` still runs
    the earlier blocks; this skips them and gives the same numbers. With ``prefix``
    (the keys and values of the positions before ``resid``'s, at every layer from
    ``layer`` on; fewer rows than ``resid`` when points x rows share it), ``resid``
    holds the later positions only and they attend to the prefix: positions an edit
    cannot reach are not computed again. With ``last_only`` only the last position's
    logits are wanted: the final block computes the keys and values the last position
    attends to, and the rest for the last position alone (its hooks fire on that
    position only, so edits must not sit in it).
    """
    prefix = prefix or {}
    final = len(model.blocks) - 1
    # the last-position shortcut computes keys and values itself: TransformerLens's native attention only
    tail = last_only and resid.shape[1] > 1 and _native_attention(model.blocks[final])
    with _attending_to(model, {at: (kv, None) for at, kv in prefix.items() if not (tail and at == final)}):
        for block in model.blocks[layer:final if tail else final + 1]:
            out = block(resid)
            resid = out[0] if isinstance(out, tuple) else out
    if tail:
        resid = _last_position_of_final_block(model, resid, prefix.get(final))
        positions = slice(-1, None)
    return model.unembed(model.ln_final(resid[:, positions]))


def _last_position_of_final_block(model: Any, resid: torch.Tensor, shared: Any) -> torch.Tensor:
    """The final block's output at the last position: keys and values of every position, the rest for the last."""
    block = model.blocks[-1]
    native = block.attn.original_component
    hidden = block.attn.hook_in(block.ln1(resid[:, :-1]))
    batch, seq = hidden.shape[:2]
    own = (native.k(hidden).view(batch, seq, native.n_heads, native.d_head),
           native.v(hidden).view(batch, seq, native.n_heads, native.d_head))
    with _attending_to(model, {len(model.blocks) - 1: (shared, own)}):
        out = block(resid[:, -1:])
    return out[0] if isinstance(out, tuple) else out


def _native_attention(block: Any) -> bool:
    return type(getattr(block.attn, "original_component", None)).__name__ == "NativeAttention"


def reuses_prefix(model: Any) -> bool:
    """Whether ``run_from`` can take a prefix on this model (causal, plain multi-head attention, no rotary)."""
    from transformer_lens.utilities.activation_functions import softcap_enabled

    for block in model.blocks:
        native = getattr(block.attn, "original_component", None)
        if not (type(native).__name__ == "NativeAttention" and native.causal and native.rotary is None
                and native.kv_repeats == 1 and not softcap_enabled(native.attn_scores_soft_cap)):
            return False
    return True


@contextlib.contextmanager
def _attending_to(model: Any, prefixes: dict[int, tuple[Any, Any]]) -> Iterator[None]:
    """Within the block, each listed layer's attention also attends to earlier positions' keys and values.

    Each layer gets (shared, own): ``shared`` keys and values with fewer rows than the queries (points x
    rows attend to the same, broadcast, not copied), then ``own`` ones with a row per query row; either
    may be None. Both are [batch, pos, head, d_head], shared first in position order.
    """
    natives = {layer: model.blocks[layer].attn.original_component for layer in prefixes}
    for layer, native in natives.items():
        native.forward = _suffix_attention(native, *prefixes[layer])
    try:
        yield
    finally:
        for native in natives.values():
            del native.forward  # back to NativeAttention.forward


def _suffix_attention(native: Any, shared: Any, own: Any) -> Any:
    """NativeAttention.forward for positions after cached ones: keys are shared, then own, then the queries' own."""
    shared_k, shared_v = (t.transpose(1, 2) for t in shared) if shared is not None else (None, None)
    own_k, own_v = (t.transpose(1, 2) for t in own) if own is not None else (None, None)
    offset = sum(t.shape[2] for t in (shared_k, own_k) if t is not None)

    def forward(hidden_states: torch.Tensor, attention_mask: Any = None, position_ids: Any = None,
                pattern_fn: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        batch, seq, _ = hidden_states.shape
        q = native.q(hidden_states).view(batch, seq, native.n_heads, native.d_head).transpose(1, 2)
        k = native.k(hidden_states).view(batch, seq, native.n_heads, native.d_head).transpose(1, 2)
        v = native.v(hidden_states).view(batch, seq, native.n_heads, native.d_head).transpose(1, 2)
        if own_k is not None:
            k, v = torch.cat([own_k, k], dim=2), torch.cat([own_v, v], dim=2)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if shared_k is not None:  # each point's rows against the same keys, broadcast
            rows = shared_k.shape[0]
            early = torch.matmul(q.view(-1, rows, *q.shape[1:]), shared_k.transpose(-2, -1))
            scores = torch.cat([early.view(batch, *q.shape[1:3], -1), scores], dim=-1)
        mask = native.causal_mask[offset:offset + seq, :offset + seq]
        pattern = F.softmax(scores.div(native.scale).masked_fill(mask, float("-inf")), dim=-1).masked_fill(mask, 0.0)
        if pattern_fn is not None:
            pattern = pattern_fn(pattern)
        split = shared_k.shape[2] if shared_k is not None else 0
        mixed = torch.matmul(pattern[..., split:], v)
        if shared_k is not None:
            early = pattern[..., :split].reshape(-1, shared_v.shape[0], *pattern.shape[1:3], split)
            mixed = mixed + torch.matmul(early, shared_v).view(batch, *q.shape[1:])
        attn = mixed.transpose(1, 2).contiguous().view(batch, seq, -1)
        return native.o(attn), pattern

    return forward
