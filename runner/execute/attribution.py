"""Attribution patching: first-order estimates of patching, every point of a group from one backward per logit.

A patch moves the activation at one site by c·(x_source − x). To first order, a
metric M of the last position's logits moves by c·Σ grad_x M · (x_source − x), the
sum over the addressed region (positions, the head's slice, the activation's last
dim), the gradient taken on the clean run. The gradient at every site of a group
comes from one forward pass of the clean inputs, with the activations kept, and
one backward pass per logit the group's metrics read (two for a logit difference:
its two logits; seven for an agent's action logits), per sample batch. Samples do
not interact in a forward pass, so the gradient of a logit summed over samples is
each sample's own gradient. Each point is then a sum over its region: a heatmap
of layers x positions x heads costs no more passes than one point.

A point's result is the estimated logits: ``clean + c·δ`` on the logits its
metrics read and NaN elsewhere (so a metric reading another logit would fail
loudly; the plan admits only metrics that read those logits, linearly). At c = 0
this is the clean run's logits, bit for bit.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator

import torch

from runner.execute.fold import MAX_TOKENS
from runner.execute.inputs import batch_size


def estimated(items: list, group: Any, records: Any) -> Iterator[tuple[tuple, torch.Tensor, dict, dict]]:
    """Yield (prepared point, estimated last-position logits, {}, {}) for points of ``estimate: attribution``.

    ``items`` are (point, variant, edit) of one group; the points of a variant share its backward passes.
    A variant whose passes raise fails each of its points with that message.
    """
    by_variant: dict[int, list] = defaultdict(list)
    for item in items:
        by_variant[id(item[1])].append(item)
    for members in by_variant.values():
        try:
            outs = _estimates(group, members)
        except Exception:
            for item in members:
                records.fail(item[0])
            continue
        yield from ((item, out, {}, {}) for item, out in zip(members, outs))


def _estimates(group: Any, items: list) -> list[torch.Tensor]:
    """Estimated last-position logits of each point of one variant."""
    variant = items[0][1]
    clean = variant.logits
    columns = sorted(set().union(*(_columns(group, variant, p) for p, _, _ in items)))
    sites = sorted({edit.site for _, _, edit in items})
    n, rows_per_pass = batch_size(variant.inputs), max(1, MAX_TOKENS // group.length)
    parts: list[list[torch.Tensor]] = [[] for _ in items]  # per point: [rows, columns] per sample batch
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, n, rows_per_pass):
            rows = slice(start, min(n, start + rows_per_pass))
            by_column = [[] for _ in items]
            for grads in _gradients(group.model, _rows(variant.inputs, rows), sites, columns):
                for sums, (_, _, edit) in zip(by_column, items):
                    sums.append(_summed(grads[edit.site], edit, variant.cache[edit.site][rows], rows))
            for part, sums in zip(parts, by_column):
                part.append(torch.stack(sums, dim=1))
    deltas = [torch.cat(part) for part in parts]
    outs = []
    for delta, (_, _, edit) in zip(deltas, items):
        out = torch.full_like(clean, float("nan"))
        out[:, columns] = clean[:, columns] + edit.coefficient * delta
        outs.append(out)
    return outs


def _gradients(model: Any, inputs: Any, sites: list[str], columns: list[int]) -> Iterator[dict[str, Any]]:
    """For each logit in ``columns``: its gradient (summed over samples) w.r.t. the activation at each site.

    One forward: each site's hook adds a zero leaf, so the gradient w.r.t. that leaf is the gradient
    w.r.t. the activation, every path downstream of it included (sites at later layers too).
    """
    leaves: dict[str, torch.Tensor] = {}
    hooks = [(site, lambda x, hook, site=site: _leaf(leaves, site, x)) for site in sites]  # hook.name may be an alias
    with model.hooks(fwd_hooks=hooks):
        logits = model(inputs)[:, -1]
    missing = [s for s in sites if s not in leaves]
    if missing:
        raise ValueError(f"{missing[0]} did not fire in the forward pass: no gradient to estimate a patch there")
    order = list(leaves)
    for k, column in enumerate(columns):
        grads = torch.autograd.grad(logits[:, column].sum(), [leaves[s] for s in order],
                                    retain_graph=k < len(columns) - 1, allow_unused=True)
        yield dict(zip(order, grads))


def _summed(grad: torch.Tensor | None, edit: Any, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """Σ grad · d(x) over the edit's region, per sample: the first-order change of one logit."""
    if grad is None:
        raise ValueError(f"{edit.site} carries no gradient to the logits in this model: attribution patching cannot "
                         "estimate a patch there (use estimate: exact)")
    return (grad[edit.index] * _change(edit, x, rows)).flatten(1).sum(dim=1).detach()


def _leaf(leaves: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    leaves[name] = torch.zeros_like(x, requires_grad=True)
    return x + leaves[name]


def _change(edit: Any, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """d(x) = offset + gain·x on the edit's region of the clean activation ``x`` (these rows): x_source − x."""
    region = x[edit.index]
    offset = edit.offset
    if offset is None:
        return edit.gain * region
    if offset.dim() == region.dim() and offset.shape[0] > 1:  # a row per sample (a patch source's activations)
        offset = offset[rows]
    return offset + edit.gain * region


def _rows(inputs: Any, rows: slice) -> Any:
    """Some samples of a batch of inputs of either kind, as tensors autograd may save (not inference tensors)."""
    if isinstance(inputs, torch.Tensor):
        return inputs[rows].clone()
    return type(inputs)(*(t[rows].clone() for t in inputs.tensors()))


def _columns(group: Any, variant: Any, point: Any) -> set[int]:
    """The logits a point's metrics read: a pair's two, a restored fraction's source top choice, or all."""
    out: set[int] = set()
    for metric in point.spec.metrics:
        pair = metric.choice_ids(group.model) if hasattr(metric, "choice_ids") else None
        if pair is not None:
            out |= set(pair)
        elif metric.kind == "restored_fraction":
            source = group.other_run(point.spec.intervention.source, variant, None)
            out |= set(source.argmax(dim=-1).tolist())
        else:
            out |= set(range(variant.logits.shape[-1]))
    return out


def wanted(point: Any) -> bool:
    """Whether a point asks for attribution patching (a patch with ``estimate: attribution``)."""
    return getattr(point.spec.intervention, "estimate", "exact") == "attribution"
