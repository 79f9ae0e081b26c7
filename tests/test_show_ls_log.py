"""What runner tells you: `show`'s table of one variable, `ls` of every run, run.log, and -q / -v."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import runner
from runner.cli import main
from runner.results.folder import RunFolder
from runner.results.listing import summarize
from runner.results.table import choose, extremes, table
from tests.conftest import BASE_SPEC, write_spec

SPEC = BASE_SPEC.replace("metrics: [logits]", "metrics: [logits, kl]")


def table_rows(text: str, title: str) -> dict[str, list[str]]:
    """The rows of the table under ``title`` in ``text``: row label -> cells."""
    lines = text.splitlines()
    start = lines.index(title) + 2  # the title, then the column labels
    rows = {}
    for line in lines[start:]:
        if not line.strip() or line.startswith(("highest", "lowest", "...")):
            break
        label, *cells = line.split()
        rows[label] = cells
    return rows


def test_show_tabulates_kl_over_coefficient_and_layer_with_its_extremes(project, capsys):
    write_spec(project, SPEC)
    assert main(["run", "spec.yaml"]) == 0
    capsys.readouterr()
    assert main(["show", "base"]) == 0
    out = capsys.readouterr().out
    assert "provenance:" in out and "run_id" in out  # what show printed before stays
    kl = runner.load("base").kl.mean("sample")
    rows = table_rows(out, "kl, mean over 4 samples (rows coefficient, columns layer)")
    assert list(rows) == ["-1", "0", "1"]
    for label, coefficient in zip(rows, [-1.0, 0.0, 1.0]):
        assert rows[label] == [f"{float(kl.sel(coefficient=coefficient, layer=layer)):.3g}" for layer in (0, 1)]
    high = kl.where(kl == kl.max(), drop=True)
    assert (f"highest kl: {float(kl.max()):.3g} at coefficient={float(high.coefficient[0]):g}, "
            f"layer={int(high.layer[0])}") in out
    assert f"lowest kl:  {float(kl.min()):.3g} at coefficient=0, layer=0" in out  # no steering: KL 0

    assert main(["show", "base", "--var", "logits"]) == 0
    assert "logits, mean over 4 samples, vocab (20) (rows coefficient, columns layer)" in capsys.readouterr().out
    assert main(["show", "base", "--var", "nope"]) == 2
    assert "no variable 'nope' to show: this result has logits, kl" in capsys.readouterr().err


def test_table_marks_failed_points_sems_percent_and_many_dims():
    status = np.full((2, 3), "ok", dtype=object)
    status[1, 2] = "failed"
    ds = xr.Dataset({"success": (("seed", "layer"), [[0.5, 0.25, 1.0], [0.75, 0.125, np.nan]]),
                     "success_sem": (("seed", "layer"), np.full((2, 3), 0.05),
                                     {"long_name": "standard error of the mean of success over episode"}),
                     "n_episodes": (("seed", "layer"), np.full((2, 3), 50)),
                     "kl": (("seed", "layer", "episode"), np.arange(12.0).reshape(2, 3, 2)),
                     "status": (("seed", "layer"), status)},
                    coords={"seed": [0, 1], "layer": [0, 1, 2]})
    text = table(ds)  # success is preferred
    assert table_rows(text, "success, mean over 50 episodes (%) (rows seed, columns layer)") == {
        "0": ["50%", "±", "5%", "25%", "±", "5%", "100%", "±", "5%"],
        "1": ["75%", "±", "5%", "12.5%", "±", "5%", "failed"]}
    assert extremes(ds, k=1) == "highest success: 100% ± 5% at seed=0, layer=2\nlowest success:  12.5% ± 5% at seed=1, layer=1"
    assert choose(ds, spec_text="name: x\nfigure: {var: kl, x: layer}\n") == "kl"
    assert choose(ds, spec_text="figure: {var: missing}\n") == "success"
    wide = xr.Dataset({"kl": (("a", "b", "c"), np.arange(120.0).reshape(10, 6, 2)),
                       "status": (("a", "b", "c"), np.full((10, 6, 2), "ok", dtype=object))},
                      coords={"a": range(10), "b": range(6), "c": ["x", "y"]})
    text = table(wide, max_rows=40)
    assert text.splitlines()[0] == "kl (rows a, b, columns c)" and "a=3, b=2" in text
    assert text.splitlines()[-1] == "... 20 more rows not shown"


def test_ls_lists_runs_with_their_points_and_state(project, capsys):
    write_spec(project, SPEC)
    assert main(["run", "spec.yaml"]) == 0
    write_spec(project, SPEC.replace("name: base", "name: part").replace(
        "execution: {executor: local}", "execution: {points_per_task: 1}"), "part.yaml")
    assert main(["run", "part.yaml"]) == 0
    part = RunFolder.named("part", project)
    part.result_file.unlink()  # as if stopped before two of its tasks and the merge
    for shard in sorted(part.shard_dir.glob("*.nc"))[:2]:
        shard.unlink()
    (project / "results" / "only-log").mkdir()
    (project / "results" / "only-log" / "run.log").write_text("a log of a run refused before its first file\n")
    capsys.readouterr()
    assert main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "created", "(UTC)", "kind", "points", "status"]
    rows = {line.split()[0]: line.split()[3:] for line in lines[1:]}
    assert rows["base"] == ["intervene", "6/6", "complete"]
    assert rows["part"] == ["intervene", "4/6", "incomplete", "(2", "pending)"]
    assert rows["only-log"][-1] == "incomplete"
    with part.locked():  # a run writing it
        assert summarize(part.root).state == "running (2 pending)"
    assert summarize(part.root).state == "incomplete (2 pending)"
    assert main(["run", "spec.yaml", "--out", "results/only-log"]) == 0  # a folder of a log alone is not foreign
    assert summarize(project / "results" / "only-log").state == "complete"


def test_run_log_holds_each_invocation_and_fresh_starts_it_over(project, capsys):
    write_spec(project, SPEC)
    log = project / "results" / "base" / "run.log"
    assert main(["run", "spec.yaml"]) == 0
    first = log.read_text()
    assert first.startswith("==== ") and "runner run spec.yaml  (runner " in first and "executor local)" in first
    assert "INFO    running 6 points in 1 task" in first and "6/6 points" in first
    assert "wrote " in first and "(6 of 6 points ok)" in first
    assert "DEBUG   task " in first  # the detail -v shows is always in the log
    assert main(["run", "spec.yaml"]) == 0
    second = log.read_text()
    assert second.startswith(first) and second.count("==== ") == 2 and "all 6 points already done" in second
    assert main(["run", "spec.yaml", "--fresh"]) == 0
    assert log.read_text().count("==== ") == 1 and "--fresh" in log.read_text()
    foreign = project / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["run", "spec.yaml", "--out", str(foreign)]) == 2  # refused: nothing written, no log either
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_quiet_prints_nothing_and_verbose_prints_more(project, capfd):
    write_spec(project, SPEC)
    capfd.readouterr()
    assert main(["-q", "run", "spec.yaml"]) == 0
    assert capfd.readouterr() == ("", "")
    assert main(["run", "-q", "spec.yaml", "--fresh"]) == 0
    assert capfd.readouterr() == ("", "")
    assert main(["run", "spec.yaml", "--fresh"]) == 0  # the verbosity does not outlive its command
    default = capfd.readouterr()
    assert "wrote " in default.out and "running 6 points" in default.err and "DEBUG" not in default.err
    assert main(["-v", "run", "spec.yaml", "--fresh"]) == 0
    verbose = capfd.readouterr()
    assert verbose.out == default.out
    assert len(verbose.err.splitlines()) > len(default.err.splitlines())
    assert "executor local (execution.executor)" in verbose.err and "task " in verbose.err
    assert main(["-q", "run", "missing.yaml"]) == 2
    assert "spec file not found" in capfd.readouterr().err
    assert main(["-q", "validate", "spec.yaml"]) == 0 and capfd.readouterr() == ("", "")


@pytest.mark.parametrize("verb", [["validate", "spec.yaml"], ["plan", "spec.yaml"], ["schema"], ["ls"],
                                  ["status", "base"], ["show", "base"]])
def test_every_verb_takes_v_and_q_before_or_after_it(verb):
    from runner.cli import _parser

    for args in (["-q", *verb], [verb[0], "-q", *verb[1:]], ["-v", *verb], [verb[0], "-vv", *verb[1:]]):
        parsed = _parser().parse_args(args)
        assert getattr(parsed, "quiet", False) or getattr(parsed, "verbose", 0) >= 1
