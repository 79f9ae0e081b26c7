"""Editor support and the reference: every field described, schema.json and docs/reference.md in sync, runner init."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from runner.cli import INIT_KINDS, main
from runner.metrics import REGISTRY
from runner.models.sites import SHORT_NAMES
from runner.spec.reference import REGENERATE as REGENERATE_REFERENCE, reference
from runner.spec.schema import REGENERATE as REGENERATE_SCHEMA, SCHEMA_FILE, json_schema, modeline, schema_text
from runner.spec.templates import TEMPLATES, schema_path, starter
from tests.conftest import ROOT

MODELINE = modeline("../runner/spec/schema.json")


def undescribed(node, path: str = "") -> list[str]:
    """Every property anywhere in a JSON Schema that has no description, by its place in the schema."""
    if isinstance(node, list):
        return [p for i, child in enumerate(node) for p in undescribed(child, f"{path}/{i}")]
    if not isinstance(node, dict):
        return []
    missing = [f"{path}/properties/{key}" for key, prop in (node.get("properties") or {}).items()
               if isinstance(prop, dict) and not prop.get("description")]
    return missing + [p for key, child in node.items() for p in undescribed(child, f"{path}/{key}")]


def choices(schema: dict, node) -> list[str]:
    """The names a spec writes for the alternatives of a field: a source's one key, an intervention's kind."""
    if isinstance(node, list):
        return [name for child in node for name in choices(schema, child)]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        props = schema["$defs"][node["$ref"].split("/")[-1]]["properties"]
        return [props["kind"]["const"] if "const" in props.get("kind", {}) else next(iter(props))]
    return [name for child in node.values() for name in choices(schema, child)]


# ---------------------------------------------------------------- descriptions


def test_every_field_of_the_spec_language_has_a_description():
    assert undescribed(json_schema()) == []


def test_descriptions_that_list_the_choices_name_every_one():
    schema = json_schema()
    spec, steer = schema["$defs"]["Spec"]["properties"], schema["$defs"]["Steer"]["properties"]
    for node in (spec["model"], spec["data"], spec["intervention"], steer["vector"]):
        names = choices(schema, node)
        assert len(names) >= 3 and [n for n in names if n not in node["description"]] == [], node["description"]
    assert [kind for kind in REGISTRY if kind not in spec["metrics"]["description"]] == []
    hook = steer["hook"]["description"]
    assert [name for name in SHORT_NAMES if name not in hook] == []


# ---------------------------------------------------------------- schema.json, for editors


def test_schema_json_is_what_runner_schema_prints(capsys):
    assert SCHEMA_FILE.is_file(), f"runner/spec/schema.json is missing; make it with: {REGENERATE_SCHEMA}"
    assert SCHEMA_FILE.read_text() == schema_text(), (
        f"runner/spec/schema.json is stale (the spec models changed since it was written); regenerate it with: "
        f"{REGENERATE_SCHEMA}")
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_schema_json_ships_with_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "schema.json" in config["tool"]["setuptools"]["package-data"]["runner.spec"]


def test_every_example_spec_names_the_schema_in_its_first_line():
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    assert len(specs) >= 10
    for spec in specs:
        first = spec.read_text().splitlines()[0]
        assert first == MODELINE, f"{spec.name} starts with {first!r}, not {MODELINE!r}"
        # yaml-language-server resolves a relative $schema against the spec's own folder
        assert (spec.parent / first.split("$schema=")[1]).resolve() == SCHEMA_FILE.resolve()


def test_an_editor_accepts_every_example_spec():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                  for e in validator.iter_errors(yaml.safe_load(spec.read_text()))]
        assert errors == [], f"{spec.name}: {errors}"


def test_an_editor_flags_what_runner_refuses():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    spec = yaml.safe_load((ROOT / "specs" / "steer_tokens.yaml").read_text())
    for metrics in (["no_such_metric"], ["attention"], ["logit_diff"], [{"kl": {"reduce": "sum"}}],
                    [{"logit_diff": {"tokens": [1, 2], "actions": ["left", "right"]}}]):
        assert not validator.is_valid({**spec, "metrics": metrics}), metrics
    assert not validator.is_valid({**spec, "intervention": {**spec["intervention"], "layr": 0}})


# ---------------------------------------------------------------- docs/reference.md


def test_the_reference_is_generated_from_the_models():
    committed = ROOT / "docs" / "reference.md"
    assert committed.is_file() and committed.read_text() == reference(), (
        f"docs/reference.md is stale (the spec models or metrics changed); regenerate it with: {REGENERATE_REFERENCE}")


def test_the_reference_lists_every_intervention_and_metric_with_its_variables():
    text = reference()
    for kind in ("Steer", "Scale", "Ablate", "Patch", "FileVector", "RandomVector", "ContrastVector",
                 "DirectionVector", "Execution", "TrainOptions", "EvalOptions"):
        assert f"\n### {kind}\n" in text
    for kind, registered in REGISTRY.items():
        section = text.split(f"\n### {kind}\n")[1].split("\n### ")[0]
        assert all(f"| `{name}` | {', '.join(var.dims) or 'scalar'} |" in section for name, var in registered.model.variables.items())
    assert "- `coefficient` (number; default `1.0`): How much of the intervention" in text


# ---------------------------------------------------------------- runner init


def test_init_offers_every_template():
    assert sorted(INIT_KINDS) == sorted(TEMPLATES)


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_init_writes_a_starter_spec_that_validates_and_never_overwrites(project, capsys, kind):
    assert main(["init", kind]) == 0
    written = project / f"{kind}.yaml"
    text = written.read_text()
    schema = text.splitlines()[0].split("# yaml-language-server: $schema=")[1]
    assert Path(schema).is_absolute() and Path(schema) == SCHEMA_FILE.resolve()  # outside a runner checkout
    assert main(["validate", str(written)]) == 0
    assert f"{written}: ok" in capsys.readouterr().out
    assert main(["init", kind]) == 2
    assert f"{kind}.yaml already exists" in capsys.readouterr().err
    assert written.read_text() == text


def test_init_to_stdout_and_to_a_chosen_file(project, capsys):
    assert main(["init", "patch", "--out", "-"]) == 0
    assert capsys.readouterr().out.startswith(modeline(SCHEMA_FILE.resolve()))
    assert main(["init", "train", "--out", "agent.yaml"]) == 0
    assert (project / "agent.yaml").read_text().count("kind: train") == 1
    assert main(["init", "steer", "--out", "no/such/folder/s.yaml"]) == 2


def test_init_in_a_runner_checkout_names_the_schema_as_the_example_specs_do(monkeypatch):
    monkeypatch.chdir(ROOT)  # computes the path only; writes nothing
    assert modeline(schema_path(ROOT / "specs" / "new.yaml")) == MODELINE


def test_templates_are_valid_for_an_editor_too():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    for kind in TEMPLATES:
        data = yaml.safe_load(starter(kind, "schema.json"))
        assert validator.is_valid(data), (kind, [e.message for e in validator.iter_errors(data)][:3])
