"""dla: direct logit attribution of the last position's logit difference, in the run being measured.

The logit difference logit[a] - logit[b] of the intervened run is a sum over
what writes into the residual stream at the last position, each term read
through the run's own final norm: centred (LayerNorm subtracts the mean; an RMS
norm does not), divided by that run's ``ln_final.hook_scale``, multiplied by the
norm's weight and projected on W_U[:, a] - W_U[:, b]. The terms are the
embedding, the positional embedding, every head (its z times its W_O), every
MLP's output, one ``bias`` (every attention output bias b_O, the final norm's
bias and the unembedding bias) and ``intervention``: what an edit wrote into the
residual stream itself (a steer at resid_pre, a patch of attn_out), which no
component's activation holds; 0 for edits inside a component (z, an MLP) and in
the clean run. The components sum to the logit difference. (On TransformerLens
4's bridge ``hook_resid_mid`` is the second norm's input, ``ln2.hook_in``: an
edit there reaches the MLP alone, so it shows in that MLP, not in intervention.)

Because the final scale is the measured run's, the attribution is exact under
any intervention: over a coefficient scan or a target-return scan each point is
decomposed in its own run. ``by: layer`` gives the accumulated residual instead
(TransformerLens's ``accumulated_resid``): the logit difference the residual
entering block 0 and after each block would give through the run's final scale,
its last value the logit difference.
"""
from __future__ import annotations

from typing import Any, Iterator, Literal

from pydantic import ConfigDict, Field, model_validator

from runner.metrics.base import Reading, Variable, register
from runner.metrics.logits import TwoChoices

EMBEDS = ("embed", "pos_embed")
CONSTANT, EDIT = "bias", "intervention"
SCALE = "ln_final.hook_scale"


def components(n_layers: int, n_heads: int) -> list[str]:
    """The labels of ``component``, in the order the residual stream receives them.

    >>> components(2, 2)
    ['embed', 'pos_embed', 'L0H0', 'L0H1', 'L0_mlp', 'L1H0', 'L1H1', 'L1_mlp', 'bias', 'intervention']
    """
    per_layer = [[f"L{layer}H{head}" for head in range(n_heads)] + [f"L{layer}_mlp"] for layer in range(n_layers)]
    return [*EMBEDS, *(label for labels in per_layer for label in labels), CONSTANT, EDIT]


def _resid_reads(n_layers: int) -> list[str]:
    """Where ``by: layer`` reads the residual: entering block 0, then after each block (layer_read's order)."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


class DirectLogitAttribution(TwoChoices):
    """Direct logit attribution: logit[a] - logit[b] at the last position of the run being measured (the
    intervened one), decomposed over component: embed, pos_embed (agents: the timestep embedding), L<l>H<h>
    (each head: z times its W_O), L<l>_mlp, bias (every attention output bias, the final norm's bias and the
    unembedding bias) and intervention (what an edit wrote into the residual stream itself, as a steer at
    resid_pre does; 0 for an edit inside a head or an MLP). Each component is centred (LayerNorm; not for RMS
    norms), divided by the run's final norm scale (ln_final.hook_scale), multiplied by the norm's weight and
    projected on W_U[:, a] - W_U[:, b]; the components sum to dla_total, the logit difference. by: layer gives
    the accumulated residual over layer_read instead (embed: the residual entering block 0; then after each
    block), each read through the run's final scale, biases included: its last value is dla_total."""

    kind: Literal["dla"]
    by: Literal["component", "layer"] = Field(
        "component", description="component: one value per embedding, head, MLP, bias and intervention; layer: the "
                                 "accumulated residual at the embedding and after each block (dim layer_read).")
    variables = {"dla": Variable(("sample", "component"),
                                 "direct logit attribution of logit[a] - logit[b] at the last position"),
                 "dla_total": Variable(("sample",), "logit[a] - logit[b] at the last position, the sum dla decomposes")}
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["tokens"]}, {"required": ["actions"]}]})

    @model_validator(mode="after")
    def _one_pair(self) -> "DirectLogitAttribution":
        if (self.tokens is None) == (self.actions is None):
            raise ValueError("dla takes exactly one of tokens: [a, b] (token models) or actions: [a, b] (agents)")
        return self

    def declared(self) -> dict[str, Variable]:
        if self.by == "component":
            return self.variables
        accumulated = Variable(("sample", "layer_read"), "logit[a] - logit[b] of the residual at the embedding and "
                                                         "after each block, through the run's final norm scale")
        return {**self.variables, "dla": accumulated}

    def attrs(self, name: str) -> dict[str, str]:
        a, b = self.actions or self.tokens
        attrs = super().attrs(name)
        return {**attrs, "long_name": attrs.get("long_name", "").replace("logit[a] - logit[b]",
                                                                           f"logit[{a}] - logit[{b}]")}

    def labels_for(self, sizes: Any) -> dict[str, list[str]]:
        return {"component": components(sizes.n_layers, sizes.n_heads)} if self.by == "component" else {}

    def reads(self, n_layers: int) -> set[str]:
        if self.by == "layer":
            return {SCALE, *_resid_reads(n_layers)}
        per_layer = {f"blocks.{layer}.{hook}" for layer in range(n_layers) for hook in ("attn.hook_z", "hook_mlp_out")}
        return {SCALE, "hook_embed", "hook_pos_embed", f"blocks.{n_layers - 1}.hook_resid_post", *per_layer}

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        yield from super().problems(sizes, intervention)
        if sizes.attn_only:
            yield "dla reads each block's MLP output (hook_mlp_out); an attn_only model has none"


@register(DirectLogitAttribution)
def dla(metric: DirectLogitAttribution, r: Reading) -> dict[str, Any]:
    import torch

    a, b = metric.choice_ids()
    body = getattr(r.model, "body", r.model)  # an agent's TransformerBridge, or the model itself
    direction, constant = _readout(body, a, b)
    scale = r.readouts[SCALE].reshape(-1)  # [sample]: the measured run's final norm scale

    def through_final_norm(x: torch.Tensor) -> torch.Tensor:
        """[sample, ..., d_model] -> [sample, ...]: onto the (centred) direction, divided by the run's scale."""
        return (x @ direction) / scale.reshape(-1, *([1] * (x.dim() - 2)))

    total = r.out[:, a] - r.out[:, b]
    if metric.by == "layer":
        resid = torch.stack([r.readouts[name] for name in _resid_reads(body.cfg.n_layers)], dim=1)
        return {"dla": through_final_norm(resid) + constant, "dla_total": total}
    parts = [through_final_norm(r.readouts[f"hook_{name}"]).unsqueeze(1) for name in EMBEDS]
    for layer in range(body.cfg.n_layers):
        z = r.readouts[f"blocks.{layer}.attn.hook_z"]                     # [sample, head, d_head]
        heads = torch.einsum("shd,hdm->shm", z, body.W_O[layer])          # each head's write, [sample, head, d]
        parts += [through_final_norm(heads), through_final_norm(r.readouts[f"blocks.{layer}.hook_mlp_out"])[:, None]]
    biases = through_final_norm(body.b_O.sum(dim=0).expand(len(scale), -1))
    written = torch.cat(parts, dim=1)
    final = through_final_norm(r.readouts[f"blocks.{body.cfg.n_layers - 1}.hook_resid_post"])
    edit = final - written.sum(dim=1) - biases  # what the blocks' and embeddings' own activations do not hold
    return {"dla": torch.cat([written, (biases + constant)[:, None], edit[:, None]], dim=1), "dla_total": total}


def _readout(body: Any, a: int, b: int) -> tuple[Any, Any]:
    """The final norm's weight times W_U[:, a] - W_U[:, b], centred where the norm centres (LayerNorm, LNPre;
    not RMS, RMSPre), and the constant the norm's bias and the unembedding bias add."""
    from transformer_lens.model_bridge.generalized_components.normalization import NormalizationBridge

    norm = body.ln_final
    if not isinstance(norm, NormalizationBridge):
        raise ValueError(f"dla reads the final norm through ln_final.hook_scale; this model's is {type(norm).__name__}")
    native = norm.original_component
    unembed = body.W_U[:, a] - body.W_U[:, b]
    weight = getattr(native, "weight", None)  # LNPre and RMSPre have none
    if weight is not None:
        weight = 1.0 + weight if norm.uses_weight_offset else weight
    direction = unembed * weight if weight is not None else unembed
    bias = getattr(native, "bias", None) if not norm.uses_rms_norm else None
    constant = body.b_U[a] - body.b_U[b] + (bias @ unembed if bias is not None else 0.0)
    if not norm.uses_rms_norm:  # (x - mean x) . u = x . (u - mean u): the norm's centring moves onto the direction
        direction = direction - direction.mean()
    return direction, constant
