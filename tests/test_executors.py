"""Same spec, same numbers: local or Ray, one point per task or sixteen."""
from __future__ import annotations

import numpy as np
import pytest

import runner
from runner.errors import RunnerError
from conftest import BASE_SPEC, cli, write_spec

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
    reference = results["local", 1]
    assert reference.logits.dims == ("coefficient", "layer", "sample", "vocab")
    for key, ds in results.items():
        assert (ds.status == "ok").all(), key
        assert ds.attrs["executor"] == key[0]
        np.testing.assert_array_equal(ds.logits.values, reference.logits.values, err_msg=str(key))
        np.testing.assert_array_equal(ds.kl.values, reference.kl.values, err_msg=str(key))


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
