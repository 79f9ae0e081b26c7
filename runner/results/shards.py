"""Shards: one netCDF file per finished task, stamped with what computed it and a checksum of its data.

A run of many small tasks gathers its shards into packs of PACK_SHARDS as it goes
(``Packer``), so a folder holds few files and reading it back is linear in the
points, not in the tasks.

A shard that cannot be read, or whose data no longer matches its checksum, is
*damaged*: ``read_shards`` reports it, and (``repair=True``, what ``runner run``
does) moves it aside as ``<name>.damaged`` so that its points are computed again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runner.results.files import write_netcdf

DAMAGED = ".damaged"

PACK_SHARDS = 64      # small shards a run gathers into one file (a pack)
PACK_POINTS = 4096    # shards with fewer points than this are small


def checksum(ds: Any) -> str:
    """sha256 over every variable's name, dims, dtype and values (strings as text): what a shard must still hold."""
    digest = hashlib.sha256()
    for name in sorted(ds.variables):
        var = ds.variables[name]
        values = np.asarray(var.values)
        if values.dtype.kind == "f":  # NaN comes back from netCDF as the canonical NaN, whatever its sign bit was
            values = np.where(np.isnan(values), np.array(np.nan, dtype=values.dtype), values)
        text = values.dtype.kind in "OUS"  # object arrays of str come back from netCDF as <U: the same text
        data = "\x00".join(values.astype(str).ravel()).encode() if text else np.ascontiguousarray(values).tobytes()
        digest.update(repr((name, var.dims, values.shape, "text" if text else values.dtype.str)).encode())
        digest.update(data)
    return digest.hexdigest()


def write_shard(path: Path, ds: Any, stamp: dict[str, str]) -> None:
    """Write a task's dataset with the run's stamp (run id, runner version ...) and its checksum."""
    ds = ds.copy()
    ds.attrs = {**ds.attrs, **stamp, "checksum": checksum(ds)}
    write_netcdf(ds, path)


def read_shard(path: Path) -> Any:
    """A shard's dataset, loaded; ValueError if it cannot be read or its data fails its checksum."""
    try:
        ds = _load(path)
    except Exception as exc:  # netCDF4 and HDF5 raise many types for truncated or foreign files
        raise ValueError(f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    expected = ds.attrs.get("checksum")
    if expected is not None and expected != checksum(ds):
        raise ValueError("its data no longer matches its checksum")
    if "point_id" not in ds or "status" not in ds:
        raise ValueError("not a shard (no point_id or status)")
    return ds


def _load(path: Path) -> Any:
    """A shard as a loaded Dataset, read with netCDF4 directly: xarray's open costs ~7 ms a file, this ~1 ms.

    Shards hold numbers, text and labels only, so the only CF conventions to undo are
    xarray's: ``_FillValue`` (NaN, kept as NaN), booleans stored as int8 (``dtype: bool``)
    and the ``coordinates`` attribute naming non-dimension coordinates.
    """
    import netCDF4
    import xarray as xr

    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        variables, coords = {}, set(nc.dimensions)
        for name, var in nc.variables.items():
            var_attrs = {k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"}
            values = var[...]
            if var.dtype is str:
                values = np.asarray(values, dtype=object)
            if var_attrs.pop("dtype", None) == "bool":
                values = values.astype(bool)
            coords.update(str(var_attrs.pop("coordinates", "")).split())
            variables[name] = xr.Variable(var.dimensions, values, var_attrs)
    return xr.Dataset({n: v for n, v in variables.items() if n not in coords},
                      coords={n: v for n, v in variables.items() if n in coords}, attrs=attrs)


@dataclass
class ShardState:
    """What the shards of a run folder hold."""

    shards: list[Path] = field(default_factory=list)                 # readable shards, oldest first
    status: dict[str, str] = field(default_factory=dict)             # point id -> ok / failed (an ok wins)
    damaged: list[tuple[Path, str]] = field(default_factory=list)    # (shard, why)
    versions: set[str] = field(default_factory=set)                  # runner versions that computed them


def read_shards(shard_dir: Path, repair: bool = False, each: Callable[[Any], None] | None = None) -> ShardState:
    """Every shard of a folder, checked; damaged ones reported (and with ``repair``, moved aside).

    ``each`` is called with every readable shard's dataset (each shard is read once).
    """
    state = ShardState()
    if not shard_dir.is_dir():
        return state
    for path in sorted(shard_dir.glob("*.nc"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        try:
            ds = read_shard(path)
        except ValueError as exc:
            state.damaged.append((path, str(exc)))
            if repair:
                path.replace(path.with_name(path.name + DAMAGED))
            continue
        state.shards.append(path)
        if each is not None:
            each(ds)
        state.versions.add(f"{ds.attrs.get('runner_version', '?')} ({ds.attrs.get('runner_commit', '') or 'no commit'})")
        for pid, st in zip(ds["point_id"].values, ds["status"].values):
            if state.status.get(str(pid)) != "ok":
                state.status[str(pid)] = str(st)
    return state


class Packer:
    """Gathers the small shards a run writes into packs of PACK_SHARDS, so that a run of many small tasks
    leaves few files and reading its folder back costs per point, not per file (fewer than PACK_SHARDS
    left at the end stay as they are).

    Only shards of one shape share a pack (the same variables, dims, dtypes and labels), so a
    pack is their concatenation and nothing else: no fill values, no reordered labels. A pack
    is written atomically and flushed to disk before its shards are removed: a run killed in
    between leaves both, which hold the same records, and the next read takes either.
    """

    def __init__(self, shard_dir: Path, stamp: dict[str, str]):
        self.shard_dir, self.stamp = shard_dir, stamp
        self.waiting: dict[tuple, list[tuple[Path, Any]]] = {}

    def add(self, path: Path, ds: Any) -> None:
        if ds.sizes.get("point", 0) < PACK_POINTS:
            shape = _shape(ds)
            self.waiting.setdefault(shape, []).append((path, ds))
            if len(self.waiting[shape]) >= PACK_SHARDS:
                self._pack(self.waiting.pop(shape))

    def _pack(self, waiting: list[tuple[Path, Any]]) -> None:
        import xarray as xr

        from runner.ids import content_id

        pack = xr.concat([ds for _, ds in waiting], dim="point")
        pack.attrs = {"device": ", ".join(sorted({str(ds.attrs.get("device", "cpu")) for _, ds in waiting}))}
        path = self.shard_dir / f"pack-{content_id([p.name for p, _ in waiting])}.nc"
        write_shard(path, pack, self.stamp)
        _sync(path)
        for shard, _ in waiting:
            shard.unlink(missing_ok=True)


def _shape(ds: Any) -> tuple:
    """What shards must share to be packed: variables with dims and dtypes, and every label but the points'."""
    variables = tuple((name, v.dims, v.dtype.str) for name, v in sorted(ds.data_vars.items()))
    labels = tuple((name, c.values.dtype.str, c.values.tobytes() if c.values.dtype != object else tuple(c.values))
                   for name, c in sorted(ds.coords.items()) if name != "point")
    return variables, labels


def _sync(path: Path) -> None:
    """Flush a file and its folder entry to disk."""
    import os

    for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
