"""docs/reference.md: every section and field of the spec language, written from the schema's descriptions.

The text is generated, never edited by hand, so that it cannot drift from the models:
a test compares the committed file with ``reference()``. Regenerate it with::

    .venv/bin/python -m runner.spec.reference > docs/reference.md

>>> text = reference()
>>> text.startswith("# Spec reference"), "### Steer" in text, "| `kl` | sample |" in text
(True, True, True)
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from runner.metrics import REGISTRY, Metric
from runner.spec.base import Source, Strict
from runner.spec.schema import json_schema

REGENERATE = ".venv/bin/python -m runner.spec.reference > docs/reference.md"

INTRO = """\
# Spec reference

Every section and field of the spec language, with its type, default and
description. Generated from the models' field descriptions (what `runner schema`
prints and what an editor shows on hover) by `{command}`: do not edit by hand.

A *source* is a mapping with exactly one key naming its kind: `model: {{run: my-train}}`,
`vector: {{random: {{seed: 0}}}}`. An intervention is told apart by its `kind:`, a metric
by its name. Types: *integer ≥ 0* and the like give the bounds runner checks;
*optional* means the field may be left out (or written `null`).
"""

METRICS_INTRO = """\
Each entry of `metrics:` is a name (`kl`), a name with options (`{kl: {reduce: mean}}`),
or `{kind: kl, reduce: mean}`. A metric's variables have the dims listed (before any
`reduce`); `vocab` is the model's output space, named `action` (labelled left … done)
on agents. A metric that measures only token models or only agents is refused, before
anything runs, on the other kind of model.
"""


def reference() -> str:
    """The Markdown text of docs/reference.md."""
    schema = json_schema()
    defs = schema["$defs"]
    spec, train = defs["Spec"]["properties"], defs["TrainSpec"]["properties"]
    metric_defs = {_def_name(defs, r.model): kind for kind, r in REGISTRY.items()}
    sections = [
        ("Top level", "A spec is `kind: intervene` (the default: run a model, maybe intervene, measure) or "
                      "`kind: train` (fit agents to demonstrations). Fields of both kinds come first.",
         ["Spec", "TrainSpec"]),
        ("execution", "Resources and executor; nothing here changes a number of the result.",
         _refs(spec["execution"])),
        ("Model sources", "`model:` of an intervene spec is exactly one of the first three; a train spec's "
                          "`model:` is the agent to build.", _refs(spec["model"]) + _refs(train["model"])),
        ("Data sources", "`data:`, what the model reads: token ids for token models, trajectories for agents.",
         _refs(spec["data"]) + _refs(train["data"])),
        ("Interventions", "`intervention:` acts at one address (hook, layer, head, position) as x + c·d(x): "
                          "c = 0 leaves the model untouched.", _refs(spec["intervention"])),
        ("Vector sources", "`vector:` of a steer intervention: where v comes from.",
         _refs(defs["Steer"]["properties"]["vector"])),
        ("Training", "`train:` and `eval:` of a train spec.", _refs(train["train"]) + _refs(train["eval"])),
    ]
    sections = [(title, intro, list(dict.fromkeys(names))) for title, intro, names in sections]
    seeds = {name for _, _, names in sections for name in names} | set(metric_defs)
    lines = [INTRO.format(command=REGENERATE)]
    for title, intro, names in sections:
        lines += [f"## {title}", "", intro, ""]
        lines += _section(defs, names, seeds, title)
    lines += ["## Metrics", "", METRICS_INTRO]
    lines += _metrics(defs, metric_defs, seeds)
    return "\n".join(lines).rstrip("\n") + "\n"


def _section(defs: dict, names: list[str], seeds: set[str], title: str) -> list[str]:
    """The section's models, the fields they share written once, then the models only they hold."""
    shared = _shared(defs, names)
    lines = []
    if shared:
        lines += [f"### {title}: shared fields", "", f"{', '.join(_link(defs, n) for n in names)} all have these.", ""]
        lines += [_field(defs, defs[names[0]], key) for key in shared] + [""]
    for name in names:
        lines += _model(defs, name, skip=shared)
    for name in _reachable(defs, names, seeds):
        lines += _model(defs, name)
    return lines


def _metrics(defs: dict, metric_defs: dict[str, str], seeds: set[str]) -> list[str]:
    names = list(metric_defs)
    shared = [key for key in _shared(defs, names) if key != "kind"]
    lines = ["### Metrics: shared fields", ""] + [_field(defs, defs[names[0]], key) for key in shared] + [""]
    for name, kind in metric_defs.items():
        model = REGISTRY[kind].model
        doc = defs[name].get("description", "").split(" Produces:")[0]
        families = " and ".join({"tokens": "token models", "agents": "agents"}[f] for f in model.families)
        lines += [f"### {kind}", "", doc, "", f"Measures {families}.", ""]
        own = [key for key in defs[name]["properties"] if key not in shared and key != "kind"]
        lines += [_field(defs, defs[name], key) for key in own] + ([""] if own else [])
        lines += _variables(model)
    for name in _reachable(defs, names, seeds):
        lines += _model(defs, name)
    return lines


def _variables(model: type[Metric]) -> list[str]:
    """A table of the variables a metric writes, and what ``reduce: mean`` adds beside them."""
    lines = ["| variable | dims | long name | units |", "|---|---|---|---|"]
    for name, var in model.variables.items():
        note = f" (undefined: {var.undefined})" if var.undefined else ""
        note += "; left out of a result where no point defines it" if var.optional else ""
        cells = [f"`{name}`", ", ".join(var.dims) or "scalar", (var.long_name or "—") + note, var.units or "—"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    companions = _companions(model)
    if companions:
        lines += ["", "With `reduce: mean` the sample dims are averaged away, and beside the means: "
                  + "; ".join(f"`{n}` ({v.long_name or ', '.join(v.dims)})" for n, v in companions.items()) + "."]
    return lines + [""]


def _companions(model: type[Metric]) -> dict[str, Any]:
    """What the metric writes beside its variables under ``reduce: mean`` (if metrics declare such spreads)."""
    if not hasattr(model, "companions"):
        return {}
    kind = model.model_fields["kind"].annotation.__args__[0]
    return model.model_construct(kind=kind, reduce="mean").companions()


def _model(defs: dict, name: str, skip: Any = ()) -> list[str]:
    node = defs[name]
    lines = [f"### {name}", ""]
    written, parent = _written(node), _parent(defs, name)
    description = node.get("description", "")
    if written and not description.startswith(written):
        lines += [f"Written `{written}`.", ""]
    elif parent and not written:
        lines += [f"Used in {parent}.", ""]
    if description:
        lines += [description, ""]
    lines += [_field(defs, node, key) for key in node.get("properties", {}) if key not in skip]
    return lines + [""]


def _field(defs: dict, node: dict, key: str) -> str:
    """One field as a bullet: name, type, default (or required) and description."""
    prop = node["properties"][key]
    if key in node.get("required", ()):
        when = "required"
    elif "default" in prop:
        when = "optional" if prop["default"] is None else f"default `{_flow(prop['default'])}`"
    else:
        when = f"default `{_flow(_factory_default(node, key))}`"
    kind = _type(defs, prop, drop_null=prop.get("default", 0) is None)
    if prop.get("type") == "array" and {r.model.__name__ for r in REGISTRY.values()} & set(_refs(prop)):
        kind = "list of [metrics](#metrics)"  # each a name, {name: options} or {kind: name, ...}
    return f"- `{key}` ({kind}; {when}): {prop.get('description', '')}"


def _type(defs: dict, node: dict, drop_null: bool = False) -> str:
    """A JSON Schema node as words: integer ≥ 0, list of string, [transformer](#transformermodel) | ..."""
    if "$ref" in node:
        return _link(defs, node["$ref"].split("/")[-1])
    for key in ("anyOf", "oneOf"):
        if key in node:
            parts = [_type(defs, m) for m in node[key] if not (drop_null and m.get("type") == "null")]
            return " | ".join(dict.fromkeys(parts))
    if "const" in node:
        return f"`{_flow(node['const'])}`"
    if "enum" in node:
        return " | ".join(f"`{_flow(v)}`" for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        low, high = node.get("minItems"), node.get("maxItems")
        length = f" ({low})" if low and low == high else f" ({low} or more)" if low else ""
        return f"list{length} of {_type(defs, node.get('items', {}))}"
    if kind == "object":
        return "mapping"
    if "minimum" in node and "maximum" in node:
        return f"{kind} from {node['minimum']:g} to {node['maximum']:g}"
    bounds = [f"{op} {node[k]:g}" for k, op in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"))
              if k in node]
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    return " ".join([kind or "any", *bounds])


def _link(defs: dict, name: str) -> str:
    return f"[{_written(defs[name]) or name}](#{name.lower()})"


def _written(node: dict) -> str | None:
    """How a spec names this model: the one key of a source, or kind: NAME of an intervention."""
    props = node.get("properties", {})
    if "kind" in props and "const" in props["kind"]:
        return f"kind: {props['kind']['const']}"
    if node.get("title") in _sources():
        return next(iter(props))
    return None


def _sources() -> set[str]:
    """The names of the single-key source models (every subclass of Source)."""
    found, todo = set(), [Source]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found.add(sub.__name__)
            todo.append(sub)
    return found


def _factory_default(node: dict, key: str) -> Any:
    """The default a model builds with a factory (pydantic's schema leaves those out)."""
    cls = _models()[node["title"]]
    value = cls.model_fields[key].default_factory()
    if isinstance(value, list):
        return [v.kind if isinstance(v, Metric) else v for v in value]
    return value.model_dump(exclude_defaults=True) if isinstance(value, Strict) else value


def _models() -> dict[str, type]:
    found, todo = {}, [Strict]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.setdefault(sub.__name__, sub)
            todo.append(sub)
    return found


def _flow(value: Any) -> str:
    """A value as YAML flow style: null, true, [a, b], {k: v}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def _refs(node: Any) -> list[str]:
    """The model names a schema node refers to, in order, without following them."""
    out: list[str] = []
    if isinstance(node, dict):
        if "$ref" in node:
            out.append(node["$ref"].split("/")[-1])
        for value in node.values():
            out += [r for r in _refs(value) if r not in out]
    elif isinstance(node, list):
        for value in node:
            out += [r for r in _refs(value) if r not in out]
    return out


def _reachable(defs: dict, names: list[str], seeds: set[str]) -> Iterator[str]:
    """The models the named ones hold, at any depth, in the order first met, short of other sections' models."""
    seen, todo = set(names) | seeds, list(names)
    while todo:
        for ref in _refs(defs[todo.pop(0)]):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
                yield ref


def _parent(defs: dict, name: str) -> str | None:
    """Where a model is used, as words: [transformer](#transformermodel); `edit_cell` of [SameOptions](...)."""
    places: dict[str, list[str]] = {}
    for owner, node in defs.items():
        for key, prop in node.get("properties", {}).items():
            if name in _refs(prop):
                places.setdefault("" if _written(node) == key else key, []).append(_link(defs, owner))
    return "; ".join(", ".join(links) if not key else f"`{key}` of {', '.join(links)}"
                     for key, links in places.items()) or None



def _shared(defs: dict, names: list[str]) -> list[str]:
    """Fields that every named model has with the same schema (of two models or more)."""
    if len(names) < 2:
        return []
    first = defs[names[0]].get("properties", {})
    return [key for key, prop in first.items()
            if all(defs[n].get("properties", {}).get(key) == prop for n in names[1:])]


def _def_name(defs: dict, model: type) -> str:
    return model.__name__ if model.__name__ in defs else next(k for k, v in defs.items() if v.get("title") == model.__name__)


if __name__ == "__main__":
    import sys

    sys.stdout.write(reference())
