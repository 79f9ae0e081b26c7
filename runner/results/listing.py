"""``runner ls``: the runs under ``results/``, each with its date, kind, points and state, read cheaply.

A run is summed up from what its folder holds, without compiling its spec: the
attrs and ``status`` of ``result.nc``, else the point ids and statuses of its
shards and the point count its marker keeps; the lock says whether a run is
writing it now. netCDF files are read with netCDF4 directly (no xarray, torch
or Ray import), a few milliseconds a run.

>>> run = summarize("results/tiny")
>>> run.kind, run.ok, run.total, run.state
('intervene', 6, 6, 'complete')
>>> listing("results").splitlines()[0].split()
['name', 'created', '(UTC)', 'kind', 'points', 'status']
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import RunnerError
from runner.results.folder import MARKER, RESULTS, RunFolder

RUN_FILES = (MARKER, "result.nc", "shards", "run.log")   # any of these: a run folder (a project has spec.yaml too)


@dataclass
class RunSummary:
    """One run as ``runner ls`` shows it."""

    name: str
    folder: Path
    created: str              # UTC, minutes
    kind: str                 # intervene or train
    ok: int
    failed: int
    total: int | None         # None: not known without compiling the spec
    na: int                   # not applicable (an address their model lacks): nothing to compute
    running: str | None       # who holds the lock, if a run is writing the folder now
    complete: bool            # result.nc holds every point
    run_id: str = ""

    @property
    def pending(self) -> int | None:
        return None if self.total is None else max(self.total - self.ok - self.failed - self.na, 0)

    @property
    def state(self) -> str:
        """complete, "2 failed points", "incomplete (3 pending)" or "running (3 pending)"."""
        pending = "" if self.pending is None else f" ({self.pending} pending)"
        if self.running:
            return f"running{pending}"
        if not self.complete:
            return f"incomplete{pending}" if self.pending != 0 else "incomplete (not merged: rerun to write result.nc)"
        return f"{self.failed} failed point{'' if self.failed == 1 else 's'}" if self.failed else "complete"


def run_folders(where: str | Path) -> list[Path]:
    """The run folders in ``where`` (a results folder, a project holding ``results/``, or one run folder), by name."""
    where = Path(where)
    if not where.is_dir():
        raise RunnerError(f"no folder {where}", hint="Give a results folder, or run `runner ls` in a project.")
    if (where / RESULTS).is_dir():  # a project folder
        where = where / RESULTS
    elif _is_run(where):
        return [where]
    return sorted((p for p in where.iterdir() if p.is_dir() and not p.name.startswith(".") and _is_run(p)),
                  key=lambda p: p.name)


def _is_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def summarize(folder: str | Path) -> RunSummary:
    """What ``runner ls`` says of one run folder."""
    run = RunFolder(folder)
    marker = _json(run.marker)
    running = run.holder()
    kind = marker.get("kind") or _spec_kind(run.spec_file)
    created = marker.get("created")
    result = None if running or _stale(run) else _read(run.result_file, with_ids=False)
    if result is not None:
        attrs, status, _ = result
        ok, na, total = int((status == "ok").sum()), int((status == "not_applicable").sum()), status.size
        failed, created, complete = total - ok - na, attrs.get("created", created), True
    else:
        (ok, failed), na = _shard_counts(run.shard_dir), int(marker.get("not_applicable", 0))
        total, complete = marker.get("points") or _grid_size(run.spec_file), False
    when = created or _dt.datetime.fromtimestamp(run.root.stat().st_mtime, _dt.timezone.utc).isoformat()
    return RunSummary(run.root.resolve().name, run.root, _minutes(when), kind, ok, failed, total, na, running, complete,
                      str(marker.get("run_id", "")))


def listing(where: str | Path = RESULTS, verbose: bool = False) -> str:
    """The table ``runner ls`` prints: one line a run (``verbose``: with its run id and folder)."""
    runs = [summarize(folder) for folder in run_folders(where)]
    if not runs:
        return f"no runs in {where}"
    rows = [["name", "created (UTC)", "kind", "points", "status"] + (["run id", "folder"] if verbose else [])]
    for r in runs:
        points = f"{r.ok}/{'?' if r.total is None else r.total}" + (f" ({r.na} n/a)" if r.na else "")
        rows.append([r.name, r.created, r.kind, points, r.state] + ([r.run_id, str(r.folder)] if verbose else []))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


# ---------------------------------------------------------------- reading cheaply


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _spec_kind(spec_file: Path) -> str:
    """The spec's kind (folders made before the marker kept it): intervene unless it says train."""
    import yaml

    try:
        data = yaml.safe_load(spec_file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "?"
    return str(data.get("kind", "intervene")) if isinstance(data, dict) else "?"


def _grid_size(spec_file: Path) -> int | None:
    """The points of a spec's own sweep (folders made before the marker kept the count); None over a train run."""
    import math

    from runner.spec import RunModel, load_spec

    try:
        loaded = load_spec(spec_file)
    except RunnerError:
        return None
    return None if isinstance(loaded.spec.model, RunModel) else math.prod(len(a) for a in loaded.axes)


def _stale(run: RunFolder) -> bool:
    """Whether shards landed after result.nc was written (a rerun stopped before its merge)."""
    try:
        written = run.result_file.stat().st_mtime_ns
    except OSError:
        return True
    return any(p.stat().st_mtime_ns > written for p in run.shard_dir.glob("*.nc"))


def _read(path: Path, with_ids: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None] | None:
    """(attrs, status values, point ids) of a result or shard file; None if it cannot be read."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_maskandscale(False)
            attrs = {k: nc.getncattr(k) for k in ("created", "run_id", "name") if k in nc.ncattrs()}
            status = np.asarray(nc.variables["status"][...], dtype=object).astype(str)
            ids = np.asarray(nc.variables["point_id"][...], dtype=object).astype(str) if with_ids else None
    except Exception:  # netCDF4 and HDF5 raise many types for truncated or foreign files: `runner status` says which
        return None
    return attrs, status, ids


def _shard_counts(shard_dir: Path) -> tuple[int, int]:
    """(ok, failed) points of a folder's readable shards (an ok record of a point wins over a failed one)."""
    states: dict[str, str] = {}
    for path in shard_dir.glob("*.nc") if shard_dir.is_dir() else ():
        read = _read(path, with_ids=True)
        if read is None:
            continue
        for pid, status in zip(read[2].ravel().tolist(), read[1].ravel().tolist()):
            if states.get(pid) != "ok":
                states[pid] = status
    values = list(states.values())
    return values.count("ok"), values.count("failed")


def _minutes(when: str) -> str:
    """An ISO time as ``2024-05-01 12:03`` in UTC."""
    try:
        moment = _dt.datetime.fromisoformat(when)
    except ValueError:
        return when
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M")
