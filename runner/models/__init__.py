"""Model sources -> TransformerLens models, built once per process and cached."""
from __future__ import annotations

from typing import Any

import torch

from runner.spec.models import TransformerModel
from runner.spec import content_id

_CACHE: dict[tuple[str, str], Any] = {}


def build_transformer(config: Any, device: str = "cpu") -> Any:
    """A TransformerBridge built natively from a TransformerConfig; same init_seed, same weights."""
    from transformer_lens.model_bridge import TransformerBridge
    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native)

    cfg = {
        "n_layers": config.n_layers,
        "d_model": config.d_model,
        "n_heads": config.n_heads,
        "d_head": config.d_head or config.d_model // config.n_heads,
        "d_mlp": config.d_mlp or 4 * config.d_model,
        "d_vocab": config.d_vocab,
        "n_ctx": config.n_ctx,
        "act_fn": config.act_fn,
        "normalization_type": config.normalization,
        "attn_only": config.attn_only,
        "seed": config.init_seed,
    }
    model = TransformerBridge.boot_native(cfg, device=device)
    model.eval()
    return model


def get_model(source: Any, device: str = "cpu") -> Any:
    """The model a spec's model source names, cached for the life of the process (a Ray worker too)."""
    key = (content_id(source.model_dump(mode="json")), device)
    if key not in _CACHE:
        if isinstance(source, TransformerModel):
            _CACHE[key] = build_transformer(source.transformer, device)
        else:
            raise TypeError(f"unknown model source {type(source).__name__}")
    return _CACHE[key]


def pick_device(gpus: float) -> str:
    """cuda when the task holds a GPU share and torch sees one, else cpu."""
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
