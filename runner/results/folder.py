"""The layout of ``results/``, in one place: run folders, their files, and the data cache.

::

    results/<name>/
      spec.yaml            the spec exactly as run
      shards/<task>.nc     one per finished task; a rerun skips the points they hold
      result.nc            the merged dataset
      models/<point>/      train specs: model.safetensors + config.json per grid point
      vectors/<point>.npy  steer specs: the vector each point added
    results/.cache/trajectories/<key>.npz   generated demonstrations

The driver is the only writer. Every file lands by rename from a temporary
name, so a killed run leaves whole shards or none, never half of one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from runner.errors import RunnerError
from runner.ids import content_id
from runner.spec import parse_spec

RESULTS, MODELS, VECTORS = "results", "models", "vectors"


def results_root(base_dir: str | Path) -> Path:
    """Where run folders live: ``results/`` under the project root."""
    return Path(base_dir) / RESULTS


def trajectory_cache(base_dir: str | Path) -> Path:
    """Where generated demonstrations are cached: ``results/.cache/trajectories``."""
    return results_root(base_dir) / ".cache" / "trajectories"


def point_name(coords: dict[str, Any], default: str = "model") -> str:
    """A file name for a point's artifacts from its coordinates: ``n_layers=2,seed=0`` (``default`` without a sweep).

    Scalars are written as they are; lists and mappings (a swept vector source, say) by a short content id.
    """
    if not coords:
        return default

    def text(value: Any) -> str:
        plain = isinstance(value, (bool, int, float, str)) and len(str(value)) <= 40
        return str(value) if plain else content_id(value, 8)

    name = ",".join(f"{k}={text(v)}" for k, v in coords.items())
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in name)


def model_file(coords: dict[str, Any], name: str) -> str:
    """A file of the model a train point made, relative to its run folder (what a task returns)."""
    return f"{MODELS}/{point_name(coords)}/{name}"


def vector_file(coords: dict[str, Any]) -> str:
    """The steering vector a point added, relative to its run folder."""
    return f"{VECTORS}/{point_name(coords, default='vector')}.npy"


class RunFolder:
    """``results/<name>/`` of one run: the only place that knows its layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.spec_file = self.root / "spec.yaml"
        self.shard_dir = self.root / "shards"
        self.result_file = self.root / "result.nc"
        self.models_dir = self.root / MODELS
        self.vectors_dir = self.root / VECTORS

    @classmethod
    def named(cls, name: str, base_dir: str | Path) -> RunFolder:
        """The folder of run ``name`` under the project's ``results/``."""
        return cls(results_root(base_dir) / name)

    def model_dir(self, coords: dict[str, Any]) -> Path:
        """Where the model a train point made lives."""
        return (self.root / model_file(coords, "x")).parent

    def prepare(self, plan: Any, fresh: bool = False) -> None:
        """Create the folder for ``plan``; refuse to mix a different spec into it unless ``fresh``."""
        if self.root.exists() and not self.root.is_dir():
            raise RunnerError(f"the run folder {self.root} exists and is not a folder",
                              hint="Give --out a folder path (it is created if missing).")
        if fresh:
            for path in (self.shard_dir, self.models_dir, self.vectors_dir, self.result_file, self.spec_file):
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        elif self.spec_file.exists():
            old = _previous_run_id(self.spec_file)
            if old != plan.run_id:
                raise RunnerError(
                    f"{self.root} already holds results of a different spec (run id {old}, this spec's is "
                    f"{plan.run_id}); mixing them would corrupt both.",
                    hint="Rerun with --fresh to discard the old results, or --out DIR to write elsewhere.")
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.spec_file, plan.loaded.text.encode())

    def shards(self) -> list[Path]:
        """Finished shard files, oldest first."""
        if not self.shard_dir.is_dir():
            return []
        return sorted(self.shard_dir.glob("*.nc"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def point_status(self) -> dict[str, str]:
        """point id -> 'ok' or 'failed' over every shard (an ok anywhere wins)."""
        import xarray as xr

        status: dict[str, str] = {}
        for shard in self.shards():
            with xr.open_dataset(shard) as ds:
                for pid, st in zip(ds["point_id"].values, ds["status"].values):
                    if status.get(str(pid)) != "ok":
                        status[str(pid)] = str(st)
        return status

    def write_files(self, files: dict[str, bytes]) -> None:
        """Write files a task returned (paths relative to the run folder), each atomically."""
        for relative, data in files.items():
            path = (self.root / relative).resolve()
            if self.root.resolve() not in path.parents:
                raise ValueError(f"a task returned a file outside the run folder: {relative}")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)

    def write_shard(self, task_id: str, ds: Any) -> Path:
        path = self.shard_dir / f"{task_id}.nc"
        write_netcdf(ds, path)
        return path


def _previous_run_id(spec_file: Path) -> str:
    try:
        return parse_spec(spec_file.read_text(), str(spec_file)).run_id
    except RunnerError:
        return "(unreadable spec.yaml)"


def _umask_mode() -> int:
    """The mode an ordinary new file gets (mkstemp makes 0600 files; results are meant to be shared)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def _atomic(path: Path) -> Iterator[str]:
    """A temporary name beside ``path``: renamed onto it (with the umask's mode) if the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and a rename."""
    with _atomic(path) as tmp:
        Path(tmp).write_bytes(data)


def write_netcdf(ds: Any, path: Path) -> None:
    """``ds.to_netcdf`` through a temporary file and a rename, with string variables as text."""
    encoding = {name: {"dtype": str} for name, var in ds.variables.items() if var.dtype == object}
    with _atomic(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def json_attr(value: Any) -> str:
    """netCDF attrs cannot hold dicts, None or bool: store them as JSON text."""
    return json.dumps(value, sort_keys=True, default=str)


def coord_values(values: list[Any]) -> np.ndarray:
    """Sweep values as a netCDF-friendly coordinate: the values themselves where netCDF can hold them.

    Numbers and booleans stay numbers and booleans; a mix of scalars becomes their text
    (``position: [all, last, 0]`` -> ``"all", "last", "0"``); lists and mappings become JSON text.
    """
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    def text(v: Any) -> str:
        if v is None or isinstance(v, (bool, int, float, str)):
            return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        return json.dumps(v, sort_keys=True)

    return np.array([text(v) for v in values], dtype=object)
