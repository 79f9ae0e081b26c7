"""Metrics: plain functions from last-position logits to labelled arrays.

Each takes (metric spec, clean logits, intervened logits), both [sample, vocab]
at the last position, and returns ``{variable: (dims, array, attrs)}``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

Result = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]


def logits(metric: Any, clean: torch.Tensor, out: torch.Tensor) -> Result:
    return {"logits": (("sample", "vocab"), _np(out), {"long_name": "logits at the last position"})}


def probs(metric: Any, clean: torch.Tensor, out: torch.Tensor) -> Result:
    p = torch.softmax(out, dim=-1)
    return {"probs": (("sample", "vocab"), _np(p), {"long_name": "next-token probability at the last position", "units": "1"})}


def logit_diff(metric: Any, clean: torch.Tensor, out: torch.Tensor) -> Result:
    a, b = metric.tokens
    return {"logit_diff": (("sample",), _np(out[:, a] - out[:, b]),
                           {"long_name": f"logit[{a}] - logit[{b}] at the last position"})}


def kl(metric: Any, clean: torch.Tensor, out: torch.Tensor) -> Result:
    log_p, log_q = torch.log_softmax(clean, dim=-1), torch.log_softmax(out, dim=-1)
    value = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return {"kl": (("sample",), _np(value), {"long_name": "KL(p_clean || p_intervened) at the last position", "units": "nats"})}


def action_logits(metric: Any, clean: torch.Tensor, out: torch.Tensor) -> Result:
    return {"action_logits": (("sample", "action"), _np(out), {"long_name": "logits of the current action"})}


def action_probs(metric: Any, clean: torch.Tensor, out: torch.Tensor) -> Result:
    return {"action_probs": (("sample", "action"), _np(torch.softmax(out, dim=-1)),
                             {"long_name": "probability of the current action", "units": "1"})}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


REGISTRY: dict[str, Callable[..., Result]] = {
    "logits": logits, "probs": probs, "logit_diff": logit_diff, "kl": kl,
    "action_logits": action_logits, "action_probs": action_probs,
}


CLOSED_LOOP = ("rollout",)  # measured by playing episodes, not from one forward pass (see rollout.py)


def measure(metrics: list[Any], clean: torch.Tensor, out: torch.Tensor) -> Result:
    """Every forward-pass metric of a point, merged into one result."""
    result: Result = {}
    for metric in metrics:
        if metric.kind not in CLOSED_LOOP:
            result.update(REGISTRY[metric.kind](metric, clean, out))
    return result
