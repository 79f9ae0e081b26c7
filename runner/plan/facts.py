"""Facts about a spec's model and data, known without running anything: sizes, shapes, trajectories. No torch.

The plan checks a spec against these, and a task reads its data through them,
so that both see the same model and the same demonstrations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from runner.ids import file_sha256
from runner.models.sizes import ModelSizes
from runner.results.folder import trajectory_cache
from runner.spec import resolve_path


def model_sizes(source: Any, base_dir: str | Path) -> ModelSizes:
    """The sizes of a spec's model (a transformer config, or a checkpoint's or pretrained model's config.json; no
    weights are read).

    Raises ``CheckpointError`` or ``PretrainedError`` (ValueErrors) for a missing or corrupt model.
    """
    if source.kind == "transformer":
        c = source.transformer
        return ModelSizes.of_transformer(c.n_layers, c.d_model, c.n_heads, c.d_vocab, c.n_ctx, c.d_head, c.d_mlp,
                                         c.attn_only)
    if source.kind == "checkpoint":
        from runner.models.checkpoint import read_config

        return ModelSizes.of_agent(read_config(resolve_path(source.checkpoint, base_dir))["config"])
    if source.kind == "pretrained":
        from runner.models.pretrained import read_sizes

        return read_sizes(pretrained_folder(source, base_dir), source.pretrained)
    raise ValueError(f"a {source.kind} model source names several models: the plan expands it into checkpoints")


def pretrained_folder(source: Any, base_dir: str | Path, weights: bool = False) -> Path:
    """The local folder of a pretrained model source: its own folder, or a hub snapshot (see ``models.pretrained``).

    Raises ``PretrainedError`` (a ValueError) saying why there is none. With ``weights`` the snapshot must hold them.
    """
    from runner.models.pretrained import locate

    return locate(source.pretrained, resolve_path(source.pretrained, base_dir), weights)


def text_tokens(data: Any, sizes: ModelSizes) -> list[list[int]]:
    """Token ids of each row of a text source, by the pretrained model's tokenizer (rows may differ in length)."""
    if not hasattr(sizes, "tokenizer"):
        raise ValueError("text is tokenized by a pretrained model's tokenizer; this model reads token ids")
    from runner.models.pretrained import encode

    return encode(sizes.tokenizer(), data.text)


def data_shape(data: Any, sizes: ModelSizes) -> tuple[int | None, int]:
    """(batch, length) of what the model reads; agents read windows of their own length (batch: one per step).

    Text rows that tokenize to different lengths give the longest (the checks refuse them).
    """
    if data.kind == "tokens":
        return len(data.tokens), len(data.tokens[0])
    if data.kind == "text":
        rows = text_tokens(data, sizes)
        return len(rows), max(len(r) for r in rows)
    if data.kind == "random_tokens":
        return data.random_tokens.batch, data.random_tokens.length
    return None, sizes.n_ctx


def trajectories(data: Any, base_dir: str | Path, default_seed: int, only_cached: bool = False) -> Any:
    """The demonstrations a data source names: generated once and cached, or read from an .npz.

    With ``only_cached``, generated demonstrations that are not cached yet give None (nothing is generated
    or written: ``runner validate`` and ``runner plan`` write nothing).
    """
    from runner.envs.demos import demonstrations, read_trajectories

    if data.kind == "file":
        return read_trajectories(resolve_path(data.file, base_dir))
    t = data.trajectories
    seed = default_seed if t.seed is None else t.seed
    if isinstance(t.policy, str):
        return demonstrations(t.env, t.policy, t.episodes, seed, t.max_steps, t.epsilon, trajectory_cache(base_dir),
                              only_cached=only_cached, labels=t.labels == "bot")
    from runner.plan.training import DemonstratorMissing, demonstrator_folder

    try:
        folder = demonstrator_folder(t.policy, base_dir)
    except DemonstratorMissing:
        if only_cached:
            return None
        raise
    return demonstrations(t.env, agent_policy_key(t.policy, folder), t.episodes, seed, t.max_steps, t.epsilon,
                          trajectory_cache(base_dir), only_cached=only_cached,
                          player=lambda first_seed: _agent_player(t.policy, folder, first_seed))


def agent_policy_key(policy: Any, folder: Path) -> str:
    """A demonstrator agent as the cache key knows it: the digest of its weights and config, and its sampling."""
    digest = "".join(file_sha256(folder / name)[:16] for name in ("config.json", "model.safetensors"))
    return f"agent {digest} {policy.sampling}" + (f" T={policy.temperature!r}" if policy.sampling == "sample" else "")


def _agent_player(policy: Any, folder: Path, first_seed: int) -> Any:
    """The BatchPolicy of a demonstrator agent: greedy, or sampling seeded by each episode's env seed."""
    from runner.models.checkpoint import load_agent
    from runner.models.policy import AgentPolicy, SampledPolicy

    agent = load_agent(folder)
    return AgentPolicy(agent) if policy.sampling == "greedy" else SampledPolicy(agent, first_seed, policy.temperature)


def token_array(data: Any, d_vocab: int, default_seed: int, sizes: ModelSizes | None = None) -> np.ndarray:
    """Token ids [batch, length] int64 of a tokens, random_tokens (numpy-seeded, so portable) or text source
    (text: tokenized by the pretrained model ``sizes`` describes)."""
    if data.kind == "tokens":
        return np.asarray(data.tokens, dtype=np.int64)
    if data.kind == "text":
        return np.asarray(text_tokens(data, sizes), dtype=np.int64)
    opts = data.random_tokens
    rng = np.random.default_rng(default_seed if opts.seed is None else opts.seed)
    return rng.integers(0, d_vocab, size=(opts.batch, opts.length), dtype=np.int64)


def sample_coords(spec: Any, base_dir: str | Path) -> dict[str, np.ndarray]:
    """Where each sample of a point's data came from, as coordinates on ``sample``.

    Agents: the episode, its timestep, env seed and mission, and the action demonstrated
    there. Token models: the sequence (row of the data) and its last token, whose next-token
    distribution the metrics read.
    """
    data = spec.data
    if data.agent_data:
        from runner.envs.actions import ACTIONS
        from runner.envs.selection import selected_steps

        traj = trajectories(data, base_dir, spec.seed)
        steps = selected_steps(traj, data.where)
        episode = traj.episode_of_step[steps]
        return {"sample_episode": episode, "sample_timestep": traj.timesteps()[steps],
                "sample_env_seed": traj.env_seeds[episode].astype(np.int64),
                "sample_mission": traj.missions[episode].astype(object),
                "sample_action": np.array(ACTIONS, dtype=object)[traj.actions[steps].astype(np.int64)]}
    sizes = model_sizes(spec.model, base_dir)
    tokens = token_array(data, sizes.d_vocab, spec.seed, sizes)
    return {"sample_sequence": np.arange(len(tokens)), "sample_last_token": tokens[:, -1]}


def inputs_read(spec: Any, base_dir: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """What a point reads besides its spec: files (path -> sha256) and generated demonstrations (what -> cache key).

    Both go into the point's content id, so that a file rewritten in place, or demonstrations
    generated by another minigrid, make the point run again. Paths are as the spec resolves them,
    relative to ``base_dir`` when inside it. Files that do not exist are left out (the checks say so).
    """
    from runner.envs.demos import cache_key

    files: dict[str, str] = {}
    generated: dict[str, str] = {}
    paths = []
    if spec.kind == "intervene" and spec.model.kind == "checkpoint":
        folder = resolve_path(spec.model.checkpoint, base_dir)
        paths += [folder / "config.json", folder / "model.safetensors"]
    if spec.kind == "intervene" and spec.model.kind == "pretrained":
        from runner.models.pretrained import model_files

        try:
            paths += model_files(pretrained_folder(spec.model, base_dir))
        except ValueError:  # no such model: the checks say so
            pass
    for data in _data_sources(spec):
        if data.kind == "file":
            paths.append(resolve_path(data.file, base_dir))
        elif data.kind == "trajectories":
            t = data.trajectories
            seed = spec.seed if t.seed is None else t.seed
            policy = t.policy
            if not isinstance(policy, str):
                folder = _demonstrator_or_none(policy, base_dir)
                if folder is None or not (folder / "model.safetensors").is_file():
                    continue  # the checks say why (or wait for its run)
                paths += [folder / "config.json", folder / "model.safetensors"]
                policy = agent_policy_key(policy, folder)
            generated[f"{t.env} {policy} x{t.episodes} seed {seed}"] = cache_key(t.env, policy, t.episodes, seed,
                                                                                t.max_steps, t.epsilon)
    paths += [resolve_path(v.file, base_dir) for v in vector_sources(spec) if v.kind == "file"]
    for path in paths:
        if path.is_file():
            files[_label(path, base_dir)] = file_sha256(path)
    return files, generated


def _demonstrator_or_none(policy: Any, base_dir: str | Path) -> Path | None:
    from runner.plan.training import demonstrator_folder

    try:
        return demonstrator_folder(policy, base_dir)
    except ValueError:
        return None


def vector_sources(spec: Any) -> list[Any]:
    """The steering vector sources a spec reads: its vector, and the one a random vector takes its norm from."""
    iv = getattr(spec, "intervention", None)
    if iv is None or iv.kind != "steer":
        return []
    sources = [iv.vector]
    norm = iv.vector.random.norm if iv.vector.kind == "random" else None
    if norm is not None and not isinstance(norm, (str, int, float)):
        sources.append(norm.like)
    return sources


def _data_sources(spec: Any) -> list[Any]:
    """Every data source a spec reads: its data, a patch source, the sides of a contrast."""
    sources = [spec.data]
    iv = getattr(spec, "intervention", None)
    if iv is not None and iv.kind in ("patch", "path_patch"):
        sources.append(iv.source)
    for vector in vector_sources(spec):
        if vector.kind == "contrast":
            sources += [vector.contrast.positive, vector.contrast.negative]
    return sources


def _label(path: Path, base_dir: str | Path) -> str:
    """The path as the spec names it (symlinks not followed: a worker opens that name), relative to the project."""
    path = Path(os.path.normpath(os.path.abspath(path)))
    try:
        return str(path.relative_to(Path(base_dir).resolve()))
    except ValueError:
        return str(path)
