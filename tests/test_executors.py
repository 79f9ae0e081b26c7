"""Same spec, same numbers: local or Ray, one point per task or sixteen."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import runner
from runner.errors import RunnerError
from tests.conftest import BASE_SPEC, CHUNKING_TOLERANCE, ROOT, cli, write_spec

SCAN = BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-2, 2, 9]}").replace(
    "metrics: [logits]", "metrics: [logits, kl]")


def test_local_and_ray_and_chunking_agree(project, ray_session):
    results = {}
    for executor in ("local", "ray"):
        for per_task in (1, 16):
            text = SCAN.replace("execution: {executor: local}",
                                f"execution: {{executor: {executor}, points_per_task: {per_task}}}")
            spec = write_spec(project, text, f"{executor}{per_task}.yaml")
            results[executor, per_task] = runner.run(spec, out=project / f"out-{executor}-{per_task}")
    assert results["local", 1].logits.dims == ("coefficient", "layer", "sample", "vocab")
    for (executor, per_task), ds in results.items():
        assert (ds.status == "ok").all() and ds.attrs["executor"] == executor
        same_chunking = results["local", per_task]  # the same bits on either executor
        np.testing.assert_array_equal(ds.logits.values, same_chunking.logits.values)
        np.testing.assert_array_equal(ds.kl.values, same_chunking.kl.values)
        for name in ("logits", "kl"):  # across chunking: within the stated float32 tolerance
            np.testing.assert_allclose(ds[name].values, results["local", 1][name].values, **CHUNKING_TOLERANCE)


def test_ray_refuses_gpu_request_on_a_cluster_without_gpus(project, ray_session):
    assert ray_session.cluster_resources().get("GPU", 0) == 0
    spec = write_spec(project, BASE_SPEC.replace("execution: {executor: local}",
                                                 "execution: {executor: ray, gpus_per_task: 0.5}"))
    with pytest.raises(RunnerError, match="gpus_per_task is 0.5 .* has 0 GPUs"):
        runner.run(spec)
    assert not (project / "results").exists()


def test_local_gpu_request_without_cuda_exits_2_and_writes_nothing(project):
    write_spec(project, BASE_SPEC.replace("execution: {executor: local}", "execution: {gpus_per_task: 1}"))
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 2, done.stderr
    assert "gpus_per_task is 1" in done.stderr and "Traceback" not in done.stderr
    assert not (project / "results").exists()


def test_cli_runs_on_an_existing_cluster_by_address(project, ray_session):
    write_spec(project, BASE_SPEC)
    address = ray_session.get_runtime_context().gcs_address
    done = cli("run", "spec.yaml", "--executor", "ray", "--address", address, cwd=project)
    assert done.returncode == 0, done.stderr
    assert f"Ray ({address}" in done.stderr
    local = runner.run(write_spec(project, BASE_SPEC, "local.yaml"), out=project / "local")
    np.testing.assert_array_equal(runner.load("base").logits.values, local.logits.values)
    assert ray_session.is_initialized(), "the driver must not shut down a cluster it did not start"


def test_an_unreachable_ray_address_exits_2_at_once(project):
    write_spec(project, BASE_SPEC)
    done = cli("run", "spec.yaml", "--executor", "ray", "--address", "127.0.0.1:9", cwd=project, timeout=60)
    assert done.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in done.stderr
    assert not (project / "results").exists()


# ---------------------------------------------------------------- a cluster that is not there, not Ray, or lost

SLOW_RAY = BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 200]}").replace(
    "execution: {executor: local}", "execution: {points_per_task: 1}")


def test_a_port_that_is_not_ray_is_refused_within_seconds(project):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    write_spec(project, BASE_SPEC)
    port = server.getsockname()[1]
    done = cli("run", "spec.yaml", "--executor", "ray", "--address", f"127.0.0.1:{port}", cwd=project, timeout=30)
    assert done.returncode == 2 and f"127.0.0.1:{port} is not a Ray cluster" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (project / "results").exists()
    server.close()


@pytest.fixture
def own_cluster():
    """A Ray head of the test's own (`ray start --head --block`, token auth on), so that the test can kill it."""
    from runner.execute.ray_executor import speaks_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                             "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", "--block"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if speaks_grpc("127.0.0.1", port, timeout=1.0):
                break
        except OSError:
            time.sleep(0.5)
    yield port, head
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait()


def test_a_lost_cluster_stops_the_run_with_exit_3_and_a_rerun_resumes(project, own_cluster):
    port, head = own_cluster
    write_spec(project, SLOW_RAY)
    address = ["--executor", "ray", "--address", f"127.0.0.1:{port}"]
    no_token = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    refused = subprocess.run([sys.executable, "-m", "runner", "run", "spec.yaml", *address], cwd=project, env=no_token,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "requires token authentication" in refused.stderr and "RAY_AUTH_MODE=token" \
        in refused.stderr, refused.stderr
    run = subprocess.Popen([sys.executable, "-m", "runner", "run", "spec.yaml", *address], cwd=project,
                           env=dict(os.environ, RAY_AUTH_MODE="token"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    shards = project / "results" / "base" / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(shards.glob("*.nc"))) < 3 and run.poll() is None:
        time.sleep(0.05)
    os.killpg(head.pid, signal.SIGKILL)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 3 and "the Ray cluster at 127.0.0.1" in err and "was lost" in err, err
    assert "Traceback" not in err
    kept = len(list(shards.glob("*.nc")))
    assert 3 <= kept < 400
    resumed = cli("run", "spec.yaml", cwd=project)  # on the local executor: the shards are what count
    assert resumed.returncode == 0 and f"{kept} of 400 points already done" in resumed.stderr, resumed.stderr


def test_a_cluster_started_with_ray_start_head_and_named_by_ray_address_equals_the_local_run(project, own_cluster):
    port, _ = own_cluster
    write_spec(project, SCAN)
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_ADDRESS=f"127.0.0.1:{port}")
    done = subprocess.run([sys.executable, "-m", "runner", "run", "spec.yaml", "--executor", "ray", "--out", "cluster"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"on Ray (127.0.0.1:{port}" in done.stderr, done.stderr
    assert done.stderr.count("18/18 points") == 1, "off a terminal, progress is one summary line"
    local = runner.run(project / "spec.yaml", out=project / "local")
    with xr.open_dataset(project / "cluster" / "result.nc") as on_cluster:
        assert on_cluster.attrs["executor"] == "ray" and (on_cluster.status == "ok").all()
        for name in ("logits", "kl"):
            np.testing.assert_array_equal(on_cluster[name].values, local[name].values)


def test_workers_without_the_project_folder_read_shipped_copies_of_its_files(project, ray_session):
    """No shared disk: a task whose project folder is missing on its node reads the files the driver shipped."""
    from runner.execute.ray_executor import RayExecutor
    from runner.plan import compile_plan

    np.save(project / "v.npy", np.random.default_rng(3).standard_normal(32).astype(np.float32))
    (project / "latest.npy").symlink_to("v.npy")  # shipped under the name the spec gives it
    spec = write_spec(project, BASE_SPEC.replace("vector: {random: {seed: 0}}", "vector: {file: latest.npy}"))
    plan = compile_plan(spec)
    assert set(plan.input_files()) == {"latest.npy"}
    elsewhere = project / "not-on-this-node"
    tasks = [dataclasses.replace(t, base_dir=str(elsewhere)) for t in plan.tasks()]
    with RayExecutor(plan.spec.execution, None, plan.input_files()) as executor:
        shards = [result.dataset for _, result in executor.map(tasks)]
    assert not elsewhere.exists() and all((shard.status == "ok").all() for shard in shards)
    local = runner.run(spec)
    by_point = {int(i): v for shard in shards for i, v in zip(shard.point.values, shard.logits.values)}
    expected = local.logits.stack(point=("coefficient", "layer")).transpose("point", ...).values
    assert len(by_point) == len(expected)
    for index, values in by_point.items():
        np.testing.assert_array_equal(values, expected[index])


SLOW_CLUSTER = BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 30]}").replace(
    "execution: {executor: local}", "execution: {points_per_task: 1, max_retries: 3}").replace(
    "d_model: 32", "d_model: 128").replace("batch: 4, length: 8", "batch: 32, length: 16")


def test_a_node_killed_mid_run_costs_only_its_tasks_retries(project):
    """Two worker nodes (ray.cluster_utils.Cluster, in a process of its own); one that ran tasks is killed mid-run."""
    spec = write_spec(project, SLOW_CLUSTER)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tests.cluster_run", str(spec), str(project / "out")], cwd=project,
                          env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert summary["points"] == 60 and summary["status"] == ["ok"], summary
    assert 6 <= summary["before_kill"] < 60, "the node was killed mid-run"
    assert summary["killed"] in summary["nodes"] and len(summary["nodes"]) == 2, summary


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_task_runs_on_cuda_and_equals_the_cpu_run(project):
    gpu = runner.run(write_spec(project, BASE_SPEC.replace("execution: {executor: local}", "execution: {gpus_per_task: 0.5}"),
                                "gpu.yaml"), out=project / "gpu")
    cpu = runner.run(write_spec(project, BASE_SPEC), out=project / "cpu")
    assert gpu.attrs["device"] != "cpu" and cpu.attrs["device"] == "cpu"
    np.testing.assert_allclose(gpu.logits.values, cpu.logits.values, atol=1e-4)
