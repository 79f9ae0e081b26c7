"""Gridworld agents: train specs, checkpoints, policies, and intervene specs over a train run."""
from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

import runner
from runner.models.agent import AgentConfig
from runner.models.checkpoint import load_agent, save_agent
from runner.models.windows import windows
from runner.plan.facts import trajectories as load_trajectories
from tests.conftest import CHUNKING_TOLERANCE, cli, play_episode, write_spec

TRAIN = """\
name: tiny-train
kind: train
seed: 0
data:
  trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 40, seed: 0}
model: {architecture: ARCH, n_layers: 2, d_model: 32, n_heads: 2, context: 3}
train: {steps: 20, batch_size: 16, log_every: 5, lr: 1.0e-3}
eval: {episodes: 6}
sweep:
  seed: [0, 1]
"""


def run_in(folder, spec, **kwargs):
    """runner.run with ``folder`` as the working directory (where results/ and spec paths live)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        return runner.run(spec, **kwargs)


def agent_and_inputs(folder, spec, point="seed=0"):
    """A trained tiny agent, the spec's trajectories, and one window per step, for hand-written hooks."""
    agent = runner.load_model(folder / "results" / "tiny-train" / "models" / point)
    traj = load_trajectories(runner.load_spec(spec).spec.data, folder, 0)
    return agent, traj, windows(traj, np.arange(len(traj.actions)), agent.config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-point train run of tiny behaviour clones (seconds), and its project folder."""
    folder = tmp_path_factory.mktemp("agents")
    ds = run_in(folder, write_spec(folder, TRAIN.replace("ARCH", "behavior_clone"), "train.yaml"))
    return folder, ds


def test_a_train_sweep_writes_a_model_per_point_and_a_labelled_dataset(trained):
    folder, ds = trained
    models = sorted(p.name for p in (folder / "results" / "tiny-train" / "models").iterdir())
    assert models == ["seed=0", "seed=1"]
    for name in models:
        assert {p.name for p in (folder / "results" / "tiny-train" / "models" / name).iterdir()} == \
            {"model.safetensors", "config.json"}
    assert ds.loss.dims == ("seed", "step") and ds.step.values.tolist() == [5, 10, 15, 20]
    assert ds.success.dims == ("seed", "episode") and ds.sizes["episode"] == 6
    assert ds["return"].dims == ds.episode_length.dims == ("seed", "episode")
    assert (ds.status == "ok").all()
    assert not np.array_equal(ds.loss.sel(seed=0).values, ds.loss.sel(seed=1).values), "seeds must differ"
    assert ds.loss.isel(step=-1).max() < ds.loss.isel(step=0).min() + 0.5


def test_checkpoints_reload_bit_identically(trained, tmp_path):
    folder, _ = trained
    agent = runner.load_model(folder / "results" / "tiny-train" / "models" / "seed=0")
    save_agent(agent, tmp_path / "copy")
    again = load_agent(tmp_path / "copy")
    first, second = agent.state_dict(), again.state_dict()
    assert first.keys() == second.keys() and len(first) > 30
    assert all(torch.equal(first[k], second[k]) for k in first)
    traj = load_trajectories(runner.load_spec(folder / "train.yaml").spec.data, folder, 0)
    inputs = windows(traj, np.arange(20), agent.config)
    with torch.inference_mode():
        assert torch.equal(agent(inputs), again(inputs))


@pytest.mark.parametrize("architecture, roles", [
    ("behavior_clone", ["I0", "I1", "S1", "A1", "S2", "A2", "S3"]),
    ("decision_transformer", ["I0", "I1", "R1", "S1", "A1", "R2", "S2", "A2", "R3", "S3"]),
])
def test_role_labels_and_hooks_at_every_layer(architecture, roles):
    from runner.models.agent import Agent

    config = AgentConfig(architecture, n_layers=3, d_model=16, n_heads=2, context=3, mission_length=2, max_timestep=64)
    assert config.roles() == roles and config.n_ctx == len(roles)
    assert [roles[i] for i in config.state_positions()] == ["S1", "S2", "S3"]
    agent = Agent(config).eval()
    from runner.envs import generate

    traj = generate("BabyAI-GoToRedBallGrey-v0", "bot", 3, seed=0)
    inputs = windows(traj, np.arange(len(traj.actions)), AgentConfig(**{**config.__dict__, "mission_length": 5}))
    inputs.mission = inputs.mission[:, :2]
    names = [f"blocks.{layer}.{hook}" for layer in range(3)
             for hook in ("hook_resid_pre", "attn.hook_z", "attn.hook_pattern", "hook_mlp_out", "hook_resid_post")]
    logits, cache = agent.run_with_cache(inputs, names_filter=lambda n: n in names + ["hook_embed", "hook_pos_embed"])
    assert set(names) | {"hook_embed", "hook_pos_embed"} <= set(cache)
    assert logits.shape == (len(traj.actions), len(roles), 7)
    assert cache["blocks.2.attn.hook_pattern"].shape[-2:] == (len(roles), len(roles))


def test_load_policy_plays_a_full_episode(trained):
    folder, _ = trained
    policy = runner.load_policy(folder / "results" / "tiny-train" / "models" / "seed=1")
    env = gym.make("BabyAI-GoToRedBallGrey-v0")
    for seed in (5, 6):
        assert 1 <= play_episode(policy, env, seed) <= env.unwrapped.max_steps


def test_an_intervene_spec_over_a_train_run_carries_its_grid(trained):
    folder, _ = trained
    spec = write_spec(folder, """\
        name: steer-tiny
        model: {run: tiny-train}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 500}
        intervention: {kind: steer, hook: resid_pre, layer: 1, position: last, vector: {random: {seed: 4, norm: match}}}
        sweep:
          intervention.coefficient: [0.0, 8.0]
        metrics: [action_probs, kl]
        """, "steer.yaml")
    ds = run_in(folder, spec)
    assert ds.action_probs.dims == ("seed", "coefficient", "sample", "action")
    assert ds.action.values.tolist() == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
    assert (ds.kl.sel(coefficient=0.0) == 0).all() and (ds.kl.sel(coefficient=8.0) > 0).all()
    agent, traj, inputs = agent_and_inputs(folder, spec, "seed=1")
    name = "blocks.1.hook_resid_pre"
    with torch.inference_mode():
        _, cache = agent.run_with_cache(inputs, names_filter=lambda n: n == name)
        v = np.random.default_rng(4).standard_normal(32)
        v = torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32) * cache[name][:, -1].norm(dim=-1).mean()

        def add(x, hook):
            x = x.clone()
            x[:, -1] += 8.0 * v
            return x

        expected = torch.softmax(agent.run_with_hooks(inputs, [(name, add)])[:, -1], -1)
    np.testing.assert_allclose(ds.action_probs.sel(seed=1, coefficient=8.0).values, expected.numpy(), atol=1e-5)
    with pytest.raises(runner.RunnerError, match="reads every model of train run 'tiny-train': load one of them"):
        runner.load_model(spec)


@pytest.mark.parametrize("data, phrase", [
    ("trajectories: {env: BabyAI-GoToLokal-v0, episodes: 3}", "BabyAI-GoToLocal-v0"),
    ("trajectories: {env: MiniGrid-Empty-5x5-v0, policy: bot, episodes: 3}", "BabyAI"),
    ("file: demos.npz", "demos.npz"),
    ("trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: random, episodes: 3, labels: bot}",
     "labels: bot needs policy: bot"),
    ("trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, epsilon: []}", "a non-empty list"),
    ("trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, epsilon: [0.1, 1.5]}", "less than or equal to 1"),
])
def test_bad_train_data_exits_2_and_writes_nothing(project, data, phrase):
    np.savez(project / "demos.npz", images=np.zeros((2, 7, 7, 3), np.uint8), actions=np.zeros(3, np.int8))
    write_spec(project, TRAIN.replace("ARCH", "behavior_clone").replace(
        "trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 40, seed: 0}", data))
    for verb in ("validate", "run"):
        done = cli(verb, "spec.yaml", cwd=project)
        assert done.returncode == 2, done.stderr
        assert "spec.yaml:5:" in done.stderr and phrase in done.stderr and "Traceback" not in done.stderr
    assert not (project / "results").exists()


def test_bc_learns_the_bots_labels_on_noisy_play(project):
    """labels: bot -- a clone trained on uniformly random play predicts what the bot would do there."""
    spec = TRAIN.replace("ARCH", "behavior_clone").replace(
        "episodes: 40, seed: 0}", "episodes: 30, seed: 0, epsilon: 1.0, labels: bot}").replace(
        "steps: 20,", "steps: 150,").replace("  seed: [0, 1]", "  seed: [0]")
    run_in(project, write_spec(project, spec))
    agent, traj, inputs = agent_and_inputs(project, project / "spec.yaml")
    with torch.no_grad():
        predicted = agent(inputs)[:, agent.config.state_positions()[-1]].argmax(-1).numpy()
    agree_labels, agree_taken = (predicted == traj.labels).mean(), (predicted == traj.actions).mean()
    assert agree_labels > 0.5 and agree_labels > agree_taken + 0.25, (agree_labels, agree_taken)
    done = cli("validate", write_spec(project, spec.replace("behavior_clone", "decision_transformer")), cwd=project)
    assert done.returncode == 2 and "spec.yaml:5:" in done.stderr and "labels: bot trains a behaviour clone" \
        in done.stderr, done.stderr
    measure = write_spec(project, """\
        name: measure
        model: {run: tiny-train}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, epsilon: 0.5, labels: bot}
        metrics: [action_logits]
        """, "measure.yaml")
    done = cli("run", measure, cwd=project)
    assert done.returncode == 2 and "measure.yaml:4:" in done.stderr and "an intervene spec measures the actions " \
        "taken" in done.stderr and not (project / "results" / "measure").exists(), done.stderr


@pytest.mark.parametrize("damage", ["missing", "config", "weights"])
def test_missing_or_corrupt_checkpoint_exits_2(trained, project, damage):
    source = trained[0] / "results" / "tiny-train" / "models" / "seed=0"
    shutil.copytree(source, project / "ck")
    if damage == "missing":
        shutil.rmtree(project / "ck")
    elif damage == "config":
        (project / "ck" / "config.json").write_text(json.dumps({"format": "something else"}))
    else:
        data = (project / "ck" / "model.safetensors").read_bytes()
        (project / "ck" / "model.safetensors").write_bytes(data[:200])
    write_spec(project, """\
        name: bad-ck
        model: {checkpoint: ck}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2}
        metrics: [action_logits]
        """)
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "spec.yaml:2:" in done.stderr and "Traceback" not in done.stderr
    assert "ck" in done.stderr
    assert not (project / "results").exists()


def test_training_on_ray_writes_the_same_models(trained, ray_session, tmp_path):
    folder, local = trained
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        remote = runner.run(folder / "train.yaml", executor="ray", out=tmp_path / "ray")
    np.testing.assert_array_equal(remote.loss.values, local.loss.values)
    for point in ("seed=0", "seed=1"):
        a = load_agent(tmp_path / "ray" / "models" / point).state_dict()
        b = load_agent(folder / "results" / "tiny-train" / "models" / point).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_rollout_metric_with_coefficient_0_is_the_plain_agent(trained):
    from runner.envs import rollout
    from runner.models.policy import AgentPolicy

    folder, _ = trained
    spec = write_spec(folder, """\
        name: roll-tiny
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 900}
        intervention: {kind: steer, hook: resid_post, layer: 1, position: last, vector: {random: {seed: 1, norm: 50.0}}}
        sweep:
          intervention.coefficient: [0.0, 1.0]
        metrics: [{rollout: {episodes: 12, seed: 77}}]
        """, "roll.yaml")
    ds = run_in(folder, spec)
    agent = runner.load_model(folder / "results" / "tiny-train" / "models" / "seed=0")
    plain = rollout("BabyAI-GoToRedBallGrey-v0", AgentPolicy(agent), 12, 77)
    np.testing.assert_array_equal(ds.episode_length.sel(coefficient=0.0).values, plain["episode_length"])
    np.testing.assert_array_equal(ds["return"].sel(coefficient=0.0).values, plain["return"])
    assert ds.episode.size == 12 and ds.success.dims == ("coefficient", "episode")
    assert "target_in_data" not in ds  # a behaviour clone has no target return: the variable is left out


@pytest.mark.parametrize("position, role", [("{token: state, timestep: -1}", "S3"), ("{token: action, timestep: -2}", "A2"),
                                            ("{token: state, timestep: 1}", "S1"), ("{token: instruction, timestep: 0}", "I0")])
def test_symbolic_positions_address_roles(trained, position, role):
    folder, _ = trained
    spec = write_spec(folder, f"""\
        name: symbolic
        model: {{checkpoint: results/tiny-train/models/seed=0}}
        data:
          trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 700}}
        intervention: {{kind: ablate, method: mean, hook: resid_pre, layer: 1, position: {position}, coefficient: 1.0}}
        metrics: [action_logits]
        """, "symbolic.yaml")
    ds = run_in(folder, spec, fresh=True)
    agent, traj, inputs = agent_and_inputs(folder, spec, "seed=0")
    index = agent.config.roles().index(role)
    name = "blocks.1.hook_resid_pre"
    with torch.inference_mode():
        _, cache = agent.run_with_cache(inputs, names_filter=lambda n: n == name)
        mean = cache[name].mean(0)

        def ablate(x, hook):
            x = x.clone()
            x[:, index] = mean[index]
            return x

        expected = agent.run_with_hooks(inputs, [(name, ablate)])[:, -1]
    np.testing.assert_allclose(ds.action_logits.values, expected.numpy(), atol=1e-5)


def test_symbolic_position_beyond_the_context_is_refused_at_validate(trained):
    folder, _ = trained
    write_spec(folder, """\
        name: too-far
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3}
        intervention: {kind: scale, hook: resid_pre, layer: 0, position: {token: state, timestep: -9}}
        metrics: [action_logits]
        """, "far.yaml")
    done = cli("validate", "far.yaml", cwd=folder)
    assert done.returncode == 2 and "far.yaml:5:" in done.stderr and "beyond the context" in done.stderr


def test_logit_diff_between_named_actions_and_reduce(trained):
    folder, _ = trained
    spec = write_spec(folder, """\
        name: diff
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 700}
        metrics: [action_logits, {logit_diff: {actions: [left, right]}}, {action_probs: {reduce: mean}}]
        """, "diff.yaml")
    ds = run_in(folder, spec, fresh=True)
    np.testing.assert_allclose(ds.logit_diff.values,
                               (ds.action_logits.sel(action="left") - ds.action_logits.sel(action="right")).values,
                               atol=1e-6)
    assert ds.action_probs.dims == ("action",)
    np.testing.assert_allclose(float(ds.action_probs.sum()), 1.0, atol=1e-5)


def test_a_steer_toward_left_in_rollouts_acts_at_every_step(trained):
    folder, _ = trained
    spec = write_spec(folder, """\
        name: go-left
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 900}
        intervention: {kind: steer, hook: resid_post, layer: 1, position: last, vector: {direction: {action: left}}}
        sweep:
          intervention.coefficient: [0.0, 20.0]
        metrics: [{rollout: {episodes: 16, seed: 4242, reduce: mean}}]
        """, "left.yaml")
    ds = run_in(folder, spec, fresh=True)
    left = ds.action_fraction.sel(action="left")
    assert float(left.sel(coefficient=20.0)) > 0.9, "the steer must act at every step of every episode"
    assert float(left.sel(coefficient=0.0)) < 0.5
    np.testing.assert_allclose(ds.action_fraction.sum("action").values, 1.0, atol=1e-5)


def test_agent_positions_are_labelled_by_role_and_the_lens_reads_actions(trained):
    folder, _ = trained
    spec = write_spec(folder, """\
        name: lens
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 700}
        metrics: [action_logits, logit_lens, {attention: {heads: [[1, 1]]}}]
        """, "lens.yaml")
    ds = run_in(folder, spec, fresh=True)
    agent = runner.load_model(folder / "results" / "tiny-train" / "models" / "seed=0")
    assert ds.position.values.tolist() == agent.config.roles()
    assert ds.logit_lens.dims == ("sample", "layer_read", "action")
    np.testing.assert_allclose(ds.logit_lens.isel(layer_read=-1).values, ds.action_logits.values, atol=1e-4)
    assert ds.attention.dims == ("sample", "attn_head", "position") and ds.attn_head.values.tolist() == ["L1H1"]
    np.testing.assert_allclose(ds.attention.sum("position").values, 1.0, atol=1e-5)


AGENT_KINDS = {
    "steer": "kind: steer, vector: {random: {seed: 2}}",
    "scale": "kind: scale",
    "ablate": "kind: ablate, method: zero",
    "patch": "kind: patch, source: {same: {swap_word: [red, blue]}}",
}


@pytest.mark.parametrize("kind", sorted(AGENT_KINDS))
def test_every_kind_at_a_symbolic_position_matches_hand_written_hooks(trained, kind):
    folder, _ = trained
    spec = write_spec(folder, f"""\
        name: kinds-{kind}
        model: {{checkpoint: results/tiny-train/models/seed=1}}
        data:
          trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 800}}
        intervention: {{{AGENT_KINDS[kind]}, hook: resid_pre, layer: 1, position: {{token: state, timestep: -2}}}}
        sweep:
          intervention.coefficient: [0.0, 0.7]
        metrics: [action_logits]
        """, f"kinds-{kind}.yaml")
    ds = run_in(folder, spec, fresh=True)
    agent, traj, inputs = agent_and_inputs(folder, spec, "seed=1")
    index, name, c = agent.config.roles().index("S2"), "blocks.1.hook_resid_pre", 0.7
    with torch.inference_mode():
        clean, cache = agent.run_with_cache(inputs, names_filter=lambda n: n == name)
        x = cache[name][:, index]
        if kind == "steer":
            v = np.random.default_rng(2).standard_normal(32)
            new = x + c * torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32)
        elif kind == "scale":
            new = (1 + c) * x
        elif kind == "ablate":
            new = x + c * (0 - x)
        else:
            swapped = windows(traj.changed(swap_word=("red", "blue")), np.arange(len(traj.actions)),
                              agent.config)
            assert not torch.equal(swapped.mission, inputs.mission)
            _, source = agent.run_with_cache(swapped, names_filter=lambda n: n == name)
            new = x + c * (source[name][:, index] - x)

        def hook(act, hook):
            act = act.clone()
            act[:, index] = new
            return act

        expected = agent.run_with_hooks(inputs, [(name, hook)])[:, -1]
    np.testing.assert_allclose(ds.action_logits.sel(coefficient=0.7).values, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(ds.action_logits.sel(coefficient=0.0).values, clean[:, -1].numpy())


def test_contrast_between_selections_of_the_data(trained):
    from runner.envs.selection import selection_mask

    folder, _ = trained
    spec = write_spec(folder, """\
        name: contrast-view
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 6, seed: 300}
        intervention:
          kind: steer
          hook: resid_pre
          layer: 1
          position: {token: state, timestep: -1}
          coefficient: 2.0
          vector: {contrast: {positive: {in_view: red ball}, negative: {mission_word: red}}}
        metrics: [action_logits]
        """, "contrast.yaml")
    ds = run_in(folder, spec, fresh=True)
    agent, traj, inputs = agent_and_inputs(folder, spec, "seed=0")
    name, last = "blocks.1.hook_resid_pre", len(agent.config.roles()) - 1
    mask = torch.from_numpy(selection_mask(traj, "in_view", "red ball"))
    assert 0 < int(mask.sum()) < len(mask)
    with torch.inference_mode():
        _, cache = agent.run_with_cache(inputs, names_filter=lambda n: n == name)
        acts = cache[name][:, last]
        v = acts[mask].mean(0) - acts.mean(0)

        def hook(x, hook):
            x = x.clone()
            x[:, last] += 2.0 * v
            return x

        expected = agent.run_with_hooks(inputs, [(name, hook)])[:, -1]
    np.testing.assert_allclose(ds.action_logits.values, expected.numpy(), atol=1e-5)


def test_checks_that_read_data_wait_for_it_and_refuse_before_any_point_runs(trained, tmp_path):
    folder, _ = trained
    write_spec(tmp_path, f"""\
        name: empty-selection
        model: {{checkpoint: {folder / "results" / "tiny-train" / "models" / "seed=0"}}}
        data:
          trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 301}}
        intervention:
          kind: steer
          layer: 0
          vector: {{contrast: {{positive: {{mission_word: purple}}, negative: {{mission_word: red}}}}}}
        metrics: [action_logits]
        """, "empty.yaml")
    done = cli("validate", "empty.yaml", cwd=tmp_path)  # the demonstrations are not generated yet
    assert done.returncode == 0 and "not generated yet" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "results").exists(), "validate writes nothing, caches included"
    done = cli("run", "empty.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "empty.yaml:8:" in done.stderr and "matches none" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "results" / "empty-selection").exists()
    done = cli("validate", "empty.yaml", cwd=tmp_path)  # cached by the run: validate reads them now
    assert done.returncode == 2 and "empty.yaml:8:" in done.stderr and "matches none" in done.stderr


def test_mean_ablation_in_rollouts_and_per_sample_references_refused(trained):
    folder, _ = trained
    text = """\
        name: ablate-roll
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 300}
        intervention: {kind: ablate, method: METHOD, hook: z, layer: 0, head: 1}
        metrics: [{rollout: {episodes: 5}}]
        """
    write_spec(folder, text.replace("METHOD", "mean"), "ablate-roll.yaml")
    ds = run_in(folder, folder / "ablate-roll.yaml", fresh=True)
    assert (ds.status == "ok").all() and ds.sizes["episode"] == 5
    write_spec(folder, text.replace("METHOD", "resample"), "resample-roll.yaml")
    done = cli("validate", "resample-roll.yaml", cwd=folder)
    assert done.returncode == 2 and "has no sample to pair with" in done.stderr


def test_a_swept_position_is_labelled_by_role(trained):
    folder, _ = trained
    spec = write_spec(folder, """\
        name: roles
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 300}
        intervention: {kind: ablate, method: zero, hook: resid_pre, layer: 1}
        sweep:
          intervention.position: [0, -1, -2]
        metrics: [{action_logits: {reduce: mean}}]
        """, "roles.yaml")
    ds = run_in(folder, spec, fresh=True)
    roles = runner.load_model(folder / "results" / "tiny-train" / "models" / "seed=0").config.roles()
    assert ds.role.values.tolist() == [roles[0], roles[-1], roles[-2]] == ["I0", "S3", "A2"]


def test_an_rtg_scan_folds_into_one_batch_with_the_same_numbers(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        runner.run(write_spec(tmp_path, TRAIN.replace("ARCH", "decision_transformer").replace("tiny-train", "tiny-dt")
                              .replace("  seed: [0, 1]\n", "  seed: [0]\n"), "dt.yaml"))
        scan = """\
            name: NAME
            model: {run: tiny-dt}
            data:
              trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 100, epsilon: 0.3, target_return: 0.5}
            sweep:
              data.trajectories.target_return: [0.1, 0.5, 0.9]
            metrics: [action_logits, logit_lens]
            execution: {points_per_task: PPT}
            """
        folded = runner.run(write_spec(tmp_path, scan.replace("NAME", "folded").replace("PPT", "3"), "a.yaml"))
        single = runner.run(write_spec(tmp_path, scan.replace("NAME", "single").replace("PPT", "1"), "b.yaml"))
    assert folded.action_logits.dims == ("seed", "target_return", "sample", "action")
    np.testing.assert_allclose(folded.action_logits.values, single.action_logits.values, **CHUNKING_TOLERANCE)
    np.testing.assert_allclose(folded.logit_lens.values, single.logit_lens.values, **CHUNKING_TOLERANCE)
    low, high = folded.action_logits.sel(target_return=0.1), folded.action_logits.sel(target_return=0.9)
    assert not np.allclose(low.values, high.values), "the RTG token must reach the logits"


def test_a_dt_rollout_says_which_targets_lie_outside_its_training_returns(tmp_path):
    dt = TRAIN.replace("ARCH", "decision_transformer").replace("tiny-train", "tiny-dt").replace(
        "  seed: [0, 1]\n", "  seed: [0]\n").replace("episodes: 40, seed: 0}", "episodes: 40, seed: 0, epsilon: 0.3}")
    returns = load_trajectories(runner.load_spec(write_spec(tmp_path, dt, "dt.yaml")).spec.data, tmp_path, 0).returns
    inside = float(np.median(returns))
    targets = [round(float(returns.min()) - 0.01, 4), inside, round(float(returns.max()) + 0.01, 4)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        runner.run(tmp_path / "dt.yaml")
        ds = runner.run(write_spec(tmp_path, f"""\
            name: calibration
            model: {{run: tiny-dt}}
            data:
              trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 100, target_return: 0.5}}
            sweep:
              data.trajectories.target_return: {targets}
            metrics: [{{rollout: {{episodes: 3}}}}]
            """, "scan.yaml"))
    assert ds.target_in_data.dims == ("seed", "target_return")
    assert ds.target_in_data.values.ravel().tolist() == [0.0, 1.0, 0.0]
    with pytest.MonkeyPatch.context() as mp:  # no target given: a DT plays at 1.0, above every return of its data
        mp.chdir(tmp_path)
        plain = runner.run(write_spec(tmp_path, """\
            name: plain
            model: {run: tiny-dt}
            data:
              trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 100}
            metrics: [{rollout: {episodes: 2}}]
            """, "plain.yaml"))
    assert returns.max() < 1.0 and plain.target_in_data.values.ravel().tolist() == [0.0]
    assert runner.load_model(tmp_path / "results" / "tiny-dt" / "models" / "seed=0").config.return_range == \
        (float(returns.min()), float(returns.max()))


BAD_AGENT_SPECS = {
    "patch source of another size": ("kind: patch, source: {trajectories: {env: BabyAI-GoToRedBallGrey-v0, "
                                     "episodes: 6, seed: 9}}", "pairs them up sample by sample"),
    "rtg on a behaviour clone": "kind: patch, source: {same: {target_return: 0.2}}",
    "swap a word no mission has": ("kind: patch, source: {same: {swap_word: [purple, red]}}", "no mission of the data"),
    "contrast side of an unknown env": ("kind: steer, vector: {contrast: {positive: {trajectories: {env: BabyAI-Nope-v0, "
                                        "episodes: 2}}, negative: {mission_word: red}}}", "BabyAI-Nope-v0"),
    "attn_scores is read-only": ("kind: ablate, method: zero, hook: attn_scores, head: 0", "TransformerLens 4 discards"),
}


@pytest.mark.parametrize("case", sorted(BAD_AGENT_SPECS))
def test_agent_interventions_that_would_do_nothing_or_crash_are_refused(trained, case):
    folder, _ = trained
    entry = BAD_AGENT_SPECS[case]
    intervention, phrase = entry if isinstance(entry, tuple) else (entry, "reads no return-to-go")
    hook = "" if "hook:" in intervention else ", hook: resid_pre"
    write_spec(folder, f"""\
        name: bad-agent
        model: {{checkpoint: results/tiny-train/models/seed=0}}
        data:
          trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 300}}
        intervention: {{{intervention}{hook}, layer: 0}}
        metrics: [action_logits]
        """, "bad-agent.yaml")
    for verb in ("run", "validate"):  # run generates the data the checks read; validate then reads it cached
        done = cli(verb, "bad-agent.yaml", cwd=folder)
        assert done.returncode == 2 and "bad-agent.yaml:5:" in done.stderr and phrase in done.stderr, done.stderr
    assert not (folder / "results" / "bad-agent").exists()


def test_full_patch_restores_exactly_one(trained):
    folder, _ = trained
    spec = write_spec(folder, """\
        name: full-patch
        model: {checkpoint: results/tiny-train/models/seed=0}
        data:
          trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3, seed: 300}
        intervention: {kind: patch, hook: resid_post, layer: 1, source: {same: {swap_word: [red, blue]}}}
        metrics: [{restored_fraction: {actions: [left, right]}}]
        """, "full-patch.yaml")
    ds = run_in(folder, spec, fresh=True)
    assert (ds.restored_fraction.values == 1.0).all()


def test_run_with_cache_without_a_filter_caches_every_usable_hook(trained):
    folder, _ = trained
    agent = runner.load_model(folder / "results" / "tiny-train" / "models" / "seed=0")
    traj = load_trajectories(runner.load_spec(folder / "train.yaml").spec.data, folder, 0)
    with torch.inference_mode():
        _, cache = agent.run_with_cache(windows(traj, np.arange(4), agent.config))
    assert {"hook_embed", "blocks.1.hook_resid_post", "blocks.0.attn.hook_pattern"} <= set(cache)


def test_shards_read_without_xarray_equal_xarray_reading_them(trained):
    """runner reads shards with netCDF4 directly (faster); the result equals xarray's own reading."""
    import xarray as xr

    from runner.results.shards import _load

    folder, _ = trained
    shards = sorted((folder / "results").rglob("shards/*.nc"))
    assert len(shards) >= 2
    for path in shards:
        fast, slow = _load(path), xr.load_dataset(path)
        for name, var in slow.variables.items():  # xarray gives text as <U, netCDF4 as objects: the same text
            if var.dtype.kind == "U":
                slow[name] = var.astype(object)
        xr.testing.assert_identical(fast, slow)
        assert set(fast.coords) == set(slow.coords) and fast.attrs == slow.attrs
