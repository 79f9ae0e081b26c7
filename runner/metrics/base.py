"""What a metric is: a pydantic model that declares what it produces, and one function that computes it.

The model holds the metric's options (what a spec may write under it) and
declares, once, the variables it produces with their dims. Everything else is
derived from that declaration: the spec language's ``metrics:`` entries, the
plan-time checks (which models it measures, dim names a sweep may not take),
the schema's descriptions and the result's dims, attrs and coordinate labels.

A metric that reads one forward pass is a function ``(metric, Reading) ->
{variable: array}``; a closed-loop metric (``closed_loop = True``) plays
episodes instead and is a function ``(metric, Loop) -> {variable: array}``.
Arrays have the declared dims in order; ``vocab`` means the model's output
space and is named ``action`` on agents.

No torch at import: ``runner validate`` reads these declarations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SAMPLE_DIMS = ("sample", "episode")   # what reduce: mean averages over
COUNTS = {"sample": "n_samples", "episode": "n_episodes"}   # how many reduce: mean averaged
SEM_UNDEFINED = "NaN where a single sample was averaged"
FAMILIES = ("tokens", "agents")       # token models and gridworld agents


class Variable(NamedTuple):
    """A variable a metric produces: its dims (before any reduce) and its netCDF attrs.

    Its values must be finite (a point that gives NaN or inf fails, with a message),
    unless ``undefined`` says where the quantity is undefined by definition: there it
    is NaN, and the run's summary counts those values. A ``coord`` labels its one dim
    (an episode's mission): a coordinate of the result, not a measurement, so
    ``reduce: mean`` drops it with the dim. An ``optional`` one applies to some
    models only: a result where no point defines it leaves it out.
    """

    dims: tuple[str, ...]
    long_name: str | None = None
    units: str | None = None
    undefined: str | None = None
    coord: bool = False
    optional: bool = False

    def attrs(self) -> dict[str, str]:
        pairs = (("long_name", self.long_name), ("units", self.units), ("undefined", self.undefined))
        return {k: v for k, v in pairs if v is not None}


class Metric(BaseModel):
    """Options shared by every metric, and the declarations each one makes."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    kind: str
    reduce: Literal["none", "mean"] = Field("none", description="mean: average over samples (episodes for rollout).")

    variables: ClassVar[dict[str, Variable]] = {}          # what it produces
    families: ClassVar[tuple[str, ...]] = FAMILIES          # which models it measures
    closed_loop: ClassVar[bool] = False                     # plays episodes instead of reading a forward pass
    reduces_itself: ClassVar[bool] = False                  # its function applies reduce: mean itself
    attributable: ClassVar[bool] = False                    # reads only r.out (and the baselines), linearly:
                                                            # attribution patching can estimate it

    def declared(self) -> dict[str, Variable]:
        """The variables it produces with these options: ``variables``, unless an option adds a dim."""
        return self.variables

    def dims(self, name: str, agent: bool) -> tuple[str, ...]:
        """The dims of one of its variables (or their spreads) in a result, after ``reduce``."""
        dims = tuple("action" if agent and d == "vocab" else d for d in self.produces()[name].dims)
        return tuple(d for d in dims if d not in SAMPLE_DIMS) if self.reduce == "mean" else dims

    def companions(self) -> dict[str, Variable]:
        """The spreads ``reduce: mean`` writes beside the means: ``<var>_sem`` and the count of each sample dim.

        A metric that reduces itself (a ratio of means) writes none. Dims are before any reduce.
        """
        if self.reduce != "mean" or self.reduces_itself:
            return {}
        out: dict[str, Variable] = {}
        for name, var in self.declared().items():
            over = [d for d in var.dims if d in SAMPLE_DIMS]
            if over and not var.coord:
                out[f"{name}_sem"] = Variable(var.dims, f"standard error of the mean of {name} over {', '.join(over)}",
                                              var.units, undefined=SEM_UNDEFINED)
                out |= {COUNTS[d]: Variable((d,), f"{d}s averaged", "1") for d in over}
        return out

    def produces(self) -> dict[str, Variable]:
        """Every variable it writes into a result: its declared ones, then their spreads under ``reduce: mean``."""
        kept = {n: v for n, v in self.declared().items() if not (v.coord and self.reduce == "mean")}
        return {**kept, **self.companions()}

    def dim_names(self) -> set[str]:
        """Every dim it may produce, on either kind of model (a sweep dim may not take these names)."""
        dims = {d for v in self.declared().values() for d in v.dims}
        return dims | {"action"} if "vocab" in dims else dims

    def attrs(self, name: str) -> dict[str, str]:
        """The netCDF attrs of one of its variables (or their spreads)."""
        attrs = self.produces()[name].attrs()
        declared = self.declared()
        if name in declared and self.reduce == "mean" and any(d in SAMPLE_DIMS for d in declared[name].dims):
            attrs["cell_methods"] = "sample: mean"
        return attrs

    def spreads(self, name: str, values: np.ndarray, axes: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The companions of variable ``name`` from its values before the mean over ``axes``."""
        n = int(np.prod([values.shape[a] for a in axes]))
        std = values.std(axis=axes, ddof=1) if n > 1 else np.full(np.delete(values.shape, axes), np.nan)
        return {f"{name}_sem": std / np.sqrt(n)}

    def labels(self) -> dict[str, list[str]]:
        """Coordinate labels of dims of its own (the common ones, action and position, are labelled for it)."""
        return {}

    def labels_for(self, sizes: Any) -> dict[str, list[str]]:
        """Coordinate labels of its own dims on a model of ``sizes``: ``labels()`` unless they depend on the model."""
        return self.labels()

    def reads(self, n_layers: int) -> set[str]:
        """Hook names whose activations at the last position it reads from the intervened run."""
        return set()

    def reads_all_positions(self, n_layers: int) -> set[str]:
        """Hook names whose activations at every position it reads from the intervened run (``Reading.sequences``)."""
        return set()

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        """What is wrong with it for a model of ``sizes`` under ``intervention`` (beyond the family check)."""
        return iter(())


def without_unused(dataset: Any, metrics: list[Metric]) -> Any:
    """``dataset`` less the optional variables (``Variable.optional``) that no point of the run defines."""
    unused = [name for metric in metrics for name, var in metric.produces().items()
              if var.optional and name in dataset and bool(dataset[name].isnull().all())]
    return dataset.drop_vars(unused)


@dataclass
class Reading:
    """What a point's forward-pass metrics read: last-position logits, each [sample, vocab or action]."""

    clean: Any                          # the unintervened run
    out: Any                            # the intervened run
    source: Any = None                  # the patch source run (restored_fraction)
    readouts: dict[str, Any] | None = None  # intervened activations at the last position (see Metric.reads)
    model: Any = None
    agent: bool = False
    sequences: dict[str, Any] | None = None  # ... at every position (see Metric.reads_all_positions)
    edit: Any = None                    # the point's Edit (a steer's vector is its offset)
    clean_site: Any = None              # the clean activation at the edited site, every position


@dataclass
class Loop:
    """What a closed-loop metric needs to play episodes: the agent, the point's hooks, its target return."""

    agent: Any
    hooks: list
    target_return: float | None
    device: str


@dataclass(frozen=True)
class Registered:
    model: type[Metric]
    compute: Callable[..., dict[str, Any]]


class Registry(dict):
    """kind -> Registered, with a version that changes whenever a metric is added."""

    version = 0

    def add(self, model: type[Metric], compute: Callable[..., dict[str, Any]]) -> None:
        self[_kind_of(model)] = Registered(model, compute)
        self.version += 1

    def remove(self, kind: str) -> None:
        del self[kind]
        self.version += 1


REGISTRY = Registry()


def register(model: type[Metric]) -> Callable[[Callable], Callable]:
    """Register ``model`` and the decorated function as one metric; the spec language learns it at once.

    >>> from typing import Literal
    >>> class LastLogit(Metric):
    ...     '''The largest logit at the last position.'''
    ...     kind: Literal["last_logit"]
    ...     variables = {"last_logit": Variable(("sample",), "largest logit at the last position")}
    >>> @register(LastLogit)
    ... def last_logit(metric, r):
    ...     return {"last_logit": r.out.max(dim=-1).values}
    >>> "last_logit" in REGISTRY
    True
    >>> REGISTRY.remove("last_logit")
    """
    def decorate(compute: Callable) -> Callable:
        model.__doc__ = _describe(model)
        _describe_kind(model)
        REGISTRY.add(model, compute)
        return compute
    return decorate


def _kind_of(model: type[Metric]) -> str:
    (kind,) = model.model_fields["kind"].annotation.__args__
    return kind


def _describe_kind(model: type[Metric]) -> None:
    """Give the model's ``kind`` a description unless it has one: the schema describes every field."""
    field = model.model_fields["kind"]
    if field.description is None:
        kind = _kind_of(model)
        field.description = (f"{kind}: this metric. A spec writes it alone ({kind}), as the one key of its options "
                             f"({{{kind}: {{reduce: mean}}}}) or as kind: {kind} beside them.")
        model.model_rebuild(force=True)


def _describe(model: type[Metric]) -> str:
    """The model's docstring, then what it produces (``runner schema`` shows it)."""
    doc = " ".join((model.__doc__ or "").split())
    produces = "; ".join(f"{name} ({', '.join(v.dims) or 'scalar'})" for name, v in model.variables.items())
    return f"{doc} Produces: {produces}." if "Produces:" not in doc else doc


def kinds_for(agent: bool) -> list[str]:
    """The metrics that measure agents (or token models)."""
    family = "agents" if agent else "tokens"
    return [kind for kind, r in REGISTRY.items() if family in r.model.families]


def family_problem(metric: Metric, agent: bool) -> str | None:
    """Why ``metric`` cannot measure this kind of model, or None."""
    family = "agents" if agent else "tokens"
    if family in metric.families:
        return None
    if agent:
        return f"metric {metric.kind!r} measures token models; an agent has {', '.join(kinds_for(True))}"
    return f"metric {metric.kind!r} measures agents; a token model has {', '.join(kinds_for(False))}"


def reads(metrics: list[Metric], n_layers: int) -> set[str]:
    """Hook names whose intervened activations (last position) the metrics read."""
    return set().union(*(m.reads(n_layers) for m in metrics)) if metrics else set()


def reads_all_positions(metrics: list[Metric], n_layers: int) -> set[str]:
    """Hook names whose intervened activations (every position) the metrics read."""
    return set().union(*(m.reads_all_positions(n_layers) for m in metrics)) if metrics else set()


def position_axis(name: str) -> int:
    """The axis of an activation that runs over positions (queries, for attention patterns)."""
    return 2 if name.endswith("hook_pattern") else 1


def last_position(name: str, x: Any) -> Any:
    """An activation at the last position (the last query, for attention patterns)."""
    return x[:, :, -1] if name.endswith("hook_pattern") else x[:, -1]


def to_numpy(value: Any) -> np.ndarray:
    """A metric function's array as numpy: tensors become float32 on the CPU."""
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


Result = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]


def labelled(metric: Metric, arrays: dict[str, Any], agent: bool) -> Result:
    """A metric function's arrays with their declared dims and attrs, ``reduce: mean`` applied."""
    declared = metric.declared()
    if set(arrays) != set(declared):
        raise ValueError(f"metric {metric.kind!r} returned {sorted(arrays)}, declared {sorted(declared)}")
    out: Result = {}
    for name, value in arrays.items():
        if name not in metric.produces():  # a label of a dim reduce: mean removed
            continue
        values, dims = to_numpy(value), tuple("action" if agent and d == "vocab" else d
                                              for d in declared[name].dims)
        if values.dtype.kind in "US":
            values = values.astype(object)
        if metric.reduce == "mean" and metric.reduces_itself:
            dims = metric.dims(name, agent)
        if values.ndim != len(dims):
            raise ValueError(f"metric {metric.kind!r}: {name} has {values.ndim} dims, declared {dims}")
        _check_finite(metric, name, values)
        reduced = {name: values}
        if metric.reduce == "mean" and not metric.reduces_itself:
            axes = tuple(i for i, d in enumerate(dims) if d in SAMPLE_DIMS)
            if axes:
                wide = values.astype(np.float64)
                reduced = {name: wide.mean(axis=axes), **metric.spreads(name, wide, axes)}
                reduced |= {COUNTS[dims[a]]: np.array(values.shape[a], dtype=np.int64) for a in axes}
        for key, array in reduced.items():
            out[key] = (metric.dims(key, agent), array, metric.attrs(key))
    return out


def _check_finite(metric: Metric, name: str, values: np.ndarray) -> None:
    """Non-finite values fail the point, but for NaN where the variable declares itself undefined."""
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values)
    if metric.declared()[name].undefined is not None:
        bad &= ~np.isnan(values)
    if bad.any():
        raise ValueError(f"metric {metric.kind!r}: {int(bad.sum())} of {bad.size} values of {name} are not finite "
                         f"({values[bad].flat[0]}): the model's output under this intervention is not a number")


def measure(metrics: list[Metric], reading: Reading) -> Result:
    """Every forward-pass metric of a point, merged into one result."""
    result: Result = {}
    for metric in metrics:
        if not metric.closed_loop:
            arrays = REGISTRY[metric.kind].compute(metric, reading)
            result.update(labelled(metric, arrays, reading.agent))
    return result


def play(metrics: list[Metric], loop: Loop) -> Result:
    """Every closed-loop metric of a point, merged into one result."""
    result: Result = {}
    for metric in metrics:
        if metric.closed_loop:
            result.update(labelled(metric, REGISTRY[metric.kind].compute(metric, loop), True))
    return result
