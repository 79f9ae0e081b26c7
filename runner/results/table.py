"""A result at a glance: one variable as a table over the sweep dims, and its highest and lowest points.

Dims ``sample`` and ``episode`` are averaged (the header says over how many), as are
a variable's other dims of its own (``vocab``, ``action``: the header says so too);
a variable with ``<var>_sem`` beside it shows ``mean ± sem``; a failed point shows
``failed``, one not applicable (an address its model lacks) ``n/a``. Pure functions
of a Dataset, returning text (``runner show`` prints them).

>>> import xarray as xr
>>> ds = xr.Dataset({"kl": (("coefficient", "layer", "sample"), np.arange(12.0).reshape(3, 2, 2)),
...                  "status": (("coefficient", "layer"), np.full((3, 2), "ok", dtype=object))},
...                 coords={"coefficient": [-1.0, 0.0, 1.0], "layer": [0, 1]})
>>> print(table(ds))
kl, mean over 2 samples (rows coefficient, columns layer)
coefficient \\ layer    0     1
-1                   0.5   2.5
0                    4.5   6.5
1                    8.5  10.5
>>> print(extremes(ds))
highest kl: 10.5 at coefficient=1, layer=1
lowest kl:  0.5 at coefficient=-1, layer=0
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import RunnerError

AVERAGED = ("sample", "episode")                      # dims a table averages over, saying how many
COUNTS = {"sample": "n_samples", "episode": "n_episodes"}
NOT_SHOWN = {"status", "error", "point_id", *COUNTS.values()}
COMPANIONS = ("_sem", "_ci_low", "_ci_high", "_count")
PERCENT_WORDS = ("success", "accuracy")               # a 0..1 variable so named is shown in percent


@dataclass
class Summary:
    """A variable reduced to one value a point: ``values`` (and ``sem``) and each point's ``status``, over the sweep."""

    var: str
    dims: list[str]
    values: Any              # DataArray over dims
    sem: Any | None
    status: np.ndarray       # each point's status, over dims
    note: str                # "mean over 50 episodes"
    percent: bool


def variables(ds: Any) -> list[str]:
    """The variables a table can show: numbers, not status/error/point_id nor a spread or count of another."""
    return [name for name, var in ds.data_vars.items()
            if name not in NOT_SHOWN and not name.endswith(COMPANIONS) and var.dtype.kind in "biuf"]


def choose(ds: Any, var: str | None = None, spec_text: str | None = None) -> str | None:
    """The variable to show: ``var``, else the spec's ``figure.var``, else the one ``runner plot`` would draw.

    >>> import xarray as xr
    >>> choose(xr.Dataset({"logits": (("coefficient", "sample", "vocab"), np.zeros((4, 2, 3))),
    ...                    "kl": (("coefficient", "sample"), np.zeros((4, 2)))}))
    'kl'
    """
    names = variables(ds)
    if var is not None:
        if var not in names:
            raise RunnerError(f"no variable {var!r} to show: this result has {', '.join(names) or 'none'}",
                              hint="Give --var one of those names.")
        return var
    wanted = _figure_var(spec_text if spec_text is not None else ds.attrs.get("spec_yaml"))
    if wanted in names:
        return wanted
    if not names:
        return None
    from runner.results.plot import default_var

    return default_var(ds, {})  # the variable `runner plot` would draw


def _figure_var(spec_text: Any) -> str | None:
    """``figure.var`` of a spec's text, if it names one (read defensively: any spec, any runner version)."""
    if not isinstance(spec_text, str) or "figure" not in spec_text:
        return None
    import yaml

    try:
        data = yaml.safe_load(spec_text)
    except yaml.YAMLError:
        return None
    figure = data.get("figure") if isinstance(data, dict) else None
    return figure.get("var") if isinstance(figure, dict) and isinstance(figure.get("var"), str) else None


def sweep_dims(ds: Any) -> list[str]:
    """The dims of the grid: those of ``status`` (every result has it), else the ``sweep_dims`` attr."""
    if "status" in ds:
        return list(ds["status"].dims)
    try:
        return [d for d in json.loads(ds.attrs.get("sweep_dims", "[]")) if d in ds.dims]
    except ValueError:
        return []


def summarize(ds: Any, var: str) -> Summary:
    """``var`` averaged over every dim but the sweep's, with its sem where the result has one."""
    dims = sweep_dims(ds)
    da = ds[var]
    whole = not set(dims) <= set(da.dims)  # a variable of the run, not of each point (vector_cosine): its own dims
    dims = list(da.dims) if whole else dims
    extra = [d for d in da.dims if d not in dims]
    values = da.mean(extra) if extra else da
    sem = ds.get(f"{var}_sem")
    if sem is not None and set(sem.dims) != set(dims):
        sem = None  # a spread over a dim the table averages says nothing of the average
    status = (ds["status"].transpose(*dims).values if "status" in ds and not whole
              else np.full(values.shape, "ok", dtype=object))
    finite = values.values[np.isfinite(values.values)]
    percent = any(w in var for w in PERCENT_WORDS) and finite.size > 0 and finite.min() >= 0 and finite.max() <= 1
    return Summary(var, dims, values.transpose(*dims), sem.transpose(*dims) if sem is not None else None,
                   np.asarray(status), _note(ds, var, extra), bool(percent))


def _note(ds: Any, var: str, extra: list[str]) -> str:
    """What one value a point is: "mean over 50 episodes", "mean over 4 samples, vocab (20)"."""
    if extra:
        parts = [f"{ds.sizes[d]} {d}s" if d in AVERAGED else f"{d} ({ds.sizes[d]})" for d in extra]
        return "mean over " + ", ".join(parts)
    sem = ds.get(f"{var}_sem")
    if sem is None:
        return ""
    over = [d for d in AVERAGED if COUNTS[d] in ds and d in str(sem.attrs.get("long_name", d))]
    parts = [f"{int(np.nanmax(ds[COUNTS[d]].values))} {d}s" for d in over]
    return "mean over " + ", ".join(parts) if parts else "mean"


def table(ds: Any, var: str | None = None, max_rows: int = 40, max_cols: int = 12) -> str:
    """``var`` (see ``choose``) as text: a value, a column, a 2-D table, or rows over all sweep dims but the last."""
    var = choose(ds, var)
    if var is None:
        return "no variable to tabulate"
    s = summarize(ds, var)
    title = var + (f", {s.note}" if s.note else "") + (" (%)" if s.percent else "")
    if not s.dims:
        return f"{title}: {_cell(s, ())}"
    if len(s.dims) == 1:
        dim = s.dims[0]
        rows = [[dim, var]] + [[_label(s.values[dim].values[j]), _cell(s, (j,))] for j in range(s.values.size)]
        return "\n".join([title] + _aligned(rows[:max_rows + 1]) + _left_out(s.values.size - max_rows, "rows"))
    rows_dims, col_dim = s.dims[:-1], s.dims[-1]
    sizes = s.values.sizes
    if len(s.dims) == 2 and sizes[col_dim] > max_cols and sizes[rows_dims[0]] < sizes[col_dim]:
        rows_dims, col_dim = [col_dim], rows_dims[0]  # the long dim down the page
    order = [s.dims.index(d) for d in rows_dims + [col_dim]]
    n_rows, n_cols = int(np.prod([sizes[d] for d in rows_dims])), sizes[col_dim]
    shown = range(min(n_cols, max_cols))
    rows = [[f"{', '.join(rows_dims)} \\ {col_dim}"] + [_label(s.values[col_dim].values[j]) for j in shown]]
    for row in itertools.islice(itertools.product(*[range(sizes[d]) for d in rows_dims]), max_rows):
        labels = [_label(s.values[d].values[i]) for d, i in zip(rows_dims, row)]
        label = labels[0] if len(labels) == 1 else ", ".join(f"{d}={x}" for d, x in zip(rows_dims, labels))
        rows.append([label] + [_cell(s, _index(order, row + (j,))) for j in shown])
    title += f" (rows {', '.join(rows_dims)}, columns {col_dim})"
    return "\n".join([title] + _aligned(rows) + _left_out(n_rows - max_rows, "rows")
                     + _left_out(n_cols - max_cols, "columns"))


def _left_out(n: int, what: str) -> list[str]:
    return [f"... {n} more {what} not shown"] if n > 0 else []


def extremes(ds: Any, var: str | None = None, k: int | None = None) -> str:
    """The ``k`` highest and lowest ok points of ``var`` (one each for a small grid), with their coordinates."""
    var = choose(ds, var)
    if var is None:
        return ""
    s = summarize(ds, var)
    flat = s.values.values.reshape(-1)
    ok = np.flatnonzero((s.status.reshape(-1) == "ok") & np.isfinite(flat))
    if not s.dims or ok.size == 0:
        return ""
    k = k or min(3, max(1, ok.size // 4))
    ranked = ok[np.argsort(flat[ok], kind="stable")]
    lines = []
    for word, picked in (("highest", ranked[::-1][:k]), ("lowest", ranked[:k])):
        entries = [f"{_cell(s, np.unravel_index(i, s.values.shape))} at " + ", ".join(
            f"{d}={_label(s.values[d].values[j])}" for d, j in zip(s.dims, np.unravel_index(i, s.values.shape)))
            for i in picked]
        head = f"{word} {var}:" + (" " if word == "highest" else "  ")
        lines += [head + entries[0]] if k == 1 else [f"{word} {var}:"] + [f"  {e}" for e in entries]
    return "\n".join(lines)


def _index(order: list[int], position: tuple[int, ...]) -> tuple[int, ...]:
    """An index into the sweep-ordered arrays from one in table order (rows dims, then the column dim)."""
    index = [0] * len(order)
    for axis, i in zip(order, position):
        index[axis] = i
    return tuple(index)


def _cell(s: Summary, index: tuple) -> str:
    status = s.status[index]
    if status != "ok":
        return "n/a" if status == "not_applicable" else "failed"
    value = float(s.values.values[index])
    text = _number(value, s.percent, 3)
    if s.sem is not None:
        text += " ± " + _number(float(s.sem.values[index]), s.percent, 2)
    return text


def _number(value: float, percent: bool, digits: int) -> str:
    if not np.isfinite(value):
        return "nan" if np.isnan(value) else str(value)
    return f"{value * 100:.{digits}g}%" if percent else f"{value:.{digits}g}"


def _label(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as text: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip()
            for r in rows]


def evaluation(ds: Any) -> list[str]:
    """Each trained agent's closed-loop success beside a random policy's on the same unseen episodes and, for
    a sweep over ``seed``, the mean ± standard deviation over its training seeds (the figure a claim quotes).

    >>> import xarray as xr
    >>> ds = xr.Dataset({"success": (("seed", "episode"), [[1.0, 1.0], [1.0, 0.0]]),
    ...                  "random_success": (("seed", "episode"), [[0.0, 1.0], [0.0, 0.0]])},
    ...                 coords={"seed": [0, 1]})
    >>> print("\\n".join(evaluation(ds)))
    seed=0: success 100.0% over 2 unseen episodes (random policy 50.0%)
    seed=1: success 50.0% over 2 unseen episodes (random policy 0.0%)
    over 2 seeds: success 75.0% ± 35.4% (s.d.; min 50.0%, max 100.0%), random policy 25.0%
    """
    if "success" not in ds or "random_success" not in ds or "episode" not in ds["success"].dims:
        return []
    success, random = (ds[v].where(ds["status"] == "ok") if "status" in ds else ds[v]
                       for v in ("success", "random_success"))
    success, random = success.mean("episode"), random.mean("episode")
    n, name = ds.sizes["episode"], ds.attrs.get("name", "the agent")
    lines = []
    for at in _cells(success):
        label = ", ".join(f"{d}={v}" for d, v in at.items()) or name
        lines.append(f"{label}: success {float(success.sel(at)):.1%} over {n} unseen episodes "
                     f"(random policy {float(random.sel(at)):.1%})")
    if "seed" in success.dims and success.sizes["seed"] > 1:
        rest = success.isel(seed=0, drop=True)
        for at in _cells(rest):
            s, r = success.sel(at), random.sel(at)
            label = "".join(f", {d}={v}" for d, v in at.items())
            lines.append(f"over {int(s.count())} seeds{label}: success {float(s.mean()):.1%} ± "
                         f"{float(s.std(ddof=1)):.1%} (s.d.; min {float(s.min()):.1%}, max {float(s.max()):.1%}), "
                         f"random policy {float(r.mean()):.1%}")
    return lines


def _cells(da: Any) -> list[dict[str, Any]]:
    """Every combination of ``da``'s coordinate values, as sel() keywords, in order."""
    return [dict(zip(da.dims, values)) for values in itertools.product(*(da[d].values.tolist() for d in da.dims))]
