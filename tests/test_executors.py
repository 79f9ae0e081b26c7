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
