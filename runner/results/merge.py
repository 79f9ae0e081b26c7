"""Shards (datasets over ``point``) -> one Dataset over the sweep dims, assembled as results arrive.

``Merger.add`` scatters a shard's records into arrays over every point of the
plan (matched by point id, so a record serves every grid point that is the same
computation, and a reordered spec's shards still land right); an ok record wins
over a failed one, a later one over an earlier one. The cost is linear in the
data: no shard is read twice, none is concatenated with the others. Dims of a
variable whose labels differ between records (positions of agents with other
layouts, samples of batches of other sizes) take the union of the labels, NaN
where a record has none.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import xarray as xr

from runner.results.files import coord_values
from runner.results.provenance import provenance


class _Variable:
    """One variable over every point: values [n_points, *inner], and the labels of its inner dims."""

    def __init__(self, dims: tuple[str, ...], labels: list[np.ndarray], attrs: dict, dtype: np.dtype, n: int):
        self.dims, self.labels, self.attrs = dims, labels, attrs
        fill = "" if dtype.kind in "OUS" else np.nan
        kind = object if dtype.kind in "OUS" else (dtype if dtype.kind == "f" else np.float64)
        self.values = np.full((n,) + tuple(len(lab) for lab in labels), fill, dtype=kind)
        self.dtype = dtype

    def widen(self, labels: list[np.ndarray]) -> list[Any]:
        """Make room for ``labels`` (the union with those so far); the index of each new label per dim."""
        where = []
        for d, (old, new) in enumerate(zip(self.labels, labels)):
            if len(old) == len(new) and (old == new).all():
                where.append(slice(None))
                continue
            union = list(old) + [x for x in new if x not in set(old.tolist())]
            if len(union) > len(old):
                pad = [(0, 0)] * self.values.ndim
                pad[d + 1] = (0, len(union) - len(old))
                fill = "" if self.values.dtype == object else np.nan
                self.values = np.pad(self.values, pad, constant_values=fill)
                self.labels[d] = np.array(union, dtype=old.dtype if old.dtype != object else object)
            position = {x: i for i, x in enumerate(self.labels[d].tolist())}
            where.append(np.array([position[x] for x in new.tolist()]))
        return where


class Merger:
    """Every point's record, gathered shard by shard into arrays over the plan's points."""

    def __init__(self, plan: Any):
        self.plan = plan
        self.slots: dict[str, list[int]] = defaultdict(list)   # point id -> grid indices it answers
        for index, pid in enumerate(plan.ids):
            self.slots[pid].append(index)
        self.status = np.full(len(plan.ids), "", dtype=object)
        self.error = np.full(len(plan.ids), "", dtype=object)
        self.vars: dict[str, _Variable] = {}
        self.device = "cpu"

    def add(self, shard: xr.Dataset) -> None:
        """Take a shard's records (an ok one replaces a failed one; a later one an earlier one)."""
        self.device = str(shard.attrs.get("device", self.device))
        rows, targets = [], []
        for row, (pid, status) in enumerate(zip(shard["point_id"].values, shard["status"].values)):
            for index in self.slots.get(str(pid), ()):
                if status == "ok" or self.status[index] != "ok":
                    rows.append(row)
                    targets.append(index)
        if not rows:
            return
        rows_at, at = np.array(rows), np.array(targets)
        self.status[at] = shard["status"].values[rows_at]
        self.error[at] = shard["error"].values[rows_at]
        for name, var in shard.data_vars.items():
            if name not in ("status", "error", "point_id"):
                self._scatter(name, var, rows_at, at)

    def _scatter(self, name: str, var: xr.DataArray, rows: np.ndarray, at: np.ndarray) -> None:
        dims = var.dims[1:]
        labels = [np.asarray(var[d].values) for d in dims]
        if name not in self.vars:
            self.vars[name] = _Variable(dims, labels, dict(var.attrs), var.dtype, len(self.plan.ids))
        target = self.vars[name]
        where = target.widen(labels)
        values = var.values[rows]
        if all(isinstance(w, slice) for w in where):
            target.values[at] = values
        else:
            target.values[(at,) + tuple(slice(None) for _ in where)] = np.nan if target.values.dtype != object else ""
            target.values[np.ix_(at, *[w if not isinstance(w, slice) else np.arange(target.values.shape[d + 1])
                                       for d, w in enumerate(where)])] = values

    def dataset(self, executor: str) -> xr.Dataset:
        """The run's dataset over the sweep dims, with provenance."""
        plan = self.plan
        out = xr.Dataset()
        for name, var in self.vars.items():
            values = var.values
            if var.dtype.kind in "iub" and not np.isnan(values).any():
                values = values.astype(var.dtype)  # integers stay integers where every point has one
            out[name] = xr.Variable(plan.dims + list(var.dims), values.reshape(plan.shape + values.shape[1:]), var.attrs)
            out = out.assign_coords({d: lab for d, lab in zip(var.dims, var.labels)})
        for name, values in (("status", self.status), ("error", self.error),
                             ("point_id", np.array(plan.ids, dtype=object))):
            out[name] = xr.Variable(plan.dims, np.asarray(values, dtype=object).reshape(plan.shape))
        for name, (dim, values) in plan.coords.items():
            out = out.assign_coords({name: (dim, coord_values(values))})
        if "vector_id" in out:
            out = out.set_coords("vector_id")
        roles = _position_roles(plan)
        if roles is not None:
            out = out.assign_coords(role=("position", roles))
        out.attrs.update(provenance(plan, executor, self.device))
        return out


def _position_roles(plan: Any) -> np.ndarray | None:
    """Role labels (S1, A1, I0 ...) for a swept integer ``intervention.position`` of an agent, if unambiguous."""
    from runner.plan.facts import model_sizes

    member = next((m for axis in plan.loaded.axes for m in axis.members
                   if m.path == ("intervention", "position") and m.name == "position"), None)
    if member is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in member.values):
        return None
    from runner.spec import CheckpointModel

    sources = [CheckpointModel(checkpoint=str(f)) for f in plan.run_folders] or [plan.spec.model]
    try:
        found = {model_sizes(source, plan.base_dir).roles for source in sources}
    except Exception:  # a model source without roles (token models) or an unreadable one: no labels
        return None
    roles = found.pop() if len(found) == 1 else None
    if roles is None:
        return None
    return np.array([roles[v] for v in member.values], dtype=object)
