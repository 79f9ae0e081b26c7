"""Fault injection: results are never stale, never silently wrong, never lost.

Each test reproduces a way a careful user or an attacker broke an earlier runner:
inputs rewritten in place, non-finite numbers, folders runner did not make, two
runs on one folder, damaged shards, code smuggled in an env id, unbounded input,
a full disk.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

import runner
from runner.cli import main
from tests.conftest import BASE_SPEC, cli, write_spec

STEER_FILE = BASE_SPEC.replace("{random: {seed: 0}}", "{file: v.npy}")


def run_quietly(spec, capfd, **kwargs):
    """runner.run, and what it logged (to see whether points ran again)."""
    capfd.readouterr()
    ds = runner.run(spec, **kwargs)
    return ds, capfd.readouterr().err


# ---------------------------------------------------------------- stale results

def test_a_vector_file_rewritten_in_place_is_read_again(project, capfd):
    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    spec = write_spec(project, STEER_FILE)
    first, _ = run_quietly(spec, capfd)
    np.save(project / "v.npy", -np.ones(32, dtype=np.float32))
    again, log = run_quietly(spec, capfd)
    assert "running 6 points" in log and not np.allclose(first.logits.values, again.logits.values)
    assert json.loads(again.attrs["input_files"])["v.npy"] != json.loads(first.attrs["input_files"])["v.npy"]
    _, log = run_quietly(spec, capfd)
    assert "all 6 points already done" in log


@pytest.fixture
def agent_inputs(project):
    """An agent checkpoint and an .npz of demonstrations in the project folder, and a spec reading both."""
    from runner.envs import generate
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    def agent(seed: int) -> None:
        config = AgentConfig("behavior_clone", n_layers=1, d_model=16, n_heads=2, context=2, mission_length=5,
                             max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0", init_seed=seed)
        save_agent(Agent(config).eval(), project / "agent")

    agent(0)
    generate("BabyAI-GoToRedBallGrey-v0", "bot", 3, seed=0).save_npz(project / "demos.npz")
    spec = write_spec(project, """\
        name: agent-files
        model: {checkpoint: agent}
        data: {file: demos.npz}
        intervention: {kind: scale, layer: 0}
        sweep:
          intervention.coefficient: [0.0, 1.0]
        metrics: [action_logits]
        """)
    return spec, agent


def test_weights_or_demonstrations_rewritten_in_place_are_read_again(project, capfd, agent_inputs):
    from runner.envs import generate

    spec, agent = agent_inputs
    first, _ = run_quietly(spec, capfd)
    agent(1)  # other weights, same folder and file names
    second, log = run_quietly(spec, capfd)
    assert "running 2 points" in log and not np.allclose(first.action_logits.values, second.action_logits.values)
    generate("BabyAI-GoToRedBallGrey-v0", "bot", 3, seed=50).save_npz(project / "demos.npz")
    third, log = run_quietly(spec, capfd)
    assert "running 2 points" in log and third.sizes["sample"] != second.sizes["sample"] or \
        not np.allclose(third.action_logits.values, second.action_logits.values)
    files = json.loads(third.attrs["input_files"])
    assert set(files) == {"agent/config.json", "agent/model.safetensors", "demos.npz"}
    assert files["agent/model.safetensors"] != json.loads(first.attrs["input_files"])["agent/model.safetensors"]


# ---------------------------------------------------------------- garbage in, garbage out

NON_FINITE = {
    "nan coefficient": ("coefficient: 1.0", "coefficient: .nan", "expected a finite number"),
    "inf coefficient": ("coefficient: 1.0", "coefficient: -.inf", "expected a finite number"),
    "infinite linspace": ("{linspace: [-1, 1, 3]}", "{linspace: [-.inf, .inf, 3]}", "finite numbers"),
    "overflowing logspace": ("{linspace: [-1, 1, 3]}", "{logspace: [0, 400, 3]}", "overflows float64"),
    "nan among swept values": ("{linspace: [-1, 1, 3]}", "[0.5, .nan]", "expected a finite number"),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_non_finite_numbers_in_a_spec_are_refused(project, capsys, case):
    old, new, phrase = NON_FINITE[case]
    write_spec(project, BASE_SPEC.replace(old, new))
    assert main(["run", "spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:" in err and phrase in err and not (project / "results").exists()


@pytest.mark.parametrize("array, phrase", [
    (np.full(32, np.nan, dtype=np.float32), "32 non-finite values"),
    (np.ones(32, dtype=np.complex64), "complex64 values; a vector holds real numbers"),
])
def test_a_vector_file_of_non_finite_or_complex_numbers_is_refused(project, capsys, array, phrase):
    np.save(project / "v.npy", array)
    write_spec(project, STEER_FILE)
    assert main(["validate", "spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:13:18: intervention.vector.file" in err and phrase in err


def test_undefined_restored_fractions_are_nan_and_counted(project):
    # the source repeats the data's first two rows: there the patch cannot restore anything (0 / 0)
    data = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], [3, 3, 3, 3, 3, 3, 3, 3], [9, 8, 9, 8, 9, 8, 9, 8]]
    source = data[:2] + [[0, 1, 0, 1, 0, 1, 0, 1], [5, 5, 5, 5, 5, 5, 5, 5]]
    write_spec(project, BASE_SPEC.replace("random_tokens: {batch: 4, length: 8, seed: 0}", f"tokens: {data}")
               .replace("kind: steer", f"kind: patch\n  source: {{tokens: {source}}}")
               .replace("  vector: {random: {seed: 0}}\n", "").replace("[logits]", "[restored_fraction]"))
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "restored_fraction: 12 of 24 values undefined (NaN where the source run's value equals" in done.stdout
    ds = runner.load("base")
    assert np.isnan(ds.restored_fraction.sel(sample=[0, 1])).all()
    assert np.isfinite(ds.restored_fraction.sel(sample=[2, 3])).all() and (ds.status == "ok").all()


# ---------------------------------------------------------------- the run folder is owned

def test_runner_writes_only_into_folders_it_made(project, capsys):
    write_spec(project, BASE_SPEC)
    mine = project / "mine"
    (mine / "models").mkdir(parents=True)
    (mine / "models" / "precious.bin").write_bytes(b"x")
    (mine / "spec.yaml").write_text(BASE_SPEC)
    before = sorted(p.relative_to(mine) for p in mine.rglob("*"))
    for extra in ([], ["--fresh"]):
        assert main(["run", "spec.yaml", "--out", str(mine), *extra]) == 2
        assert "runner did not write" in capsys.readouterr().err
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before
    assert main(["run", "spec.yaml", "--fresh"]) == 0  # its own folder: --fresh is allowed and clears it
    np.save(project / "results" / "base" / "vectors" / "stale.npy", np.zeros(2))
    write_spec(project, BASE_SPEC.replace("{random: {seed: 0}}", "{random: {seed: 1}}"))
    assert main(["run", "spec.yaml", "--fresh"]) == 0
    assert not (project / "results" / "base" / "vectors" / "stale.npy").exists()


def test_a_second_run_on_a_busy_folder_exits_2_and_the_first_finishes(project):
    write_spec(project, BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 150]}")
               .replace("execution: {executor: local}", "execution: {points_per_task: 1}"))
    first = subprocess.Popen([sys.executable, "-m", "runner", "run", "spec.yaml"], cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shards = project / "results" / "base" / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(shards.glob("*.nc")) and first.poll() is None:
        time.sleep(0.01)
    second = cli("run", "spec.yaml", "--fresh", cwd=project)
    out, err = first.communicate(timeout=300)
    assert second.returncode == 2 and "is busy: another run is writing it (pid" in second.stderr, second.stderr
    assert first.returncode == 0 and "300 of 300 points ok" in out, err
    assert (runner.load("base").status == "ok").all()


def test_damaged_shards_are_recomputed_and_leftovers_removed(project):
    spec = write_spec(project, BASE_SPEC.replace("execution: {executor: local}", "execution: {points_per_task: 1}"))
    clean = runner.run(spec)
    shards = sorted((project / "results" / "base" / "shards").glob("*.nc"))
    shards[0].write_bytes(shards[0].read_bytes()[:200])          # truncated
    shards[1].write_bytes(b"")                                    # empty
    import xarray as xr

    value = np.float32(xr.load_dataset(shards[2]).logits.values.flat[0]).tobytes()
    raw = bytearray(shards[2].read_bytes())                       # one value changed: only the checksum can tell
    raw[raw.find(value)] ^= 0x01
    shards[2].write_bytes(bytes(raw))
    (project / "results" / "base" / "shards" / ".abc.nc.tmp").write_bytes(b"left by a killed run")
    (project / "results" / "base" / "result.nc").unlink()  # as if the run had stopped before merging
    status = cli("status", "base", cwd=project)
    assert status.returncode == 0 and status.stdout.count("damaged shard") == 3 and "Traceback" not in status.stderr
    assert "no longer matches its checksum" in status.stdout and "pending  3" in status.stdout
    again = cli("run", "spec.yaml", cwd=project)
    assert again.returncode == 0 and "is damaged" in again.stderr and "temporary file" in again.stderr
    recomputed = runner.load("base")
    np.testing.assert_array_equal(recomputed.logits.values, clean.logits.values)
    assert not list((project / "results" / "base").rglob("*.tmp"))
    assert list((project / "results" / "base" / "shards").glob("*.damaged"))


# ---------------------------------------------------------------- hostile input

EVIL = "import pathlib; pathlib.Path('IMPORTED').write_text('code from a data file ran')\nclass Env: pass\n"


def test_module_prefixed_env_ids_are_refused_wherever_they_come_from(project):
    from runner.envs import generate
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    (project / "evil.py").write_text(EVIL)
    demos = generate("BabyAI-GoToRedBallGrey-v0", "bot", 2, seed=0)
    demos.env_id = "evil:Env"
    demos.save_npz(project / "demos.npz")
    config = AgentConfig("behavior_clone", n_layers=1, d_model=16, n_heads=2, context=2, mission_length=5,
                         max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0")
    folder = save_agent(Agent(config), project / "agent")
    stored = json.loads((folder / "config.json").read_text())
    stored["config"]["env_id"] = "evil:Env"
    (folder / "config.json").write_text(json.dumps(stored))
    specs = {
        "spec": "kind: train\ndata: {trajectories: {env: 'evil:Env', policy: random, episodes: 2}}\n"
                "model: {architecture: behavior_clone}\n",
        "npz": "kind: train\ndata: {file: demos.npz}\nmodel: {architecture: behavior_clone}\n",
        "config": "model: {checkpoint: agent}\ndata: {trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2}}\n"
                  "metrics: [action_logits]\n",
    }
    for where, body in specs.items():
        write_spec(project, f"name: evil-{where}\n{body}", f"{where}.yaml")
        done = cli("validate", f"{where}.yaml", cwd=project, timeout=60)
        assert done.returncode == 2 and "unknown environment 'evil:Env'" in done.stderr, (where, done.stderr)
        assert not (project / "IMPORTED").exists(), where


BOMB = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "1"] * 10) + "]\n" for i in range(9))
LIMITS = {
    "alias expansion": (f"{BOMB}name: x\n", "expands to more than 1,000,000 values"),
    "deep nesting": ("name: x\nseed: " + "[" * 3000 + "]" * 3000 + "\n", "nests mappings or lists more than 40 deep"),
    "control character": ("name: x\x07y\n", "U+0007 is not allowed"),
    "NUL byte": ("name: x\nseed: 1\x00\n", "U+0000 is not allowed"),
    "huge file": ("name: x\n" + "#" * (5 * 2**20) + "\n", "a spec holds at most"),
    "10^9 points": (BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 100000]}")
                    .replace("[0, 1]\n", "[0, 1]\n  seed: {range: [0, 10000]}\n"), "more than execution.max_points"),
    "one huge axis": (BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{range: [0, 1000000000000]}"), "this axis has"),
    "a name ending in a newline": (BASE_SPEC.replace("name: base", 'name: "base\\n"'), "a name is a slug"),
}


def test_unbounded_input_is_refused_quickly_in_bounded_memory(project):
    for case, (text, _) in LIMITS.items():
        (project / f"{len(case)}-{case[:4]}.yaml".replace(" ", "_")).write_text(text)
    probe = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30)); "
             "from runner.cli import main; sys.exit(main(['validate', sys.argv[1]]))")
    for case, (text, phrase) in LIMITS.items():
        name = f"{len(case)}-{case[:4]}.yaml".replace(" ", "_")
        done = subprocess.run([sys.executable, "-c", probe, name], cwd=project, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and phrase in done.stderr and "Traceback" not in done.stderr, (case, done.stderr)
    assert not (project / "results").exists()


CONFIGS = {
    "a billion layers": ({"n_layers": 10**9}, "n_layers: Input should be less than or equal to 128"),
    "a context of 10^8": ({"context": 10**8}, "context: Input should be less than or equal to 4096"),
    "no heads": ({"n_heads": 0}, "n_heads: Input should be greater than or equal to 1"),
    "a float for an int": ({"d_model": 16.0}, "d_model: Input should be a valid integer"),
    "a missing field": ({"architecture": None}, "architecture: Field required"),
    "too many parameters": ({"max_timestep": 1_000_000, "d_model": 4096}, "parameters, more than runner builds"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_a_checkpoint_config_out_of_bounds_is_refused(project, capsys, case):
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    config = AgentConfig("behavior_clone", n_layers=1, d_model=16, n_heads=2, context=2, mission_length=5,
                         max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0")
    folder = save_agent(Agent(config), project / "agent")
    stored = json.loads((folder / "config.json").read_text())
    change, phrase = CONFIGS[case]
    for key, value in change.items():
        stored["config"].pop(key) if value is None else stored["config"].__setitem__(key, value)
    (folder / "config.json").write_text(json.dumps(stored))
    write_spec(project, "name: x\nmodel: {checkpoint: agent}\n"
                        "data: {trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2}}\nmetrics: [action_logits]\n")
    assert main(["validate", "spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:2:" in err and "config.json" in err and phrase in err, err


# ---------------------------------------------------------------- faults of the machine

def test_an_unwritable_out_is_refused_before_torch_is_imported(project):
    write_spec(project, BASE_SPEC)
    probe = ("import sys; from runner.cli import main; code = main(['run', 'spec.yaml', '--out', '/proc/runner-out']); "
             "print('torch imported:', 'torch' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot write the run folder /proc/runner-out" in done.stderr
    assert "torch imported: False" in done.stdout and "Traceback" not in done.stderr


def test_a_file_size_limit_stops_the_run_with_exit_3_and_keeps_finished_points(project):
    write_spec(project, BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 30]}")
               .replace("execution: {executor: local}", "execution: {points_per_task: 1}"))

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # shards fit, the merged result does not

    done = subprocess.run([sys.executable, "-m", "runner", "run", "spec.yaml"], cwd=project, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit_files, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert done.returncode == 3, done.stderr
    assert "stopped by the machine: File too large" in done.stderr and "finished points are kept" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(list((project / "results" / "base" / "shards").glob("*.nc"))) == 60
    resumed = cli("run", "spec.yaml", cwd=project)
    assert resumed.returncode == 0 and "60 of 60 points already done" in resumed.stderr


def test_a_full_disk_stops_the_run_with_exit_3(project):
    disk = project / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        write_spec(project, BASE_SPEC.replace("{linspace: [-1, 1, 3]}", "{linspace: [-1, 1, 30]}")
                   .replace("execution: {executor: local}", "execution: {points_per_task: 1}"))
        done = cli("run", "spec.yaml", "--out", str(disk / "run"), cwd=project)
        assert done.returncode == 3, done.stderr
        assert "stopped by the machine: No space left on device" in done.stderr and "Traceback" not in done.stderr
        assert list((disk / "run" / "shards").glob("*.nc")), "the shards that fitted are kept"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_status_says_when_shards_come_from_different_runners(project):
    import xarray as xr

    from runner.results.shards import write_shard

    spec = write_spec(project, BASE_SPEC.replace("execution: {executor: local}", "execution: {points_per_task: 3}"))
    runner.run(spec)
    shard = sorted((project / "results" / "base" / "shards").glob("*.nc"))[0]
    ds = xr.load_dataset(shard)
    stamp = {k: v for k, v in ds.attrs.items() if k != "checksum"} | {"runner_version": "0.0.9", "runner_commit": "abc"}
    ds.attrs = {}
    write_shard(shard, ds, stamp)  # what an older runner wrote
    status = cli("status", "base", cwd=project)
    assert status.returncode == 0 and "computed by 2 runner versions: 0.0.9 (abc)" in status.stdout, status.stdout
