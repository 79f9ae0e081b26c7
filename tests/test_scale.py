"""Flat at scale: what the driver holds grows with the results, not with the machinery per point.

A 10^5-point run on the local executor, in a fresh process, against a 10^3-point run of
the same spec: the bound is 2 KB of peak RSS per extra point, which covers the results
themselves (a float, four short strings and the point's id) with room for the
allocator, and would be broken by keeping per-point specs, Datasets or shard files.
"""
from __future__ import annotations

import json
import subprocess
import sys

import xarray as xr

from tests.conftest import write_spec

SPEC = """\
name: {name}
model:
  transformer: {{n_layers: 1, d_model: 8, n_heads: 2, d_vocab: 8, n_ctx: 8, init_seed: 0}}
data:
  random_tokens: {{batch: 1, length: 4, seed: 0}}
intervention: {{kind: steer, hook: resid_pre, layer: 0, position: last, vector: {{random: {{seed: 0}}}}}}
sweep:
  intervention.coefficient: {{linspace: [-4, 4, {n}]}}
metrics: [kl]
"""

PEAK_RSS = """\
import json, resource, sys
from runner.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
BOUND_KB_PER_POINT = 2.0


def peak_rss(project, name: str, n: int) -> float:
    write_spec(project, SPEC.format(name=name, n=n), f"{name}.yaml")
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, "run", f"{name}.yaml"], cwd=project, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    return report["rss_mb"]


def test_a_100k_point_run_keeps_the_driver_within_2kb_a_point(project):
    small = peak_rss(project, "small", 1_000)
    big = peak_rss(project, "big", 100_000)
    with xr.open_dataset(project / "results" / "big" / "result.nc") as ds:
        assert ds.sizes["coefficient"] == 100_000 and (ds.status == "ok").all() and ds.kl.notnull().all()
    grown_kb = (big - small) * 1024 / 99_000
    assert grown_kb < BOUND_KB_PER_POINT, f"peak RSS {small:.0f} MB -> {big:.0f} MB: {grown_kb:.2f} KB a point"
