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

import re
from collections import defaultdict
from typing import Any

import numpy as np
import xarray as xr

from runner.models.sites import ROLE, role_order
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
                if all(isinstance(x, str) and re.match(ROLE, x) for x in union):  # agents of different layouts:
                    order = sorted(range(len(union)), key=lambda i: role_order(union[i]))  # in sequence order
                    self.values, union = np.take(self.values, order, axis=d + 1), [union[i] for i in order]
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
        self.status[plan.not_applicable] = "not_applicable"   # nothing to compute: their values stay NaN
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
        roles = _plan_roles(plan)
        for axis in plan.axes:
            for m in axis.members:
                values = list(m.values)
                if m.path == ("intervention", "position") and any(isinstance(v, dict) for v in values):
                    values = [_position_label(v, roles) for v in values]
                elif m.path in (("intervention", "sender"), ("intervention", "receiver")):  # path_patch
                    from runner.plan.path_checks import component_label

                    values = [component_label(v, m.path[-1] == "receiver") for v in values]
                out = out.assign_coords({m.name: (axis.dim, coord_values(values))})
        if "vector_id" in out:
            out = out.set_coords("vector_id")
        out = out.set_coords([name for name in _coordinate_variables(plan) if name in out])
        ok = np.asarray(self.status == "ok")
        out = out.assign_coords({name: _collapsed(out[name], plan.dims, ok, self.vars[name].dtype)
                                 for name in _coordinate_variables(plan) if name in out.coords})
        if "sample" in out.dims:
            out = out.assign_coords(_sample_coords(plan, out.sizes["sample"]))
        roles = _position_roles(plan, roles)
        if roles is not None:
            out = out.assign_coords(role=("position", roles))
        out.attrs.update(provenance(plan, executor, self.device))
        return out


def _plan_roles(plan: Any) -> tuple[str, ...] | None:
    """The role labels of the plan's agents' positions, when they all share one layout (None otherwise)."""
    from runner.plan.facts import model_sizes
    from runner.spec import CheckpointModel

    sources = [CheckpointModel(checkpoint=str(f)) for f in plan.run_folders] or [getattr(plan.spec, "model", None)]
    try:
        found = {model_sizes(source, plan.base_dir).roles for source in sources}
    except Exception:  # a model source without sizes (a train spec) or an unreadable one: no labels
        return None
    return found.pop() if len(found) == 1 else None


def _position_label(value: Any, roles: tuple[str, ...] | None) -> Any:
    """A swept symbolic position ({token: state, timestep: -1}) as its role (S3), or as state-1 where layouts differ."""
    if not isinstance(value, dict):
        return value
    from runner.models.sites import symbolic_index

    token, timestep = value["token"], value.get("timestep", -1)
    try:
        return roles[symbolic_index(token, timestep, roles)] if roles else f"{token}{timestep:+d}"
    except ValueError:
        return f"{token}{timestep:+d}"


def _position_roles(plan: Any, roles: tuple[str, ...] | None) -> np.ndarray | None:
    """Role labels (S1, A1, I0 ...) for a swept integer ``intervention.position`` of an agent, if unambiguous."""
    member = next((m for axis in plan.loaded.axes for m in axis.members
                   if m.path == ("intervention", "position") and m.name == "position"), None)
    if member is None or roles is None or not all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in member.values):
        return None
    return np.array([roles[v] for v in member.values], dtype=object)


def _changes_samples(path: tuple) -> bool:
    """Whether sweeping the spec at ``path`` can change which samples a point reads (a target return cannot)."""
    return bool(path) and path[0] in ("data", "seed", "model") and path != ("data", "trajectories", "target_return")


def _sample_coords(plan: Any, n: int) -> dict[str, tuple]:
    """Where each sample came from (see ``facts.sample_coords``), padded to the result's ``n`` samples.

    Over ``sample`` alone when every point reads the same samples, else also over the sweep
    dims that change them. Padding (a point with fewer samples than another) is -1 or "".
    """
    from runner.plan.facts import sample_coords

    axes = [i for i, axis in enumerate(plan.axes)
            if i >= plan.n_run_axes and any(_changes_samples(m.path) for m in axis.members)]
    shape = [plan.shape[i] for i in axes]
    found: dict[str, np.ndarray] = {}
    for k, at in enumerate(np.ndindex(*shape)):
        choice = [0] * len(plan.shape)
        for i, j in zip(axes, at):
            choice[i] = j
        try:
            coords = sample_coords(plan.spec_of(tuple(choice)), plan.base_dir)
        except (ValueError, OSError):  # data that cannot be read: its points failed, and say so
            return {}
        for name, values in coords.items():
            if name not in found:
                found[name] = np.full((int(np.prod(shape)), n), "" if values.dtype == object else -1, values.dtype)
            found[name][k, :len(values)] = values[:n]
    out: dict[str, tuple] = {}
    for name, table in found.items():
        if (table == table[:1]).all():
            out[name] = ("sample", table[0])
        else:
            out[name] = (tuple(plan.dims[i] for i in axes) + ("sample",), table.reshape(shape + [n]))
    return out


def _coordinate_variables(plan: Any) -> list[str]:
    """What the spec's metrics produce as labels of a dim (an episode's mission), not as measurements."""
    return sorted({name for m in getattr(plan.spec, "metrics", []) for name, v in m.produces().items() if v.coord})


def _collapsed(coord: xr.DataArray, sweep_dims: list[str], ok: np.ndarray, dtype: np.dtype) -> xr.DataArray:
    """A label over sweep dims and its own dim, on its own dim alone where every ok point gives the same labels."""
    over = [d for d in coord.dims if d in sweep_dims]
    flat = coord.values.reshape(-1, *coord.shape[len(over):])[ok]
    if not over or not len(flat) or not (flat == flat[:1]).all():
        return coord
    return xr.DataArray(flat[0].astype(dtype), dims=coord.dims[len(over):], attrs=coord.attrs)
