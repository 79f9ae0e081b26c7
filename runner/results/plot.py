"""Figures of a result: ``plot(ds)`` picks a variable and a layout from its dims, by these rules.

1. **Variable**: the one named, else the spec's ``figure.var``, else the first of ``PREFERRED`` that makes a
   figure (1 to 3 dims left by rule 2), else the first other numeric one that does; never bookkeeping
   (status, error, point_id, counts) nor a spread (``*_sem``, ``*_ci_low``, ``*_ci_high``, ``*_count``).
2. **Reduce**: points whose ``status`` is not "ok" are NaN; ``sample`` and ``episode`` are averaged away
   (unless named as x, hue or col), with error bars from ``<var>_ci_low``/``<var>_ci_high`` (asymmetric),
   else ``<var>_sem``, else the standard error over the averaged dim (std, ddof=1, / sqrt(n)); dims of
   size 1 are dropped.
3. **Layout** of what is left: one dim, a line over it; two, a line per hue over x when x is a swept
   number (float coordinates, ``step``, integers other than layer/head/position/seed ...) with at most
   ``MAX_HUES`` hues, or a hue is given; else a heatmap (diverging ``RdBu_r`` centred on 0 when the values
   take both signs, else sequential); three, one panel per value of ``col`` (the smallest dim). More than
   three is refused: select first. Explicit x, hue and col (or the spec's ``figure:``) override the choices.

Categorical coordinates are tick labels in coordinate order (agent positions by role: I0, S1, A1 ...;
actions by name; a swept vector source in short, never as JSON). No pyplot: figures are plain ``Figure``s.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import RunnerError
from runner.results.figures import ROLES, figure_of

SAMPLE_DIMS = ("sample", "episode")
PREFERRED = ("success", "logit_diff", "restored_fraction", "kl", "return", "loss", "action_probs", "probs",
             "attention", "resid_norm", "logit_lens", "action_fraction", "action_logits", "logits")
BOOKKEEPING = {"status", "error", "point_id", "n_samples", "n_episodes"}
SPREADS = ("_sem", "_ci_low", "_ci_high", "_count")
CATEGORICAL = {"layer", "head", "position", "layer_read", "attn_head", "action", "vocab", "hook", "vector"}
LABEL_COORDS = ("role",)   # a coordinate that names a dim's values better than the values do
MAX_LABEL = 40
MAX_HUES = 10              # more lines than this (a vocabulary) read better as a heatmap


def plot(ds: Any, var: str | None = None, *, x: str | None = None, hue: str | None = None, col: str | None = None,
         out: str | Path | None = None, figure: dict[str, str] | None = None) -> Any:
    """A matplotlib Figure of one variable of a result, laid out from its dims (see the module); saved to ``out``.

    ``figure`` is the default figure (a spec's ``figure:`` mapping; default: the one in the spec the result
    was computed from); its x, hue and col apply to its variable when they name a dim still there.

    >>> import tempfile; from pathlib import Path
    >>> fig = plot(runner.load("tiny"), "kl", out=Path(tempfile.mkdtemp()) / "kl.png")
    >>> [ax.get_xlabel() for ax in fig.axes], [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    (['coefficient'], ['layer=0', 'layer=1'])
    """
    figure = figure_of(ds.attrs.get("spec_yaml", "")) if figure is None else figure
    var = var or default_var(ds, figure)
    given = {"x": x, "hue": hue, "col": col}
    defaults = {r: figure.get(r) for r in ROLES} if figure.get("var") in (None, var) else {}
    da, spread, averaged, bars = reduced(ds, var, keep={d for d in given.values() if d})
    roles = layout(da, var, given, defaults)
    drop = [d for d in da.dims if da.sizes[d] == 1 and d not in roles.values()]
    da = da.squeeze(drop)
    if spread is not None:
        spread = tuple(s.squeeze([d for d in drop if d in s.dims]) for s in spread)
    da, spread = _without_empty_panels(da, spread, roles.get("col"))
    fig = _draw(da, spread, roles, var, ds[var].attrs)
    note = "; ".join(p for p in (_fixed(da), averaged, bars if roles["kind"] == "line" else "") if p)
    fig.suptitle(_title(ds, var, note, width=int(fig.get_figwidth() * 13)), fontsize="medium")
    if out is not None:
        save(fig, out)
    return fig


def default_var(ds: Any, figure: dict[str, str] | None = None) -> str:
    """The variable ``plot`` draws when given none: the figure's, else the first interesting one (module rule 1)."""
    figure = figure_of(ds.attrs.get("spec_yaml", "")) if figure is None else figure
    if figure.get("var"):
        return figure["var"]
    names = [n for n in ds.data_vars if n not in BOOKKEEPING and not n.endswith(SPREADS)
             and ds[n].dtype.kind in "biuf"]
    ranked = [n for n in PREFERRED if n in names] + [n for n in names if n not in PREFERRED]
    for name in ranked:
        left = [d for d in ds[name].dims if d not in SAMPLE_DIMS and ds.sizes[d] > 1]
        if 1 <= len(left) <= 3:
            return name
    if ranked:
        return ranked[0]
    raise RunnerError(f"{ds.attrs.get('name', 'this result')}: no numeric variable to plot")


def select(ds: Any, choices: list[str]) -> Any:
    """``ds`` at ``DIM=VALUE`` choices (the command line's ``--sel``), values matched against the labels."""
    for choice in choices:
        dim, sep, text = choice.partition("=")
        if not sep or dim not in ds.dims:
            raise RunnerError(f"--sel {choice!r}: expected DIM=VALUE with DIM one of {_dims_text(ds)}")
        labels = _labels(ds, dim)
        values = [str(v) for v in ds[dim].values] if dim in ds.coords else labels
        wanted = _number(text)
        matches = [i for i, (v, lab) in enumerate(zip(values, labels))
                   if text in (v, lab) or (wanted is not None and _number(v) == wanted)]
        if not matches:
            raise RunnerError(f"--sel {choice!r}: {dim} has no value {text!r}; its values: {', '.join(labels)}")
        ds = ds.isel({dim: matches[0]})
    return ds


def save(fig: Any, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` (format from the suffix: png, pdf, svg ...), making its folder."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise RunnerError(f"cannot write the figure to {out}: {exc}",
                          hint="Give --out a writable path ending in .png, .pdf or .svg.") from None
    return out


# ---------------------------------------------------------------- reduce

def reduced(ds: Any, var: str, keep: set[str] = frozenset()) -> tuple[Any, tuple | None, str, str]:
    """(``var`` at ok points averaged over its sample dims, (lower, upper) error bars or None, what was averaged,
    what the bars are)."""
    if var not in ds.data_vars:
        raise RunnerError(f"{ds.attrs.get('name', 'the result')} has no variable {var!r}; its variables: "
                          f"{', '.join(ds.data_vars)}")
    if ds[var].dtype.kind not in "biuf":
        raise RunnerError(f"{var} holds {ds[var].dtype} values, not numbers: nothing to plot")
    da = _ok(ds, ds[var].astype(float))
    over = [d for d in da.dims if d in SAMPLE_DIMS and d not in keep]
    with warnings.catch_warnings():  # a failed point is NaN over all its samples: its mean is NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, spread, bars = da.mean(over) if over else da, None, ""
        if f"{var}_ci_low" in ds and f"{var}_ci_high" in ds:
            low, high = (_ok(ds, ds[f"{var}_ci_{end}"]) for end in ("low", "high"))
            spread, bars = ((mean - low).clip(min=0), (high - mean).clip(min=0)), "bars: 95% interval"
        elif f"{var}_sem" in ds:
            sem = _ok(ds, ds[f"{var}_sem"])
            spread, bars = (sem, sem), "bars: ± 1 s.e.m."
        elif over:  # one sample: std is NaN, and no bar is drawn
            sem = da.std(over, ddof=1) / np.sqrt(da.count(over))
            spread, bars = (sem, sem), "bars: ± 1 s.e.m."
    averaged = (f"mean over {', '.join(over)}" if over else
                "averaged in the run (reduce: mean)" if "cell_methods" in ds[var].attrs else "")
    return mean, spread, averaged, bars


def _ok(ds: Any, da: Any) -> Any:
    """``da`` with points whose status is not "ok" set to NaN."""
    if "status" in ds and set(ds["status"].dims) <= set(da.dims):
        return da.where(ds["status"] == "ok")
    return da


# ---------------------------------------------------------------- layout

def layout(da: Any, var: str, given: dict[str, str | None], defaults: dict[str, str | None]) -> dict[str, Any]:
    """The dim of each role (x, hue or y, col) and the kind of panel: explicit roles first, then defaults."""
    for role, dim in given.items():
        if dim is not None and dim not in da.dims:
            raise RunnerError(f"{var} has no dim {dim!r} (--{role}); its dims: {_dims_text(da) or 'none'}",
                              hint="Name one of those dims, or leave the option out for the default layout.")
    named = [d for d in given.values() if d]
    if len(named) != len(set(named)):
        raise RunnerError(f"--x, --hue and --col name the same dim: {', '.join(named)}; give each its own dim")
    roles = {r: d for r, d in given.items() if d}
    for role, dim in defaults.items():  # the spec's figure: only where it still fits (a selection drops dims)
        if dim and role not in roles and dim in da.dims and da.sizes[dim] > 1 and dim not in roles.values():
            roles[role] = dim
    free = [d for d in da.dims if d not in roles.values() and da.sizes[d] > 1]
    if len(free) + len(roles) > 3:
        raise RunnerError(_too_many(da, var, roles, free))
    if not free and not roles:
        value = float(da.mean()) if da.size else float("nan")
        raise RunnerError(f"{var} is a single number here ({value:.4g}; dims left: {_dims_text(da) or 'none'}): "
                          f"nothing to draw", hint="Plot a variable with dims, or a run with a sweep.")
    if "x" not in roles:
        if not free:
            raise RunnerError(f"{var}: --hue and --col leave no dim for the x axis ({_dims_text(da)})",
                              hint="Give --x instead of --hue or --col.")
        roles["x"] = max(free, key=lambda d: (_x_rank(da, d), da.sizes[d], -list(da.dims).index(d)))
        free.remove(roles["x"])
    if len(free) == 2 or (free and "hue" in roles):  # three dims: panels over the smallest
        roles["col"] = min(free, key=lambda d: (da.sizes[d], -list(da.dims).index(d)))
        free.remove(roles["col"])
    line = "hue" in roles or not free or (_x_rank(da, roles["x"]) > 0 and da.sizes[free[0]] <= MAX_HUES)
    if free:
        roles["hue" if line else "y"] = free[0]
    roles["kind"] = "line" if line else "heatmap"
    return roles


def _x_rank(da: Any, dim: str) -> int:
    """How natural an x axis ``dim`` is: 2 a swept number or steps, 1 other integers, 0 categories."""
    if dim not in da.coords or dim in CATEGORICAL or dim.endswith("seed"):
        return 0
    kind = da[dim].dtype.kind
    return 2 if kind == "f" or dim in ("step", "update", "eval_update") else 1 if kind in "iu" else 0


def _too_many(da: Any, var: str, roles: dict, free: list[str]) -> str:
    extra = free[: len(free) + len(roles) - 3]   # the leading (outer) sweep dims
    example = extra[0]
    return (f"{var} has {len(free) + len(roles)} dims left after averaging samples and episodes "
            f"({_dims_text(da)}); a figure shows at most 3 (x, hue or heatmap rows, col). Choose them with "
            f"--x/--hue/--col and select the others ({', '.join(extra)}) first: `runner plot RUN {var} --sel "
            f"{example}={_labels(da, example)[0]}`, or in Python runner.plot(ds.sel({example}=...)) or "
            f"runner.plot(ds.mean({example!r})).")


# ---------------------------------------------------------------- draw

def _without_empty_panels(da: Any, spread: tuple | None, col: str | None) -> tuple[Any, tuple | None]:
    """The panels (values of ``col``) where the variable has some value: a train grid's loss has none for ppo."""
    if not col:
        return da, spread
    keep = da.notnull().any([d for d in da.dims if d != col]).values
    if keep.all() or not keep.any():
        return da, spread
    chosen = {col: keep.nonzero()[0]}
    return da.isel(chosen), None if spread is None else tuple(s.isel(chosen) if col in s.dims else s for s in spread)


def _draw(da: Any, spread: tuple | None, roles: dict, var: str, attrs: dict) -> Any:
    from matplotlib.figure import Figure

    col = roles.get("col")
    n = da.sizes[col] if col else 1
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    heat = roles["kind"] == "heatmap"
    if heat:
        nx, ny = da.sizes[roles["x"]], da.sizes[roles["y"]]
        w, h = min(max(0.45 * nx + 1.6, 3.6), 18 / ncols), min(max(0.35 * ny + 1.4, 2.6), 12 / nrows)
    else:
        w, h = min(5.2, 18 / ncols), 3.8
    fig = Figure(figsize=(w * ncols + (1.2 if heat else 0), h * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=not heat).ravel()
    for ax in axes[n:]:
        ax.remove()
    panels = [{col: i} for i in range(n)] if col else [{}]
    labels = _labels(da, col) if col else []
    limits = _color_limits(da) if heat else None
    for i, (ax, at) in enumerate(zip(axes, panels)):
        part = da.isel(at)
        if heat:
            mesh = _heatmap(ax, part, roles["x"], roles["y"], limits)
        else:
            bars = None if spread is None else tuple(s.isel(at) if col in s.dims else s for s in spread)
            _lines(ax, part, bars, roles["x"], roles.get("hue"), _unit_label(attrs, var), legend=i == 0)
        if col:
            ax.set_title(f"{col}={labels[i]}", fontsize="medium")
        if i % ncols and not heat:
            ax.set_ylabel("")  # the shared y axis is labelled once, in the first column
    if heat:
        fig.colorbar(mesh, ax=list(axes[:n]), label=_unit_label(attrs, var))
    return fig


def _lines(ax: Any, da: Any, bars: tuple | None, x: str, hue: str | None, ylabel: str, legend: bool) -> None:
    numeric = _x_rank(da, x) > 0 and _label_coord(da, x) is None  # numbers on a real axis, else labelled slots
    ticks = None if numeric else _labels(da, x)
    xs = np.asarray(da[x].values, dtype=float) if numeric else np.arange(len(ticks))
    # a hue with no value anywhere (not applicable to its agent) gets no line and no legend entry
    hues = [j for j in range(da.sizes[hue]) if np.isfinite(da.isel({hue: j}).values).any()] if hue else [None]
    names = _labels(da, hue) if hue else []
    for j in hues:
        at = {hue: j} if hue is not None else {}
        y = da.isel(at).transpose(x).values
        label = f"{hue}={names[j]}" if hue is not None else None
        if bars is None:
            ax.plot(xs, y, marker="o", markersize=3, label=label)
        else:
            low, high = (np.nan_to_num(b.isel({k: v for k, v in at.items() if k in b.dims})
                                       .broadcast_like(da.isel(at)).transpose(x).values) for b in bars)
            ax.errorbar(xs, y, yerr=np.stack([low, high]), marker="o", markersize=3, capsize=2.5, label=label)
    if ticks is not None:
        _ticks(ax.set_xticks, xs, ticks, rotate=len(ticks) * max(map(len, ticks)) > 60)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if hue is not None and legend:
        ax.legend(fontsize="small", ncols=math.ceil(len(names) / 12), title=None)


def _heatmap(ax: Any, da: Any, x: str, y: str, limits: tuple) -> Any:
    import matplotlib

    cmap, vmin, vmax = limits
    cmap = matplotlib.colormaps[cmap].with_extremes(bad="0.85")  # NaN (failed or undefined): grey
    values = np.ma.masked_invalid(da.transpose(y, x).values.astype(float))
    mesh = ax.pcolormesh(values, cmap=cmap, vmin=vmin, vmax=vmax)
    xl, yl = _labels(da, x), _labels(da, y)
    _ticks(ax.set_xticks, np.arange(len(xl)) + 0.5, xl, rotate=len(xl) * max(map(len, xl)) > 60)
    _ticks(ax.set_yticks, np.arange(len(yl)) + 0.5, yl, rotate=False)
    ax.invert_yaxis()  # rows read top to bottom in coordinate order, as in a table
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return mesh


def _color_limits(da: Any) -> tuple[str, float | None, float | None]:
    """(colormap, vmin, vmax): diverging and symmetric about 0 when the values take both signs."""
    values = np.asarray(da.values, dtype=float)
    low, high = (float(f(values)) if np.isfinite(values).any() else None for f in (np.nanmin, np.nanmax))
    if low is not None and low < 0 < high:
        return "RdBu_r", -max(-low, high), max(-low, high)
    return "viridis", low, high


def _ticks(setter: Any, where: np.ndarray, labels: list[str], rotate: bool) -> None:
    step = max(1, math.ceil(len(labels) / 40))  # a long axis (a vocabulary) shows every step-th label
    setter(where[::step], labels[::step], rotation=90 if rotate else 0, fontsize="small")


# ---------------------------------------------------------------- labels

def _labels(da: Any, dim: str) -> list[str]:
    """Tick labels of ``dim`` in coordinate order: a role coordinate, else the values, shortened."""
    named = _label_coord(da, dim)
    if named is not None:
        return [str(v) for v in da[named].values]
    values = da[dim].values if dim in da.coords else range(da.sizes[dim])
    labels = [_label(v) for v in values]
    if len(set(labels)) < len(labels):  # shortening made two the same: number them
        labels = [f"{lab} [{i}]" for i, lab in enumerate(labels)]
    return labels


def _label_coord(da: Any, dim: str) -> str | None:
    return next((n for n in LABEL_COORDS if n in da.coords and da[n].dims == (dim,)), None)


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    text = str(value)
    if text[:1] in "{[":
        try:
            text = _short(json.loads(text), top=True)
        except ValueError:
            pass
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _short(obj: Any, top: bool = False) -> str:
    """A swept mapping as a label: ``{"random": {"seed": 0, "norm": "match"}}`` -> ``random(seed=0, norm=match)``."""
    if isinstance(obj, dict) and top and len(obj) == 1:
        (key, inner), = obj.items()
        parts = [f"{k}={_short(v)}" for k, v in inner.items()] if isinstance(inner, dict) else [_short(inner)]
        return f"{key}({', '.join(parts)})"
    if isinstance(obj, dict):
        return "/".join(_short(v) for v in obj.values())
    if isinstance(obj, list):
        return ",".join(_short(v) for v in obj)
    return _label(obj)


def _unit_label(attrs: dict, var: str) -> str:
    units = attrs.get("units")
    return f"{var} [{units}]" if units and units != "1" else var


def _title(ds: Any, var: str, note: str, width: int) -> str:
    """The run's name, the variable's long_name and units, then what is fixed and averaged, wrapped to ``width``."""
    import textwrap

    long_name = ds[var].attrs.get("long_name")
    head = _unit_label(ds[var].attrs, f"{var}: {long_name}" if long_name else var)
    head = f"{ds.attrs['name']} — {head}" if ds.attrs.get("name") else head
    return "\n".join(textwrap.wrap(head, width) + textwrap.wrap(note, width))


def _fixed(da: Any) -> str:
    """The coordinates fixed in ``da`` (selected, or dims of size 1), as ``layer=1, coefficient=0``."""
    return ", ".join(f"{n}={_label(c.values.item())}" for n, c in da.coords.items() if c.ndim == 0 and n != "vector_id")


def _dims_text(da: Any) -> str:
    return ", ".join(f"{d} ({n})" for d, n in da.sizes.items())


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
