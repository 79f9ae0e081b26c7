"""Metrics that read the intervened run's activations: residual norms and logit lens (at the last position or at
every position), attention of the last position."""
from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal

from pydantic import Field

from runner.metrics.base import Metric, Reading, Variable, register

EMBED = "embed"  # the layer_read label of the residual stream entering block 0: the embedding sum


def layer_reads(n_layers: int) -> tuple[str, ...]:
    """The labels of ``layer_read``: the embedding, then each block's output by its number as text.

    >>> layer_reads(2)
    ('embed', '0', '1')
    """
    return (EMBED, *map(str, range(n_layers)))


def _read_at(n_layers: int) -> list[str]:
    """The hook of each layer_read, in order: the residual entering block 0, then after each block."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


class Lens(Metric):
    """What the residual-stream readers share: where they read and at which positions."""

    positions: Literal["last", "all"] = Field(
        "last", description="last: the last position (the one the output is read at); all: every position, in "
                            "sequence order, over an extra dim position after layer_read (labelled by role for "
                            "agents: I0, R1, S1, ...; by index for token models).")

    def declared(self) -> dict[str, Variable]:
        if self.positions == "last":
            return self.variables
        return {name: var._replace(dims=(*var.dims[:2], "position", *var.dims[2:]),
                                   long_name=var.long_name.replace(", last position", ", each position"))
                for name, var in self.variables.items()}

    def reads(self, n_layers: int) -> set[str]:
        return set(_read_at(n_layers)) if self.positions == "last" else set()

    def reads_all_positions(self, n_layers: int) -> set[str]:
        return set(_read_at(n_layers)) if self.positions == "all" else set()


def _stream(metric: Lens, r: Reading) -> Any:
    """The intervened residual at each layer_read, [sample, layer_read, d] (or [sample, layer_read, position, d])."""
    import torch

    read = r.readouts if metric.positions == "last" else r.sequences
    return torch.stack([read[name] for name in _read_at(r.model.cfg.n_layers)], dim=1)


class ResidNorm(Lens):
    """L2 norm of the intervened residual stream at the embedding and after each block, at the last position
    (positions: all: at every position). layer_read is labelled as text: embed (the residual entering block 0,
    the embedding sum, with any edit made there), then 0, 1, ... (the residual after that block); select with
    sel(layer_read="embed") or sel(layer_read="1"); isel(layer_read=-1) is the final block's output."""

    kind: Literal["resid_norm"]
    variables = {"resid_norm": Variable(("sample", "layer_read"),
                                        "L2 norm of the residual stream at the embedding and after each block, "
                                        "last position")}


@register(ResidNorm)
def resid_norm(metric: ResidNorm, r: Reading) -> dict[str, Any]:
    return {"resid_norm": _stream(metric, r).norm(dim=-1)}


class LogitLens(Lens):
    """Logits (actions for agents) read from the intervened residual stream at the embedding and after each block
    through the final norm and unembedding, unembed(ln_final(resid)) with the norm recomputed for each residual,
    at the last position (positions: all: at every position). layer_read is labelled as text: embed (the residual
    entering block 0, the embedding sum, with any edit made there), then 0, 1, ... (the residual after that
    block); select with sel(layer_read="embed") or sel(layer_read="1"); isel(layer_read=-1) is the final block's
    output, equal to the model's own logits."""

    kind: Literal["logit_lens"]
    variables = {"logit_lens": Variable(("sample", "layer_read", "vocab"),
                                        "logits read from the residual at the embedding and after each block "
                                        "(logit lens), last position")}


@register(LogitLens)
def logit_lens(metric: LogitLens, r: Reading) -> dict[str, Any]:
    stream = _stream(metric, r)
    flat = stream.reshape(stream.shape[0], -1, stream.shape[-1])  # [sample, reads, d]: the shape the bridge takes
    return {"logit_lens": r.model.unembed(r.model.ln_final(flat)).reshape(*stream.shape[:-1], -1)}


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
