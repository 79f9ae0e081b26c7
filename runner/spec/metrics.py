"""The ``metrics:`` entries of a spec: one of every metric registered in ``runner.metrics``.

Each entry is written as a name (``kl``) or a one-key mapping of a name to its
options (``{logit_diff: {actions: [left, right]}}``). The choice of metrics is
the registry's: a metric registered after this module was imported is accepted
as soon as ``metric_union`` is built again (``runner.spec`` does that).
"""
from __future__ import annotations

import copy
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from runner.metrics import REGISTRY, Metric


def _metric_entry(value: Any) -> Any:
    """``logits`` -> ``{kind: logits}``; ``{logit_diff: {...}}`` -> ``{kind: logit_diff, ...}``."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and len(value) == 1 and "kind" not in value:
        (name, options), = value.items()
        return {"kind": name, **(options or {})} if isinstance(options, dict) or options is None else value
    return value


class _AsWritten:
    """The JSON Schema of an entry as a spec writes it, so that editors accept what runner accepts.

    pydantic would describe only the ``{kind: name, ...}`` form that ``_metric_entry`` makes;
    the schema offers the bare name and the ``{name: {options}}`` mapping beside it.
    """

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        by_kind = handler(core_schema)  # a oneOf of the metric models, each with its kind
        bare, keyed = [], []
        refs = by_kind["discriminator"]["mapping"]
        for kind in [k for k in REGISTRY if k in refs]:  # the registry's order, not the mapping's
            model = handler.resolve_ref_schema({"$ref": refs[kind]})
            options = copy.deepcopy({k: v for k, v in model.items() if k not in ("title", "description", "required")})
            options["properties"].pop("kind", None)
            required = [name for name in model.get("required", []) if name != "kind"]
            if required:
                options["required"] = required
            needs_options = required or "oneOf" in options  # oneOf: a choice of required options (logit_diff)
            if not needs_options:
                bare.append(kind)
            value = options if needs_options else {"anyOf": [options, {"type": "null"}]}
            value["description"] = model.get("description", "")
            keyed.append({"type": "object", "properties": {kind: value}, "required": [kind],
                          "additionalProperties": False})
        named = {"enum": bare, "type": "string", "description": "A metric with its default options."}
        return {"anyOf": [named, *keyed, by_kind]}


def metric_union() -> Any:
    """The type of one ``metrics:`` entry: a union of every registered metric, told apart by ``kind``."""
    models = tuple(r.model for r in REGISTRY.values())
    return Annotated[Union[models], Field(discriminator="kind"), BeforeValidator(_metric_entry), _AsWritten()]


def metrics_description() -> str:
    """The ``metrics:`` field's description, listing what is registered."""
    return ("What to measure, each a name, {name: {options}} or {kind: name, ...options}: " + " | ".join(REGISTRY)
            + ". Default: [logits] (token models).")


def default_metrics() -> list[Metric]:
    return [REGISTRY["logits"].model(kind="logits")]
