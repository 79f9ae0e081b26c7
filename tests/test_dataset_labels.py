"""What a result carries for figures: where each sample came from, spreads, data filters, role labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runner
from runner.envs.actions import ACTIONS
from runner.plan.facts import trajectories
from runner.spec import TrajectoryData
from tests.conftest import BASE_SPEC, write_spec

DATA = "{trajectories: {env: BabyAI-GoToLocal-v0, episodes: 6, seed: 300}}"


def save_agent(folder: Path, architecture: str) -> Path:
    """An agent with random weights (seeded): enough for labels and spreads."""
    import torch

    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent as save

    torch.manual_seed(0)
    config = AgentConfig(architecture, n_layers=2, d_model=16, n_heads=2, context=2, mission_length=6,
                         max_timestep=64, env_id="BabyAI-GoToLocal-v0")
    return save(Agent(config).eval(), folder / architecture)


@pytest.fixture(scope="module")
def agents(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("agents")
    return {arch: save_agent(folder, arch) for arch in ("behavior_clone", "decision_transformer")}


def agent_spec(project: Path, agent: Path, name: str, data: str = DATA, metrics: str = "[kl, action_logits]") -> Path:
    return write_spec(project, f"""\
        name: {name}
        model: {{checkpoint: {agent}}}
        data: {data}
        intervention: {{kind: steer, layer: 1, position: last, vector: {{random: {{seed: 3}}}}}}
        sweep:
          intervention.coefficient: [0.0, 2.0]
        metrics: {metrics}
        """, f"{name}.yaml")


def test_agent_samples_say_which_episode_step_seed_mission_and_action_they_are(project, agents):
    ds = runner.run(agent_spec(project, agents["decision_transformer"], "labels"))
    traj = trajectories(TrajectoryData.model_validate({"trajectories": {"env": "BabyAI-GoToLocal-v0", "episodes": 6,
                                                                         "seed": 300}}), project, 0)
    assert ds.sizes["sample"] == traj.n_steps
    assert ds.sample_episode.dims == ("sample",)
    np.testing.assert_array_equal(ds.sample_episode, traj.episode_of_step)
    np.testing.assert_array_equal(ds.sample_timestep, traj.timesteps())
    np.testing.assert_array_equal(ds.sample_env_seed, 300 + traj.episode_of_step)
    assert list(ds.sample_action.values) == [ACTIONS[a] for a in traj.actions]
    assert list(ds.sample_mission.values) == [str(traj.missions[e]) for e in traj.episode_of_step]
    # a figure's selection works on them as on any coordinate
    blue = ds.kl.where(ds.sample_mission.str.contains("blue"), drop=True)
    assert blue.sizes["sample"] == sum("blue" in str(traj.missions[e]) for e in traj.episode_of_step) > 0
    first_steps = ds.kl.sel(coefficient=2.0).where(ds.sample_timestep == 0, drop=True)
    assert first_steps.sizes["sample"] == traj.n_episodes


def test_where_restricts_the_data_to_the_samples_it_selects(project, agents):
    full = runner.run(agent_spec(project, agents["behavior_clone"], "all-samples"))
    blue = runner.run(agent_spec(project, agents["behavior_clone"], "blue-samples",
                                data=DATA.replace("seed: 300}", "seed: 300, where: {mission_word: blue}}")))
    keep = full.sample_mission.str.contains("blue").values
    assert 0 < blue.sizes["sample"] == keep.sum() < full.sizes["sample"]
    assert all("blue" in m for m in blue.sample_mission.values)
    np.testing.assert_array_equal(blue.sample_timestep, full.sample_timestep[keep])
    # the same windows, so the same numbers (each sample still sees its episode's earlier steps)
    np.testing.assert_allclose(blue.action_logits, full.action_logits.isel(sample=np.flatnonzero(keep)), atol=1e-5)
    nothing = agent_spec(project, agents["behavior_clone"], "no-samples",
                         data=DATA.replace("seed: 300}", "seed: 300, where: {mission: fly to the moon}}"))
    with pytest.raises(runner.RunnerError, match="keeps none"):
        runner.run(nothing)


def test_reduce_mean_writes_the_standard_error_and_the_count(project, agents):
    each = runner.run(agent_spec(project, agents["decision_transformer"], "each"))
    mean = runner.run(agent_spec(project, agents["decision_transformer"], "mean",
                                 metrics="[{kl: {reduce: mean}}, {action_logits: {reduce: mean}}]"))
    n = each.sizes["sample"]
    assert (mean.n_samples == n).all()
    np.testing.assert_allclose(mean.kl, each.kl.mean("sample"), rtol=1e-6)
    np.testing.assert_allclose(mean.kl_sem, each.kl.astype("float64").std("sample", ddof=1) / np.sqrt(n), rtol=1e-5)
    np.testing.assert_allclose(mean.action_logits_sem,
                               each.action_logits.astype("float64").std("sample", ddof=1) / np.sqrt(n), rtol=1e-5)
    assert mean.kl_sem.dims == ("coefficient",) and "standard error" in mean.kl_sem.attrs["long_name"]
    assert (mean.kl_sem.sel(coefficient=2.0) > 0).all()


def test_rollouts_carry_episode_labels_and_a_binomial_interval(project, agents):
    ds = runner.run(agent_spec(project, agents["behavior_clone"], "episodes",
                               metrics="[{rollout: {episodes: 6, max_steps: 8, seed: 70}}]"))
    assert ds.episode_env_seed.dims == ("episode",)
    np.testing.assert_array_equal(ds.episode_env_seed, 70 + np.arange(6))
    assert all(isinstance(m, str) and m.startswith("go to") for m in ds.episode_mission.values)
    mean = runner.run(agent_spec(project, agents["behavior_clone"], "episodes-mean",
                                 metrics="[{rollout: {episodes: 6, max_steps: 8, seed: 70, reduce: mean}}]"))
    assert "episode" not in mean.dims and "episode_mission" not in mean.coords
    np.testing.assert_allclose(mean.success, ds.success.mean("episode"))
    assert (mean.n_episodes == 6).all()
    assert (mean.success_ci_low <= mean.success).all() and (mean.success <= mean.success_ci_high).all()
    assert (mean.success_ci_high - mean.success_ci_low > 0.2).all()  # six episodes say little


def test_token_samples_name_their_sequence_and_last_token(project):
    tokens = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    text = BASE_SPEC.replace("random_tokens: {batch: 4, length: 8, seed: 0}", f"tokens: {tokens}")
    ds = runner.run(write_spec(project, text))
    np.testing.assert_array_equal(ds.sample_sequence, [0, 1, 2])
    np.testing.assert_array_equal(ds.sample_last_token, [4, 8, 12])


def test_a_swept_seed_draws_other_data_and_vectors(project):
    text = BASE_SPEC.replace("length: 8, seed: 0}", "length: 8}").replace("{random: {seed: 0}}", "{random: {}}")
    text = text.replace("  intervention.layer: [0, 1]\n", "  seed: [0, 1]\n")
    ds = runner.run(write_spec(project, text))
    assert ds.logits.dims[:2] == ("coefficient", "seed") and (ds.status == "ok").all()
    assert ds.vector_id.sel(coefficient=1.0, seed=0) != ds.vector_id.sel(coefficient=1.0, seed=1)
    clean0, clean1 = ds.logits.sel(coefficient=0.0, seed=0), ds.logits.sel(coefficient=0.0, seed=1)
    assert not np.allclose(clean0, clean1), "another seed draws other tokens"


def test_agents_of_two_layouts_share_a_dataset_by_role(project, agents):
    """An RTG position exists in a decision transformer only: on a behaviour clone it is not applicable."""
    spec = write_spec(project, f"""\
        name: layouts
        model: {{checkpoint: {agents['behavior_clone']}}}
        data: {DATA}
        intervention: {{kind: steer, layer: 1, position: S2, coefficient: 2.0, vector: {{random: {{seed: 3}}}}}}
        sweep:
          model.checkpoint: {{values: [{agents['behavior_clone']}, {agents['decision_transformer']}], name: agent}}
          intervention.position: [I0, R1, S1, A1, R2, S2]
        metrics: [{{kl: {{reduce: mean}}}}]
        """)
    assert "not applicable" in runner.compile_plan(spec).describe()
    ds = runner.run(spec)
    assert list(ds.position.values) == ["I0", "R1", "S1", "A1", "R2", "S2"]
    bc, dt = ds.isel(agent=0), ds.isel(agent=1)
    assert list(bc.status.values) == ["ok", "not_applicable", "ok", "ok", "not_applicable", "ok"]
    assert (dt.status == "ok").all()
    assert np.isnan(bc.kl.sel(position=["R1", "R2"])).all() and np.isfinite(bc.kl.sel(position=["S1", "S2"])).all()
    assert (dt.kl > 0).all()
    # an address no model of the grid has is a wrong spec, not a grid of nothing
    only_bc = write_spec(project, f"""\
        name: no-rtg
        model: {{checkpoint: {agents['behavior_clone']}}}
        data: {DATA}
        intervention: {{kind: steer, layer: 1, position: R1, vector: {{random: {{seed: 3}}}}}}
        """, "no-rtg.yaml")
    with pytest.raises(runner.RunnerError, match="no position R1"):
        runner.compile_plan(only_bc)


def test_symbolic_positions_are_labelled_by_role(project, agents):
    ds = runner.run(write_spec(project, f"""\
        name: symbolic
        model: {{checkpoint: {agents['decision_transformer']}}}
        data: {DATA}
        intervention: {{kind: steer, layer: 1, coefficient: 1.0, vector: {{random: {{seed: 3}}}}}}
        sweep:
          intervention.position: [{{token: state, timestep: -1}}, {{token: rtg, timestep: 1}}]
        metrics: [{{kl: {{reduce: mean}}}}]
        """))
    assert list(ds.position.values) == ["S2", "R1"]
