"""Model-dependent checks of one resolved grid point: everything knowable without running it.

Layer, head and position in range for the model; vector files present and of the
right length; data the model can read; metrics that fit the model. Torch-free:
checkpoint sizes come from their config.json, weights are never loaded here.
Checks that read demonstrations read them through ``DataAccess``, which never
generates them while compiling a plan.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from runner.metrics import family_problem
from runner.models.sites import HEAD_HOOKS, NotApplicable, SiteError, position_indices, resolve_site
from runner.plan.attribution import attribution_problems
from runner.plan.facts import data_shape, model_sizes, text_tokens, trajectories
from runner.plan.training import demonstrator_problems, train_problems
from runner.spec import resolve_path

Found = Iterator[tuple[tuple, str]]  # (spec path, message)


class DataAccess:
    """How checks read demonstrations: from the cache or files only (``only_cached``), or generating them.

    ``missed`` counts the reads that found nothing because demonstrations were not generated yet.
    """

    def __init__(self, base_dir: str | Path, only_cached: bool):
        self.base_dir, self.only_cached, self.missed = Path(base_dir), only_cached, 0

    def trajectories(self, data: Any, seed: int) -> Any:
        traj = trajectories(data, self.base_dir, seed, only_cached=self.only_cached)
        self.missed += traj is None
        return traj


class Inapplicable(str):
    """A problem that makes a point not applicable (an address its model's layout lacks) rather than wrong.

    In a grid over agents of different layouts (BC and DT), such points are skipped and
    recorded with status not_applicable; where every point has it, the spec is wrong.
    """


def check_point(spec: Any, access: DataAccess) -> Found:
    """Yield (spec path, message) for every model-dependent problem of one resolved point."""
    if spec.kind == "train":
        yield from train_problems(spec, access)
        if spec.data.kind != "env":
            yield from _check_agent_data(spec.data, ("data",), access.base_dir)
        if spec.data.where:
            yield ("data", "trajectories", "where"), ("where selects the samples an intervene spec measures; "
                                                      "a train spec learns from whole episodes")
        return
    if spec.model.kind == "run":  # not expanded: its train run does not exist yet (validate only)
        return
    if spec.model.kind == "transformer":
        c = spec.model.transformer
        if c.d_head is None and c.d_model % c.n_heads:
            yield ("model", "transformer", "n_heads"), (
                f"n_heads ({c.n_heads}) must divide d_model ({c.d_model}), or give d_head")
            return
    try:
        sizes = model_sizes(spec.model, access.base_dir)
    except ValueError as exc:  # a missing or corrupt checkpoint or pretrained model
        yield ("model", spec.model.kind), str(exc)
        return
    if sizes.agent != spec.data.agent_data:
        yield ("data",), ("an agent reads trajectories (data: {trajectories: ...} or {file: ...npz})" if sizes.agent
                          else "a token model reads tokens (data: {tokens: ...}, {random_tokens: ...} or, for a "
                               "pretrained model, {text: [...]})")
        return
    if sizes.agent:
        yield from _check_agent_data(spec.data, ("data",), access.base_dir, measured=True)
        yield from demonstrator_problems(spec.data, access)
        yield from _check_where(spec.data, spec.seed, access)
    else:
        problems = list(_check_tokens(spec.data, ("data",), sizes))
        yield from problems
        if problems and spec.data.kind == "text":  # no length to check positions against
            return
    if spec.intervention is not None:
        yield from _check_intervention(spec.intervention, spec, sizes, access)
        yield from attribution_problems(spec.intervention, spec.metrics, sizes)
    for i, metric in enumerate(spec.metrics):
        problem = family_problem(metric, sizes.agent)
        yield from ((("metrics", i), message) for message in ([problem] if problem else []))
        yield from ((("metrics", i), message) for message in metric.problems(sizes, spec.intervention))
        if getattr(metric, "strings", None) and not sizes.agent:
            yield from _check_strings(metric.strings, ("metrics", i, metric.kind, "strings"), sizes)


def _check_intervention(iv: Any, spec: Any, sizes: Any, access: DataAccess) -> Found:
    """The address exists in the model (hook, layer, head, position) and the kind's own inputs fit."""
    if iv.kind == "path_patch":  # addressed by a sender and a receiver, not a hook
        from runner.plan.path_checks import check_path

        yield from check_path(iv, spec, sizes, Inapplicable)
        yield from _check_source(iv.source, spec, sizes, access)
        return
    try:
        site = resolve_site(iv.hook, iv.layer, sizes)
    except SiteError as exc:
        yield ("intervention", exc.field if exc.field == "hook" or iv.layer is not None else "hook"), str(exc)
        return
    if iv.head is not None:
        if not site.has_heads:
            yield ("intervention", "head"), f"hook {site.name} has no heads; head applies to {', '.join(HEAD_HOOKS)}"
        elif iv.head >= sizes.n_heads:
            yield ("intervention", "head"), (f"head {iv.head} is out of range: the model has {sizes.n_heads} heads "
                                             f"(0..{sizes.n_heads - 1})")
        elif site.short in ("k", "v") and getattr(sizes, "n_kv_heads", None) and iv.head >= sizes.n_kv_heads:
            yield ("intervention", "head"), (f"head {iv.head} is out of range for {site.name}: the model's queries "
                                             f"share {sizes.n_kv_heads} key/value heads (0..{sizes.n_kv_heads - 1})")
    try:
        position_indices(iv.position, data_shape(spec.data, sizes)[1], sizes.roles)
    except NotApplicable as exc:
        yield ("intervention", "position"), Inapplicable(exc)
        return
    except ValueError as exc:
        yield ("intervention", "position"), str(exc)
    if iv.kind == "steer":
        yield from _check_vector(iv, site, sizes, spec, access)
    elif iv.kind == "patch":
        yield from _check_source(iv.source, spec, sizes, access)


def _check_agent_data(data: Any, path: tuple, base_dir: Path, measured: bool = False) -> Found:
    if data.kind == "trajectories":
        from runner.envs.make import check_env

        policy = data.trajectories.policy
        message = check_env(data.trajectories.env, policy if isinstance(policy, str) else None)
        if message:
            yield path + ("trajectories", "env"), message
        if measured and data.trajectories.labels == "bot":
            yield path + ("trajectories", "labels"), ("labels: bot chooses what a behaviour clone learns to predict; "
                                                      "an intervene spec measures the actions taken: leave it out")
        return
    file = resolve_path(data.file, base_dir)
    if not file.is_file():
        yield path + ("file",), f"trajectory file not found: {file}"
        return
    from runner.envs.demos import read_trajectories

    try:
        read_trajectories(file)
    except ValueError as exc:
        yield path + ("file",), str(exc)


def _check_where(data: Any, seed: int, access: DataAccess) -> Found:
    """The data's where names known objects and keeps at least one sample."""
    if not data.where:
        return
    from runner.envs.selection import selected_steps

    traj = access.trajectories(data, seed)
    if traj is None:
        return
    path = ("data", "trajectories", "where")
    try:
        kept = selected_steps(traj, data.where)
    except ValueError as exc:
        yield path, str(exc)
        return
    if not len(kept):
        yield path, f"where {data.where} keeps none of the data's {traj.n_steps} samples"


def _check_tokens(data: Any, path: tuple, sizes: Any) -> Found:
    if data.kind == "text":
        yield from _check_text(data, path + ("text",), sizes)
        return
    _, length = data_shape(data, sizes)
    if length > sizes.n_ctx:
        where = path + (("tokens",) if data.kind == "tokens" else ("random_tokens", "length"))
        yield where, f"sequences of length {length} exceed the model's context n_ctx={sizes.n_ctx}"
    if data.kind == "tokens":
        top = max(max(row) for row in data.tokens)
        if top >= sizes.d_vocab:
            yield path + ("tokens",), f"token id {top} is out of range for d_vocab {sizes.d_vocab}"


def _check_text(data: Any, path: tuple, sizes: Any) -> Found:
    """Text rows tokenize, by the model's own tokenizer, to rows of one length that fit the model."""
    if not hasattr(sizes, "tokenizer"):
        yield path, ("text is tokenized by a pretrained model's tokenizer (model: {pretrained: ...}); this model "
                     "reads token ids: data: {tokens: [[...]]} or {random_tokens: {...}}")
        return
    try:
        rows = text_tokens(data, sizes)
    except ValueError as exc:  # the tokenizer cannot be loaded
        yield path, str(exc)
        return
    lengths = [len(r) for r in rows]
    if len(set(lengths)) > 1:
        common = max(set(lengths), key=lengths.count)
        named = range(len(rows)) if len(rows) <= 6 else [i for i, n in enumerate(lengths) if n != common]
        listed = ", ".join(f"row {i} ({_short(data.text[i])}) has {lengths[i]}" for i in list(named)[:6])
        more = f", and {len(named) - 6} more" if len(named) > 6 else ""
        most = "" if len(rows) <= 6 else f"most rows have {common}; "
        yield path, (f"every row must tokenize to the same number of tokens, BOS included (runner does not pad): "
                     f"{most}{listed}{more}")
        return
    if lengths[0] > sizes.n_ctx:
        yield path, f"rows of {lengths[0]} tokens exceed the model's context n_ctx={sizes.n_ctx}"
    top = max(max(r) for r in rows)
    if top >= sizes.d_vocab:
        yield path, f"the tokenizer gives token id {top}, out of range for the model's d_vocab {sizes.d_vocab}"


def _short(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width - 1] + "…")


def _check_strings(strings: list[str], path: tuple, sizes: Any) -> Found:
    """Each string of a metric's pair is one token of the model's tokenizer."""
    if not hasattr(sizes, "tokenizer"):
        yield path, ("strings name tokens by their text, which needs a pretrained model's tokenizer "
                     "(model: {pretrained: ...}); give this model token ids: tokens: [a, b]")
        return
    from runner.models.pretrained import token_of

    try:
        tok = sizes.tokenizer()
    except ValueError as exc:
        yield path, str(exc)
        return
    for j, text in enumerate(strings):
        try:
            token = token_of(tok, text)
        except ValueError as exc:
            yield path + (j,), f"{exc}: the pair is compared token against token (a leading space is part of a token)"
            continue
        if token >= sizes.d_vocab:
            yield path + (j,), f"{text!r} is token id {token}, out of range for the model's d_vocab {sizes.d_vocab}"


def _check_source(source: Any, spec: Any, sizes: Any, access: DataAccess) -> Found:
    """A patch source must give activations of the same shape as the data."""
    path = ("intervention", "source")
    if source.kind == "same":
        if not sizes.agent:
            yield path, "same: {...} changes an agent's trajectories; a token model's source is tokens"
            return
        yield from _check_same(source.same, path + ("same",), spec, sizes, access)
        return
    if source.agent_data != spec.data.agent_data:
        yield path, "a patch source is the same kind of data as data: (tokens for token models, trajectories for agents)"
        return
    if source.agent_data:
        problems = list(_check_agent_data(source, path, access.base_dir))
        yield from problems
        if not problems:
            ours, theirs = (access.trajectories(d, spec.seed) for d in (spec.data, source))
            if ours is not None and theirs is not None and ours.n_steps != theirs.n_steps:
                yield path, (f"the source has {theirs.n_steps} samples (steps) but data has {ours.n_steps}: patching "
                             "pairs them up sample by sample; use same: {...} for a counterfactual of the same episodes")
        return
    yield from _check_tokens(source, path, sizes)
    if data_shape(source, sizes) != data_shape(spec.data, sizes):
        yield path, (f"the source has shape (batch, length) {data_shape(source, sizes)} but data has "
                     f"{data_shape(spec.data, sizes)}: patching pairs them up sample by sample")


def _check_contrast(contrast: Any, where: tuple, iv: Any, sizes: Any, spec: Any, access: DataAccess) -> Found:
    """Each side reads what the model reads, fits the positions steered, and selects at least one sample."""
    from runner.envs.selection import SELECTIONS, selected_steps, selection_mask

    for side_name in ("positive", "negative"):
        side, path = getattr(contrast, side_name), where + (side_name,)
        if side.kind in SELECTIONS:
            if not sizes.agent:
                yield path, "selections (mission, mission_word, in_view) pick samples of an agent's trajectories"
                continue
            traj = access.trajectories(spec.data, spec.seed)
            if traj is None:
                continue
            try:
                mask = selection_mask(traj, side.kind, side.value)[selected_steps(traj, spec.data.where)]
            except ValueError as exc:
                yield path, str(exc)
                continue
            if not mask.any():
                yield path, f"the selection {side.model_dump()} matches none of the data's {mask.size} samples"
        elif side.agent_data != sizes.agent:
            yield path, "a contrast side is the same kind of data as data: (tokens for token models, trajectories for agents)"
        elif sizes.agent:
            yield from _check_agent_data(side, path, access.base_dir)
        else:
            yield from _check_tokens(side, path, sizes)
            if iv.position != "all":
                try:
                    position_indices(iv.position, data_shape(side, sizes)[1], sizes.roles)
                except ValueError as exc:
                    yield path, f"this side's inputs are shorter than the positions steered: {exc}"


def _check_same(same: Any, path: tuple, spec: Any, sizes: Any, access: DataAccess) -> Found:
    """A counterfactual must change something the agent reads."""
    from runner.envs.vocab import mission_has_word, mission_words_ok

    if same.target_return is not None and not any(r.startswith("R") for r in sizes.roles):
        yield path + ("target_return",), "a behaviour clone reads no return-to-go: changing it changes nothing"
    for word in same.swap_word or []:
        problem = mission_words_ok(word)
        if problem:
            yield path + ("swap_word",), problem
    if same.swap_word and not list(_check_agent_data(spec.data, ("data",), access.base_dir)):
        traj = access.trajectories(spec.data, spec.seed)
        if traj is not None and not any(mission_has_word(str(m), same.swap_word[0]) for m in traj.missions):
            yield path + ("swap_word",), f"no mission of the data contains {same.swap_word[0]!r}: nothing would change"
    if same.edit_cell:
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

        for field, table in (("object", OBJECT_TO_IDX), ("colour", COLOR_TO_IDX)):
            name = getattr(same.edit_cell, field)
            if name is not None and name not in table:
                yield path + ("edit_cell", field), f"unknown {field} {name!r}; valid: {', '.join(table)}"


def _check_vector(iv: Any, site: Any, sizes: Any, spec: Any, access: DataAccess) -> Found:
    try:
        width = site.width(sizes)
    except ValueError as exc:
        yield ("intervention", "hook"), f"cannot steer: {exc}"
        return
    yield from _check_vector_source(iv.vector, ("intervention", "vector"), iv, site, width, sizes, spec, access)


def _check_vector_source(source: Any, where: tuple, iv: Any, site: Any, width: int, sizes: Any, spec: Any,
                         access: DataAccess) -> Found:
    if source.kind == "file":
        yield from _check_vector_file(resolve_path(source.file, access.base_dir), where + ("file",), site, width)
    elif source.kind == "direction":
        yield from _check_direction(source.direction, where + ("direction",), site, width, sizes)
    elif source.kind == "contrast":
        yield from _check_contrast(source.contrast, where + ("contrast",), iv, sizes, spec, access)
    elif source.kind == "random" and not isinstance(source.random.norm, (str, int, float, type(None))):
        like = where + ("random", "norm", "like")
        yield from _check_vector_source(source.random.norm.like, like, iv, site, width, sizes, spec, access)


def _check_vector_file(file: Path, path: tuple, site: Any, width: int) -> Found:
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
        return
    try:
        problem = vector_problem(np.load(file, allow_pickle=False))
    except (OSError, ValueError) as exc:
        problem = f"not a readable .npy file ({exc})"
    if problem:
        yield path, f"{file}: {problem}"


def vector_problem(array: np.ndarray) -> str | None:
    """Why an array cannot be a steering vector (not real numbers, or not finite), or None."""
    if array.dtype.kind not in "fiu":
        return f"holds {array.dtype} values; a vector holds real numbers"
    bad = ~np.isfinite(array.astype(np.float64))
    if bad.any():
        return f"holds {int(bad.sum())} non-finite values (first at index {int(np.argmax(bad))})"
    return None


def _check_direction(direction: Any, path: tuple, site: Any, width: int, sizes: Any) -> Found:
    if width != sizes.d_model:
        yield ("intervention", "hook"), (f"a direction vector lives in the residual stream (d_model {sizes.d_model}); "
                                         f"{site.name} has width {width}")
    if direction.action is not None and not sizes.agent:
        yield path, "action directions need an agent; a token model takes token: ID"
    if direction.token is not None and sizes.agent:
        yield path, "an agent's directions are actions: action: NAME"
    if direction.against is not None and isinstance(direction.against, str) != (direction.action is not None):
        yield path + ("against",), "against names the same kind of choice as the target (an action name, or a token id)"
    for t in direction.ids():
        if t is not None and t >= sizes.d_vocab:
            yield path, f"token id {t} is out of range for d_vocab {sizes.d_vocab}"


def npy_shape(file: Path) -> tuple[int, ...]:
    """The array shape a .npy file declares in its header (the data is not read)."""
    with open(file, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(shape)
