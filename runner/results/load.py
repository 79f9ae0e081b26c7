"""Open a run's result by name, spec path, run folder or .nc path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.results.folder import RunFolder


def result_path(x: str | Path, base_dir: str | Path = ".") -> Path:
    """The result.nc that ``x`` (a run name, spec path, run folder or .nc file) denotes."""
    p = Path(x)
    if p.suffix == ".nc":
        candidate = p
    elif p.is_dir():
        candidate = RunFolder(p).result_file
    elif p.suffix in (".yaml", ".yml"):
        from runner.spec import load_spec

        candidate = RunFolder.named(load_spec(p).spec.name, base_dir).result_file
    else:
        candidate = RunFolder.named(str(x), base_dir).result_file
    if not candidate.is_file():
        raise RunnerError(f"no result at {candidate} (from {str(x)!r}): has the run finished?",
                          hint="`runner status NAME` shows a run's progress; `runner run SPEC` writes result.nc.")
    return candidate


def load(x: str | Path) -> Any:
    """The result Dataset of a run, read fully into memory (the file is closed again).

    >>> ds = load("tiny")
    >>> ds.logits.sel(layer=1, coefficient=0.0).dims
    ('sample', 'vocab')
    """
    import xarray as xr

    with xr.open_dataset(result_path(x)) as ds:
        return ds.load()
