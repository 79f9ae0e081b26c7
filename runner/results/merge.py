"""Shards (datasets over ``point``) -> one Dataset over the sweep dims, with provenance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from runner.plan import Plan
from runner.results.files import coord_values
from runner.results.provenance import provenance
from runner.results.shards import read_shard


def combine_shards(shards: list[Path], plan: Plan) -> xr.Dataset:
    """One record per plan point over ``point`` (grid order), matched by point id.

    An ok record wins over a failed one and a later shard over an earlier one, so a
    rerun that retried failed points supersedes them. Matching by content id (not
    by the index a shard was written under) keeps records right when a spec's axes
    are reordered or two grid points are the same computation.
    """
    parts = [read_shard(s).rename({"point": "record"}).drop_vars("record") for s in shards]
    names = {name for part in parts for name in part.data_vars}
    for i, part in enumerate(parts):  # a task whose points all failed lacks the metric variables
        for name in sorted(names - set(part.data_vars)):
            template = next(p[name] for p in parts if name in p.data_vars).isel(record=0, drop=True)
            filled = xr.full_like(template, np.nan, dtype=np.float64).expand_dims(record=part.sizes["record"])
            parts[i] = parts[i].assign({name: filled})
    records = xr.concat(parts, dim="record", data_vars="all", coords="minimal", compat="override", join="outer")
    best: dict[str, int] = {}
    ok = records["status"].values == "ok"
    for position in np.argsort(ok, kind="stable"):  # failed first, then ok; later shards later: last wins
        best[str(records["point_id"].values[position])] = int(position)
    missing = [p.index for p in plan.points if p.id not in best]
    if missing:
        raise ValueError(f"{len(missing)} points have no record (first: {missing[0]})")
    chosen = records.isel(record=[best[p.id] for p in plan.points]).rename({"record": "point"})
    return chosen.assign_coords(point=np.arange(len(plan.points)))


def unflatten(points: xr.Dataset, plan: Plan) -> xr.Dataset:
    """Reshape the ``point`` dim into the plan's sweep dims (C order) with their coordinates."""
    out = xr.Dataset()
    for name, var in points.data_vars.items():
        if name == "point_id":
            continue
        inner = [d for d in var.dims if d != "point"]
        values = var.values.reshape(plan.shape + tuple(points.sizes[d] for d in inner))
        out[name] = xr.Variable(plan.dims + inner, values, var.attrs)
    for d in points.coords:
        if d != "point":
            out = out.assign_coords({d: points[d].values})
    for name, (dim, values) in plan.coords.items():
        out = out.assign_coords({name: (dim, coord_values(values))})
    roles = _position_roles(plan)
    if roles is not None:
        out = out.assign_coords(role=("position", roles))
    return out


def _position_roles(plan: Plan) -> np.ndarray | None:
    """Role labels (S1, A1, I0 ...) for a swept integer ``intervention.position`` of an agent, if unambiguous."""
    from runner.plan.facts import model_sizes

    member = next((m for axis in plan.loaded.axes for m in axis.members
                   if m.path == ("intervention", "position") and m.name == "position"), None)
    if member is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in member.values):
        return None
    try:
        found = {model_sizes(p.spec.model, plan.base_dir).roles for p in plan.points}
    except Exception:  # a model source without roles (token models) or an unreadable one: no labels
        return None
    roles = found.pop() if len(found) == 1 else None
    if roles is None:
        return None
    return np.array([roles[v] for v in member.values], dtype=object)


def merge(shards: list[Path], plan: Plan, executor: str) -> xr.Dataset:
    """The final dataset of a run from its shards."""
    points = combine_shards(shards, plan)
    ds = unflatten(points, plan)
    ds.attrs.update(provenance(plan, executor, str(points.attrs.get("device", "cpu"))))
    return ds
