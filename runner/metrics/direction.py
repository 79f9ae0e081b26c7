"""direction: what a steering vector is, beside the effect it had: its norm and its cosines.

Per point (``direction`` under ``metrics:``; a steer intervention only), of the
vector v the point adds (before its coefficient):

- ``vector_norm``: ‖v‖;
- ``vector_unembed_cos`` over ``vocab`` (``action`` on agents): the cosine of v,
  mapped into the residual stream, with each column of W_U. Mapped: as it is at
  resid_pre/mid/post, attn_out, mlp_out, embed and pos_embed; through W_O at z
  (v @ W_O[layer, head], summed over heads when the steer adds v to every head);
  through W_out at mlp_post. Queries, keys, values, attention patterns and MLP
  pre-activations have no linear map into the stream: a plan error. ``unembed:
  raw`` (the default) takes the columns as they are; ``centred`` first subtracts
  their mean over outputs (what raises every logit alike, which no probability
  sees), so that a ``direction: {action: a}`` vector, W_U[:, a] minus the mean of
  the other columns, has cosine 1 with a's centred column. Neither applies the
  final norm (dla does that);
- ``vector_act_cos``: the cosine of v with the mean clean activation at the
  steered site, over the samples, positions and heads the steer reaches, in the
  site's own basis;
- ``vector_norm_ratio``: ‖v‖ over the mean norm of those clean activations (1 for
  a ``random: {norm: match}`` vector): how hard one unit of coefficient pushes.

Across points, after the merge (``with_vector_cosine``, called by the driver):
``vector_cosine`` over the sweep dims on which the vector changes (not the
coefficient) and a copy of each, ``<dim>_other``: the cosine between the vectors
of two points, read from ``vectors/<vector_id>.npy``.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field

from runner.metrics.base import Metric, Reading, Variable, register

UNMAPPED = ("q", "k", "v", "pattern", "pre", "mlp_pre")   # sites with no linear map into the residual stream
ZERO = "NaN where the steering vector is zero (a contrast of two equal sides)"
COSINE_ATTRS = {
    "units": "1",
    "undefined": "NaN where the two vectors differ in length (sites of different widths, models of different "
                 "d_model), where either is zero or where a point has no vector (failed, not applicable)",
}


class Direction(Metric):
    """Direction analysis of a steer intervention's vector v (before its coefficient): vector_norm (‖v‖);
    vector_unembed_cos (over action on agents, vocab on token models): the cosine of v, mapped into the residual
    stream (as it is at resid_*, attn_out, mlp_out, embed; through W_O at z, summed over heads when every head is
    steered; through W_out at mlp_post), with each column of W_U (unembed: centred subtracts the columns' mean over
    outputs first; no final norm is applied); vector_act_cos: the cosine of v with the mean clean activation at the
    steered site, heads and positions (over samples); vector_norm_ratio: ‖v‖ over the mean norm of those clean
    activations. Across the points of the run, vector_cosine over each sweep dim on which the vector changes and
    its copy <dim>_other: the cosine between two points' vectors (NaN where their lengths differ)."""

    kind: Literal["direction"]
    unembed: Literal["raw", "centred"] = Field(
        "raw", description="raw: cosines with the columns of W_U as they are; centred: with each column minus the "
                           "columns' mean over outputs (the part every logit shares, which no probability sees).")
    reduces_itself = True   # one value per point, none per sample: reduce: mean has nothing to average
    variables = {
        "vector_norm": Variable((), "L2 norm of the steering vector (before the coefficient)"),
        "vector_unembed_cos": Variable(("vocab",), "cosine of the steering vector, mapped into the residual stream, "
                                                   "with each output's unembedding column", "1", undefined=ZERO),
        "vector_act_cos": Variable((), "cosine of the steering vector with the mean clean activation where it is "
                                       "added", "1", undefined=ZERO),
        "vector_norm_ratio": Variable((), "norm of the steering vector over the mean norm of the clean activation "
                                          "where it is added", "1"),
    }

    def attrs(self, name: str) -> dict[str, str]:
        attrs = super().attrs(name)
        if name == "vector_unembed_cos" and self.unembed == "centred":
            attrs["long_name"] += " (columns centred over outputs)"
        return attrs

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        if intervention is None or intervention.kind != "steer":
            has = "no intervention" if intervention is None else f"intervention kind {intervention.kind}"
            yield f"direction analyses a steer intervention's vector; this spec has {has}"
            return
        from runner.models.sites import SiteError, resolve_site

        try:
            site = resolve_site(intervention.hook, intervention.layer, sizes)
        except SiteError:  # the intervention's own check says why
            return
        if site.short in UNMAPPED:
            yield (f"direction compares the vector with the unembedding in the residual stream; {site.name} has no "
                   f"linear map there: steer at resid_pre/mid/post, attn_out, mlp_out, embed, z (through W_O) or "
                   f"mlp_post (through W_out)")


@register(Direction)
def direction(metric: Direction, r: Reading) -> dict[str, Any]:
    import torch

    edit = r.edit
    v = edit.offset.double().reshape(-1)
    acts = r.clean_site[edit.index].double()
    acts = acts.reshape(-1, acts.shape[-1])                      # [samples x positions (x heads), width]
    body = getattr(r.model, "body", r.model)                     # an agent's TransformerBridge, or the model
    resid = to_residual(v, edit, body)
    columns = unit_columns(body, metric.unembed == "centred")    # [d_model, vocab]
    return {"vector_norm": v.norm(),
            "vector_unembed_cos": (resid / resid.norm()).to(columns.dtype) @ columns,
            "vector_act_cos": torch.dot(v, acts.mean(dim=0)) / (v.norm() * acts.mean(dim=0).norm()),
            "vector_norm_ratio": v.norm() / acts.norm(dim=-1).mean()}


_UNIT: "weakref.WeakKeyDictionary[Any, dict[bool, Any]]" = weakref.WeakKeyDictionary()


def unit_columns(body: Any, centred: bool) -> Any:
    """W_U's columns (centred over outputs first, if asked) as unit vectors, once per model: a pretrained
    model's unembedding is large, and every point of a task reads the same one."""
    memo = _UNIT.setdefault(body, {})
    if centred not in memo:
        w_u = body.W_U.detach().double()
        w_u = w_u - w_u.mean(dim=1, keepdim=True) if centred else w_u
        memo[centred] = (w_u / w_u.norm(dim=0)).to(body.W_U.dtype)
    return memo[centred]


def to_residual(v: Any, edit: Any, body: Any) -> Any:
    """A steering vector at ``edit``'s site as what it writes into the residual stream ([d_model], float64)."""
    if edit.short == "z":
        w_o = body.W_O[edit.layer].double()                      # [head, d_head, d_model]
        return v @ (w_o[edit.head] if edit.head is not None else w_o.sum(dim=0))
    if edit.short in ("post", "mlp_post"):
        return v @ body.W_out[edit.layer].double()               # [d_mlp, d_model]
    if edit.short in UNMAPPED:
        raise ValueError(f"direction: {edit.site} has no linear map into the residual stream")
    return v


def with_vector_cosine(dataset: Any, metrics: list[Metric], vectors_dir: Path) -> Any:
    """``dataset`` with ``vector_cosine`` added when the spec lists ``direction`` and its vector changes over a dim.

    Each distinct vector file is read once. Along the sweep dims on which the
    vector does not change (the coefficient), the first point that has one speaks
    for the others.

    >>> ds = with_vector_cosine(runner.load("tiny"), [Direction(kind="direction")], Path("results/tiny/vectors"))
    >>> ds.vector_cosine.dims, ds.vector_cosine.values.round(6).tolist()  # one seeded direction, two norms
    (('layer', 'layer_other'), [[1.0, 1.0], [1.0, 1.0]])
    """
    if not any(m.kind == "direction" for m in metrics) or "vector_id" not in dataset.coords:
        return dataset
    ids = dataset["vector_id"]
    names, codes = np.unique(ids.values.astype(str), return_inverse=True)
    codes = np.where(names[codes] == "", -1, codes).reshape(ids.shape)
    varying = [d for i, d in enumerate(ids.dims) if _varies(codes, i)]
    if not varying:
        return dataset
    order = [ids.dims.index(d) for d in varying] + [i for i, d in enumerate(ids.dims) if d not in varying]
    shape = [ids.shape[i] for i in order[:len(varying)]]
    rows = _first_present(np.transpose(codes, order).reshape(int(np.prod(shape)), -1))
    table = _cosines([_load(vectors_dir, name) for name in names])
    cos = np.where((rows[:, None] >= 0) & (rows[None, :] >= 0), table[rows][:, rows], np.nan)
    other = [f"{d}_other" for d in varying]
    coords = {f"{name}_other": (f"{d}_other", c.values) for d in varying
              for name, c in dataset.coords.items() if c.dims == (d,) and name != "vector_id"}
    import xarray as xr

    attrs = {**COSINE_ATTRS, "long_name": f"cosine between the steering vectors at {', '.join(varying)} and at "
                                          f"{', '.join(other)}"}
    out = xr.DataArray(cos.reshape(shape + shape), dims=varying + other, attrs=attrs)
    return dataset.assign(vector_cosine=out).assign_coords(coords)


def _varies(codes: np.ndarray, axis: int) -> bool:
    """Whether two points along ``axis`` (everything else equal) have different vectors (-1: no vector)."""
    moved = np.moveaxis(codes, axis, 0).reshape(codes.shape[axis], -1)
    high = moved.max(axis=0)
    low = np.where(moved >= 0, moved, np.iinfo(moved.dtype).max).min(axis=0)
    return bool(((high >= 0) & (high != low)).any())


def _first_present(rows: np.ndarray) -> np.ndarray:
    """Per row, the first code that is not -1 (-1 where none is)."""
    present = rows >= 0
    first = present.argmax(axis=1)
    return np.where(present.any(axis=1), rows[np.arange(len(rows)), first], -1)


def _load(vectors_dir: Path, name: str) -> np.ndarray | None:
    path = Path(vectors_dir) / f"{name}.npy"
    return np.load(path, allow_pickle=False).astype(np.float64).reshape(-1) if name and path.is_file() else None


def _cosines(vectors: list[np.ndarray | None]) -> np.ndarray:
    """[n, n] cosines of vectors of the same length (exactly 1 with itself, symmetric); NaN between other lengths."""
    n = len(vectors)
    out = np.full((n, n), np.nan)
    lengths = {len(v) for v in vectors if v is not None}
    for length in lengths:
        at = [i for i, v in enumerate(vectors) if v is not None and len(v) == length]
        stack = np.stack([vectors[i] for i in at])
        norms = np.linalg.norm(stack, axis=1)
        unit = stack / np.where(norms > 0, norms, np.nan)[:, None]
        gram = np.clip(unit @ unit.T, -1.0, 1.0)
        gram = (gram + gram.T) / 2
        np.fill_diagonal(gram, np.where(norms > 0, 1.0, np.nan))
        out[np.ix_(at, at)] = gram
    return out
