"""The fast verbs: validate, schema, plan and status import no torch and write nothing."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import BASE_SPEC, cli, write_spec


def test_validate_and_plan_import_no_torch_ray_or_xarray(project):
    write_spec(project, BASE_SPEC)
    code = ("import sys; from runner.cli import main; "
            "assert main(['validate', 'spec.yaml']) == 0; assert main(['plan', 'spec.yaml']) == 0; "
            "heavy = [m for m in ('torch', 'ray', 'xarray', 'transformer_lens') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


def test_plan_describes_the_grid_and_writes_nothing(project):
    write_spec(project, BASE_SPEC.replace("execution: {executor: local}", "execution: {points_per_task: 4}"))
    done = cli("plan", "spec.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "coefficient=3 x layer=2" in done.stdout
    assert "points    6" in done.stdout and "tasks     2" in done.stdout
    assert str(project / "results" / "base") in done.stdout
    assert list(project.iterdir()) == [project / "spec.yaml"]


def test_validate_many_specs_reports_each(project):
    write_spec(project, BASE_SPEC, "good.yaml")
    write_spec(project, BASE_SPEC.replace("intervention.layer: [0, 1]", "intervention.layer: [0, 7]"), "bad.yaml")
    done = cli("validate", "good.yaml", "bad.yaml", cwd=project)
    assert done.returncode == 2
    assert "good.yaml: ok (6 points)" in done.stdout
    assert "bad.yaml:16:27: sweep.intervention.layer[1]: sweep value 7 for 'intervention.layer': layer 7 is out of range" \
        in done.stderr


def test_schema_is_json_schema_with_descriptions(project):
    done = cli("schema", cwd=project)
    schema = json.loads(done.stdout)
    intervene, train = schema["$defs"]["Spec"], schema["$defs"]["TrainSpec"]
    assert intervene["additionalProperties"] is False and train["additionalProperties"] is False
    assert {"name", "model", "data", "intervention", "sweep", "metrics", "execution"} <= set(intervene["properties"])
    assert {"name", "model", "data", "train", "eval", "sweep", "execution"} <= set(train["properties"])
    assert "description" in intervene["properties"]["sweep"]
    assert "Steer" in schema["$defs"] and "description" in schema["$defs"]["Steer"]["properties"]["coefficient"]


def test_status_of_a_missing_run_is_a_clear_error(project):
    done = cli("status", "nothing-here", cwd=project)
    assert done.returncode == 2 and "no run at" in done.stderr and "Traceback" not in done.stderr


def test_show_prints_the_result_and_its_provenance(project):
    write_spec(project, BASE_SPEC)
    assert cli("run", "spec.yaml", cwd=project).returncode == 0
    done = cli("show", "base", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "coefficient: 3" in done.stdout and "logits" in done.stdout
    assert "run_id" in done.stdout and "torch_version" in done.stdout
    missing = cli("show", "nothing", cwd=project)
    assert missing.returncode == 2 and "no result at" in missing.stderr


def test_plan_describes_a_train_spec(project):
    write_spec(project, """\
        name: t
        kind: train
        data: {trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 3}}
        model: {architecture: behavior_clone}
        sweep:
          seed: [0, 1]
        """)
    done = cli("plan", "spec.yaml", cwd=project)
    assert done.returncode == 0 and "trains    behavior_clone agents, 2000 steps each" in done.stdout, done.stderr
    assert "points    2" in done.stdout and list(project.iterdir()) == [project / "spec.yaml"]


def test_schema_piped_into_head_exits_quietly(project):
    done = subprocess.run(f"{sys.executable} -m runner schema | head -c 100", shell=True, cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("{") and done.stderr == ""


def test_provenance_keeps_the_runner_apart_from_the_experiment(project):
    import runner
    from tests.conftest import ROOT

    ds = runner.run(write_spec(project, BASE_SPEC))  # the project folder is not a git repository
    assert ds.attrs["git_commit"] == "not a git repository" and json.loads(ds.attrs["git_dirty"]) is None
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        assert ds.attrs["runner_commit"] == head
    assert ds.attrs["runner_version"] == runner.__version__ and json.loads(ds.attrs["input_files"]) == {}
