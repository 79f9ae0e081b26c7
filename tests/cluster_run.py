"""A run on a ``ray.cluster_utils.Cluster`` of two worker nodes, one killed mid-run (test_executors runs it).

The head holds no CPU, so every task runs on a worker node; once a few shards have
landed, the worker node that wrote the first of them is killed (no graceful exit).

It runs in a process of its own, since the test session's Ray is already up:

    python -m tests.cluster_run SPEC OUT

and prints a JSON summary: shards written before the kill, the node killed, the
nodes the shards came from, and the status of every point.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def main(spec: str, out: str) -> None:
    import ray
    import xarray as xr
    from ray.cluster_utils import Cluster

    import runner

    fast_failure = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "_system_config": fast_failure})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    shards, before = Path(out) / "shards", {}

    def kill_a_worker_node() -> None:
        while len(list(shards.glob("*.nc"))) < 6:
            time.sleep(0.01)
        before["shards"] = len(list(shards.glob("*.nc")))
        first = min(shards.glob("*.nc"), key=lambda p: p.stat().st_mtime)
        written = first.read_bytes()  # not through netCDF: HDF5 is not to be used from two threads at once
        victim = next(w for w in workers if f"/{w.node_id[:6]}".encode() in written)  # its `node` attr
        before["killed"] = victim.node_id[:6]
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=kill_a_worker_node, daemon=True)
    killer.start()
    ds = runner.run(spec, out=out, executor="ray")
    killer.join(timeout=5)
    nodes = sorted({xr.open_dataset(p).attrs.get("node", "") for p in shards.glob("*.nc")})
    nodes = sorted({n.split("/")[1] for n in nodes})
    print("RESULT", json.dumps({"before_kill": before.get("shards"), "killed": before.get("killed"), "nodes": nodes, "points": int(ds.status.size),
                      "status": sorted(set(ds.status.values.reshape(-1).tolist()))}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
