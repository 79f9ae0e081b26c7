"""PPO behind ``kind: train`` specs with ``algorithm: ppo``, in the order it happens (as CleanRL's ``ppo.py``).

Build the environments and the agent (the same TransformerLens body as a behaviour clone: instruction, then
S A per step, the action read at the current state token, plus a value head beside the unembedding). Then per
update: collect a rollout of ``num_steps`` steps in ``num_envs`` environments, compute advantages (GAE),
optimise the clipped objective with an entropy bonus for ``update_epochs`` passes over minibatches, log, and
evaluate now and then. Finally evaluate on unseen env seeds, as BC and DT agents are.

Differences from CleanRL, each for a reason: the environments are runner's own batch (MiniGrid envs stepped
in a loop, reset with seeds in order) so that a rollout is deterministic and the observation is runner's
encoding; the policy reads a window of ``context`` timesteps, so each stored transition keeps its window.
Like CleanRL, a truncated episode counts as done (no bootstrapping from the cut).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from runner.console import Pulse, say
from runner.envs.encoding import OBS_ACTIVE, observation_indices
from runner.envs.episodes import rollout
from runner.envs.make import make_env, quiet
from runner.envs.vocab import encode_mission, tokenize
from runner.models.agent import Agent, AgentInputs
from runner.spec import TrainSpec
from runner.train import deterministic, eval_policy, evaluate, sized_config

# What a PPO run's dataset holds per update (dim ``update``), beside the evaluation's variables over ``episode``.
CURVE = {
    "env_steps": ("environment steps taken by the end of the update", "steps"),
    "train_return": ("mean return of the training episodes that ended in the update's rollout (NaN: none did)", ""),
    "train_success": ("fraction of the training episodes ending in the rollout that reached the goal (NaN: none "
                      "ended)", "1"),
    "train_episode_length": ("mean length of the training episodes ending in the rollout (NaN: none ended)", "steps"),
    "policy_loss": ("clipped surrogate policy loss, last minibatch mean over the update", ""),
    "value_loss": ("value loss (0.5 * squared error, clipped as clip_vloss says), mean over the update", ""),
    "entropy": ("policy entropy, mean over the update's minibatches", "nats"),
    "approx_kl": ("approximate KL(old || new) of the last epoch, ((ratio - 1) - log ratio).mean()", "nats"),
    "clip_fraction": ("fraction of transitions whose ratio was clipped, mean over the update", "1"),
    "explained_variance": ("1 - Var(returns - values) / Var(returns) of the rollout", "1"),
    "learning_rate": ("learning rate of the update (ppo.lr, annealed)", ""),
}


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, next_value: np.ndarray,
        gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, returns) [T, N] by generalised advantage estimation over a rollout of T steps in N envs.

    ``rewards[t]``, ``values[t]`` and ``dones[t]`` belong to the transition at step t (``dones[t]``: its episode
    ended there, so nothing after it is bootstrapped); ``next_value`` [N] is the value of the state after the
    last step. returns = advantages + values (the value target).

    >>> adv, ret = gae(np.array([[0.0], [1.0]]), np.array([[0.5], [0.5]]), np.array([[0.0], [1.0]]),
    ...                np.array([9.0]), gamma=0.9, gae_lambda=0.5)
    >>> [round(float(a), 6) for a in adv.ravel()]   # step 1: 1 - 0.5; step 0: (0.9 * 0.5 - 0.5) + 0.9 * 0.5 * 0.5
    [0.175, 0.5]
    """
    advantages = np.zeros_like(values, dtype=np.float64)
    last = np.zeros(values.shape[1], dtype=np.float64)
    following = np.asarray(next_value, dtype=np.float64)
    for t in reversed(range(len(rewards))):
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * gae_lambda * alive * last
        advantages[t] = last
        following = values[t]
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


class Envs:
    """``n`` MiniGrid envs stepped together; an episode that ends is reset at once with the next env seed."""

    def __init__(self, env_id: str, n: int, seed: int, max_steps: int | None):
        self.envs = [make_env(env_id) for _ in range(n)]
        self.next_seed, self.max_steps = seed, max_steps
        self.limits = np.zeros(n, np.int64)  # BabyAI levels size max_steps when they reset
        self.images = np.zeros((n, 7, 7, 3), np.uint8)
        self.directions = np.zeros(n, np.int64)
        self.missions = [""] * n
        self.lengths, self.returns = np.zeros(n, np.int64), np.zeros(n, np.float64)
        for i in range(n):
            self._reset(i)

    def _reset(self, i: int) -> None:
        with quiet():
            obs, _ = self.envs[i].reset(seed=self.next_seed)
        self.next_seed += 1
        limit = self.envs[i].max_steps
        self.limits[i] = limit if self.max_steps is None else min(self.max_steps, limit)
        self.images[i], self.directions[i], self.missions[i] = obs["image"], obs["direction"], str(obs["mission"])
        self.lengths[i], self.returns[i] = 0, 0.0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Rewards [n], dones [n] (terminated, truncated or at the limit) and (return, length) of each episode ended."""
        rewards, dones, ended = np.zeros(len(self.envs), np.float32), np.zeros(len(self.envs), np.float32), []
        for i, env in enumerate(self.envs):
            with quiet():
                obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            self.lengths[i] += 1
            self.returns[i] += reward
            rewards[i] = reward
            self.images[i], self.directions[i] = obs["image"], obs["direction"]
            if terminated or truncated or self.lengths[i] >= self.limits[i]:
                dones[i] = 1.0
                ended.append((float(self.returns[i]), int(self.lengths[i])))
                self._reset(i)
        return rewards, dones, ended


class Windows:
    """Each env's window of the last ``context`` timesteps, as a behaviour clone reads it (see AgentInputs)."""

    def __init__(self, n: int, context: int, mission_length: int):
        self.mission = np.zeros((n, mission_length), np.int64)
        self.obs = np.zeros((n, context, OBS_ACTIVE), np.int16)
        self.actions = np.zeros((n, context), np.int64)
        self.timesteps = np.zeros((n, context), np.int64)
        self.valid = np.zeros((n, context), bool)
        self.t = np.zeros(n, np.int64)

    def start(self, rows: np.ndarray, missions: list[str]) -> None:
        """New episodes in ``rows``: empty windows and their instructions (cut to the agent's mission length)."""
        for r in rows:
            ids = encode_mission(missions[r])[: self.mission.shape[1]]
            self.mission[r] = 0
            self.mission[r, : len(ids)] = ids
        for array in (self.obs, self.actions, self.timesteps, self.valid, self.t):
            array[rows] = 0

    def observe(self, images: np.ndarray, directions: np.ndarray) -> None:
        """Every env's current observation becomes the last timestep of its window."""
        for array, value in ((self.obs, observation_indices(images, directions)), (self.timesteps, self.t),
                             (self.valid, True), (self.actions, 0)):
            array[:] = np.roll(array, -1, axis=1)
            array[:, -1] = value

    def act(self, actions: np.ndarray) -> None:
        self.actions[:, -1] = actions
        self.t += 1

    def snapshot(self) -> tuple[np.ndarray, ...]:
        return tuple(a.copy() for a in (self.mission, self.obs, self.actions, self.timesteps, self.valid))


def inputs_of(mission: np.ndarray, obs: np.ndarray, actions: np.ndarray, timesteps: np.ndarray,
              valid: np.ndarray, device: str) -> AgentInputs:
    """AgentInputs of stored windows (any leading shape is flattened into the batch)."""
    k = obs.shape[-2]
    as_tensor = torch.from_numpy
    return AgentInputs(as_tensor(mission.reshape(-1, mission.shape[-1])),
                       as_tensor(obs.reshape(-1, k, OBS_ACTIVE).astype(np.int64)),
                       as_tensor(actions.reshape(-1, k)), torch.zeros(actions.reshape(-1, k).shape),
                       as_tensor(timesteps.reshape(-1, k)), as_tensor(valid.reshape(-1, k))).to(device)


def build_agent(spec: TrainSpec, point_seed: int, device: str) -> Agent:
    """The agent a PPO point trains: sized to the env's instructions and episode limit; near-uniform at first."""
    env_opts = spec.data.env
    env = make_env(env_opts.id)
    with quiet():
        missions = [str(env.reset(seed=env_opts.seed + i)[0]["mission"]) for i in range(256)]
    longest = env.max_steps if env_opts.max_steps is None else min(env.max_steps, env_opts.max_steps)
    config = sized_config(spec, max(len(tokenize(m)) for m in missions), longest + 1, env_opts.id, point_seed,
                          value_head=True)
    agent = Agent(config)
    with torch.no_grad():  # CleanRL's actor head starts at 0.01 of its scale: every action about equally likely
        agent.body.unembed.original_component.weight.mul_(0.01)
    return agent.to(device)


def train_ppo(spec: TrainSpec, point_seed: int, base_dir: str = ".", device: str = "cpu",
              label: str = "") -> tuple[xr.Dataset, Agent]:
    """Train one PPO agent; returns (the learning curve over update and the evaluation over episode, the agent).

    The same contract as ``runner.train.train_point``: deterministic on a given machine (seeded envs, init,
    sampling and minibatch order, torch's deterministic algorithms); ``base_dir`` is unused (no files read).
    """
    with deterministic():
        return _train_ppo(spec, point_seed, device, label)


def _train_ppo(spec: TrainSpec, point_seed: int, device: str, label: str) -> tuple[xr.Dataset, Agent]:
    torch.manual_seed(point_seed)
    opts = spec.ppo
    agent = build_agent(spec, point_seed, device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=opts.lr, eps=1e-5)
    envs = Envs(spec.data.env.id, opts.num_envs, spec.data.env.seed, spec.data.env.max_steps)
    windows = Windows(opts.num_envs, agent.config.context, agent.config.mission_length)
    windows.start(np.arange(opts.num_envs), envs.missions)
    windows.observe(envs.images, envs.directions)
    sampler = torch.Generator().manual_seed(point_seed)
    shuffler = np.random.default_rng(point_seed)
    curve: dict[str, list[float]] = {name: [] for name in CURVE}
    evaluations: list[tuple[int, float, float]] = []
    pulse = Pulse()
    for update in range(1, opts.updates + 1):
        lr = opts.lr * (1.0 - (update - 1) / opts.updates) if opts.anneal_lr else opts.lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch, ended = collect(agent, envs, windows, opts, sampler, device)
        stats = optimise(agent, optimizer, batch, opts, shuffler, device)
        _log(curve, stats, ended, update * opts.batch_size, lr, batch)
        if opts.eval_every and (update % opts.eval_every == 0 or update == opts.updates):
            evaluations.append((update, *_evaluate_now(agent, spec, device)))
        if pulse.due():
            say(f"  train {label or spec.name}: update {update}/{opts.updates}  return {curve['train_return'][-1]:.2f}"
                f"  success {curve['train_success'][-1]:.2f}  "
                f"{pulse.pace(update * opts.batch_size, opts.updates * opts.batch_size, 'steps')}")
    agent.eval()
    ds = curve_dataset(curve, evaluations)
    if spec.eval.episodes:
        ds = ds.merge(evaluate(agent, spec, agent.config, device))
    return ds, agent


def collect(agent: Agent, envs: Envs, windows: Windows, opts: Any, sampler: torch.Generator,
            device: str) -> tuple[dict[str, np.ndarray], list[tuple[float, int]]]:
    """One rollout: each step's windows, actions, log-probabilities, values, rewards and dones, then GAE."""
    steps: dict[str, list[Any]] = {k: [] for k in ("windows", "actions", "logprobs", "values", "rewards", "dones")}
    ended: list[tuple[float, int]] = []
    agent.eval()
    for _ in range(opts.num_steps):
        stored = windows.snapshot()
        with torch.no_grad():
            logits, value = agent.policy_and_value(inputs_of(*stored, device))
            logp = torch.log_softmax(logits.float().cpu(), -1)
            action = torch.multinomial(logp.exp(), 1, generator=sampler)[:, 0]
        actions = action.numpy()
        windows.act(actions)
        rewards, dones, finished = envs.step(actions)
        ended += finished
        windows.start(np.flatnonzero(dones), envs.missions)
        windows.observe(envs.images, envs.directions)
        for key, value_ in zip(steps, (stored, actions, logp.gather(1, action[:, None])[:, 0].numpy(),
                                       value.float().cpu().numpy(), rewards, dones)):
            steps[key].append(value_)
    with torch.no_grad():
        _, next_value = agent.policy_and_value(inputs_of(*windows.snapshot(), device))
    batch = {k: np.stack(v) for k, v in steps.items() if k != "windows"}
    batch["windows"] = tuple(np.stack(parts) for parts in zip(*steps["windows"]))
    batch["advantages"], batch["returns"] = gae(batch["rewards"], batch["values"], batch["dones"],
                                                next_value.float().cpu().numpy(), opts.gamma, opts.gae_lambda)
    return batch, ended


def optimise(agent: Agent, optimizer: torch.optim.Optimizer, batch: dict[str, Any], opts: Any,
             shuffler: np.random.Generator, device: str) -> dict[str, float]:
    """``update_epochs`` passes over the rollout in minibatches: clipped surrogate, value loss, entropy bonus."""
    n = opts.batch_size
    flat = {k: torch.from_numpy(batch[k].reshape(n)).to(device) for k in ("actions", "logprobs", "values",
                                                                            "advantages", "returns")}
    windows = [w.reshape(n, *w.shape[2:]) for w in batch["windows"]]
    size, sums, count = n // opts.num_minibatches, {"value_loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0}, 0
    agent.train()
    for _ in range(opts.update_epochs):
        order = shuffler.permutation(n)
        kls = []
        for start in range(0, n, size):
            idx = order[start:start + size]
            terms = _losses(agent, inputs_of(*(w[idx] for w in windows), device),
                            {k: v[torch.from_numpy(idx)] for k, v in flat.items()}, opts)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), opts.max_grad_norm)
            optimizer.step()
            kls.append(float(terms["approx_kl"]))
            for key in sums:
                sums[key] += float(terms[key])
            count += 1
        if opts.target_kl is not None and np.mean(kls) > opts.target_kl:
            break
    return {**{k: v / count for k, v in sums.items()}, "policy_loss": float(terms["policy_loss"]),
            "approx_kl": float(np.mean(kls))}


def _losses(agent: Agent, inputs: AgentInputs, mb: dict[str, torch.Tensor], opts: Any) -> dict[str, torch.Tensor]:
    """CleanRL's loss terms on one minibatch; ``loss`` = policy - ent_coef * entropy + vf_coef * value."""
    logits, value = agent.policy_and_value(inputs)
    logp = torch.log_softmax(logits, -1)
    newlogprob = logp.gather(1, mb["actions"][:, None])[:, 0]
    entropy = -(logp.exp() * logp).sum(-1).mean()
    logratio = newlogprob - mb["logprobs"]
    ratio = logratio.exp()
    adv = mb["advantages"]
    if opts.norm_adv and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - opts.clip_coef, 1 + opts.clip_coef)).mean()
    if opts.clip_vloss:
        clipped = mb["values"] + (value - mb["values"]).clamp(-opts.clip_coef, opts.clip_coef)
        value_loss = 0.5 * torch.max((value - mb["returns"]) ** 2, (clipped - mb["returns"]) ** 2).mean()
    else:
        value_loss = 0.5 * ((value - mb["returns"]) ** 2).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - logratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > opts.clip_coef).float().mean()
    loss = policy_loss - opts.ent_coef * entropy + opts.vf_coef * value_loss
    return {"loss": loss, "policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
            "entropy": entropy.detach(), "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def _log(curve: dict[str, list[float]], stats: dict[str, float], ended: list[tuple[float, int]], env_steps: int,
         lr: float, batch: dict[str, Any]) -> None:
    returns = np.array([r for r, _ in ended])
    var = float(np.var(batch["returns"]))
    row = {**stats, "env_steps": env_steps, "learning_rate": lr,
           "train_return": float(returns.mean()) if ended else np.nan,
           "train_success": float((returns > 0).mean()) if ended else np.nan,
           "train_episode_length": float(np.mean([n for _, n in ended])) if ended else np.nan,
           "explained_variance": np.nan if var == 0 else 1 - float(np.var(batch["returns"] - batch["values"])) / var}
    for name in curve:
        curve[name].append(row[name])


def _evaluate_now(agent: Agent, spec: TrainSpec, device: str) -> tuple[float, float]:
    """Success and mean return over ``ppo.eval_episodes`` episodes from ``eval.seed`` on, played as eval.sampling."""
    agent.eval()
    result = rollout(agent.config.env_id, eval_policy(agent, spec, device), spec.ppo.eval_episodes, spec.eval.seed,
                     spec.eval.max_steps)
    return float(result["success"].mean()), float(result["return"].mean())


def curve_dataset(curve: dict[str, list[float]], evaluations: list[tuple[int, float, float]]) -> xr.Dataset:
    """The learning curve over ``update`` (and periodic evaluations over ``eval_update``) as a Dataset."""
    updates = np.arange(1, len(curve["env_steps"]) + 1, dtype=np.int64)
    data = {name: ("update", np.array(values, dtype=np.int64 if name == "env_steps" else np.float32),
                   {"long_name": CURVE[name][0], **({"units": CURVE[name][1]} if CURVE[name][1] else {})})
            for name, values in curve.items()}
    ds = xr.Dataset(data, coords={"update": updates})
    if evaluations:
        at, success, returns = (np.array(v) for v in zip(*evaluations))
        during = "during training (ppo.eval_episodes from eval.seed, played as eval.sampling)"
        ds["eval_success"] = ("eval_update", success.astype(np.float32), {"long_name": f"success {during}"})
        ds["eval_return"] = ("eval_update", returns.astype(np.float32), {"long_name": f"mean return {during}"})
        ds = ds.assign_coords(eval_update=at.astype(np.int64))
    return ds


__all__ = ["train_ppo", "gae", "Envs", "Windows", "collect", "optimise", "curve_dataset", "CURVE"]
