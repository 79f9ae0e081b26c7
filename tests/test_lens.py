"""Lenses everywhere: logit_lens and resid_norm read at the embedding and after every block, at the last position
or at every position, and equal what a full forward with hand-written hooks gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import runner
import runner.execute.fold as fold
from tests.conftest import write_spec

TOKENS = """\
    name: lens-HOOK
    model:
      transformer: {n_layers: 3, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
    data:
      random_tokens: {batch: 4, length: 8, seed: 0}
    intervention: {kind: steer, hook: HOOK, layer: LAYER, vector: {random: {seed: 3}}}
    sweep:
      intervention.coefficient: [0.0, 2.0]
      intervention.position: {values: AT, name: at}
    metrics: METRICS
    """
ALL = "[logits, {logit_lens: {positions: all}}, {resid_norm: {positions: all}}]"
LAST = "[logits, logit_lens, resid_norm]"


def unit(seed: int, width: int) -> torch.Tensor:
    """The spec's ``random: {seed}`` steering vector: unit norm."""
    v = np.random.default_rng(seed).standard_normal(width)
    return torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32)


def by_hand(model, inputs, n_layers: int, site: str, index: int, vector: torch.Tensor) -> tuple:
    """The residual stream at the embedding and after each block, every position, of a full forward with a steer
    at ``site`` and position ``index`` ([sample, layer_read, position, d]), and its logit lens."""
    def steer(x, hook):
        x = x.clone()
        x[:, index] += vector
        return x

    reads = ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    with torch.inference_mode(), model.hooks(fwd_hooks=[(site, steer)]):
        logits, cache = model.run_with_cache(inputs, names_filter=lambda n: n in reads)
    with torch.inference_mode():
        lens = torch.stack([model.unembed(model.ln_final(cache[name])) for name in reads], dim=1)
    return torch.stack([cache[name] for name in reads], dim=1), lens, logits


@pytest.fixture
def starts(monkeypatch) -> list[int]:
    """The first position each folded pass computed (a start above 0: the pass reused the clean prefix)."""
    seen: list[int] = []
    whole = fold._whole

    def spy(names, clean, computed, start):
        seen.append(start)
        return whole(names, clean, computed, start)

    monkeypatch.setattr(fold, "_whole", spy)
    return seen


def check_point(ds, sel: dict, resid: torch.Tensor, lens: torch.Tensor) -> None:
    point = ds.sel(**sel)
    np.testing.assert_allclose(point.logit_lens.values, lens.numpy(), atol=1e-5)
    np.testing.assert_allclose(point.resid_norm.values, resid.norm(dim=-1).numpy(), atol=1e-5)


@pytest.mark.parametrize("hook, layer", [("resid_pre", 1), ("mlp_out", 1), ("resid_pre", 0)])
def test_token_model_lens_at_every_layer_and_position_under_a_steer_equals_hooks(project, starts, hook, layer):
    """A steer at resid_pre of block 0 is part of the embed read: the residual entering block 0."""
    spec = TOKENS.replace("HOOK", hook).replace("LAYER", str(layer)).replace("AT", "[3, 6]")
    ds = runner.run(write_spec(project, spec.replace("METRICS", ALL)))
    assert (ds.status == "ok").all(), ds.error.values
    assert ds.logit_lens.dims == ("coefficient", "at", "sample", "layer_read", "position", "vocab")
    assert ds.resid_norm.dims == ("coefficient", "at", "sample", "layer_read", "position")
    assert ds.layer_read.values.tolist() == ["embed", "0", "1", "2"] and ds.position.values.tolist() == list(range(8))
    assert starts and min(starts) > 0, "the folded passes must reuse the clean prefix"
    model = runner.load_model(project / "spec.yaml")
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 20, size=(4, 8)))
    for c in (0.0, 2.0):
        for at in (3, 6):
            resid, lens, logits = by_hand(model, tokens, 3, f"blocks.{layer}.hook_{hook}", at, c * unit(3, 32))
            check_point(ds, {"coefficient": c, "at": at}, resid, lens)
            np.testing.assert_allclose(ds.logit_lens.sel(coefficient=c, at=at).isel(layer_read=-1).values,
                                       logits.numpy(), atol=1e-5)  # the final block's lens is the model's logits
    # positions before the steer's are the clean run's at every layer: bit for bit those no pass computed
    steered, clean = ds.logit_lens.sel(coefficient=2.0, at=6), ds.logit_lens.sel(coefficient=0.0, at=6)
    reused = slice(0, min(starts))
    np.testing.assert_array_equal(steered.isel(position=reused).values, clean.isel(position=reused).values)
    np.testing.assert_allclose(steered.isel(position=slice(0, 6)).values, clean.isel(position=slice(0, 6)).values,
                               atol=1e-5)
    assert not np.allclose(steered.sel(layer_read="2", position=7).values, clean.sel(layer_read="2", position=7).values)


def test_the_default_reads_the_last_position_as_before(project):
    spec = TOKENS.replace("HOOK", "resid_pre").replace("LAYER", "1").replace("AT", "[5]")
    last = runner.run(write_spec(project, spec.replace("METRICS", LAST).replace("lens-", "last-"), "last.yaml"))
    every = runner.run(write_spec(project, spec.replace("METRICS", ALL), "all.yaml"))
    assert last.logit_lens.dims == ("coefficient", "at", "sample", "layer_read", "vocab")
    assert last.resid_norm.dims == ("coefficient", "at", "sample", "layer_read") and "position" not in last.dims
    np.testing.assert_allclose(last.logit_lens.values, every.logit_lens.isel(position=-1).values, atol=1e-5)
    np.testing.assert_allclose(last.resid_norm.values, every.resid_norm.isel(position=-1).values, atol=1e-5)
    np.testing.assert_allclose(last.logit_lens.sel(layer_read="2").values, last.logits.values, atol=1e-5)
    model = runner.load_model(project / "last.yaml")
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 20, size=(4, 8)))
    resid, lens, _ = by_hand(model, tokens, 3, "blocks.1.hook_resid_pre", 5, 2.0 * unit(3, 32))
    check_point(last, {"coefficient": 2.0, "at": 5}, resid[:, :, -1], lens[:, :, -1])
    embed = last.logit_lens.sel(layer_read="embed")
    np.testing.assert_array_equal(embed.sel(coefficient=2.0).values, embed.sel(coefficient=0.0).values)


@pytest.fixture(scope="module")
def agent_checkpoint(tmp_path_factory) -> Path:
    """A decision transformer with random weights and three blocks: enough to check the numbers."""
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    config = AgentConfig("decision_transformer", n_layers=3, d_model=16, n_heads=2, context=3, mission_length=5,
                         max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0")
    return save_agent(Agent(config).eval(), tmp_path_factory.mktemp("agent") / "model")


@pytest.mark.parametrize("hook", ["resid_pre", "mlp_out"])
def test_agent_lens_at_every_layer_and_role_under_a_steer_equals_hooks(project, starts, agent_checkpoint, hook):
    from runner.models.windows import windows
    from runner.plan.facts import trajectories

    spec = write_spec(project, f"""\
        name: agent-lens-{hook.replace("_", "-")}
        model: {{checkpoint: {agent_checkpoint}}}
        data:
          trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 40}}
        intervention: {{kind: steer, hook: {hook}, layer: 1, vector: {{random: {{seed: 3}}}}}}
        sweep:
          intervention.coefficient: [0.0, 2.0]
          intervention.position: {{values: [S2, A2], name: at}}
        metrics: [action_logits, {{logit_lens: {{positions: all}}}}, {{resid_norm: {{positions: all}}}}]
        """)
    ds = runner.run(spec)
    assert (ds.status == "ok").all(), ds.error.values
    agent = runner.load_model(agent_checkpoint)
    roles = agent.config.roles()
    assert roles == ["I0", "I1", "I2", "I3", "I4", "R1", "S1", "A1", "R2", "S2", "A2", "R3", "S3"]
    assert ds.position.values.tolist() == roles and ds.layer_read.values.tolist() == ["embed", "0", "1", "2"]
    assert ds.logit_lens.dims == ("coefficient", "at", "sample", "layer_read", "position", "action")
    assert starts and min(starts) > 0, "the folded passes must reuse the clean prefix"
    traj = trajectories(runner.load_spec(spec).spec.data, project, 0)
    inputs = windows(traj, np.arange(len(traj.actions)), agent.config)
    for c in (0.0, 2.0):
        for at in ("S2", "A2"):
            resid, lens, logits = by_hand(agent, inputs, 3, f"blocks.1.hook_{hook}", roles.index(at),
                                          c * unit(3, 16))
            check_point(ds, {"coefficient": c, "at": at}, resid, lens)
            np.testing.assert_allclose(ds.action_logits.sel(coefficient=c, at=at).values, logits[:, -1].numpy(),
                                       atol=1e-5)
    steered, clean = ds.resid_norm.sel(coefficient=2.0, at="A2"), ds.resid_norm.sel(coefficient=0.0, at="A2")
    reused = roles[:min(starts)]  # positions no pass computed: the clean run's, bit for bit
    np.testing.assert_array_equal(steered.sel(position=reused).values, clean.sel(position=reused).values)
