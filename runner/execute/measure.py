"""The measure task: a chunk of grid points of an intervene spec -> their records, in few forward passes.

It reads in order: load the model -> clean pass -> edits -> folded passes ->
metrics -> closed loop -> records. Points that share a model, a seed and data
(up to the target return a decision transformer is conditioned on) form a group.
Each distinct input of a group (a *variant*: one per target return of an RTG
scan) runs its clean pass once, the variants stacked into few passes. Each
point's edit applies to its own rows of a folded batch, and a folded pass starts
at the first edited block from the cached clean residual of each point's
variant: earlier blocks never run again. A point that raises is recorded as
failed with its message; the others still finish.
"""
from __future__ import annotations

import functools
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from runner import interventions, metrics
from runner.envs.actions import ACTIONS
from runner.execute import attribution
from runner.execute.fold import MAX_TOKENS, chunks, folded_pass, kv_names
from runner.execute.inputs import batch_size, load_model, make_inputs, stack
from runner.execute.records import Record, Records
from runner.ids import content_id
from runner.metrics.base import reads_all_positions
from runner.metrics.lens import layer_reads
from runner.models.sizes import ModelSizes
from runner.models.transformer import reuses_prefix
from runner.plan.facts import model_sizes, trajectories
from runner.results.folder import vector_file
from runner.spec import resolve_path


@dataclass
class Variant:
    """One input of a group and its clean pass: last-position logits and activations at the group's sites."""

    data: Any
    inputs: Any
    logits: torch.Tensor | None = None
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
    vectors: dict = field(default_factory=dict)


@dataclass
class Group:
    """What the points of a group share: the model, the spec's seed, the sites they read, the variants."""

    model: Any
    sizes: ModelSizes
    base_dir: str
    device: str
    seed: int
    sites: set[str]
    readouts: set[str]         # hooks metrics read at the last position
    variants: dict[str, Variant]
    reuse: bool                # folded passes compute only the positions an edit reaches (see fold.py)
    variant_of: dict[int, str] = field(default_factory=dict)   # point index -> its variant's key
    sequences: set[str] = field(default_factory=set)           # hooks metrics read at every position
    _other: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)
    _keys: dict[int, tuple] = field(default_factory=dict, repr=False)

    @property
    def length(self) -> int:
        inputs = next(iter(self.variants.values())).inputs
        return inputs.shape[1] if isinstance(inputs, torch.Tensor) else self.sizes.n_ctx

    def other_run(self, data: Any, variant: Variant, site: str | None) -> torch.Tensor:
        """Last-position logits (site None) or the activation at ``site`` of another input, cached per task."""
        if id(data) not in self._keys:  # points share their source objects: its content id once per object
            self._keys[id(data)] = (data, content_id(data.model_dump(mode="json")))
        key = (self._keys[id(data)][1], site, id(variant) if data.kind == "same" else None)
        if key not in self._other:
            inputs = make_inputs(data, self.model, self.base_dir, self.seed, self.device, variant.data)
            if site is None:
                self._other[key] = self.model(inputs)[:, -1]
            else:  # every site of the group at once: the points of a heatmap read one site per layer
                sites = self.sites - {name for (k, name, v) in self._other if k == key[0] and v == key[2]}
                _, cache = self.model.run_with_cache(inputs, names_filter=lambda n: n in sites or n == site)
                self._other.update({(key[0], name, key[2]): a for name, a in cache.items()})
        return self._other[key]


class Context:
    """What an intervention builder may ask for (see ``runner.interventions``): one variant of a group."""

    def __init__(self, group: Group, variant: Variant):
        self.group, self.variant = group, variant
        self.sizes, self.length, self.device, self.seed, self.model = (group.sizes, group.length, group.device,
                                                                       group.seed, group.model)
        self.vectors = variant.vectors  # each distinct steering vector once per variant

    def resolve(self, path: str) -> Path:
        return resolve_path(path, self.group.base_dir)

    def clean_activation(self, site: str) -> torch.Tensor:
        return self.variant.cache[site]

    def activation_of(self, data: Any, site: str) -> torch.Tensor:
        return self.group.other_run(data, self.variant, site)

    def trajectories(self) -> Any:
        return trajectories(self.variant.data, self.group.base_dir, self.group.seed)

    def samples(self) -> np.ndarray:
        """The steps of ``trajectories()`` that are the variant's samples (all, unless the data has a where)."""
        from runner.envs.selection import selected_steps

        return selected_steps(self.trajectories(), self.variant.data.where)


def measure_points(points: tuple[Any, ...], base_dir: str, device: str, records: Records,
                   files: dict[str, bytes]) -> None:
    """Measure every point into ``records``; steering vectors go into ``files``."""
    with torch.inference_mode():
        for members in _groups(points):
            try:
                group = _start(members, base_dir, device)
            except Exception:  # the group cannot start: every point in it fails with the same message
                for p in members:
                    records.fail(p)
                continue
            _measure_group(group, members, records, files)


def _groups(points: tuple[Any, ...]) -> list[list[Any]]:
    """Points that share a model, a seed and data up to the target return, in order."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for p in points:
        data = p.spec.data.model_dump(mode="json")
        data.get("trajectories", {}).pop("target_return", None)
        groups[content_id([p.spec.model.model_dump(mode="json"), data, p.spec.seed])].append(p)
    return list(groups.values())


def _start(points: list[Any], base_dir: str, device: str) -> Group:
    """Load the group's model and inputs and run the clean pass of every variant."""
    spec = points[0].spec
    model = load_model(spec.model, base_dir, device)
    sizes = model_sizes(spec.model, base_dir)
    ivs = [p.spec.intervention for p in points if p.spec.intervention is not None]
    sites = {interventions.site_of(iv, sizes) for iv in ivs}
    readouts = metrics.reads([m for p in points for m in p.spec.metrics], sizes.n_layers)
    sequences = reads_all_positions([m for p in points for m in p.spec.metrics], sizes.n_layers)
    names = {s.name for s in sites} | {f"blocks.{s.layer}.hook_resid_pre" for s in sites if s.layer is not None}
    names |= set().union(*(interventions.extra_sites(iv, sizes) for iv in ivs))  # what builders read (path_patch)
    reuse = reuses_prefix(model) and any(iv.position != "all" for iv in ivs)
    if reuse:  # the clean keys and values of the positions before an edit, at every layer it reaches
        names |= set().union(*(kv_names(s.layer, sizes.n_layers) for s in sites if s.layer is not None))
    variants: dict[str, Variant] = {}
    variant_of = {p.index: content_id(p.spec.data.model_dump(mode="json")) for p in points}
    for p in points:
        if variant_of[p.index] not in variants:
            inputs = make_inputs(p.spec.data, model, base_dir, spec.seed, device)
            variants[variant_of[p.index]] = Variant(p.spec.data, inputs)
    group = Group(model, sizes, base_dir, device, spec.seed, names | readouts | sequences, readouts, variants, reuse,
                  variant_of, sequences)
    _clean_passes(group)
    return group


def _clean_passes(group: Group) -> None:
    """Each variant's unintervened last-position logits and activations, the variants stacked into few passes."""
    todo = list(group.variants.values())
    per_pass = max(1, MAX_TOKENS // (batch_size(todo[0].inputs) * group.length))
    for start in range(0, len(todo), per_pass):
        chunk = todo[start:start + per_pass]
        logits, cache = group.model.run_with_cache(stack([v.inputs for v in chunk]),
                                                   names_filter=lambda n: n in group.sites)
        rows = 0
        for v in chunk:
            n = batch_size(v.inputs)
            v.logits = logits[rows:rows + n, -1]
            v.cache = {name: a[rows:rows + n] for name, a in cache.items()}
            rows += n


def _measure_group(group: Group, points: list[Any], records: Records, files: dict[str, bytes]) -> None:
    prepared, vectors, saved = [], {}, {}
    for p in points:
        variant = group.variants[group.variant_of[p.index]]
        try:
            edit = interventions.prepare(p.spec.intervention, Context(group, variant))
        except Exception:
            records.fail(p)
            continue
        prepared.append((p, variant, edit))
        if p.spec.intervention is not None and p.spec.intervention.kind == "steer":
            if id(edit.offset) not in saved:  # the same vector object: saved once
                saved[id(edit.offset)] = _save_vector(edit.offset.cpu().numpy(), files)
            vectors[p.index] = saved[id(edit.offset)]
    for (p, variant, edit), logits, seen, sequences in _forward(group, prepared, records):
        try:
            patch = p.spec.intervention if any(m.kind == "restored_fraction" for m in p.spec.metrics) else None
            source = group.other_run(patch.source, variant, None) if patch is not None else None
            reading = metrics.Reading(variant.logits, logits, source, seen, group.model, group.sizes.agent, sequences,
                                      edit, variant.cache.get(edit.site) if edit is not None else None)
            result = metrics.measure(p.spec.metrics, reading)
            loop = metrics.Loop(group.model, [interventions.hook(edit)] if edit else [], p.spec.data.target_return,
                                group.device)
            result |= metrics.play(p.spec.metrics, loop)
            if p.index in vectors:
                result["vector_id"] = ((), np.array(vectors[p.index], dtype=object), VECTOR_ATTRS)
            records.ok(p, _record(result, group.sizes, p.spec.metrics))
        except Exception:
            records.fail(p)


def _forward(group: Group, prepared: list, records: Records) -> Iterator[tuple[tuple, torch.Tensor, dict, dict]]:
    """Yield (prepared point, last-position logits, readouts, every-position readouts), folding edited points into
    few passes."""
    by_start: dict[int | None, list] = defaultdict(list)
    estimates = []   # attribution patching: no patched passes, one backward per logit for them all
    for item in prepared:
        point, variant, edit = item
        if attribution.wanted(point):
            estimates.append(item)
        elif edit is None or edit.changes_nothing:  # the clean run is its result: bit for bit, nothing to compute
            yield item, variant.logits, _last(variant.cache, group.readouts), _every(variant.cache, group.sequences)
        else:
            by_start[edit.layer].append(item)
    yield from attribution.estimated(estimates, group, records)
    for chunk in (c for layer, items in by_start.items() for c in chunks(items, group.length, group.reuse)):
        try:
            outs = folded_pass(group, chunk, group.reuse)
        except Exception:  # find the point that breaks the fold by running each alone
            outs = []
            for item in chunk:
                try:
                    outs.append(folded_pass(group, [item], group.reuse)[0])
                except Exception:
                    records.fail(item[0])
                    outs.append(None)
        for item, out in zip(chunk, outs):
            if out is not None:
                logits, seen, sequences = out  # every-position readouts come whole (fold.py)
                yield item, logits, _last(item[1].cache, group.readouts) | seen, sequences  # skipped blocks: clean


def _last(cache: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    return {n: metrics.last_position(n, a) for n, a in cache.items() if n in names}


def _every(cache: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    return {n: a for n, a in cache.items() if n in names}


def _record(result: metrics.Result, sizes: ModelSizes, point_metrics: list) -> Record:
    """A point's metric arrays with the labels of their dims: actions by name, agent positions by role, layer reads."""
    labels: dict[str, Any] = {"action": tuple(ACTIONS), "position": sizes.roles,
                              "layer_read": layer_reads(sizes.n_layers)}
    for m in point_metrics:
        labels |= {dim: tuple(names) for dim, names in m.labels_for(sizes).items()}
    coords = {dim: _labels(dim, size, labels.get(dim)) for dims, values, _ in result.values()
              for dim, size in zip(dims, values.shape)}
    return Record(result, coords)


@functools.lru_cache(maxsize=256)
def _labels(dim: str, size: int, named: tuple | None) -> np.ndarray:
    """The labels of a dim (the same array for every point that has them, so records stack at once)."""
    return np.array(named, dtype=object) if named else np.arange(size)


VECTOR_ATTRS = {"long_name": "the steering vector the point added (before its coefficient): vectors/<vector_id>.npy"}


def _save_vector(vector: np.ndarray, files: dict[str, bytes]) -> str:
    """Store a steering vector once per distinct content; its id names the file."""
    buffer = io.BytesIO()
    np.save(buffer, vector, allow_pickle=False)
    data = buffer.getvalue()
    vector_id = hashlib.sha256(data).hexdigest()[:12]
    files[vector_file(vector_id)] = data
    return vector_id
