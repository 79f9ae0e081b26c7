"""The run folder and result.nc: provenance, failures, refusal of a changed spec, load()."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import xarray as xr

import runner
from tests.conftest import BASE_SPEC, cli, write_spec

PROVENANCE = ["spec_yaml", "spec_sha256", "runner_version", "git_commit", "git_dirty", "torch_version",
              "transformer_lens_version", "ray_version", "minigrid_version", "xarray_version", "created",
              "executor", "device"]


def test_result_opens_with_plain_xarray_and_carries_provenance(project):
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    spec = write_spec(project, BASE_SPEC)
    subprocess.run(["git", "add", "spec.yaml"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "spec"], cwd=project, check=True)
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    folder = project / "results" / "base"
    assert sorted(p.name for p in folder.iterdir()) == [".lock", ".runner", "result.nc", "run.log", "shards",
                                                             "spec.yaml", "vectors"]
    assert (folder / "spec.yaml").read_text() == spec.read_text()
    with xr.open_dataset(folder / "result.nc") as ds:
        assert dict(ds.sizes) == {"coefficient": 3, "layer": 2, "sample": 4, "vocab": 20}
        assert ds.logits.dims == ("coefficient", "layer", "sample", "vocab")
        assert ds.coefficient.values.tolist() == [-1.0, 0.0, 1.0] and ds.layer.values.tolist() == [0, 1]
        assert ds.status.dims == ("coefficient", "layer") and (ds.status == "ok").all()
        for key in PROVENANCE:
            assert key in ds.attrs, key
        assert ds.attrs["spec_yaml"] == spec.read_text()
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
        assert ds.attrs["git_commit"] == head
        assert json.loads(ds.attrs["git_dirty"]) is False
        assert ds.attrs["executor"] == "local" and ds.attrs["device"] == "cpu"


def test_load_accepts_name_spec_folder_and_file(project):
    spec = write_spec(project, BASE_SPEC)
    ran = runner.run(spec)
    for x in ("base", spec, project / "results" / "base", project / "results" / "base" / "result.nc"):
        loaded = runner.load(x)
        np.testing.assert_array_equal(loaded.logits.values, ran.logits.values)


def test_a_failing_point_is_recorded_and_the_others_finish(project):
    # a coefficient of 3e38 overflows float32: those points' logits are not numbers, and they fail, not "ok"
    text = BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "[-1.0, 1.0, 3.0e+38]")
    write_spec(project, text)
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 1, done.stderr
    assert "2 of 6 points failed" in done.stderr and "coefficient=3e+38" in done.stderr
    assert "Traceback" not in done.stderr
    ds = runner.load("base")
    assert (ds.status.sel(coefficient=[-1.0, 1.0]) == "ok").all()
    assert (ds.status.sel(coefficient=3e38) == "failed").all()
    assert all("not finite" in e for e in ds.error.sel(coefficient=3e38).values.ravel())
    assert np.isnan(ds.logits.sel(coefficient=3e38)).all()
    assert np.isfinite(ds.logits.sel(coefficient=[-1.0, 1.0])).all()
    status = cli("status", "base", cwd=project)
    assert "failed   2" in status.stdout and "coefficient=3e+38" in status.stdout


def test_a_changed_spec_is_refused_unless_fresh(project):
    write_spec(project, BASE_SPEC)
    assert cli("run", "spec.yaml", cwd=project).returncode == 0
    before = (project / "results" / "base" / "result.nc").read_bytes()
    write_spec(project, BASE_SPEC.replace("[-1, 1, 3]", "[-1, 1, 5]"))
    refused = cli("run", "spec.yaml", cwd=project)
    assert refused.returncode == 2 and "--fresh" in refused.stderr and "Traceback" not in refused.stderr
    assert (project / "results" / "base" / "result.nc").read_bytes() == before
    fresh = cli("run", "spec.yaml", "--fresh", cwd=project)
    assert fresh.returncode == 0, fresh.stderr
    assert runner.load("base").sizes["coefficient"] == 5


def test_same_spec_rerun_resumes_everything_and_out_moves_the_folder(project):
    write_spec(project, BASE_SPEC)
    assert cli("run", "spec.yaml", cwd=project).returncode == 0
    again = cli("run", "spec.yaml", cwd=project)
    assert again.returncode == 0 and "all 6 points already done" in again.stderr
    elsewhere = cli("run", "spec.yaml", "--out", "other/place", cwd=project)
    assert elsewhere.returncode == 0
    assert (project / "other" / "place" / "result.nc").is_file()


def test_writing_a_default_explicitly_is_the_same_run(project):
    write_spec(project, BASE_SPEC)
    assert cli("run", "spec.yaml", cwd=project).returncode == 0
    explicit = BASE_SPEC.replace("execution: {executor: local}", "execution: {executor: local}\ndescription: same\n")
    write_spec(project, explicit.replace("layer: 0\n", "layer: 0\n  head: null\n"))
    again = cli("run", "spec.yaml", cwd=project)
    assert again.returncode == 0 and "all 6 points already done" in again.stderr
