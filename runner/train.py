"""Training behind ``kind: train`` specs, one grid point at a time, in the order it happens:
collect demonstrations, build the agent, then loop (sample windows, step, log), evaluate, save.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Iterator

import numpy as np
import torch
import xarray as xr

from runner.console import Pulse, say
from runner.envs.episodes import RandomPolicy, rollout
from runner.envs.trajectories import Trajectories
from runner.envs.vocab import tokenize
from runner.models.agent import Agent, AgentConfig
from runner.models.policy import AgentPolicy, SampledPolicy
from runner.models.windows import window_labels, windows
from runner.plan.facts import trajectories
from runner.spec import TrainSpec


def agent_config(spec: TrainSpec, traj: Trajectories, point_seed: int) -> AgentConfig:
    """The agent a train point builds, sized to its data (instruction length, episode length)."""
    mission_length = max(len(tokenize(str(x))) for x in traj.missions)
    config = sized_config(spec, mission_length, int(traj.episode_lengths.max()) + 1, traj.env_id, point_seed)
    if config.architecture != "decision_transformer":
        return config
    returns = traj.returns  # targets outside this range ask for a return the agent never saw
    return dataclasses.replace(config, return_range=(float(returns.min()), float(returns.max())))


def sized_config(spec: TrainSpec, mission_length: int, longest: int, env_id: str, point_seed: int,
                 value_head: bool = False) -> AgentConfig:
    """The agent of a train point: the spec's sizes, its algorithm and layout, and the lengths it must read."""
    m = spec.model
    return AgentConfig(
        architecture=spec.layout, n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, context=m.context,
        mission_length=mission_length, max_timestep=max(longest, 256), env_id=env_id, d_mlp=m.d_mlp,
        act_fn=m.act_fn, init_seed=point_seed if m.init_seed is None else m.init_seed, algorithm=spec.trains,
        value_head=value_head,
    )


def train_point(spec: TrainSpec, point_seed: int, base_dir: str, device: str = "cpu",
                label: str = "") -> tuple[xr.Dataset, Agent]:
    """Train one agent; returns (loss over step and evaluation over episode, the trained agent).

    Says a progress line (stderr) every ~10 s (step, loss, rate) tagged with ``label``. Deterministic on a
    given machine: the same spec, seed and torch thread count give a bit-identical agent (seeded init and
    data order, torch's deterministic algorithms); other thread counts or CPUs change the last bits.
    """
    with deterministic():
        return _train(spec, point_seed, base_dir, device, label)


def training_record(point_seed: int, device: str) -> dict[str, Any]:
    """What a checkpoint was trained with, beyond its spec: what bit-identity needs (saved in config.json)."""
    return {"seed": point_seed, "torch_threads": torch.get_num_threads(), "device": device,
            "torch": torch.__version__}


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """torch's deterministic algorithms for the block (warn only where an op has none), as they were after."""
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def _train(spec: TrainSpec, point_seed: int, base_dir: str, device: str, label: str) -> tuple[xr.Dataset, Agent]:
    torch.manual_seed(point_seed)
    rng = np.random.default_rng(point_seed)
    traj = trajectories(spec.data, base_dir, spec.seed)
    config = agent_config(spec, traj, point_seed)
    agent = Agent(config).to(device)
    opt = spec.train
    optimizer = torch.optim.AdamW(agent.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, opt.warmup, opt.steps))
    state_positions = torch.tensor(config.state_positions())
    bot_labels = spec.data.kind == "trajectories" and spec.data.trajectories.labels == "bot"
    steps, losses = [], []
    agent.train()
    pulse = Pulse()
    for step in range(1, opt.steps + 1):
        ends = rng.integers(0, len(traj.actions), size=opt.batch_size)
        batch = windows(traj, ends, config).to(device)
        targets = window_labels(traj, ends, config).to(device) if bot_labels else batch.actions
        logits = agent(batch)[:, state_positions]                       # [B, K, 7]
        loss = torch.nn.functional.cross_entropy(logits[batch.valid], targets[batch.valid])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), opt.grad_clip)
        optimizer.step()
        schedule.step()
        if step % opt.log_every == 0 or step == opt.steps:
            steps.append(step)
            losses.append(float(loss.detach()))
        if pulse.due():
            say(f"  train {label or spec.name}: step {step}/{opt.steps}  loss {float(loss.detach()):.3f}  "
                f"{pulse.pace(step, opt.steps, 'steps')}")
    agent.eval()
    target = "the bot's suggested action" if bot_labels else "the demonstrated action"
    ds = xr.Dataset({"loss": (("step",), np.array(losses, dtype=np.float32),
                              {"long_name": f"training cross-entropy of {target}", "units": "nats"})},
                    coords={"step": np.array(steps, dtype=np.int64)})
    if spec.eval.episodes:
        ds = ds.merge(evaluate(agent, spec, config, device))
    return ds, agent


def evaluate(agent: Agent, spec: TrainSpec, config: AgentConfig, device: str) -> xr.Dataset:
    """Closed-loop episodes of the trained agent on evaluation seeds, beside a random policy's on the same seeds."""
    ev = spec.eval
    result = rollout(config.env_id, eval_policy(agent, spec, device), ev.episodes, ev.seed, ev.max_steps)
    baseline = rollout(config.env_id, RandomPolicy(ev.seed), ev.episodes, ev.seed, ev.max_steps)
    ds = episode_dataset(result)
    ds["random_success"] = ("episode", baseline["success"].astype(np.float32),
                            {"long_name": "a uniformly random policy reached the goal (same env seeds)"})
    ds["random_return"] = ("episode", baseline["return"].astype(np.float32),
                           {"long_name": "a uniformly random policy's return (same env seeds)"})
    return ds


def eval_policy(agent: Agent, spec: TrainSpec, device: str) -> AgentPolicy:
    """How the evaluation plays the agent: greedy, or sampling seeded by each episode's env seed (eval.sampling)."""
    ev = spec.eval
    if ev.sampling == "sample":
        return SampledPolicy(agent, ev.seed, device=device, target_return=ev.target_return)
    return AgentPolicy(agent, ev.target_return, device)


def episode_dataset(result: dict[str, np.ndarray]) -> xr.Dataset:
    """Rollout results as variables over ``episode``."""
    return xr.Dataset(
        {
            "success": (("episode",), result["success"].astype(np.float32), {"long_name": "episode reached its goal"}),
            "return": (("episode",), result["return"].astype(np.float32), {"long_name": "episode return"}),
            "episode_length": (("episode",), result["episode_length"].astype(np.int32), {"units": "steps"}),
        },
        coords={"episode": np.arange(len(result["success"]), dtype=np.int64)},
    )


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


__all__ = ["train_point", "evaluate", "episode_dataset", "agent_config", "sized_config", "deterministic", "eval_policy"]
