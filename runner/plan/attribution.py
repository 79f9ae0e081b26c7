"""Plan-time checks of attribution patching (a patch with ``estimate: attribution``): what it can estimate.

The estimate is first order in the last position's logits (see
``runner/execute/attribution.py``), so it serves the metrics that read those logits
and nothing else, linearly (``Metric.attributable``): logits, action_logits,
logit_diff, restored_fraction. Each logit read costs one backward pass, so a metric
reading every logit of a large vocabulary is refused too. Torch-free.
"""
from __future__ import annotations

from typing import Any, Iterator

# Backward passes (one per logit read) a group may ask for: every logit of a token model of up to this vocabulary.
MAX_LOGITS = 256


def attribution_problems(iv: Any, metrics: list, sizes: Any) -> Iterator[tuple[tuple, str]]:
    """Yield (spec path, message) for what ``estimate: attribution`` cannot do with these metrics and model."""
    if getattr(iv, "estimate", "exact") != "attribution":
        return
    from runner.metrics import REGISTRY

    estimable = ", ".join(kind for kind, r in REGISTRY.items() if r.model.attributable)
    for i, metric in enumerate(metrics):
        if not metric.attributable:
            yield ("metrics", i), (f"metric {metric.kind!r} cannot be estimated by attribution patching "
                                   f"(intervention.estimate: attribution): {_why(metric, sizes)}; it estimates "
                                   f"{estimable}. Measure {metric.kind} with estimate: exact")
        elif _reads_every_logit(metric) and sizes.d_vocab > MAX_LOGITS:
            yield ("metrics", i), (f"metric {metric.kind!r} reads all {sizes.d_vocab} logits, and attribution "
                                   f"patching takes one backward pass per logit read (at most {MAX_LOGITS}): "
                                   "measure logit_diff, or logits with estimate: exact")


def _why(metric: Any, sizes: Any) -> str:
    if metric.closed_loop:
        return "it plays episodes, and an estimate of the logits plays none"
    if metric.reads(sizes.n_layers) or metric.reads_all_positions(sizes.n_layers):
        return "it reads activations of the patched run, and the estimate gives only the last position's logits"
    return ("it is not linear in the last position's logits (a softmax, a KL), so a first-order estimate of the "
            "logits is not one of it")


def _reads_every_logit(metric: Any) -> bool:
    """Whether it reads every logit (a metric over two choices reads the pair, or the source run's top choice)."""
    return not hasattr(metric, "choice_ids")
