"""The ``metrics:`` entries of a spec: one of every metric registered in ``runner.metrics``.

Each entry is written as a name (``kl``) or a one-key mapping of a name to its
options (``{logit_diff: {actions: [left, right]}}``). The choice of metrics is
the registry's: a metric registered after this module was imported is accepted
as soon as ``metric_union`` is built again (``runner.spec`` does that).
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field

from runner.metrics import REGISTRY, Metric


def _metric_entry(value: Any) -> Any:
    """``logits`` -> ``{kind: logits}``; ``{logit_diff: {...}}`` -> ``{kind: logit_diff, ...}``."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and len(value) == 1 and "kind" not in value:
        (name, options), = value.items()
        return {"kind": name, **(options or {})} if isinstance(options, dict) or options is None else value
    return value


def metric_union() -> Any:
    """The type of one ``metrics:`` entry: a union of every registered metric, told apart by ``kind``."""
    models = tuple(r.model for r in REGISTRY.values())
    return Annotated[Union[models], Field(discriminator="kind"), BeforeValidator(_metric_entry)]


def metrics_description() -> str:
    """The ``metrics:`` field's description, listing what is registered."""
    return ("What to measure, each a name or {name: {options}}: " + " | ".join(REGISTRY)
            + " (runner schema describes each).")


def default_metrics() -> list[Metric]:
    return [REGISTRY["logits"].model(kind="logits")]
