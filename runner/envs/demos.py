"""Demonstrations: episodes played by the BabyAI bot or a random policy, cached by content.

``demonstrations`` is the one way runner obtains generated trajectories: from
``cache_dir/<key>.npz`` when they were made before, else generated and stored
there (unless ``only_cached``: ``runner validate`` never generates). ``read_trajectories`` reads an
``.npz`` once per process while the file is unchanged.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runner.console import Pulse
from runner.envs.actions import N_ACTIONS
from runner.envs.trajectories import FORMAT_VERSION, Trajectories

_READ: dict[tuple[str, int, int], Trajectories] = {}


def read_trajectories(path: str | Path) -> Trajectories:
    """The trajectories in an ``.npz``, read and validated once per process while the file is unchanged."""
    path = Path(path)
    if not path.is_file():
        return Trajectories.load_npz(path)  # raises the located "no such file" message
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _READ:
        _READ[key] = Trajectories.load_npz(path)
    return _READ[key]


Epsilon = float | list[float]  # one noise level, or one per episode in turn (graded noise)


def cache_key(env_id: str, policy: str, episodes: int, seed: int, max_steps: int | None,
              epsilon: Epsilon) -> str:
    """The content hash naming a generated dataset (arguments, FORMAT_VERSION, minigrid version)."""
    levels = _levels(epsilon)
    noise = levels[0] if len(levels) == 1 else levels  # epsilon: [0.25] plays as epsilon: 0.25 does
    payload = {"env_id": env_id, "policy": policy, "episodes": int(episodes), "seed": int(seed),
               "max_steps": None if max_steps is None else int(max_steps), "epsilon": noise,
               "format": FORMAT_VERSION, "minigrid": importlib.metadata.version("minigrid")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _levels(epsilon: Epsilon) -> list[float]:
    """The noise levels episodes take in turn: one, unless ``epsilon`` is a list."""
    return [float(e) for e in epsilon] if isinstance(epsilon, (list, tuple)) else [float(epsilon)]


def demonstrations(env_id: str, policy: str, episodes: int, seed: int, max_steps: int | None, epsilon: Epsilon,
                   cache_dir: str | Path, only_cached: bool = False,
                   player: Callable[[int], Any] | None = None, labels: bool = False) -> Trajectories | None:
    """Generated trajectories from the cache, else generated and stored there (None if ``only_cached``).

    ``player``, given the first env seed, makes the BatchPolicy that plays (a trained agent); ``policy``
    then names it in the cache key, and must hold the digest of its weights. A damaged cache file (a disk
    filled mid-write elsewhere), or one from before the bot's labels were recorded when ``labels`` asks
    for them, is generated again and replaced.
    """
    path = Path(cache_dir) / f"{cache_key(env_id, policy, episodes, seed, max_steps, epsilon)}.npz"
    if path.is_file():
        try:
            cached = read_trajectories(path)
            if cached.labels is not None or not labels:
                return cached
        except ValueError:
            pass
    if only_cached:
        return None
    # the runner logger shows it on the terminal (unless -q) and keeps it in the run's run.log
    logging.getLogger(__name__).info(f"  generating {episodes} {env_id} episodes with the {policy} policy "
                                     f"(cached in {cache_dir})")
    if player is not None:
        demos = play(env_id, player(seed), episodes, seed, max_steps)
    else:
        demos = generate(env_id, policy, episodes, seed, max_steps, epsilon)
    demos.save_npz(path)
    return demos


def _episode(env: Any, policy: str, env_seed: int, max_steps: int | None,
             epsilon: float, salt: int) -> dict[str, Any] | None:
    """One episode's arrays, or None if the bot raised (it gives up on rare layouts)."""
    from minigrid.utils.baby_ai_bot import BabyAIBot

    from runner.envs.make import quiet

    rng = np.random.default_rng([env_seed, salt])  # not env_seed alone: that is the env's own stream
    with quiet():
        obs, _ = env.reset(seed=env_seed)
    limit = env.max_steps if max_steps is None else min(max_steps, env.max_steps)
    images, directions, actions, rewards, labels = [], [], [], [], []
    bot, replaced = None, None
    for _ in range(limit):
        images.append(obs["image"])
        directions.append(obs["direction"])
        if policy == "random":
            action = suggested = int(rng.integers(N_ACTIONS))  # no expert: labels are not kept
        else:
            try:
                bot = bot or BabyAIBot(env)
                # None tells the bot its own suggestion was taken; passing the replaced
                # action makes it re-plan (e.g. undo a random toggle) instead.
                suggested = int(bot.replan(replaced))
            except Exception:  # noqa: BLE001 - the bot's asserts, DisappearedBoxError: drop it
                return None
            action = int(rng.integers(N_ACTIONS)) if epsilon and rng.random() < epsilon else suggested
            replaced = None if action == suggested else action
        with quiet():
            obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        labels.append(suggested)
        rewards.append(reward)
        if terminated or truncated:
            break
    return {"images": images, "directions": directions, "actions": actions, "rewards": rewards,
            "labels": labels, "mission": obs["mission"], "env_seed": env_seed}


def generate(env_id: str, policy: str, episodes: int, seed: int, max_steps: int | None = None,
             epsilon: Epsilon = 0.0) -> Trajectories:
    """Trajectories of ``episodes`` episodes of ``policy`` ("bot" or "random") on ``env_id``.

    Episode e resets the env with seed ``seed + e``; an episode the bot gives up
    on is dropped and the next seed used, so there are always ``episodes``
    (``env_seeds`` records which). With ``epsilon`` each bot action is replaced by
    a uniformly random one with that probability; a list of them gives episode e
    the noise ``epsilon[e % len(epsilon)]`` (a mix of graded noise, so returns
    spread). ``labels`` records what the bot suggested at every step, whichever
    action was taken. Episodes end when the env
    ends them or after ``max_steps`` steps (None: the env's own limit; rewards
    keep the env's own scale either way). Every episode's play depends only on
    its env seed and the arguments, so a smaller run is a prefix of a larger one.

    >>> demos = generate("BabyAI-GoToRedBallGrey-v0", "bot", episodes=4, seed=0)
    >>> demos.n_episodes, float(demos.success.mean())
    (4, 1.0)
    """
    from runner.envs.make import check_env, make_env  # gymnasium and minigrid: imported when episodes are played

    problem = check_env(env_id, policy)
    if problem:
        raise ValueError(problem)
    noise = _levels(epsilon)
    bad_noise = not noise or not all(0.0 <= e <= 1.0 for e in noise)
    if episodes < 0 or bad_noise or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need episodes >= 0, 0 <= epsilon <= 1 and max_steps >= 1; got "
                         f"episodes={episodes}, epsilon={epsilon}, max_steps={max_steps}")
    env = make_env(env_id)
    played, env_seed, dropped, pulse = [], seed, 0, Pulse()
    while len(played) < episodes:
        if pulse.due() and played:  # the runner logger: on the terminal (unless -q) and in run.log
            logging.getLogger(__name__).info(f"  generating {env_id}: {len(played)}/{episodes} episodes  "
                                             f"{pulse.pace(len(played), episodes, 'episodes')}")
        ep = _episode(env, policy, env_seed, max_steps, noise[len(played) % len(noise)], salt=0x5EED)
        env_seed += 1
        if ep is None:
            dropped += 1
            if dropped > 10 + episodes:
                raise RuntimeError(f"the BabyAI bot gave up on {dropped} layouts of {env_id} "
                                   f"(seeds from {seed}); it cannot solve this level")
            continue
        played.append(ep)
    return _assemble(env_id, played, labels=policy == "bot")


def play(env_id: str, policy: Any, episodes: int, seed: int, max_steps: int | None = None) -> Trajectories:
    """Trajectories of a BatchPolicy (``runner.envs.episodes``; a trained agent) playing all episodes at once.

    Episode e resets its env with seed ``seed + e``; episodes end as in ``generate``.
    """
    from runner.envs.make import make_env, quiet

    envs = [make_env(env_id) for _ in range(episodes)]
    with quiet():
        first = [env.reset(seed=seed + e)[0] for e, env in enumerate(envs)]
    limits = [env.max_steps if max_steps is None else min(max_steps, env.max_steps) for env in envs]
    played = [{"images": [], "directions": [], "actions": [], "rewards": [], "mission": o["mission"],
               "env_seed": seed + e} for e, o in enumerate(first)]
    images = np.stack([o["image"] for o in first])
    directions = np.array([o["direction"] for o in first], dtype=np.int8)
    rewards, live = np.zeros(episodes, dtype=np.float32), np.ones(episodes, dtype=bool)
    policy.reset([str(o["mission"]) for o in first])
    while live.any():
        actions = policy.act(images, directions, rewards, live.copy())
        images, directions, rewards = images.copy(), directions.copy(), rewards.copy()
        for e in np.flatnonzero(live):
            ep = played[e]
            ep["images"].append(images[e].copy())
            ep["directions"].append(directions[e])
            with quiet():
                obs, reward, terminated, truncated, _ = envs[e].step(int(actions[e]))
            ep["actions"].append(int(actions[e]))
            ep["rewards"].append(reward)
            images[e], directions[e], rewards[e] = obs["image"], obs["direction"], reward
            live[e] = not (terminated or truncated or len(ep["actions"]) >= limits[e])
    return _assemble(env_id, played, labels=False)


def _assemble(env_id: str, played: list[dict[str, Any]], labels: bool) -> Trajectories:
    """One Trajectories of the played episodes; ``labels``: keep the bot's suggestions each episode recorded."""
    def steps(key: str, dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
        values = [v for ep in played for v in ep[key]]
        return np.asarray(values, dtype=dtype).reshape(len(values), *shape)

    return Trajectories(
        env_id=env_id, images=steps("images", np.uint8, (7, 7, 3)), directions=steps("directions", np.int8),
        actions=steps("actions", np.int8), rewards=steps("rewards", np.float32),
        episode_lengths=np.array([len(ep["actions"]) for ep in played], dtype=np.int32),
        missions=np.array([ep["mission"] for ep in played], dtype=str),
        env_seeds=np.array([ep["env_seed"] for ep in played], dtype=np.int64),
        labels=steps("labels", np.int8) if labels else None)

