"""runner.envs: instruction vocabulary, observation encoding, demonstrations, rollouts."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
from minigrid.utils.baby_ai_bot import BabyAIBot

from runner.envs import (
    ACTIONS,
    CELL_FEATURES,
    OBS_ACTIVE,
    OBS_FEATURES,
    WORDS,
    RandomPolicy,
    Trajectories,
    demonstrations,
    check_env,
    decode_mission,
    decode_observation,
    edit_cell,
    encode_mission,
    generate,
    mission_words_ok,
    observation_indices,
    rollout,
    tokenize,
)
from runner.envs import demos as demos_module
from runner.envs.make import make_env, quiet

EASY = "BabyAI-GoToRedBallGrey-v0"  # seeds 8 and 10 print "Sampling rejected" on reset


@pytest.fixture(scope="module")
def demos() -> Trajectories:
    return generate(EASY, "bot", episodes=30, seed=0)


# ---------------------------------------------------------------- vocabulary


@pytest.mark.parametrize("env_id, resets", [("BabyAI-GoToLocal-v0", 200), ("BabyAI-PickupLoc-v0", 50),
                                            ("BabyAI-PutNextLocal-v0", 50), ("BabyAI-SynthS5R2-v0", 50)])
def test_every_generated_mission_encodes_and_round_trips(env_id, resets):
    env = make_env(env_id)
    with quiet():
        missions = {env.reset(seed=s)[0]["mission"] for s in range(resets)}
    for mission in missions:
        assert mission_words_ok(mission) is None, mission
        ids = encode_mission(mission, length=12)
        assert ids.dtype == np.int64 and ids.shape == (12,)
        assert decode_mission(ids) == mission


def test_plain_minigrid_missions_and_commas():
    for mission in ("get the red key from the blue room, unlock the red door and go to the goal",
                    "use the key to open the door and then get to the goal",
                    "you must fetch a purple ball", "avoid the lava and get to the green goal square",
                    "go to the matching object at the end of the hallway", "open the red door then the blue door",
                    "put the grey box near the yellow key", "traverse the maze to get to the goal"):
        assert decode_mission(encode_mission(mission)) == mission
    assert tokenize("Go to the ball, then open a door")[3:6] == ["ball", ",", "then"]
    assert WORDS[0] == "<pad>" and len(set(WORDS)) == len(WORDS)


def test_unknown_word_and_too_long_mission_are_clear_errors():
    with pytest.raises(ValueError, match="'pink'.*'go to the pink bal'.*did you mean 'pick'"):
        encode_mission("go to the pink bal")
    assert "'pink'" in mission_words_ok("go to the pink ball")
    with pytest.raises(ValueError, match="'go to the red ball' has 5 words.*length 3"):
        encode_mission("go to the red ball", length=3)


# ---------------------------------------------------------------- observations


def test_observation_indices_round_trip_and_layout(demos):
    idx = observation_indices(demos.images, demos.directions)
    assert idx.shape == (demos.n_steps, OBS_ACTIVE) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < OBS_FEATURES
    images, directions = decode_observation(idx)
    np.testing.assert_array_equal(images, demos.images)
    np.testing.assert_array_equal(directions, demos.directions)
    # index = cell * CELL_FEATURES + channel offset + value; direction last
    i, j = 2, 5
    obj, colour, state = (int(v) for v in demos.images[0, i, j])
    cell = 7 * i + j
    assert idx[0, 3 * cell:3 * cell + 3].tolist() == [cell * CELL_FEATURES + obj, cell * CELL_FEATURES + 11 + colour,
                                                      cell * CELL_FEATURES + 17 + state]
    assert idx[0, -1] == 49 * CELL_FEATURES + int(demos.directions[0])
    # any leading shape; each observation's indices are distinct (a one-hot of OBS_ACTIVE ones)
    batch = observation_indices(demos.images[:6].reshape(2, 3, 7, 7, 3), demos.directions[:6].reshape(2, 3))
    assert batch.shape == (2, 3, OBS_ACTIVE)
    assert all(len(set(row)) == OBS_ACTIVE for row in idx[:20].tolist())


def test_out_of_range_observation_values_are_refused():
    image = np.zeros((7, 7, 3), np.uint8)
    image[1, 2, 1] = 6  # colours are 0..5
    with pytest.raises(ValueError, match="colour"):
        observation_indices(image, np.array(0))
    with pytest.raises(ValueError, match="direction"):
        observation_indices(np.zeros((7, 7, 3), np.uint8), np.array(4))


def test_edit_cell_changes_one_cell_of_a_copy(demos):
    image = demos.images[0]
    edited = edit_cell(image, 3, 5, object="key", colour="blue")
    assert edited[3, 5, :2].tolist() == [5, 2]
    assert (edited != image).sum() <= 2 and edited is not image
    with pytest.raises(ValueError, match="valid colours: red, green"):
        edit_cell(image, 0, 0, colour="pink")
    with pytest.raises(ValueError, match="valid objects: .*ball"):
        edit_cell(image, 0, 0, object="sphere")


# ---------------------------------------------------------------- demonstrations


def test_bot_demos_succeed_and_arrays_are_consistent(demos):
    assert demos.success.mean() >= 0.95
    assert demos.n_steps == demos.episode_lengths.sum() == len(demos.rewards)
    assert demos.images.dtype == np.uint8 and demos.actions.dtype == np.int8
    assert demos.env_seeds.tolist() == list(range(30))
    rtg, t = demos.returns_to_go(), demos.timesteps()
    for e in (0, 7, 29):
        ep = demos.episode(e)
        start = demos.episode_starts[e]
        np.testing.assert_allclose(rtg[start:start + len(ep["actions"])],
                                   np.cumsum(ep["rewards"][::-1])[::-1], rtol=1e-6)
        assert t[start] == 0 and t[start + len(ep["actions"]) - 1] == len(ep["actions"]) - 1
        assert ep["mission"] == "go to the red ball"
    np.testing.assert_allclose(demos.returns, rtg[demos.episode_starts])
    picked = demos.subset([5, 2])
    assert picked.env_seeds.tolist() == [5, 2]
    np.testing.assert_array_equal(picked.episode(1)["images"], demos.episode(2)["images"])
    assert demos.subset(demos.env_seeds % 2 == 0).n_episodes == 15


def test_epsilon_spreads_the_returns(demos):
    noisy = generate(EASY, "bot", episodes=30, seed=0, epsilon=0.3)
    assert noisy.returns.mean() < demos.returns.mean()
    assert noisy.episode_lengths.mean() > demos.episode_lengths.mean()
    assert noisy.returns.std() > demos.returns.std()
    actions_differ = [not np.array_equal(noisy.episode(e)["actions"], demos.episode(e)["actions"])
                      for e in range(30)]
    assert sum(actions_differ) >= 10


def test_graded_noise_mixes_episodes_and_labels_record_the_bot(demos, tmp_path):
    mixed = generate(EASY, "bot", episodes=6, seed=0, epsilon=[0.0, 1.0])
    clean, noisy = mixed.subset([0, 2, 4]), mixed.subset([1, 3, 5])
    np.testing.assert_array_equal(clean.actions, demos.subset([0, 2, 4]).actions)  # epsilon 0: the bot's play
    np.testing.assert_array_equal(clean.labels, clean.actions)
    # episode 1 is played at epsilon 1.0 whatever the other episodes do
    np.testing.assert_array_equal(noisy.episode(0)["actions"],
                                  generate(EASY, "bot", episodes=2, seed=0, epsilon=1.0).episode(1)["actions"])
    assert (noisy.labels != noisy.actions).mean() > 0.5  # random actions: the bot would mostly do otherwise
    env = make_env(EASY)
    for e in range(6):  # the first label is what a fresh bot suggests on the reset env
        with quiet():
            env.reset(seed=int(mixed.env_seeds[e]))
        assert mixed.labels[mixed.episode_starts[e]] == int(BabyAIBot(env).replan())
    back = Trajectories.load_npz(mixed.save_npz(tmp_path / "mixed.npz"))
    np.testing.assert_array_equal(back.labels, mixed.labels)
    assert back.subset([1]).labels.tolist() == mixed.labels[mixed.episode_of_step == 1].tolist()
    assert generate(EASY, "random", episodes=2, seed=0).labels is None  # no expert, no labels
    assert mixed.episode(1)["labels"].tolist() == noisy.labels[: noisy.episode_lengths[0]].tolist()


def test_derived_arrays_are_computed_once_read_only_and_missions_encode_as_encode_mission(demos):
    for derived in (demos.returns_to_go, demos.timesteps):  # windows read them at every training step
        assert derived() is derived() and not derived().flags.writeable
    assert demos.episode_of_step is demos.episode_of_step and not demos.episode_of_step.flags.writeable
    texts = np.array(["go to the red ball", "go to a blue key", "pick up the box"] * 10)
    mixed = dataclasses.replace(demos, missions=texts)
    episodes = np.array([2, 0, 1, 1, 29])
    np.testing.assert_array_equal(mixed.mission_ids(episodes, 6),
                                  np.stack([encode_mission(texts[e], 6) for e in episodes]))
    assert mixed.mission_ids(episodes, 6).dtype == np.int64 and mixed.mission_ids(episodes, 0).shape == (5, 0)
    with pytest.raises(ValueError, match="more than the mission length"):
        mixed.mission_ids(episodes, 4)


def test_an_old_cache_without_labels_serves_taken_actions_and_is_regenerated_for_bot_labels(tmp_path):
    key = demos_module.cache_key(EASY, "bot", 3, 0, None, 0.25)
    before_lists = {"env_id": EASY, "policy": "bot", "episodes": 3, "seed": 0, "max_steps": None, "epsilon": 0.25,
                    "format": 1, "minigrid": importlib.metadata.version("minigrid")}  # the key's payload until lists
    assert key == demos_module.cache_key(EASY, "bot", 3, 0, None, [0.25]) == \
        hashlib.sha256(json.dumps(before_lists, sort_keys=True).encode()).hexdigest()[:20]
    old = generate(EASY, "bot", episodes=3, seed=0, epsilon=0.25)
    old.labels = None                                     # written before labels were recorded
    old.save_npz(tmp_path / f"{key}.npz")
    assert demonstrations(EASY, "bot", 3, 0, None, 0.25, tmp_path).labels is None
    assert demonstrations(EASY, "bot", 3, 0, None, 0.25, tmp_path, only_cached=True, labels=True) is None
    fresh = demonstrations(EASY, "bot", 3, 0, None, 0.25, tmp_path, labels=True)
    np.testing.assert_array_equal(fresh.actions, old.actions)  # the same play, now with the bot's labels
    assert fresh.labels is not None and Trajectories.load_npz(tmp_path / f"{key}.npz").labels is not None


def test_generate_is_deterministic_and_quiet(capfd):
    first = generate(EASY, "bot", episodes=12, seed=0, epsilon=0.2)
    second = generate(EASY, "bot", episodes=12, seed=0, epsilon=0.2)
    for key in ("images", "directions", "actions", "rewards", "episode_lengths", "missions", "env_seeds"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))
    # each episode depends only on its env seed: a later start is a suffix
    later = generate(EASY, "bot", episodes=4, seed=8, epsilon=0.2)
    np.testing.assert_array_equal(later.episode(0)["actions"], first.episode(8)["actions"])
    random = generate("MiniGrid-Empty-5x5-v0", "random", episodes=3, seed=0, max_steps=10)
    assert random.episode_lengths.max() <= 10 and random.missions[0] == "get to the green goal square"
    rollout(EASY, RandomPolicy(0), episodes=12, seed=0, max_steps=3)
    out = capfd.readouterr().out
    assert "Sampling rejected" not in out and out == ""


def test_an_episode_the_bot_gives_up_on_is_replaced_by_the_next_seed():
    demos = generate("BabyAI-SynthS5R2-v0", "bot", episodes=3, seed=27)  # the bot asserts on seed 28
    assert demos.n_episodes == 3 and demos.env_seeds.tolist() == [27, 29, 30]


def test_save_load_round_trip(demos, tmp_path):
    path = demos.save_npz(tmp_path / "demos.npz")
    back = Trajectories.load_npz(path)
    assert back.env_id == EASY
    for key in ("images", "directions", "actions", "rewards", "episode_lengths", "missions", "env_seeds"):
        np.testing.assert_array_equal(getattr(back, key), getattr(demos, key))
        assert getattr(back, key).dtype == getattr(demos, key).dtype
    plain = {k: getattr(demos, k) for k in ("images", "directions", "actions", "rewards", "episode_lengths")}
    np.savez(tmp_path / "ppo.npz", env_id=np.array(EASY), missions=demos.missions.astype("S"),
             **{k: v.astype(np.int64) if v.dtype.kind in "iu" else v for k, v in plain.items()})
    ppo = Trajectories.load_npz(tmp_path / "ppo.npz")  # no env_seeds, wider ints, bytes strings
    assert ppo.labels is None  # optional: only generated demonstrations record the bot's suggestions
    assert ppo.env_seeds.tolist() == list(range(30)) and ppo.missions[0] == "go to the red ball"


def _arrays(demos: Trajectories) -> dict[str, np.ndarray]:
    return {"env_id": np.array(demos.env_id), **{k: getattr(demos, k).copy() for k in (
        "images", "directions", "actions", "rewards", "episode_lengths", "missions", "env_seeds")}}


def _corrupt(name: str, demos: Trajectories):
    a = _arrays(demos)
    if name == "missing_key":
        del a["actions"]
    elif name == "float_images":
        a["images"] = a["images"].astype(np.float32)
    elif name == "wrong_shape":
        a["images"] = a["images"][..., 0]
    elif name == "lengths_sum":
        a["episode_lengths"][0] += 1
    elif name == "bad_action":
        a["actions"][3] = 9
    elif name == "bad_direction":
        a["directions"][3] = 4
    elif name == "bad_colour":
        a["images"][2, 1, 1, 1] = 7
    elif name == "pickled_missions":
        a["missions"] = np.array(list(a["missions"]), dtype=object)
    elif name == "env_id_list":
        a["env_id"] = np.array([demos.env_id])
    return a


@pytest.mark.parametrize("case, message", [
    ("missing_key", "missing key 'actions'"), ("float_images", "'images' has dtype float32"),
    ("wrong_shape", "'images' has shape"), ("lengths_sum", "episode_lengths sum to"),
    ("bad_action", r"actions\[3\] = 9"), ("bad_direction", r"directions\[3\] = 4"),
    ("bad_colour", r"images\[2, 1, 1, 1\] = 7 is not a MiniGrid colour"),
    ("pickled_missions", "'missions' holds pickled Python objects"), ("env_id_list", "0-d str"),
    ("garbage", "not a readable .npz"), ("truncated", "demos_truncated.npz"), ("npy", "single array"),
    ("absent", "no such trajectories file"),
])
def test_corrupt_files_raise_one_clear_error(demos, tmp_path, case, message):
    path = tmp_path / f"demos_{case}.npz"
    if case == "garbage":
        path.write_bytes(b"this is not a zip archive at all" * 10)
    elif case == "truncated":
        demos.save_npz(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "npy":
        with open(path, "wb") as f:
            np.save(f, demos.actions)
    elif case != "absent":
        np.savez(path, **_corrupt(case, demos))
    with pytest.raises(ValueError, match=message) as err:
        Trajectories.load_npz(path)
    assert path.name in str(err.value)


def test_check_env_messages():
    assert check_env("BabyAI-GoToLocal-v0", "bot") is None
    assert check_env("MiniGrid-Empty-5x5-v0", "random") is None
    assert "did you mean BabyAI-GoToLocal-v0" in check_env("BabyAI-GoToLocl-v0", "bot")
    assert "unknown environment 'Nope'" in check_env("Nope", "random")
    assert "did you mean BabyAI-GoToLocal-v0" in check_env("babyai-gotolocal", "bot")
    assert "not a MiniGrid or BabyAI" in check_env("CartPole-v1", "random")
    assert "needs a BabyAI level" in check_env("MiniGrid-Empty-5x5-v0", "bot")
    assert "unknown policy 'ppo'" in check_env("BabyAI-GoToLocal-v0", "ppo")
    with pytest.raises(ValueError, match="needs a BabyAI level"):
        generate("MiniGrid-Empty-5x5-v0", "bot", episodes=1, seed=0)


def test_demonstrations_are_generated_once(tmp_path, monkeypatch):
    assert demonstrations(EASY, "bot", 5, 3, None, 0.0, tmp_path, only_cached=True) is None
    assert not list(tmp_path.iterdir()), "only_cached must write nothing"
    first = demonstrations(EASY, "bot", 5, 3, None, 0.0, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(demos_module, "generate", lambda *a, **k: pytest.fail("regenerated"))
    again = demonstrations(EASY, "bot", 5, 3, None, 0.0, tmp_path, only_cached=True)
    assert path.stat().st_mtime_ns == mtime and not list(tmp_path.glob(".*tmp"))
    np.testing.assert_array_equal(again.actions, first.actions)
    monkeypatch.undo()
    demonstrations(EASY, "bot", 5, 4, None, 0.0, tmp_path)  # another seed, another file
    assert len(list(tmp_path.glob("*.npz"))) == 2


# ---------------------------------------------------------------- rollouts


def test_random_rollout_is_the_baseline():
    out = rollout(EASY, RandomPolicy(0), episodes=100, seed=0)
    assert set(out) == {"return", "success", "episode_length", "mission"}
    assert out["return"].shape == (100,) and out["return"].dtype == np.float32
    assert out["success"].dtype == bool and out["episode_length"].dtype == np.int32
    assert 0.1 <= out["success"].mean() <= 0.4
    assert out["episode_length"].max() == 64 and (out["return"][~out["success"]] == 0).all()
    assert out["mission"][0] == "go to the red ball"
    np.testing.assert_array_equal(rollout(EASY, RandomPolicy(0), 100, seed=0)["return"], out["return"])
    assert len(ACTIONS) == 7 and ACTIONS[2] == "forward"


class BotPolicy:
    """One BabyAI bot per episode, each in a mirror env: checks what rollout shows and when."""

    def __init__(self, env_id: str, seed: int):
        self.env_id, self.seed = env_id, seed

    def reset(self, missions: list[str]) -> None:
        self.envs = [make_env(self.env_id) for _ in missions]
        with quiet():
            self.obs = [env.reset(seed=self.seed + e)[0] for e, env in enumerate(self.envs)]
        assert [o["mission"] for o in self.obs] == missions
        self.bots = [BabyAIBot(env) for env in self.envs]
        self.ended = np.zeros(len(missions), dtype=bool)
        self.calls = 0

    def act(self, images, directions, rewards, live):
        assert not (live & self.ended).any(), "an ended episode was reported live"
        if self.calls == 0:
            assert (rewards == 0).all()
        self.calls += 1
        actions = np.full(len(live), -1)  # ignored for ended episodes
        for e in np.flatnonzero(live):
            np.testing.assert_array_equal(images[e], self.obs[e]["image"])
            assert directions[e] == self.obs[e]["direction"]
            actions[e] = self.bots[e].replan()
            with quiet():
                self.obs[e], reward, term, trunc, _ = self.envs[e].step(actions[e])
            self.ended[e] = term or trunc
        self.ended |= ~live
        return actions


def test_bot_through_rollout_checks_the_live_mask():
    policy = BotPolicy(EASY, seed=100)
    out = rollout(EASY, policy, episodes=40, seed=100)
    assert out["success"].mean() >= 0.95
    assert policy.calls == out["episode_length"].max()
    assert policy.ended.all()


def test_rollout_refuses_bad_actions():
    class Bad(RandomPolicy):
        def act(self, images, directions, rewards, live):
            return np.full(len(live), 7)

    with pytest.raises(ValueError, match="action 7 for episode 0"):
        rollout(EASY, Bad(0), episodes=2, seed=0)


def test_envs_package_does_not_import_torch():
    import ast

    for source in (Path(__file__).resolve().parents[1] / "runner" / "envs").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "torch" for n in names), source


def test_generating_demonstrations_says_how_far_it_got_and_stays_quiet_about_sampling(monkeypatch, capsys):
    import runner.console

    monkeypatch.setattr(runner.console, "PULSE_SECONDS", 0.0)  # a progress line at every episode
    demos = generate(EASY, "bot", episodes=4, seed=0)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if "generating" in line]
    assert [line.split(": ")[1].split()[0] for line in lines] == ["1/4", "2/4", "3/4"]
    assert all("episodes/s  ETA" in line for line in lines) and EASY in lines[0]
    assert "Sampling rejected" not in out + err and demos.n_episodes == 4
