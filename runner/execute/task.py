"""The task function both executors run: a chunk of grid points -> a small Dataset.

A task loads each model once, runs each clean pass once, and folds its
points into the batch dimension: one forward pass serves many points, each
point's edits touching only its own rows. Points are folded with others that
edit the same first block, and that pass starts there from the cached clean
residual: blocks before the first edit are never run again. A point that
raises is recorded as failed with its message; the others still finish.
"""
from __future__ import annotations

import io
import re
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from runner import interventions, metrics
from runner.data import batch_size, make_inputs, repeat_rows
from runner.envs import ACTIONS
from runner.execute import TaskResult
from runner.checks import model_dims
from runner.models import get_model, pick_device
from runner.plan import Point, Task, point_folder
from runner.sites import Dims
from runner.spec import TrainSpec, content_id

# Tokens (rows x positions) in one folded forward pass. Larger passes were measured slower on CPU
# (activations no longer fit in cache: an RTG scan of 35k windows x 12 tokens in one pass ran 3x
# slower than 21 passes of 1.7k windows), smaller ones pay per-pass overhead.
MAX_TOKENS = 32768


@dataclass
class Context:
    """What the points of one (model, data) group share: the model, inputs and clean pass."""

    model: Any
    inputs: Any                # token ids [batch, length], or AgentInputs windows
    dims: Dims
    base_dir: str
    device: str
    spec_seed: int
    sites: set[str]
    data: Any = None           # the spec's data source (what same: {...} sources change)
    _clean: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = field(default=None, repr=False)
    _sources: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def length(self) -> int:
        return self.dims.n_ctx if not isinstance(self.inputs, torch.Tensor) else self.inputs.shape[1]

    @property
    def batch(self) -> int:
        return batch_size(self.inputs)

    def clean(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Last-position logits and the cached activations at the group's sites, unintervened."""
        if self._clean is None:
            logits, cache = self.model.run_with_cache(self.inputs, names_filter=lambda n: n in self.sites)
            self._clean = logits[:, -1], {k: cache[k] for k in self.sites if k in cache}
        return self._clean

    def clean_activation(self, site: str) -> torch.Tensor:
        return self.clean()[1][site]

    def trajectories(self) -> Any:
        """The spec's trajectories (agents), one sample per step."""
        from runner.sources import load_trajectories

        return load_trajectories(self.data, self.base_dir, self.spec_seed)

    def source_logits(self, intervention: Any) -> torch.Tensor:
        """Last-position logits of a patch's source run (cached per source)."""
        key = content_id(intervention.source.model_dump(mode="json"))
        if key not in self._sources:
            inputs = make_inputs(intervention.source, self.model, self.dims, self.base_dir, self.spec_seed, self.device,
                                 self.data)
            self._sources[key] = self.model(inputs)[:, -1]
        return self._sources[key]

    def activation_of(self, data: Any, site: str) -> torch.Tensor:
        """The activation at ``site`` for another data source (contrast sides, patch sources), cached."""
        key = content_id([data.model_dump(mode="json"), site])
        if key not in self._sources:
            inputs = make_inputs(data, self.model, self.dims, self.base_dir, self.spec_seed, self.device, self.data)
            _, cache = self.model.run_with_cache(inputs, names_filter=lambda n: n == site)
            self._sources[key] = cache[site]
        return self._sources[key]


def run_task(task: Task) -> TaskResult:
    """Run every point of a task; returns a Dataset over dim ``point`` with status and error."""
    torch.set_num_threads(task.threads)
    device = pick_device(task.gpus)
    records: dict[int, xr.Dataset | str] = {}
    files: dict[str, bytes] = {}
    if isinstance(task.points[0].spec, TrainSpec):
        for point in task.points:
            _train(point, task, device, records, files)
    else:
        with torch.inference_mode():
            scans, rest = _rtg_scans(task.points)
            for scan in scans:
                _run_rtg_scan(scan, task, device, records)
            for group in _groups(tuple(rest)):
                _run_group(group, task, device, records, files)
    return TaskResult(_assemble(task, records, device), files)


def _train(point: Point, task: Task, device: str, records: dict, files: dict) -> None:
    from runner.models.checkpoint import checkpoint_files
    from runner.train import train_point

    try:
        label = point.spec.name + (f" {point_folder(point)}" if point.coords else "")
        ds, agent = train_point(point.spec, point.seed, task.base_dir, device, label)
        checkpoint = checkpoint_files(agent)
    except Exception:
        records[point.index] = _error()
        return
    records[point.index] = ds
    for name, data in checkpoint.items():
        files[f"models/{point_folder(point)}/{name}"] = data


def _groups(points: tuple[Point, ...]) -> list[list[Point]]:
    """Points that share a model and inputs, in order."""
    groups: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        key = content_id([p.spec.model.model_dump(mode="json"), p.spec.data.model_dump(mode="json"), p.spec.seed])
        groups[key].append(p)
    return list(groups.values())


def _target(p: Point) -> float | None:
    return getattr(getattr(p.spec.data, "trajectories", None), "target_return", None)


def _rtg_scans(points: tuple[Point, ...]) -> tuple[list[list[Point]], list[Point]]:
    """Plain points that differ only in their target return (an RTG scan), and the rest.

    An RTG scan's points read the same windows with other RTG tokens: their clean
    passes fold into one batch instead of one forward per target.
    """
    scans: dict[str, list[Point]] = defaultdict(list)
    rest = []
    for p in points:
        if p.spec.intervention is None and _target(p) is not None:
            data = p.spec.data.model_dump(mode="json")
            data["trajectories"].pop("target_return")
            scans[content_id([p.spec.model.model_dump(mode="json"), data, p.spec.seed])].append(p)
        else:
            rest.append(p)
    folded = [group for group in scans.values() if len({_target(p) for p in group}) > 1]
    rest += [p for group in scans.values() if len({_target(p) for p in group}) == 1 for p in group]
    return folded, sorted(rest, key=lambda p: p.index)


def _run_rtg_scan(points: list[Point], task: Task, device: str, records: dict) -> None:
    """An RTG scan: one forward over every target's windows, stacked; each point reads its own rows."""
    from runner.models.agent import AgentInputs

    try:
        spec = points[0].spec
        dims = model_dims(spec, task.base_dir)
        model = get_model(spec.model, device, task.base_dir)
        targets = sorted({_target(p) for p in points})
        first = {t: next(p for p in points if _target(p) == t) for t in targets}
        variants = [make_inputs(first[t].spec.data, model, dims, task.base_dir, spec.seed, device) for t in targets]
        readouts = metrics.readouts([m for p in points for m in p.spec.metrics], dims.n_layers)
        batch = len(variants[0])
        per_pass = max(1, MAX_TOKENS // (batch * dims.n_ctx))
        passes = [model.run_with_cache(AgentInputs.cat(variants[i:i + per_pass]), names_filter=lambda n: n in readouts)
                  for i in range(0, len(variants), per_pass)]
        logits = torch.cat([out for out, _ in passes])
        cache = {n: torch.cat([c[n] for _, c in passes]) for n in passes[0][1]}
    except Exception:
        for p in points:
            records[p.index] = _error()
        return
    for p in points:
        try:
            rows = slice(targets.index(_target(p)) * batch, (targets.index(_target(p)) + 1) * batch)
            clean = logits[rows, -1]
            seen = {n: metrics.last_position(n, a)[rows] for n, a in cache.items()}
            result = metrics.measure(p.spec.metrics, metrics.Reading(clean, clean, None, seen, model, True))
            ctx = Context(model, variants[0], dims, task.base_dir, device, p.spec.seed, set(), p.spec.data)
            for metric in p.spec.metrics:
                if metric.kind in metrics.CLOSED_LOOP:
                    result |= _closed_loop(metric, ctx, [], p.spec)
            records[p.index] = _metric_dataset(result, dims.roles, _attention_heads(p.spec))
        except Exception:
            records[p.index] = _error()


def _run_group(points: list[Point], task: Task, device: str, records: dict, files: dict) -> None:
    try:
        spec = points[0].spec
        dims = model_dims(spec, task.base_dir)
        model = get_model(spec.model, device, task.base_dir)
        inputs = make_inputs(spec.data, model, dims, task.base_dir, spec.seed, device)
        sites = {s for p in points for s in interventions.sites(p.spec.intervention, dims)}
        sites |= {f"blocks.{layer}.hook_resid_pre" for s in sites if (layer := _block_of(s)) is not None}
        readouts = metrics.readouts([m for p in points for m in p.spec.metrics], dims.n_layers)
        sites |= readouts
        ctx = Context(model, inputs, dims, task.base_dir, device, spec.seed, sites, spec.data)
        clean = ctx.clean()[0]
    except Exception:  # the group cannot start: every point in it fails with the same message
        for p in points:
            records[p.index] = _error()
        return
    prepared = []
    for p in points:
        try:
            edits = interventions.prepare(p.spec.intervention, ctx, p.seed)
        except Exception:
            records[p.index] = _error()
            continue
        prepared.append((p, edits))
        for _, fn in edits:
            if hasattr(fn, "vector"):
                files[f"vectors/{point_folder(p, default='vector')}.npy"] = _npy_bytes(fn.vector)
    edits_of = {p.index: edits for p, edits in prepared}
    for p, out, seen in _forward(ctx, prepared, clean, records, readouts):
        try:
            source = ctx.source_logits(p.spec.intervention) if _needs_source(p.spec) else None
            reading = metrics.Reading(clean, out, source, seen, ctx.model, ctx.dims.roles is not None)
            result = metrics.measure(p.spec.metrics, reading)
            for metric in p.spec.metrics:
                if metric.kind in metrics.CLOSED_LOOP:
                    result |= _closed_loop(metric, ctx, edits_of[p.index], p.spec)
            records[p.index] = _metric_dataset(result, ctx.dims.roles, _attention_heads(p.spec))
        except Exception:
            records[p.index] = _error()


def _attention_heads(spec: Any) -> list | None:
    return next((m.heads for m in spec.metrics if m.kind == "attention"), None)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _needs_source(spec: Any) -> bool:
    return any(m.kind == "restored_fraction" for m in spec.metrics)


def _closed_loop(metric: Any, ctx: Context, edits: list, spec: Any) -> dict:
    from runner.metrics.rollout import rollout

    target = getattr(getattr(spec.data, "trajectories", None), "target_return", None)
    return rollout(metric, ctx.model, edits, target, ctx.device)


def _forward(ctx: Context, prepared: list, clean: torch.Tensor, records: dict, readouts: set[str]):
    """Yield (point, last-position logits, readouts) for prepared points, folding them into few passes."""
    batch = ctx.batch
    per_pass = max(1, MAX_TOKENS // (batch * ctx.length))
    clean_readouts = {n: metrics.last_position(n, a) for n, a in ctx.clean()[1].items() if n in readouts}
    by_start: dict[int | None, list] = defaultdict(list)
    for p, edits in prepared:
        if edits:
            by_start[_first_block(edits)].append((p, edits))
        else:
            yield p, clean, clean_readouts
    chunks = [group[i:i + per_pass] for group in by_start.values() for i in range(0, len(group), per_pass)]
    for chunk in chunks:
        try:
            outs = _folded_pass(ctx, chunk, readouts)
        except Exception:  # find the point that breaks the fold by running each alone
            outs = []
            for item in chunk:
                try:
                    outs.append(_folded_pass(ctx, [item], readouts)[0])
                except Exception:
                    records[item[0].index] = _error()
                    outs.append(None)
        for (p, _), out in zip(chunk, outs):
            if out is not None:
                logits, seen = out
                yield p, logits, clean_readouts | seen  # blocks a partial pass skipped read as clean


_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def _block_of(site: str) -> int | None:
    match = _BLOCK.match(site)
    return int(match.group(1)) if match else None


def _first_block(edits: list) -> int | None:
    """The first block any edit touches; None when an edit sits before the blocks (embeddings)."""
    blocks = [_block_of(site) for site, _ in edits]
    return None if None in blocks else min(blocks)


def _folded_pass(ctx: Context, chunk: list, readouts: set[str] = frozenset()) -> list[tuple[torch.Tensor, dict]]:
    """Last-position logits and readouts of each point in ``chunk``, from one forward over their stacked rows."""
    batch = ctx.batch
    by_site: dict[str, list] = defaultdict(list)
    for j, (_, edits) in enumerate(chunk):
        for site, fn in edits:
            by_site[site].append((slice(j * batch, (j + 1) * batch), fn))

    def make_hook(edits: list):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            x = x.clone()
            for rows, fn in edits:
                x[rows] = fn(x[rows])
            return x
        return hook

    captured: dict[str, torch.Tensor] = {}

    def capture(x: torch.Tensor, hook: Any, name: str) -> None:
        captured[name] = metrics.last_position(name, x)

    hooks = [(s, make_hook(e)) for s, e in by_site.items()]
    hooks += [(name, lambda x, hook, name=name: capture(x, hook, name)) for name in sorted(readouts)]
    start = _first_block(chunk[0][1])
    if start is None:
        logits = ctx.model.run_with_hooks(repeat_rows(ctx.inputs, len(chunk)), fwd_hooks=hooks)[:, -1]
    else:
        resid = ctx.clean_activation(f"blocks.{start}.hook_resid_pre").repeat(len(chunk), 1, 1)
        with ctx.model.hooks(fwd_hooks=hooks):
            logits = _run_from_block(ctx.model, resid, start)
    rows = [slice(j * batch, (j + 1) * batch) for j in range(len(chunk))]
    return [(logits[r], {name: value[r] for name, value in captured.items()}) for r in rows]


def _run_from_block(model: Any, resid: torch.Tensor, start: int) -> torch.Tensor:
    """Last-position logits from the residual entering block ``start`` (hooks fire as usual).

    TransformerLens 4's ``start_at_layer`` still runs the earlier blocks; calling the
    bridge's own blocks, final norm and unembedding skips them and gives the same numbers.
    """
    for block in model.blocks[start:]:
        out = block(resid)
        resid = out[0] if isinstance(out, tuple) else out
    return model.unembed(model.ln_final(resid[:, -1:]))[:, -1]


def _error() -> str:
    """The current exception as one readable message (type, text and the innermost frame)."""
    exc = traceback.format_exc().strip().splitlines()
    last_frame = next((line.strip() for line in reversed(exc) if line.strip().startswith("File ")), "")
    return f"{exc[-1]} [{last_frame}]" if last_frame else exc[-1]


def _metric_dataset(result: dict[str, tuple], roles: tuple[str, ...] | None = None,
                    heads: list | None = None) -> xr.Dataset:
    """Metric arrays as a Dataset with labelled inner dims: actions by name, agent positions by role."""
    ds = xr.Dataset({name: xr.Variable(dims, values, attrs) for name, (dims, values, attrs) in result.items()})
    labels = {"action": ACTIONS, "position": roles}
    if "attention" in ds and heads:
        labels["attn_head"] = [f"L{layer}H{head}" for layer, head in heads]
    for dim, size in ds.sizes.items():
        named = labels.get(dim)
        ds = ds.assign_coords({dim: np.array(named, dtype=object) if named else np.arange(size)})
    return ds


def _assemble(task: Task, records: dict[int, Any], device: str) -> xr.Dataset:
    """One Dataset over ``point``: each point's variables (NaN for failed points), status and error."""
    indices = [p.index for p in task.points]
    ok = [r for r in records.values() if not isinstance(r, str)]
    parts = []
    for idx in indices:
        record = records[idx]
        if isinstance(record, str):
            record = xr.full_like(ok[0], np.nan, dtype=np.float64) if ok else xr.Dataset()
        parts.append(record.expand_dims(point=[idx]))
    ds = xr.concat(parts, dim="point", join="outer") if ok else xr.Dataset(coords={"point": np.array(indices, dtype=np.int64)})
    ds["status"] = ("point", np.array(["failed" if isinstance(records[i], str) else "ok" for i in indices], dtype=object))
    ds["error"] = ("point", np.array([records[i] if isinstance(records[i], str) else "" for i in indices], dtype=object))
    ds["point_id"] = ("point", np.array([p.id for p in task.points], dtype=object))
    ds.attrs = {"device": device if device == "cpu" else torch.cuda.get_device_name()}
    return ds
