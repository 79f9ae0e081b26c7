"""What a task's points produced, assembled into one Dataset over ``point``.

A point's record is a mapping of variable -> (dims, values, attrs) plus the
coordinate labels of its dims, or a ``Failure`` with its message. Points whose
records agree in shape are stacked into arrays at once (one Dataset per shape,
not per point); a failed point's values are NaN.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]


@dataclass(frozen=True)
class Failure:
    """A point that raised: the message says what, and where."""

    message: str

    @classmethod
    def current(cls) -> Failure:
        """The exception being handled, as one readable message (type, text and the innermost frame)."""
        exc = traceback.format_exc().strip().splitlines()
        last_frame = next((line.strip() for line in reversed(exc) if line.strip().startswith("File ")), "")
        return cls(f"{exc[-1]} [{last_frame}]" if last_frame else exc[-1])


@dataclass(frozen=True)
class Record:
    """A finished point: its variables and the labels of their dims."""

    variables: Variables
    coords: dict[str, np.ndarray]

    @classmethod
    def of_dataset(cls, ds: xr.Dataset) -> Record:
        return cls({name: (v.dims, v.values, dict(v.attrs)) for name, v in ds.data_vars.items()},
                   {name: c.values for name, c in ds.coords.items()})

    def signature(self) -> tuple:
        """What must agree for records to stack: names, dims, shapes and labels (the same label arrays)."""
        shapes = tuple((n, dims, values.shape, values.dtype.str) for n, (dims, values, _) in sorted(self.variables.items()))
        return shapes, tuple((d, id(v)) for d, v in sorted(self.coords.items()))


class Records:
    """Each point of a task: a Record, or a Failure."""

    def __init__(self, points: tuple[Any, ...]):
        self.points = points
        self.by_index: dict[int, Record | Failure] = {}

    def ok(self, point: Any, record: Record) -> None:
        self.by_index[point.index] = record

    def fail(self, point: Any, failure: Failure | None = None) -> None:
        self.by_index[point.index] = failure or Failure.current()

    def failed(self, point: Any) -> bool:
        return isinstance(self.by_index.get(point.index), Failure)

    def dataset(self) -> xr.Dataset:
        """One Dataset over ``point`` (the points' grid indices): every variable, status, error, point_id."""
        indices = [p.index for p in self.points]
        groups: dict[tuple, list[int]] = {}
        for i in indices:
            record = self.by_index[i]
            if isinstance(record, Record):
                groups.setdefault(record.signature(), []).append(i)
        failures = [self.by_index[i] if isinstance(self.by_index[i], Failure) else None for i in indices]
        meta = {"status": np.array(["ok" if f is None else "failed" for f in failures], dtype=object),
                "error": np.array(["" if f is None else f.message for f in failures], dtype=object),
                "point_id": np.array([p.id for p in self.points], dtype=object)}
        point = np.array(indices, dtype=np.int64)
        if len(groups) <= 1:  # the usual case: one array per variable, built at once
            members = next(iter(groups.values()), [])
            data = self._one_shape(indices, members) if members else {}
            coords = {"point": point, **(self.by_index[members[0]].coords if members else {})}
            return xr.Dataset({**data, **{name: ("point", values) for name, values in meta.items()}}, coords=coords)
        parts = [self._stacked(members) for members in groups.values()]
        ds = xr.concat(parts, dim="point", join="outer").reindex(point=point)
        for name, var in ds.data_vars.items():  # a failed point's text is empty, not NaN
            if var.dtype == object:
                ds[name] = var.fillna("")
        return ds.assign({name: ("point", values) for name, values in meta.items()})

    def _one_shape(self, indices: list[int], members: list[int]) -> dict[str, xr.Variable]:
        """Every variable of records of one shape, over ``indices`` (rows of failed points NaN, or empty text)."""
        first: Record = self.by_index[members[0]]
        at = {index: k for k, index in enumerate(indices)}
        rows = np.array([at[i] for i in members]) if len(members) < len(indices) else None
        out = {}
        for name, (dims, _, attrs) in first.variables.items():
            values = np.stack([self.by_index[i].variables[name][1] for i in members])
            if rows is not None:  # as reindexing would: integers become floats, text and flags objects
                kind = values.dtype.kind
                dtype = values.dtype if kind in "fc" else (np.float64 if kind in "iu" else object)
                full = np.full((len(indices),) + values.shape[1:], "" if dtype == object else np.nan, dtype=dtype)
                full[rows] = values
                values = full
            out[name] = xr.Variable(("point",) + tuple(dims), values, attrs)
        return out

    def _stacked(self, indices: list[int]) -> xr.Dataset:
        first: Record = self.by_index[indices[0]]
        data = {name: xr.Variable(("point",) + tuple(dims), np.stack([self.by_index[i].variables[name][1]
                                                                          for i in indices]), attrs)
                for name, (dims, _, attrs) in first.variables.items()}
        return xr.Dataset(data, coords={"point": np.array(indices, dtype=np.int64), **first.coords})
