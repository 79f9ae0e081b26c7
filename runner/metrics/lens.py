"""Metrics that read the intervened run's activations at the last position: residual norms, logit lens, attention."""
from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal

from pydantic import Field

from runner.metrics.base import Metric, Reading, Variable, register


def _resid_after_blocks(r: Reading) -> Any:
    import torch

    n = r.model.cfg.n_layers
    return torch.stack([r.readouts[f"blocks.{layer}.hook_resid_post"] for layer in range(n)], dim=1)  # [B, L, d]


class ResidNorm(Metric):
    """L2 norm of the residual stream after each block at the last position, intervened."""

    kind: Literal["resid_norm"]
    variables = {"resid_norm": Variable(("sample", "layer_read"),
                                        "L2 norm of the residual stream after each block, last position")}

    def reads(self, n_layers: int) -> set[str]:
        return {f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)}


@register(ResidNorm)
def resid_norm(metric: ResidNorm, r: Reading) -> dict[str, Any]:
    return {"resid_norm": _resid_after_blocks(r).norm(dim=-1)}


class LogitLens(Metric):
    """Logits (actions for agents) read from the residual after each block through the final norm and
    unembedding, at the last position."""

    kind: Literal["logit_lens"]
    variables = {"logit_lens": Variable(("sample", "layer_read", "vocab"),
                                        "logits read from the residual after each block (logit lens)")}

    def reads(self, n_layers: int) -> set[str]:
        return {f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)}


@register(LogitLens)
def logit_lens(metric: LogitLens, r: Reading) -> dict[str, Any]:
    return {"logit_lens": r.model.unembed(r.model.ln_final(_resid_after_blocks(r)))}


class Attention(Metric):
    """Attention of the last position over all positions at chosen heads (positions labelled by role for
    agents); attn_head is labelled L{layer}H{head}."""

    kind: Literal["attention"]
    heads: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]] = Field(
        min_length=1, description="[[layer, head], ...]: the heads to read.")
    variables = {"attention": Variable(("sample", "attn_head", "position"),
                                       "attention of the last position at each head (attn_head: L<layer>H<head>)")}

    def labels(self) -> dict[str, list[str]]:
        return {"attn_head": [f"L{layer}H{head}" for layer, head in self.heads]}

    def reads(self, n_layers: int) -> set[str]:
        return {f"blocks.{layer}.attn.hook_pattern" for layer, _ in self.heads}

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        for layer, head in self.heads:
            if layer >= sizes.n_layers:
                yield f"attention layer {layer} is out of range: the model has {sizes.n_layers} layers"
            if head >= sizes.n_heads:
                yield f"attention head {head} is out of range: the model has {sizes.n_heads} heads"


@register(Attention)
def attention(metric: Attention, r: Reading) -> dict[str, Any]:
    import torch

    patterns = [r.readouts[f"blocks.{layer}.attn.hook_pattern"][:, head] for layer, head in metric.heads]
    return {"attention": torch.stack(patterns, dim=1)}
