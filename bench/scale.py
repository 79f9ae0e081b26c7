"""Benchmark: the runner's own costs at scale, each in a fresh process as a user meets them.

- plan of a 10^6-point grid (``runner plan``): wall time and peak RSS (target: < 1 GB);
- a 10^5-point run on the local executor: wall time and the driver's peak RSS, beside a
  10^3-point run of the same spec (the difference is what the grid's size costs);
- a rerun of the finished 10^5-point run (target: < 2 s: no torch, no Ray imported);
- 10^4 tasks of one point each (``points_per_task: 1``): the run, and the merge that a
  resume does (read every shard, assemble, write result.nc; target: < 10 s), once from
  the packs the run leaves and once from 10^4 single-point shard files.

    .venv/bin/python bench/scale.py [--quick]

``--quick`` uses grids ten times smaller (a smoke test of this script).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
execution: {{points_per_task: {per_task}, max_points: 2000000}}
"""

MEASURE = """\
import json, resource, sys, time
t0 = time.perf_counter()
from runner.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": "torch" in sys.modules, "ray": "ray" in sys.modules}), file=sys.stderr)
"""


def runner_process(folder: Path, *args: str) -> dict:
    """Run ``runner ARGS`` in a fresh process; its wall time (imports included), peak RSS and imports."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stderr.strip().splitlines()[-1])


def spec(folder: Path, name: str, n: int, per_task: int | str = "auto") -> str:
    (folder / f"{name}.yaml").write_text(SPEC.format(name=name, n=n, per_task=per_task))
    return f"{name}.yaml"


def unpack(shard_dir: Path) -> int:
    """Split every shard into single-point shards (as a run of one-point tasks without packing leaves)."""
    import xarray as xr

    from runner.results.shards import write_shard

    count = 0
    for path in sorted(shard_dir.glob("*.nc")):
        ds = xr.load_dataset(path)
        stamp = {k: v for k, v in ds.attrs.items() if k not in ("checksum", "device")}
        for i in range(ds.sizes["point"]):
            write_shard(shard_dir / f"{path.stem}-{i}.nc", ds.isel(point=[i]), stamp)
            count += 1
        path.unlink()
    return count


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true")
    scale = 10 if args.parse_args().quick else 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plan = runner_process(folder, "plan", spec(folder, "million", 1_000_000 // scale))
        small = runner_process(folder, "run", spec(folder, "small", 1000))
        big = runner_process(folder, "run", spec(folder, "big", 100_000 // scale))
        rerun = min((runner_process(folder, "run", "big.yaml") for _ in range(3)), key=lambda r: r["seconds"])
        tasks = runner_process(folder, "run", spec(folder, "tasks", 10_000 // scale, 1))
        shards = folder / "results" / "tasks" / "shards"
        packs = len(list(shards.glob("*.nc")))
        (folder / "results" / "tasks" / "result.nc").unlink()
        from_packs = runner_process(folder, "run", "tasks.yaml")
        files = unpack(shards)
        (folder / "results" / "tasks" / "result.nc").unlink()
        t0 = time.perf_counter()
        from_files = runner_process(folder, "run", "tasks.yaml")
        from_files["wall"] = time.perf_counter() - t0
    n6, n5, n4 = 1_000_000 // scale, 100_000 // scale, 10_000 // scale
    print(f"runner at scale (fresh processes, imports included){' [--quick: grids / 10]' if scale > 1 else ''}")
    print(f"  plan of {n6:,} points            {plan['seconds']:7.1f} s   peak RSS {plan['rss_mb']:6.0f} MB"
          f"   (target < 1024 MB)")
    print(f"  run of 1,000 points              {small['seconds']:7.1f} s   peak RSS {small['rss_mb']:6.0f} MB")
    print(f"  run of {n5:,} points            {big['seconds']:7.1f} s   peak RSS {big['rss_mb']:6.0f} MB"
          f"   (+{big['rss_mb'] - small['rss_mb']:.0f} MB, {1024 * (big['rss_mb'] - small['rss_mb']) / n5:.2f} KB "
          f"a point beyond 1,000)")
    print(f"  rerun of the finished run        {rerun['seconds']:7.2f} s   torch imported: {rerun['torch']}, "
          f"ray imported: {rerun['ray']}   (target < 2 s)")
    print(f"  {n4:,} one-point tasks            {tasks['seconds']:7.1f} s   ({n4 / tasks['seconds']:.0f} tasks/s; "
          f"left {packs} shard files)")
    print(f"  merge from the {packs} packs         {from_packs['seconds']:7.2f} s   (read, assemble, write result.nc;"
          f" imports included)")
    print(f"  merge from {files:,} shard files    {from_files['seconds']:7.2f} s   (target < 10 s)")


if __name__ == "__main__":
    main()
