"""A run killed with SIGKILL keeps its shards; the rerun computes only what is missing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import xarray as xr

import runner
from tests.conftest import BASE_SPEC, cli, write_spec

SLOW = """\
name: slow
model:
  transformer: {n_layers: 3, d_model: 128, n_heads: 4, d_vocab: 64, n_ctx: 64, init_seed: 1}
data:
  random_tokens: {batch: 32, length: 48}
intervention: {kind: steer, hook: resid_pre, layer: 0, vector: {random: {seed: 2, norm: match}}}
sweep:
  intervention.coefficient: {linspace: [-3, 3, 10]}
  intervention.layer: [0, 1, 2]
metrics: [probs, kl]
execution: {points_per_task: 1}
"""


def test_sigkill_then_resume_matches_an_uninterrupted_run(project):
    write_spec(project, SLOW)
    shards = project / "results" / "slow" / "shards"
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "spec.yaml"], cwd=project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(shards.glob("*.nc"))) < 3 and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.nc")}
    assert 3 <= len(kept) < 30, f"expected an interrupted run, found {len(kept)} shards"
    assert not (project / "results" / "slow" / "result.nc").exists()

    status = cli("status", "slow", cwd=project)
    assert f"finished {len(kept)}" in status.stdout.replace("  ", " ") and "incomplete" in status.stdout

    resumed = cli("run", "spec.yaml", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(kept)} of 30 points already done" in resumed.stderr
    assert f"running {30 - len(kept)} points" in resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.nc") if p.name in kept} == kept, \
        "finished shards must not be recomputed"

    reference = cli("run", "spec.yaml", "--out", "whole", cwd=project)
    assert reference.returncode == 0, reference.stderr
    a = xr.load_dataset(project / "results" / "slow" / "result.nc")
    b = xr.load_dataset(project / "whole" / "result.nc")
    np.testing.assert_array_equal(a.probs.values, b.probs.values)
    np.testing.assert_array_equal(a.kl.values, b.kl.values)
    assert (a.status == "ok").all()


def test_many_small_tasks_leave_few_files_that_read_back_the_same(project):
    """One-point tasks are gathered into packs of 64 shards as they finish; a resume reads packs like shards."""
    import shutil

    from runner.results.shards import PACK_SHARDS

    spec = write_spec(project, BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 80]}").replace(
        "execution: {executor: local}", "execution: {points_per_task: 1}"))
    ds = runner.run(spec)
    shard_dir = project / "results" / "base" / "shards"
    packs = sorted(shard_dir.glob("pack-*.nc"))
    assert len(packs) == 160 // PACK_SHARDS and len(list(shard_dir.glob("*.nc"))) == 160 % PACK_SHARDS + len(packs)
    from runner.results.shards import _load

    pack, by_xarray = _load(packs[0]), xr.load_dataset(packs[0])   # read without xarray: the same records
    assert pack.sizes["point"] == PACK_SHARDS and (pack.point_id.values == by_xarray.point_id.values).all()
    np.testing.assert_array_equal(pack.logits.values, by_xarray.logits.values)
    shutil.copy(packs[0], shard_dir / "pack-copy.nc")  # a run killed after writing a pack, before removing its shards
    (project / "results" / "base" / "result.nc").unlink()
    again = cli("run", "spec.yaml", cwd=project)
    assert again.returncode == 0 and "160 of 160 points already done" in again.stderr, again.stderr
    merged = runner.load("base")
    assert (merged.status == "ok").all()
    np.testing.assert_array_equal(merged.logits.values, ds.logits.values)
    np.testing.assert_array_equal(merged.vector_id.values, ds.vector_id.values)
