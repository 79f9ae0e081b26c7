"""Open a run's result by name, spec path, run folder or .nc path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import RunnerError


def result_path(x: str | Path, results_root: str | Path = "results") -> Path:
    """The result.nc that ``x`` (a run name, spec path, run folder or .nc file) denotes."""
    p = Path(x)
    if p.suffix == ".nc":
        candidate = p
    elif p.is_dir():
        candidate = p / "result.nc"
    elif p.suffix in (".yaml", ".yml"):
        from runner.spec import load_spec

        candidate = Path(results_root) / load_spec(p).spec.name / "result.nc"
    else:
        candidate = Path(results_root) / str(x) / "result.nc"
    if not candidate.is_file():
        raise RunnerError(f"no result at {candidate} (from {str(x)!r}): has the run finished?",
                          hint="`runner status NAME` shows a run's progress; `runner run SPEC` writes result.nc.")
    return candidate


def load(x: str | Path) -> Any:
    """The result Dataset of a run, read fully into memory (the file is closed again).

    >>> import runner
    >>> ds = runner.load("quickstart")                       # doctest: +SKIP
    >>> ds.logits.sel(layer=1, coefficient=0.0).dims         # doctest: +SKIP
    ('sample', 'vocab')
    """
    import xarray as xr

    with xr.open_dataset(result_path(x)) as ds:
        return ds.load()
