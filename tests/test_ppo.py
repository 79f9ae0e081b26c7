"""PPO agents: online RL on the same TransformerLens body as BC and DT, checkpoints, demonstrators, bad input."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import runner
from runner.models.checkpoint import load_agent, save_agent
from runner.ppo import gae
from tests.conftest import cli, play_episode, write_spec

ENV = "BabyAI-GoToRedBallGrey-v0"
TWO_WAYS = f"""\
name: two-ways
kind: train
seed: 0
algorithm: bc
data:
  trajectories: {{env: {ENV}, policy: bot, episodes: 10, seed: 0}}
model: {{n_layers: 1, d_model: 16, n_heads: 2, context: 2}}
train: {{steps: 5, batch_size: 8, log_every: 5}}
ppo: {{num_envs: 4, num_steps: 16, total_timesteps: 128, num_minibatches: 2, eval_every: 1, eval_episodes: 2}}
eval: {{episodes: 3}}
sweep:
  zip:
    - {{algorithm: [bc, ppo]}}
    - data:
        - {{trajectories: {{env: {ENV}, policy: bot, episodes: 10, seed: 0}}}}
        - {{env: {{id: {ENV}, seed: 0}}}}
"""


def run_in(folder, spec, **kwargs):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        return runner.run(spec, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A train grid over algorithm (a tiny bc and a tiny ppo agent, 2 updates), and its project folder."""
    folder = tmp_path_factory.mktemp("ppo")
    return folder, run_in(folder, write_spec(folder, TWO_WAYS, "train.yaml"))


def ppo_folder(folder, algorithm="ppo"):
    """The model folder of a point (named by the zipped coordinates: algorithm=ppo,data=<content id>)."""
    (found,) = (folder / "results" / "two-ways" / "models").glob(f"algorithm={algorithm},data=*")
    return found


def test_gae_matches_a_hand_computation():
    rewards = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.5]], np.float32)
    values = np.array([[0.2, 0.4], [0.3, 0.1], [0.6, 0.7]], np.float32)
    dones = np.array([[0, 1], [0, 0], [1, 0]], np.float32)
    next_value, gamma, lam = np.array([0.9, 0.8], np.float32), 0.9, 0.8
    expected = np.zeros((3, 2))
    for env in range(2):
        following, running = next_value[env], 0.0
        for t in (2, 1, 0):
            alive = 1 - dones[t, env]
            delta = rewards[t, env] + gamma * following * alive - values[t, env]
            running = delta + gamma * lam * alive * running
            expected[t, env], following = running, values[t, env]
    advantages, returns = gae(rewards, values, dones, next_value, gamma, lam)
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-6)
    assert advantages[0, 1] == pytest.approx(1.0 - 0.4)  # an episode that ended is not bootstrapped


def test_a_ppo_point_writes_finite_loss_terms_and_its_learning_curve(trained):
    _, ds = trained
    assert (ds.status == "ok").all() and ds.algorithm.values.tolist() == ["bc", "ppo"]
    ppo = ds.sel(algorithm="ppo")
    assert ppo.policy_loss.dims == ("update",) and ds.sizes["update"] == 2
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "learning_rate"):
        assert np.isfinite(ppo[name].values).all(), name
    assert ppo.env_steps.values.tolist() == [64, 128]
    assert 0 < float(ppo.entropy[0]) <= np.log(7) + 1e-6
    assert ppo.eval_success.dims == ("eval_update",) and ds.eval_update.values.tolist() == [1, 2]
    assert ds.success.dims == ("algorithm", "episode") and np.isfinite(ppo.random_success).all()
    assert np.isnan(ds.policy_loss.sel(algorithm="bc")).all() and np.isfinite(ds.loss.sel(algorithm="bc")).all()
    config = json.loads((ppo_folder(trained[0]) / "config.json").read_text())["config"]
    assert config["algorithm"] == "ppo" and config["value_head"] and config["architecture"] == "behavior_clone"
    assert json.loads((ppo_folder(trained[0], "bc") / "config.json").read_text())["config"]["algorithm"] == "bc"


def test_ppo_checkpoints_reload_bit_identically_and_play(trained, tmp_path):
    agent = runner.load_model(ppo_folder(trained[0]))
    again = load_agent(save_agent(agent, tmp_path / "copy"))
    first, second = agent.state_dict(), again.state_dict()
    assert "value_head.weight" in first and first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    policy = runner.load_policy(ppo_folder(trained[0]))
    env = gym.make(ENV)
    assert 1 <= play_episode(policy, env, seed=11) <= env.unwrapped.max_steps


def test_ppo_training_is_deterministic(tmp_path):
    from runner.spec import parse_spec
    from runner.ppo import train_ppo

    spec = parse_spec(TWO_WAYS.replace("algorithm: bc\n", "algorithm: ppo\n").replace(
        f"  trajectories: {{env: {ENV}, policy: bot, episodes: 10, seed: 0}}\n", f"  env: {{id: {ENV}}}\n")
        .split("sweep:")[0]).spec
    (_, a), (_, b) = (train_ppo(spec, 3, str(tmp_path)) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_an_intervene_spec_over_the_grid_carries_the_algorithm_dim(trained):
    folder, _ = trained
    spec = write_spec(folder, f"""\
        name: steer-two-ways
        model: {{run: two-ways}}
        data:
          trajectories: {{env: {ENV}, episodes: 2, seed: 500}}
        intervention: {{kind: steer, hook: resid_pre, layer: 0, position: S2, vector: {{random: {{seed: 4, norm: match}}}}}}
        sweep:
          intervention.coefficient: [0.0, 4.0]
        metrics: [{{action_probs: {{reduce: mean}}}}, kl]
        """, "steer.yaml")
    ds = run_in(folder, spec)
    assert ds.action_probs.dims == ("algorithm", "coefficient", "action")
    assert ds.algorithm.values.tolist() == ["bc", "ppo"] and (ds.status == "ok").all()
    assert (ds.kl.sel(coefficient=0.0) == 0).all() and (ds.kl.sel(coefficient=4.0) > 0).all()


def test_a_dt_learns_from_a_ppo_demonstrator(trained):
    folder, _ = trained
    spec = write_spec(folder, f"""\
        name: dt-on-ppo
        kind: train
        algorithm: dt
        data:
          trajectories: {{env: {ENV}, policy: {{checkpoint: '{ppo_folder(folder)}', sampling: sample}}, episodes: 4}}
        model: {{n_layers: 1, d_model: 16, n_heads: 2, context: 2}}
        train: {{steps: 3, batch_size: 4, log_every: 1}}
        eval: {{episodes: 2}}
        """, "dt.yaml")
    ds = run_in(folder, spec)
    assert (ds.status == "ok").all() and np.isfinite(ds.loss).all()
    reads = json.loads(ds.attrs["input_files"])
    assert str(ppo_folder(folder).relative_to(folder) / "model.safetensors") in reads


def test_ppo_learns_an_easy_level(tmp_path):
    """MiniGrid-Empty-5x5-v0: greedy success reached 100% by update 10-12 in 8 measured seeds; 24 leave margin."""
    spec = write_spec(tmp_path, """\
        name: ppo-empty
        kind: train
        algorithm: ppo
        data: {env: {id: MiniGrid-Empty-5x5-v0, max_steps: 40}}
        model: {n_layers: 1, d_model: 32, n_heads: 2, context: 1}
        ppo: {num_envs: 8, num_steps: 32, total_timesteps: 6144, num_minibatches: 4, update_epochs: 8, lr: 2.5e-3,
              ent_coef: 0.0}
        eval: {episodes: 10}
        """)
    ds = run_in(tmp_path, spec)
    assert ds.sizes["update"] == 24 and float(ds.success.mean()) >= 0.9 > float(ds.random_success.mean())
    assert float(ds.train_success[-4:].mean()) >= 0.9


def test_ppo_runs_on_a_level_with_moving_obstacles_and_negative_rewards(tmp_path):
    """MiniGrid-Dynamic-Obstacles: obstacles move every step and a collision ends the episode with reward -1."""
    spec = write_spec(tmp_path, """\
        name: ppo-obstacles
        kind: train
        algorithm: ppo
        data: {env: {id: MiniGrid-Dynamic-Obstacles-5x5-v0}}
        model: {n_layers: 1, d_model: 32, n_heads: 2, context: 2}
        ppo: {num_envs: 8, num_steps: 32, total_timesteps: 512, num_minibatches: 2}
        eval: {episodes: 4}
        """)
    ds = run_in(tmp_path, spec)
    assert ds.sizes["update"] == 2 and np.isfinite(ds.policy_loss).all() and np.isfinite(ds.value_loss).all()
    assert float(ds.train_return.min()) < 0  # random play collides (reward -1): the env's sign is kept
    assert set(np.unique(ds.success.values)) <= {0.0, 1.0}


BAD = {  # case: (algorithm, data, model, extra line, where, phrase)
    "a ppo option out of range": ("ppo", None, None, "ppo: {clip_coef: -0.2}", "spec.yaml:7:", "ppo.clip_coef"),
    "minibatches that do not divide the rollout": ("ppo", None, None, "ppo: {num_envs: 3, num_steps: 5, "
                                                   "num_minibatches: 4}", "spec.yaml:7:", "must divide"),
    "ppo from a file": ("ppo", "{file: demos.npz}", None, "", "spec.yaml:4:", "algorithm ppo learns online"),
    "bc in an env": ("bc", None, None, "", "spec.yaml:4:", "is for algorithm ppo"),
    "a layout the algorithm does not train": ("ppo", None, "{architecture: decision_transformer, n_layers: 1}", "",
                                              "spec.yaml:5:", "trains the behavior_clone layout"),
    "a demonstrator of another env": ("dt", "{trajectories: {env: MiniGrid-Empty-5x5-v0, episodes: 2, policy: "
                                            "{checkpoint: 'PPO'}}}", None, "", "spec.yaml:4:",
                                      "was trained on 'BabyAI-GoToRedBallGrey-v0'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_ppo_input_exits_2_located_and_writes_nothing(trained, project, case):
    algorithm, data, model, extra, where, phrase = BAD[case]
    data = (data or "{env: {id: MiniGrid-Empty-5x5-v0}}").replace("PPO", str(ppo_folder(trained[0])))
    write_spec(project, f"name: bad\nkind: train\nalgorithm: {algorithm}\ndata: {data}\n"
                        f"model: {model or '{n_layers: 1}'}\neval: {{episodes: 1}}\n{extra}\n")
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 2 and where in done.stderr and phrase in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (project / "results").exists()


def test_a_demonstrator_run_not_trained_yet_is_noted_by_validate_and_refused_by_run(project):
    write_spec(project, """\
        name: dt-later
        kind: train
        algorithm: dt
        data:
          trajectories: {env: MiniGrid-DoorKey-5x5-v0, policy: {run: ppo-later}, episodes: 4}
        model: {n_layers: 1}
        """)
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 0 and "ok (1 point)" in done.stdout + done.stderr, done.stderr
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "spec.yaml:5:" in done.stderr and "train run 'ppo-later' has no models yet" \
        in done.stderr and "Traceback" not in done.stderr
    assert not (project / "results" / "dt-later").exists()
