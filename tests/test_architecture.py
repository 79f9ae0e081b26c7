"""The shape of the package: imports flow one way, a metric is declared once, modules stay small."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

import runner
from tests.conftest import ROOT, cli, write_spec
from runner.metrics import REGISTRY, Metric, Variable, register

PACKAGE = ROOT / "runner"
DOMAIN = ("runner.envs", "runner.models", "runner.interventions", "runner.metrics")
ABOVE_DOMAIN = ("runner.spec", "runner.plan", "runner.execute", "runner.results", "runner.cli", "runner.train")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every runner module -> the runner modules it imports anywhere in its code (lazy imports included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_the_import_graph_has_no_cycle():
    graph, state, stack = import_graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(graph) > 40


def test_domain_libraries_import_nothing_above_them():
    graph = import_graph()
    upward = sorted((m, e) for m, edges in graph.items() if m.startswith(DOMAIN) for e in edges
                    if e.startswith(ABOVE_DOMAIN))
    assert upward == [], f"domain modules importing the pipeline: {upward}"
    assert graph["runner.execute.task"] & {"runner.execute.driver", "runner.results.merge"} == set()


def test_no_file_over_400_lines_and_no_function_over_50():
    long_files, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        if len(source.splitlines()) > 400:
            long_files.append(str(path))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                long_functions.append(f"{path.name}:{node.name}")
    assert long_files == [] and long_functions == []


# ---------------------------------------------------------------- a metric is declared once


class TopProb(Metric):
    """The highest probability at the last position, and which choice has it."""

    kind: Literal["top_prob"]
    variables = {"top_prob": Variable(("sample",), "highest probability at the last position", "1")}


def top_prob(metric: TopProb, r) -> dict:
    return {"top_prob": r.out.softmax(dim=-1).max(dim=-1).values}


@pytest.fixture
def toy_metric():
    register(TopProb)(top_prob)
    yield
    REGISTRY.remove("top_prob")


def test_a_metric_added_in_one_place_runs_end_to_end(project, toy_metric):
    spec = write_spec(project, """\
        name: toy
        model:
          transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
        data:
          random_tokens: {batch: 4, length: 8, seed: 0}
        intervention: {kind: steer, hook: resid_pre, layer: 1, vector: {random: {seed: 3}}}
        sweep:
          intervention.coefficient: [0.0, 4.0]
        metrics: [top_prob, kl]
        """)
    done = cli("validate", str(spec), cwd=project)  # a fresh process has not registered it: refused, others named
    assert done.returncode == 2 and "unknown metric 'top_prob'" in done.stderr and "'kl'" in done.stderr
    ds = runner.run(spec)
    assert ds.top_prob.dims == ("coefficient", "sample") and ds.top_prob.attrs["units"] == "1"
    model = runner.load_model(spec)
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 20, size=(4, 8)))
    v = np.random.default_rng(3).standard_normal(32)
    v = torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32)
    with torch.inference_mode():
        steered = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_pre", lambda x, hook: x + 4.0 * v)])
    expected = steered[:, -1].softmax(-1).max(-1).values.numpy()
    np.testing.assert_allclose(ds.top_prob.sel(coefficient=4.0).values, expected, atol=1e-6)
    assert "top_prob" in json.dumps(runner.spec.spec_kinds()["intervene"].model_json_schema())


# ---------------------------------------------------------------- declarations match what metrics produce

OPTIONS = {"logit_diff": {"tokens": [1, 2]}, "attention": {"heads": [[0, 1], [1, 0]]},
           "rollout": {"episodes": 2, "max_steps": 4}, "logit_lens": {"positions": "all"},
           "dla": {"tokens": [1, 2]}}
AGENT_OPTIONS = {"logit_diff": {"actions": ["left", "right"]}, "dla": {"actions": ["left", "right"]}}
STEERED = {"direction"}   # metrics of a steer's vector: measured under a steer, not the patch
STEER = "{kind: steer, layer: 1, vector: {random: {seed: 0}}}"


@pytest.fixture(scope="module")
def untrained_agent(tmp_path_factory) -> Path:
    """An agent checkpoint with random weights: enough to check shapes."""
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    config = AgentConfig("decision_transformer", n_layers=2, d_model=16, n_heads=2, context=2, mission_length=5,
                         max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0")
    return save_agent(Agent(config).eval(), tmp_path_factory.mktemp("agent") / "model")


def entry(kind: str, agent: bool, reduce: str) -> dict:
    options = AGENT_OPTIONS[kind] if agent and kind in AGENT_OPTIONS else OPTIONS.get(kind, {})
    return {kind: {**options, "reduce": reduce}}


@pytest.mark.parametrize("reduce", ["none", "mean"])
def test_every_metric_produces_the_dims_it_declares(project, untrained_agent, reduce):
    kinds = {family: [k for k, r in REGISTRY.items() if family in r.model.families] for family in ("tokens", "agents")}
    assert set(kinds["tokens"]) | set(kinds["agents"]) == set(REGISTRY) and len(REGISTRY) >= 11
    sources = {
        "tokens": ("{transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16}}",
                   "{random_tokens: {batch: 3, length: 6}}", "{random_tokens: {batch: 3, length: 6, seed: 5}}"),
        "agents": (f"{{checkpoint: {untrained_agent}}}",
                   "{trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 40}}",
                   "{same: {target_return: 0.2}}"),
    }
    for family, (model, data, source) in sources.items():
        for closed_loop, steered in ((False, False), (True, False), (False, True)):
            chosen = [k for k in kinds[family] if REGISTRY[k].model.closed_loop == closed_loop
                      and (k in STEERED) == steered]
            if not chosen:
                continue
            iv = ("{kind: scale, layer: 1}" if closed_loop else STEER if steered
                  else f"{{kind: patch, layer: 1, source: {source}}}")
            metrics = json.dumps([entry(k, family == "agents", reduce) for k in chosen])
            name = f"{family}-{closed_loop}-{steered}-{reduce}".lower()
            ds = runner.run(write_spec(project, f"""\
                name: {name}
                model: {model}
                data: {data}
                intervention: {iv}
                sweep:
                  intervention.coefficient: [0.0, 0.5]
                metrics: {metrics}
                """, f"{name}.yaml"))
            assert (ds.status == "ok").all(), ds.error.values
            for kind in chosen:
                metric = runner.load_spec(f"{name}.yaml").spec.metrics[chosen.index(kind)]
                assert bool(metric.companions()) == (reduce == "mean" and not metric.reduces_itself)
                for variable, declared in metric.produces().items():
                    if declared.optional and variable not in ds:  # applies to other models only
                        continue
                    sweep = () if declared.coord else ("coefficient",)  # a label the same for every point
                    assert ds[variable].dims == sweep + metric.dims(variable, family == "agents"), variable
                    assert ds[variable].attrs == metric.attrs(variable)


def test_validate_of_an_agent_spec_reads_no_weights_writes_nothing_and_imports_no_torch(untrained_agent, project):
    write_spec(project, f"""\
        name: check-only
        model: {{checkpoint: {untrained_agent}}}
        data: {{trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 4, seed: 11}}}}
        intervention:
          kind: steer
          layer: 1
          position: {{token: state, timestep: -1}}
          vector: {{contrast: {{positive: {{mission_word: red}}, negative: {{in_view: grey key}}}}}}
        metrics: [action_probs]
        """)
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 0 and "not generated yet" in done.stdout, done.stderr
    assert list(project.iterdir()) == [project / "spec.yaml"], "validate wrote something"
    probe = ("import sys, runner.cli; runner.cli.main(['validate', 'spec.yaml']); "
             "print(sorted(m for m in ('torch', 'transformer_lens', 'ray', 'xarray') if m in sys.modules))")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_a_null_target_return_in_a_sweep_compiles_with_ids_of_its_own(project, untrained_agent):
    """A target-return axis holding null is not fold-free (null is not a number): each point is serialised."""
    from runner.plan import compile_plan
    from runner.plan.facts import inputs_read
    from runner.spec import point_identity

    spec = write_spec(project, f"""\
        name: rtg-null
        model: {{checkpoint: {untrained_agent}}}
        data:
          trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 0}}
        sweep:
          data.trajectories.target_return: [0.5, null, 1.0]
        metrics: [action_logits]
        """)
    plan = compile_plan(spec)
    assert len(set(plan.ids)) == 3
    for index, point in enumerate(plan.points):
        files, generated = inputs_read(point.spec, project)
        assert plan.ids[index] == point_identity(point.spec, {**files, **generated})
    assert plan.point(1).spec.data.target_return is None
