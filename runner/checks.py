"""Model-dependent checks of one resolved grid point: everything knowable without running it.

Layer, head and position in range for the model; vector files present and of the
right length; data the model can read; metrics that fit the model. Torch-free:
checkpoint sizes come from their config.json, weights are never loaded here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from runner.sites import HEAD_HOOKS, Dims, SiteError, agent_roles, position_indices, resolve_site
from runner.spec.models import (CheckpointModel, FileData, RunModel, SameData, Spec, TokensData, TrainSpec,
                                 TrajectoryData, TransformerModel)

METRIC_DIMS = {"logits": ("sample", "vocab"), "probs": ("sample", "vocab"), "logit_diff": ("sample",), "kl": ("sample",)}
METRIC_VARIABLES = {"logits": ("logits",), "probs": ("probs",), "logit_diff": ("logit_diff",), "kl": ("kl",)}
RESULT_VARIABLES = ("status", "error", "point_id")
METRIC_DIMS |= {"restored_fraction": ("sample",), "resid_norm": ("sample", "layer_read"),
                "logit_lens": ("sample", "layer_read", "vocab", "action"),
                "attention": ("sample", "attn_head", "position")}
METRIC_VARIABLES |= {"resid_norm": ("resid_norm",), "logit_lens": ("logit_lens",), "attention": ("attention",)}
METRIC_VARIABLES |= {"restored_fraction": ("restored_fraction", "restored_clean", "restored_source")}
METRIC_DIMS |= {"action_logits": ("sample", "action"), "action_probs": ("sample", "action"), "rollout": ("episode",)}
METRIC_VARIABLES |= {"action_logits": ("action_logits",), "action_probs": ("action_probs",),
                     "rollout": ("return", "success", "episode_length", "action_fraction")}
AGENT_METRICS = ("action_logits", "action_probs", "rollout")
TOKEN_METRICS = ("logits", "probs")

def model_dims(spec: Spec, base_dir: Path | str = ".") -> Dims:
    """The sizes of the spec's model, read from its config without building it."""
    source = spec.model
    if isinstance(source, TransformerModel):
        c = source.transformer
        d_head = c.d_head or (c.d_model // c.n_heads)
        return Dims(c.n_layers, c.d_model, c.n_heads, d_head, c.d_mlp or 4 * c.d_model, c.d_vocab, c.n_ctx, c.attn_only)
    if isinstance(source, CheckpointModel):
        from runner.models.checkpoint import read_config

        c = read_config(resolve_path(source.checkpoint, base_dir))["config"]
        roles = agent_roles(c["architecture"], c["mission_length"], c["context"])
        return Dims(c["n_layers"], c["d_model"], c["n_heads"], c["d_model"] // c["n_heads"],
                    c.get("d_mlp") or 4 * c["d_model"], 7, len(roles), roles=roles)
    raise TypeError(f"unknown model source {type(source).__name__}")


def is_agent(spec: Spec) -> bool:
    """Whether the spec's model is a gridworld agent (a checkpoint) rather than a token model."""
    return isinstance(spec.model, CheckpointModel)


def data_shape(data: Any, spec: Spec, dims: Dims | None = None) -> tuple[int | None, int]:
    """(batch, length) of the model's input; agents read windows of their own n_ctx."""
    if isinstance(data, TokensData):
        return len(data.tokens), len(data.tokens[0])
    if isinstance(data, (TrajectoryData, FileData)):
        return None, (dims or model_dims(spec)).n_ctx
    return data.random_tokens.batch, data.random_tokens.length


def check_point(spec: Any, base_dir: Path) -> Iterator[tuple[tuple, str]]:
    """Yield (spec path, message) for every model-dependent problem of one resolved point."""
    if isinstance(spec, TrainSpec):
        yield from _check_agent_data(spec.data, ("data",), base_dir, spec.seed)
        return
    if isinstance(spec.model, RunModel):  # not expanded: its train run does not exist yet (validate only)
        return
    if isinstance(spec.model, TransformerModel):
        c = spec.model.transformer
        if c.d_head is None and c.d_model % c.n_heads:
            yield ("model", "transformer", "n_heads"), (
                f"n_heads ({c.n_heads}) must divide d_model ({c.d_model}), or give d_head")
            return
    try:
        dims = model_dims(spec, base_dir)
    except ValueError as exc:  # a missing or corrupt checkpoint
        yield ("model", "checkpoint"), str(exc)
        return
    agent_data = isinstance(spec.data, (TrajectoryData, FileData))
    if is_agent(spec) != agent_data:
        yield ("data",), ("an agent reads trajectories (data: {trajectories: ...} or {file: ...npz})" if is_agent(spec)
                          else "a token model reads tokens (data: {tokens: ...} or {random_tokens: ...})")
        return
    if agent_data:
        yield from _check_agent_data(spec.data, ("data",), base_dir, spec.seed)
    else:
        yield from _check_tokens(spec.data, ("data",), dims, spec)
    _, length = data_shape(spec.data, spec, dims)
    if spec.intervention is not None:
        yield from _check_intervention(spec.intervention, spec, dims, length, base_dir)
    for i, metric in enumerate(spec.metrics):
        yield from ((("metrics", i), message) for message in _metric_problems(metric, spec, dims))


def _check_intervention(iv: Any, spec: Any, dims: Dims, length: int, base_dir: Path) -> Iterator[tuple[tuple, str]]:
    """The address exists in the model (hook, layer, head, position) and the kind's own inputs fit."""
    try:
        site = resolve_site(iv.hook, iv.layer, dims)
    except SiteError as exc:
        yield ("intervention", exc.field if exc.field == "hook" or iv.layer is not None else "hook"), str(exc)
        return
    if iv.head is not None:
        if not site.has_heads:
            yield ("intervention", "head"), f"hook {site.name} has no heads; head applies to {', '.join(HEAD_HOOKS)}"
        elif iv.head >= dims.n_heads:
            yield ("intervention", "head"), (f"head {iv.head} is out of range: the model has {dims.n_heads} heads "
                                             f"(0..{dims.n_heads - 1})")
    try:
        position_indices(iv.position, length, dims.roles)
    except ValueError as exc:
        yield ("intervention", "position"), str(exc)
    if iv.kind == "steer":
        yield from _check_vector(iv, site, dims, base_dir, spec)
    elif iv.kind == "patch":
        yield from _check_source(iv.source, spec, dims, base_dir)


def _metric_problems(metric: Any, spec: Any, dims: Dims) -> Iterator[str]:
    """What is wrong with one metric for this model and intervention."""
    agent, iv = is_agent(spec), spec.intervention
    if metric.kind in AGENT_METRICS and not agent:
        yield f"metric {metric.kind!r} measures agents; a token model has logits, probs, logit_diff, kl, restored_fraction"
    if metric.kind in TOKEN_METRICS and agent:
        yield (f"metric {metric.kind!r} measures token models; an agent has action_logits, action_probs, logit_diff, "
               "kl, restored_fraction, rollout")
    for t in getattr(metric, "tokens", None) or []:
        if t >= dims.d_vocab:
            yield f"token id {t} is out of range for d_vocab {dims.d_vocab}"
    if getattr(metric, "actions", None) and not agent:
        yield f"metric {metric.kind!r}: actions name an agent's choices; a token model takes tokens"
    if getattr(metric, "tokens", None) and agent:
        yield f"metric {metric.kind!r}: an agent's choices are actions: [left, right], not tokens"
    if metric.kind == "rollout" and iv is not None and (iv.kind == "patch" or getattr(iv, "method", None) == "resample"):
        yield ("a rollout plays new episodes, so a per-sample reference (patch source, resample) has no sample to "
               "pair with; use steer, scale, or ablate zero / mean")
    for layer, head in getattr(metric, "heads", []):
        if layer >= dims.n_layers:
            yield f"attention layer {layer} is out of range: the model has {dims.n_layers} layers"
        if head >= dims.n_heads:
            yield f"attention head {head} is out of range: the model has {dims.n_heads} heads"
    if metric.kind == "restored_fraction" and getattr(iv, "kind", None) != "patch":
        yield "restored_fraction measures a patch: it needs intervention kind: patch"


def _check_agent_data(data: Any, path: tuple, base_dir: Path, seed: int) -> Iterator[tuple[tuple, str]]:
    if isinstance(data, TrajectoryData):
        from runner.envs.trajectories import check_env

        message = check_env(data.trajectories.env, data.trajectories.policy)
        if message:
            yield path + ("trajectories", "env"), message
    else:
        file = resolve_path(data.file, base_dir)
        if not file.is_file():
            yield path + ("file",), f"trajectory file not found: {file}"
            return
        from runner.envs.trajectories import Trajectories

        try:
            Trajectories.load_npz(file)
        except ValueError as exc:
            yield path + ("file",), str(exc)


def _check_tokens(data: Any, path: tuple, dims: Dims, spec: Spec) -> Iterator[tuple[tuple, str]]:
    _, length = data_shape(data, spec)
    if length > dims.n_ctx:
        where = path + (("tokens",) if isinstance(data, TokensData) else ("random_tokens", "length"))
        yield where, f"sequences of length {length} exceed the model's context n_ctx={dims.n_ctx}"
    if isinstance(data, TokensData):
        top = max(max(row) for row in data.tokens)
        if top >= dims.d_vocab:
            yield path + ("tokens",), f"token id {top} is out of range for d_vocab {dims.d_vocab}"


def _check_source(source: Any, spec: Any, dims: Dims, base_dir: Path) -> Iterator[tuple[tuple, str]]:
    """A patch source must give activations of the same shape as the data."""
    path = ("intervention", "source")
    if isinstance(source, SameData):
        if not is_agent(spec):
            yield path, "same: {...} changes an agent's trajectories; a token model's source is tokens"
            return
        yield from _check_same(source.same, path + ("same",), spec, base_dir, dims)
        return
    if isinstance(source, (TrajectoryData, FileData)) != isinstance(spec.data, (TrajectoryData, FileData)):
        yield path, "a patch source is the same kind of data as data: (tokens for token models, trajectories for agents)"
        return
    if isinstance(source, (TrajectoryData, FileData)):
        problems = list(_check_agent_data(source, path, base_dir, spec.seed))
        yield from problems
        if not problems:
            from runner.sources import load_trajectories

            ours, theirs = (len(load_trajectories(d, base_dir, spec.seed).actions) for d in (spec.data, source))
            if ours != theirs:
                yield path, (f"the source has {theirs} samples (steps) but data has {ours}: patching pairs them up "
                             "sample by sample; use same: {...} for a counterfactual of the same episodes")
        return
    yield from _check_tokens(source, path, dims, spec)
    if data_shape(source, spec) != data_shape(spec.data, spec):
        yield path, (f"the source has shape (batch, length) {data_shape(source, spec)} but data has "
                     f"{data_shape(spec.data, spec)}: patching pairs them up sample by sample")


def _check_contrast(contrast: Any, iv: Any, dims: Dims, base_dir: Path, spec: Any) -> Iterator[tuple[tuple, str]]:
    """Each side reads what the model reads, fits the positions steered, and selects at least one sample."""
    from runner.envs.selection import is_selection, selection_mask

    agent = is_agent(spec)
    for side_name in ("positive", "negative"):
        side, path = getattr(contrast, side_name), ("intervention", "vector", "contrast", side_name)
        if is_selection(side):
            if not agent:
                yield path, "selections (mission, mission_word, in_view) pick samples of an agent's trajectories"
                continue
            from runner.sources import load_trajectories

            try:
                mask = selection_mask(load_trajectories(spec.data, base_dir, spec.seed), side)
            except ValueError as exc:
                yield path, str(exc)
                continue
            if not mask.any():
                yield path, f"the selection {side.model_dump()} matches none of the data's {mask.size} samples"
        elif isinstance(side, (TrajectoryData, FileData)) != agent:
            yield path, "a contrast side is the same kind of data as data: (tokens for token models, trajectories for agents)"
        elif agent:
            yield from _check_agent_data(side, path, base_dir, spec.seed)
        else:
            yield from _check_tokens(side, path, dims, spec)
            if iv.position != "all":
                try:
                    position_indices(iv.position, data_shape(side, spec)[1], dims.roles)
                except ValueError as exc:
                    yield path, f"this side's inputs are shorter than the positions steered: {exc}"


def _check_same(same: Any, path: tuple, spec: Any, base_dir: Path, dims: Dims) -> Iterator[tuple[tuple, str]]:
    """A counterfactual must change something the agent reads."""
    from runner.envs.vocab import mission_words_ok

    if same.target_return is not None and dims.roles is not None and not any(r.startswith("R") for r in dims.roles):
        yield path + ("target_return",), "a behaviour clone reads no return-to-go: changing it changes nothing"
    for word in same.swap_word or []:
        problem = mission_words_ok(word)
        if problem:
            yield path + ("swap_word",), problem
    if same.swap_word and not list(_check_agent_data(spec.data, ("data",), base_dir, spec.seed)):
        from runner.sources import load_trajectories

        missions = load_trajectories(spec.data, base_dir, spec.seed).missions
        if not any(same.swap_word[0] in str(m).replace(",", " ").split() for m in missions):
            yield path + ("swap_word",), f"no mission of the data contains {same.swap_word[0]!r}: nothing would change"
    if same.edit_cell:
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

        for field, table in (("object", OBJECT_TO_IDX), ("colour", COLOR_TO_IDX)):
            name = getattr(same.edit_cell, field)
            if name is not None and name not in table:
                yield path + ("edit_cell", field), f"unknown {field} {name!r}; valid: {', '.join(table)}"


def _check_vector(iv: Any, site: Any, dims: Dims, base_dir: Path, spec: Spec) -> Iterator[tuple[tuple, str]]:
    try:
        width = site.width(dims)
    except ValueError as exc:
        yield ("intervention", "hook"), f"cannot steer: {exc}"
        return
    source = iv.vector
    if hasattr(source, "file"):
        path = ("intervention", "vector", "file")
        file = resolve_path(source.file, base_dir)
        if not file.is_file():
            yield path, f"vector file {'is a directory' if file.is_dir() else 'not found'}: {file}"
            return
        try:
            shape = npy_shape(file)
        except (OSError, ValueError) as exc:
            yield path, f"not a readable .npy file: {file} ({exc})"
            return
        if shape != (width,):
            yield path, f"vector has shape {shape}, but {site.name} needs a vector of length {width}"
    elif hasattr(source, "direction"):
        path = ("intervention", "vector", "direction")
        if width != dims.d_model:
            yield ("intervention", "hook"), f"a direction vector lives in the residual stream (d_model {dims.d_model}); " \
                                            f"{site.name} has width {width}"
        toward, against = source.direction.ids()
        if source.direction.action is not None and not is_agent(spec):
            yield path, "action directions need an agent; a token model takes token: ID"
        if source.direction.token is not None and is_agent(spec):
            yield path, "an agent's directions are actions: action: NAME"
        against_action = isinstance(source.direction.against, str)
        if source.direction.against is not None and against_action != (source.direction.action is not None):
            yield path + ("against",), "against names the same kind of choice as the target (an action name, or a token id)"
        for t in (toward, against):
            if t is not None and t >= dims.d_vocab:
                yield path, f"token id {t} is out of range for d_vocab {dims.d_vocab}"
    elif hasattr(source, "contrast"):
        yield from _check_contrast(source.contrast, iv, dims, base_dir, spec)


def resolve_path(path: str, base_dir: Path | str) -> Path:
    """A spec path resolved against the directory runner was started in."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def npy_shape(file: Path) -> tuple[int, ...]:
    """The array shape a .npy file declares in its header (the data is not read)."""
    with open(file, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(shape)
