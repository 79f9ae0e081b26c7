"""Checks of train points and of trained agents as demonstrators, torch-free (configs are read, never weights).

A train point names its algorithm (``algorithm``, or the older ``model.architecture``) and data that algorithm
learns from: bc and dt learn from trajectories or a file, ppo from an environment. A demonstrator (a
trajectories source whose ``policy`` is an agent) must have been trained on the env it plays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from runner.results.folder import RunFolder
from runner.spec import resolve_path
from runner.spec.kinds import LAYOUT_OF

Found = Iterator[tuple[tuple, str]]  # (spec path, message)


class DemonstratorMissing(ValueError):
    """A demonstrator run that does not exist (yet): ``runner validate`` notes it, ``runner run`` refuses."""


def train_problems(spec: Any, access: Any) -> Found:
    """(spec path, message) for an algorithm that is missing, contradicts model.architecture, or cannot read data
    (the demonstrator included: see ``demonstrator_problems``)."""
    algorithm, architecture = spec.trains, spec.model.architecture
    if algorithm is None:
        yield ("algorithm",), "a train spec names its algorithm: algorithm: bc | dt | ppo"
        return
    if spec.algorithm and architecture and architecture != LAYOUT_OF[spec.algorithm]:
        yield ("model", "architecture"), (f"algorithm {spec.algorithm} trains the {LAYOUT_OF[spec.algorithm]} layout, "
                                          f"not {architecture}; leave model.architecture out (the algorithm "
                                          f"chooses it)")
    kind = spec.data.kind
    if algorithm == "ppo" and kind != "env":
        yield ("data", kind), ("algorithm ppo learns online, in an environment: data: {env: {id: ...}}; "
                               "trajectories and file are demonstrations, for bc and dt")
    elif algorithm != "ppo" and kind == "env":
        yield ("data", "env"), (f"algorithm {algorithm} learns from demonstrations (data: {{trajectories: ...}} or "
                                "{file: ...}); data: {env: ...} is for algorithm ppo")
    if kind == "trajectories" and spec.data.trajectories.labels == "bot" and algorithm != "bc":
        yield ("data", "trajectories", "labels"), (f"labels: bot trains a behaviour clone on the bot's suggestions; "
                                                   f"algorithm {algorithm} learns from the actions taken (a dt, the "
                                                   f"return they earned): leave labels out")
    yield from demonstrator_problems(spec.data, access)
    if kind == "env":
        from runner.envs.make import check_env

        message = check_env(spec.data.env.id)
        if message:
            yield ("data", "env", "id"), message


def demonstrator_folder(policy: Any, base_dir: str | Path) -> Path:
    """The checkpoint folder of a demonstrator ({checkpoint: PATH} or {run: NAME, point: ...}).

    Raises DemonstratorMissing when a named run has no models yet, ValueError when it has several and no point.
    """
    if policy.checkpoint is not None:
        return resolve_path(policy.checkpoint, base_dir)
    models = RunFolder.named(policy.run, Path(base_dir)).models_dir
    found = sorted(p.name for p in models.iterdir() if (p / "config.json").is_file()) if models.is_dir() else []
    if not found:
        raise DemonstratorMissing(f"train run {policy.run!r} has no models yet ({models}); run its train spec first")
    if policy.point is None and len(found) > 1:
        raise ValueError(f"train run {policy.run!r} has {len(found)} models ({', '.join(found[:4])}"
                         f"{', ...' if len(found) > 4 else ''}): choose one with point:")
    name = policy.point or found[0]
    if name not in found:
        raise ValueError(f"train run {policy.run!r} has no model {name!r}; it has {', '.join(found[:8])}")
    return models / name


def demonstrator_problems(data: Any, access: Any) -> Found:
    """Problems of a trajectories source's agent policy: missing, corrupt, or trained on another env.

    ``access`` is the plan's DataAccess: a demonstrator run that does not exist yet while compiling
    (``only_cached``) defers the check (``access.missed``) instead of failing.
    """
    if data.kind != "trajectories" or isinstance(data.trajectories.policy, str):
        return
    from runner.models.checkpoint import read_config

    options, policy = data.trajectories, data.trajectories.policy
    where = ("data", "trajectories", "policy", "checkpoint" if policy.checkpoint is not None else "run")
    try:
        folder = demonstrator_folder(policy, access.base_dir)
        config = read_config(folder)["config"]
    except DemonstratorMissing as exc:
        if access.only_cached:
            access.missed += 1
        else:
            yield where, str(exc)
        return
    except ValueError as exc:  # CheckpointError included
        yield where, str(exc)
        return
    if config["env_id"] != options.env:
        yield where, (f"the agent in {folder} was trained on {config['env_id'] or 'no recorded env'!r}, not on "
                      f"{options.env!r}: a demonstrator plays the env it learned")


def demonstrator_label(options: Any) -> str:
    """How a trajectories source's policy reads in cache labels: bot, random, or the agent and its sampling."""
    policy = options.policy
    if isinstance(policy, str):
        return policy
    name = f"checkpoint {policy.checkpoint}" if policy.checkpoint is not None else f"run {policy.run}"
    name += f" point {policy.point}" if policy.point else ""
    return f"{name} {policy.sampling}" + (f" T={policy.temperature:g}" if policy.sampling == "sample" else "")
