"""Model sources -> TransformerLens models and agents, built once per process and cached.

Importing this package is cheap (no torch): ``runner validate`` reads checkpoint
configs through ``runner.models.checkpoint`` without loading any weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.checks import resolve_path
from runner.spec import content_id
from runner.spec.models import CheckpointModel, TransformerModel

_CACHE: dict[tuple[str, str], Any] = {}


def boot_native_body(n_layers: int, d_model: int, n_heads: int, d_vocab: int, n_ctx: int, d_mlp: int | None = None,
                     act_fn: str = "gelu", init_seed: int = 0, d_head: int | None = None,
                     normalization: str = "LN", attn_only: bool = False, device: str = "cpu") -> Any:
    """A randomly initialised TransformerBridge (TransformerLens 4) built offline from sizes."""
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


def build_transformer(config: Any, device: str = "cpu") -> Any:
    """A TransformerBridge built natively from a TransformerConfig; same init_seed, same weights."""
    model = boot_native_body(config.n_layers, config.d_model, config.n_heads, config.d_vocab, config.n_ctx,
                             config.d_mlp, config.act_fn, config.init_seed, config.d_head, config.normalization,
                             config.attn_only, device)
    model.eval()
    return model


def get_model(source: Any, device: str = "cpu", base_dir: str | Path = ".") -> Any:
    """The model a spec's model source names, cached for the life of the process (a Ray worker too)."""
    if isinstance(source, TransformerModel):
        key = (content_id(source.model_dump(mode="json")), device)
        if key not in _CACHE:
            _CACHE[key] = build_transformer(source.transformer, device)
        return _CACHE[key]
    if isinstance(source, CheckpointModel):
        from runner.models.checkpoint import load_agent

        folder = resolve_path(source.checkpoint, base_dir)
        weights = folder / "model.safetensors"
        key = (str(folder.resolve()), weights.stat().st_mtime_ns if weights.exists() else 0, device)
        if key not in _CACHE:
            _CACHE[key] = load_agent(folder, device)
        return _CACHE[key]
    raise TypeError(f"unknown model source {type(source).__name__}")


def pick_device(gpus: float) -> str:
    """cuda when the task holds a GPU share and torch sees one, else cpu."""
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
