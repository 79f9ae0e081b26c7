"""Direct logit attribution: each component as TransformerLens hooks give it, summing to the logit difference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import runner
from runner.metrics import REGISTRY, Reading
from runner.metrics.dla import DirectLogitAttribution, components
from tests.conftest import cli, write_spec

TOKEN_MODEL = "{transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}}"
BATCH, LENGTH = 4, 8
AGENT_DATA = "{trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 40}}"


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` with every parameter moved by seeded noise: norm weights, norm and output biases no longer 1 and 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return module.eval()


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Path:
    """A decision transformer with random (seeded) weights, biases and norm weights included."""
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    config = AgentConfig("decision_transformer", n_layers=2, d_model=16, n_heads=2, context=2, mission_length=5,
                         max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0", init_seed=1)
    return save_agent(perturbed(Agent(config), 2), tmp_path_factory.mktemp("agent") / "dt")


def direct(model, inputs, edit: tuple, a: int, b: int, resid_edit=None) -> dict[str, np.ndarray]:
    """The attribution written out with TransformerLens hooks: one forward with ``edit`` applied by a hook, its
    activations at the last position cached, each read through that forward's final norm scale.

    ``resid_edit`` is what the edit added to the residual stream at the last position (a steer at resid_pre), or
    None for an edit inside a component.
    """
    body = getattr(model, "body", model)
    n_layers, n_heads = body.cfg.n_layers, body.cfg.n_heads
    cache: dict[str, torch.Tensor] = {}
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale"] + [
        f"blocks.{layer}.{hook}" for layer in range(n_layers) for hook in ("attn.hook_z", "hook_mlp_out")]
    hooks = [edit] + [(name, lambda x, hook, name=name: cache.__setitem__(name, x[:, -1].clone())) for name in names]
    with torch.inference_mode():
        logits = model.run_with_hooks(inputs, fwd_hooks=hooks)[:, -1]
        norm, ln = body.cfg.normalization_type, body.ln_final.original_component
        unembed = body.W_U[:, a] - body.W_U[:, b]
        scale = cache["ln_final.hook_scale"]                                   # [sample, 1]

        def through_final_norm(x: torch.Tensor) -> torch.Tensor:              # [sample, d_model] -> [sample]
            if norm in ("LN", "LNPre"):
                x = x - x.mean(dim=-1, keepdim=True)
            x = x / scale
            if norm in ("LN", "RMS"):
                x = x * ln.weight
            return x @ unembed

        out = {"embed": through_final_norm(cache["hook_embed"]), "pos_embed": through_final_norm(cache["hook_pos_embed"])}
        for layer in range(n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"]                          # [sample, head, d_head]
            for head in range(n_heads):
                out[f"L{layer}H{head}"] = through_final_norm(z[:, head] @ body.W_O[layer, head])
            out[f"L{layer}_mlp"] = through_final_norm(cache[f"blocks.{layer}.hook_mlp_out"])
        constant = body.b_U[a] - body.b_U[b] + (ln.bias @ unembed if norm == "LN" else 0.0)
        out["bias"] = through_final_norm(body.b_O.sum(dim=0).expand(len(z), -1)) + constant
        out["intervention"] = (through_final_norm(resid_edit.expand(len(z), -1)) if resid_edit is not None
                               else torch.zeros(len(z)))
        out["total"] = logits[:, a] - logits[:, b]
    return {k: v.numpy() for k, v in out.items()}


def steer(v: torch.Tensor, c: float, position: str, head: int | None = None):
    """A hook adding c·v at every position or the last one (of one head, for z)."""
    def hook(x, hook):
        x = x.clone()
        at = (slice(None) if position == "all" else -1,) + ((head,) if head is not None else ())
        x[(slice(None),) + at] += c * v
        return x
    return hook


def tokens_spec(project: Path, hook: str, layer: int | None, head: int | None, position: str, name: str) -> Path:
    address = f"hook: {hook}" + (f", layer: {layer}" if layer is not None else "") + (
        f", head: {head}" if head is not None else "")
    return write_spec(project, f"""\
        name: {name}
        model: {TOKEN_MODEL}
        data: {{random_tokens: {{batch: {BATCH}, length: {LENGTH}, seed: 0}}}}
        intervention: {{kind: steer, {address}, position: {position}, vector: {{file: v.npy}}}}
        sweep:
          intervention.coefficient: [-3.0, 0.0, 2.0, 5.0]
        metrics: [{{dla: {{tokens: [1, 7]}}}}, {{logit_diff: {{tokens: [1, 7]}}}}]
        """, f"{name}.yaml")


SITES = [("resid_pre", 1, None, "all"), ("resid_pre", 0, None, "last"), ("z", 0, 2, "last"), ("mlp_out", 1, None, "all"),
         ("embed", None, None, "last")]


@pytest.mark.parametrize("hook,layer,head,position", SITES)
def test_components_equal_a_transformerlens_computation_under_a_steer_scan(project, hook, layer, head, position):
    width = 8 if hook == "z" else 32
    v = np.random.default_rng(5).standard_normal(width).astype(np.float32)
    np.save(project / "v.npy", v)
    name = f"dla-{hook}-{position}".replace("_", "-")
    ds = runner.run(tokens_spec(project, hook, layer, head, position, name))
    assert (ds.status == "ok").all(), ds.error.values
    assert list(ds.component.values) == components(2, 4) and ds.dla.dims == ("coefficient", "sample", "component")
    model = runner.load_model(f"{name}.yaml")
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 20, size=(BATCH, LENGTH)))
    full = {"z": f"blocks.{layer}.attn.hook_z", "embed": "hook_embed"}.get(hook, f"blocks.{layer}.hook_{hook}")
    for c in ds.coefficient.values:
        vector = torch.from_numpy(v)
        expected = direct(model, tokens, (full, steer(vector, c, position, head)), 1, 7,
                          resid_edit=c * vector if hook == "resid_pre" else None)
        got = ds.dla.sel(coefficient=c)
        for component in ds.component.values:
            np.testing.assert_allclose(got.sel(component=component), expected[component], atol=1e-5,
                                       err_msg=f"{component} at coefficient {c}")
        np.testing.assert_allclose(ds.dla_total.sel(coefficient=c), expected["total"], atol=1e-5)
    np.testing.assert_allclose(ds.dla.sum("component"), ds.logit_diff, atol=1e-4)
    np.testing.assert_allclose(ds.dla_total, ds.logit_diff, atol=1e-6)
    inside = ds.dla.sel(component="intervention")
    assert np.abs(inside).max() < 1e-4 if hook != "resid_pre" else np.abs(inside.sel(coefficient=5.0)).min() > 1e-4


@pytest.mark.parametrize("normalization", ["LN", "LNPre", "RMS", "RMSPre"])
def test_every_final_norm_is_read_with_its_weight_and_bias(normalization):
    """The metric's function on a bridge whose norm weights and biases are not 1 and 0, each kind of norm."""
    from runner.models.transformer import boot_native_body

    body = perturbed(boot_native_body(n_layers=2, d_model=32, n_heads=4, d_vocab=20, n_ctx=16,
                                      normalization=normalization, init_seed=3), 4)
    tokens = torch.from_numpy(np.random.default_rng(1).integers(0, 20, size=(5, 9)))
    v = torch.from_numpy(np.random.default_rng(6).standard_normal(32).astype(np.float32))
    metric = DirectLogitAttribution(kind="dla", tokens=[3, 11])
    readouts: dict[str, torch.Tensor] = {}
    hooks = [("blocks.0.hook_resid_post", steer(v, 2.0, "all"))]
    hooks += [(n, lambda x, hook, n=n: readouts.__setitem__(n, x[:, -1])) for n in sorted(metric.reads(2))]
    with torch.inference_mode():
        logits = body.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
        got = REGISTRY["dla"].compute(metric, Reading(clean=logits, out=logits, readouts=readouts, model=body))
    expected = direct(body, tokens, hooks[0], 3, 11, resid_edit=2.0 * v)
    for i, component in enumerate(components(2, 4)):
        np.testing.assert_allclose(got["dla"][:, i].numpy(), expected[component], atol=1e-5, err_msg=component)
    assert abs(expected["bias"]).min() > 1e-3 or normalization != "LN"  # the biases are really read
    np.testing.assert_allclose(got["dla"].sum(dim=1).numpy(), expected["total"], atol=1e-4)


def agent_spec(project: Path, agent: Path, metrics: str, name: str) -> Path:
    return write_spec(project, f"""\
        name: {name}
        model: {{checkpoint: {agent}}}
        data: {AGENT_DATA}
        intervention: {{kind: steer, layer: 1, position: last, vector: {{file: v.npy}}}}
        sweep:
          intervention.coefficient: [-2.0, 0.0, 1.0, 4.0]
        metrics: {metrics}
        """, f"{name}.yaml")


def test_an_agents_components_sum_to_its_action_logit_difference(project, agent):
    from runner.envs.actions import action_id
    from runner.execute.inputs import make_inputs

    LEFT, FORWARD = action_id("left"), action_id("forward")
    v = np.random.default_rng(7).standard_normal(16).astype(np.float32)
    np.save(project / "v.npy", v)
    metrics = "[{dla: {actions: [left, forward]}}, {logit_diff: {actions: [left, forward]}}]"
    ds = runner.run(agent_spec(project, agent, metrics, "dla-agent"))
    assert (ds.status == "ok").all(), ds.error.values
    assert ds.dla.attrs["long_name"].startswith("direct logit attribution of logit[left] - logit[forward]")
    np.testing.assert_allclose(ds.dla.sum("component"), ds.logit_diff, atol=1e-4)
    np.testing.assert_allclose(ds.dla_total, ds.logit_diff, atol=1e-6)
    assert np.abs(ds.dla.sel(component="bias")).min() > 1e-3  # the perturbed biases are read
    model = runner.load_model(agent)
    inputs = make_inputs(runner.load_spec("dla-agent.yaml").spec.data, model, project, 0)
    for c in ds.coefficient.values:
        vector = torch.from_numpy(v)
        expected = direct(model, inputs, ("blocks.1.hook_resid_pre", steer(vector, c, "last")), LEFT, FORWARD,
                          resid_edit=c * vector)
        for component in ds.component.values:
            np.testing.assert_allclose(ds.dla.sel(coefficient=c, component=component), expected[component], atol=1e-5,
                                       err_msg=f"{component} at coefficient {c}")


def test_by_layer_accumulates_to_the_logit_difference_beside_the_logit_lens(project, agent):
    np.save(project / "v.npy", np.random.default_rng(8).standard_normal(16).astype(np.float32))
    metrics = "[{dla: {actions: [right, pickup], by: layer}}, {logit_diff: {actions: [right, pickup]}}, logit_lens]"
    ds = runner.run(agent_spec(project, agent, metrics, "dla-layers"))
    assert (ds.status == "ok").all(), ds.error.values
    assert ds.dla.dims == ("coefficient", "sample", "layer_read") and list(ds.layer_read.values) == ["embed", "0", "1"]
    np.testing.assert_allclose(ds.dla.isel(layer_read=-1), ds.logit_diff, atol=1e-4)
    metric = runner.load_spec("dla-layers.yaml").spec.metrics[0]
    assert ds.dla.attrs == metric.attrs("dla") and "logit[right] - logit[pickup]" in ds.dla.attrs["long_name"]
    # the lens reads the same residuals through a scale of their own: equal where the scales are (the last read)
    lens = ds.logit_lens.sel(action="right") - ds.logit_lens.sel(action="pickup")
    np.testing.assert_allclose(lens.isel(layer_read=-1), ds.dla.isel(layer_read=-1), atol=1e-4)
    mean = runner.run(agent_spec(project, agent, metrics.replace("by: layer", "by: layer, reduce: mean"), "dla-mean"))
    assert mean.dla.dims == ("coefficient", "layer_read") and mean.dla_sem.dims == ("coefficient", "layer_read")
    np.testing.assert_allclose(mean.dla, ds.dla.mean("sample"), atol=1e-5)


@pytest.mark.parametrize("entry,where,says", [
    ("{dla: {reduce: mean}}", "metrics[0]", "exactly one of tokens: [a, b] (token models) or actions"),
    ("{dla: {tokens: [1, 2], actions: [left, right]}}", "metrics[0]", "exactly one of tokens"),
])
def test_a_dla_without_exactly_one_pair_is_refused(project, entry, where, says):
    write_spec(project, f"""\
        name: no-pair
        model: {TOKEN_MODEL}
        data: {{random_tokens: {{batch: 2, length: 4}}}}
        metrics: [{entry}]
        """)
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "spec.yaml:4:" in done.stderr and where in done.stderr, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_tokens_on_an_agent_or_an_attn_only_model_are_refused_naming_the_metric(project, agent):
    write_spec(project, f"""\
        name: agent-tokens
        model: {{checkpoint: {agent}}}
        data: {AGENT_DATA}
        metrics: [action_logits, {{dla: {{tokens: [1, 2]}}}}]
        """)
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "spec.yaml:4:" in done.stderr and "metrics[1]" in done.stderr, done.stderr
    assert "an agent's choices are actions" in done.stderr and not (project / "results").exists()
    write_spec(project, """\
        name: attn-only
        model:
          transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, attn_only: true}
        data: {random_tokens: {batch: 2, length: 4}}
        metrics: [{dla: {tokens: [1, 2]}}]
        """, "attn.yaml")
    done = cli("validate", "attn.yaml", cwd=project)
    assert done.returncode == 2 and "attn.yaml:5:" in done.stderr and "attn_only" in done.stderr, done.stderr
