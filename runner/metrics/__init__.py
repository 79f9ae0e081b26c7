"""Metrics: plain functions from a point's last-position logits to labelled arrays.

Each takes (metric spec, Reading) and returns ``{variable: (dims, array, attrs)}``;
``measure`` applies the metric's ``reduce`` (mean over samples) afterwards.
Closed-loop metrics (``rollout``) play episodes instead: see ``rollout.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

Result = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]


@dataclass
class Reading:
    """What a point's metrics read: last-position logits, each [sample, vocab or action]."""

    clean: torch.Tensor                 # the unintervened run
    out: torch.Tensor                   # the intervened run
    source: torch.Tensor | None = None  # the patch source run (restored_fraction)
    readouts: dict[str, torch.Tensor] | None = None  # intervened activations at the last position (see readouts())
    model: Any = None
    agent: bool = False


def logits(metric: Any, r: Reading) -> Result:
    return {"logits": (("sample", "vocab"), _np(r.out), {"long_name": "logits at the last position"})}


def probs(metric: Any, r: Reading) -> Result:
    return {"probs": (("sample", "vocab"), _np(torch.softmax(r.out, dim=-1)),
                      {"long_name": "next-token probability at the last position", "units": "1"})}


def logit_diff(metric: Any, r: Reading) -> Result:
    a, b = metric.choice_ids()
    names = metric.actions or metric.tokens
    return {"logit_diff": (("sample",), _np(r.out[:, a] - r.out[:, b]),
                           {"long_name": f"logit[{names[0]}] - logit[{names[1]}] at the last position"})}


def kl(metric: Any, r: Reading) -> Result:
    log_p, log_q = torch.log_softmax(r.clean, dim=-1), torch.log_softmax(r.out, dim=-1)
    value = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return {"kl": (("sample",), _np(value), {"long_name": "KL(p_clean || p_intervened) at the last position",
                                             "units": "nats"})}


def action_logits(metric: Any, r: Reading) -> Result:
    return {"action_logits": (("sample", "action"), _np(r.out), {"long_name": "logits of the current action"})}


def action_probs(metric: Any, r: Reading) -> Result:
    return {"action_probs": (("sample", "action"), _np(torch.softmax(r.out, dim=-1)),
                             {"long_name": "probability of the current action", "units": "1"})}


def restored_fraction(metric: Any, r: Reading) -> Result:
    """(m_patched − m_clean) / (m_source − m_clean), m a logit difference (or the source's top logit)."""
    pair = metric.choice_ids()
    if pair is None:
        top = r.source.argmax(dim=-1, keepdim=True)
        m = lambda logits: logits.gather(-1, top).squeeze(-1)  # noqa: E731
    else:
        m = lambda logits: logits[:, pair[0]] - logits[:, pair[1]]  # noqa: E731
    clean, source, patched = m(r.clean), m(r.source), m(r.out)
    if metric.reduce == "mean":  # a ratio of means: per-sample ratios explode where source ≈ clean
        clean, source, patched = clean.mean(), source.mean(), patched.mean()
        fraction = (patched - clean) / (source - clean)
        return {name: ((), _np(value), {"long_name": text, "cell_methods": "sample: mean"}) for name, value, text in (
            ("restored_fraction", fraction, f"fraction of the mean {'logit difference' if pair else 'top-choice logit'} restored"),
            ("restored_clean", clean, "unpatched run (fraction 0), mean over samples"),
            ("restored_source", source, "source run (fraction 1), mean over samples"))}
    fraction = (patched - clean) / (source - clean)
    what = "logit difference" if pair else "logit of the source run's top choice"
    return {
        "restored_fraction": (("sample",), _np(fraction), {"long_name": f"fraction of the {what} restored by patching"}),
        "restored_clean": (("sample",), _np(clean), {"long_name": f"{what}, unpatched run (fraction 0)"}),
        "restored_source": (("sample",), _np(source), {"long_name": f"{what}, source run (fraction 1)"}),
    }


def _resid_after_blocks(r: Reading) -> torch.Tensor:
    n = r.model.cfg.n_layers
    return torch.stack([r.readouts[f"blocks.{layer}.hook_resid_post"] for layer in range(n)], dim=1)  # [B, L, d]


def resid_norm(metric: Any, r: Reading) -> Result:
    return {"resid_norm": (("sample", "layer_read"), _np(_resid_after_blocks(r).norm(dim=-1)),
                           {"long_name": "L2 norm of the residual stream after each block, last position"})}


def logit_lens(metric: Any, r: Reading) -> Result:
    lens = r.model.unembed(r.model.ln_final(_resid_after_blocks(r)))
    return {"logit_lens": (("sample", "layer_read", "action" if r.agent else "vocab"), _np(lens),
                           {"long_name": "logits read from the residual after each block (logit lens)"})}


def attention(metric: Any, r: Reading) -> Result:
    patterns = [r.readouts[f"blocks.{layer}.attn.hook_pattern"][:, head] for layer, head in metric.heads]
    return {"attention": (("sample", "attn_head", "position"), _np(torch.stack(patterns, dim=1)),
                          {"long_name": "attention of the last position at each head (attn_head: L<layer>H<head>)"})}


def readouts(metrics: list[Any], n_layers: int) -> set[str]:
    """Hook names whose intervened activations (last position) the metrics read."""
    names: set[str] = set()
    for metric in metrics:
        if metric.kind in ("resid_norm", "logit_lens"):
            names |= {f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)}
        elif metric.kind == "attention":
            names |= {f"blocks.{layer}.attn.hook_pattern" for layer, _ in metric.heads}
    return names


def last_position(name: str, x: torch.Tensor) -> torch.Tensor:
    """An activation at the last position (the last query, for attention patterns)."""
    return x[:, :, -1] if name.endswith(("hook_pattern", "hook_attn_scores")) else x[:, -1]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


REGISTRY: dict[str, Callable[..., Result]] = {
    "logits": logits, "probs": probs, "logit_diff": logit_diff, "kl": kl,
    "action_logits": action_logits, "action_probs": action_probs, "restored_fraction": restored_fraction,
    "resid_norm": resid_norm, "logit_lens": logit_lens, "attention": attention,
}
CLOSED_LOOP = ("rollout",)  # measured by playing episodes, not from one forward pass (see rollout.py)
SAMPLE_DIMS = ("sample", "episode")


def reduce(metric: Any, result: Result) -> Result:
    """The metric's ``reduce: mean`` applied: average over samples (or episodes)."""
    if metric.reduce != "mean":
        return result
    out: Result = {}
    for name, (dims, values, attrs) in result.items():
        axes = tuple(i for i, d in enumerate(dims) if d in SAMPLE_DIMS)
        out[name] = (tuple(d for d in dims if d not in SAMPLE_DIMS),
                     values.astype(np.float64).mean(axis=axes) if axes else values,
                     {**attrs, "cell_methods": "sample: mean"} if axes else attrs)
    return out


def measure(metrics: list[Any], reading: Reading) -> Result:
    """Every forward-pass metric of a point, merged into one result."""
    result: Result = {}
    for metric in metrics:
        if metric.kind not in CLOSED_LOOP:
            result.update(reduce(metric, REGISTRY[metric.kind](metric, reading)))
    return result
