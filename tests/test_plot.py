"""runner plot and runner.plot: a figure of a result, laid out from its dims."""
from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

import runner
from runner.errors import RunnerError
from tests.conftest import cli, write_spec

TOKEN_MODEL = """\
model:
  transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
data:
  random_tokens: {batch: 4, length: 8, seed: 0}
"""

STEER = """\
name: steer
seed: 0
""" + TOKEN_MODEL + """\
intervention: {kind: steer, hook: resid_pre, layer: 0, position: last, vector: {random: {seed: 0, norm: match}}}
sweep:
  intervention.vector:
    values: [{random: {seed: 0, norm: match}}, {random: {seed: 1, norm: match}}]
    name: vector
  intervention.coefficient: {linspace: [-2, 2, 5]}
  intervention.layer: [0, 1]
metrics: [logits, kl, {logit_diff: {tokens: [1, 9]}}]
figure: {var: logit_diff, x: coefficient, hue: layer}
"""

PATCH = """\
name: patch
""" + TOKEN_MODEL.replace("batch: 4", "batch: 8") + """\
intervention:
  kind: patch
  hook: resid_pre
  layer: 0
  position: 0
  source: {random_tokens: {batch: 8, length: 8, seed: 1}}
sweep:
  intervention.layer: [0, 1]
  intervention.position: {range: [0, 8]}
metrics: [{logit_diff: {tokens: [1, 9]}}, {restored_fraction: {tokens: [1, 9], reduce: mean}}]
"""

TRAIN = """\
name: tiny-train
kind: train
data:
  trajectories: {env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 20, seed: 0}
model: {architecture: behavior_clone, n_layers: 2, d_model: 32, n_heads: 2, context: 2}
train: {steps: 10, batch_size: 16}
eval: {episodes: 2}
"""

ABLATE = """\
name: ablate
model: {checkpoint: results/tiny-train/models/model}
data:
  trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 2, seed: 300}
intervention: {kind: ablate, method: zero, hook: resid_pre, layer: 1}
sweep:
  intervention.layer: [0, 1]
  intervention.position: {range: [0, 6]}
metrics: [{action_probs: {reduce: mean}}, {rollout: {episodes: 4, max_steps: 20, seed: 4242, reduce: mean}}]
"""

ACTIONS = ["left", "right", "forward", "pickup", "drop", "toggle", "done"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A project with four finished runs: a token steer scan (3 sweep dims), a token patching scan
    (layer x position), a tiny trained agent and an ablation scan of it (layer x position, by role; with
    closed-loop success)."""
    folder = tmp_path_factory.mktemp("plots")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for name, text in (("steer", STEER), ("patch", PATCH), ("train", TRAIN), ("ablate", ABLATE)):
            runner.run(write_spec(folder, text, f"{name}.yaml"))
    return folder


def load(runs, name):
    return runner.load(runs / "results" / name)


def assert_png(path):
    """A real PNG of a sensible size."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(path).shape[:2]
    assert 300 <= width <= 4000 and 300 <= height <= 4000, (width, height)


def panels(fig):
    """The axes that hold data (not colorbars), in order."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_a_swept_coefficient_is_a_line_per_layer_with_standard_errors(runs):
    ds = load(runs, "steer").isel(vector=0)
    fig = runner.plot(ds, "kl", out=runs / "kl.png")
    assert_png(runs / "kl.png")
    (ax,) = panels(fig)
    assert ax.get_xlabel() == "coefficient" and "kl" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["layer=0", "layer=1"]
    assert len(ax.containers) == 2, "one line with error bars per layer"
    kl = ds.kl.sel(layer=1)
    line, _, (bars,) = ax.containers[1]
    np.testing.assert_allclose(line.get_xdata(), [-2, -1, 0, 1, 2])
    np.testing.assert_allclose(line.get_ydata(), kl.mean("sample").values, rtol=1e-6)
    half = np.array([abs(s[1][1] - s[0][1]) / 2 for s in bars.get_segments()])
    np.testing.assert_allclose(half, (kl.std("sample", ddof=1) / np.sqrt(4)).values, rtol=1e-5, atol=1e-9)
    assert "vector=random(norm=match, seed=0)" in fig.get_suptitle()   # the selection is said, not as JSON


def test_the_spec_figure_is_the_default_and_three_dims_are_panels(runs):
    fig = runner.plot(load(runs, "steer"))   # figure: {var: logit_diff, x: coefficient, hue: layer}
    assert "logit_diff" in fig.get_suptitle()
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == ["vector=random(norm=match, seed=0)", "vector=random(norm=match, seed=1)"]
    assert all(ax.get_xlabel() == "coefficient" and len(ax.containers) == 2 for ax in axes)
    assert axes[0].get_ylim() == axes[1].get_ylim(), "panels share their y axis"


def test_a_panel_without_values_is_left_out(runs):
    ds = load(runs, "steer")
    ds["logit_diff"] = ds.logit_diff.where(ds.vector != ds.vector[1])  # e.g. a train grid's loss for ppo
    axes = panels(runner.plot(ds, "logit_diff", col="vector"))
    assert [ax.get_title() for ax in axes] == ["vector=random(norm=match, seed=0)"]


def test_failed_points_are_left_out(runs):
    ds = load(runs, "steer").isel(vector=0)
    ds["status"] = ds.status.copy()
    ds["status"].loc[{"coefficient": 2.0, "layer": 1}] = "failed"
    ax, = panels(runner.plot(ds, "kl"))
    ok, failed = (ax.containers[i][0].get_ydata() for i in (0, 1))
    assert np.isfinite(ok).all() and np.isnan(failed[-1]) and np.isfinite(failed[:-1]).all()


def test_a_signed_effect_is_a_diverging_heatmap_centred_on_zero(runs):
    ds = load(runs, "patch")
    values = ds.restored_fraction.values
    assert values.min() < 0 < values.max(), "the scan must take both signs for this test to mean anything"
    fig = runner.plot(ds, "restored_fraction", out=runs / "patch.png")
    assert_png(runs / "patch.png")
    (ax,) = panels(fig)
    (mesh,) = ax.collections
    low, high = mesh.get_clim()
    assert low == -high and high == pytest.approx(np.abs(values).max())
    assert mesh.get_cmap().name.startswith("RdBu_r")
    np.testing.assert_allclose(np.ma.getdata(mesh.get_array()).reshape(2, 8), values, rtol=1e-6)  # rows: layers
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(p) for p in range(8)]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("position", "layer")


def test_a_one_signed_variable_is_a_sequential_heatmap(runs):
    ds = load(runs, "patch")
    fig = runner.plot(ds)   # no figure: in the spec: logit_diff comes before restored_fraction
    assert "logit_diff" in fig.get_suptitle()
    mean = ds.logit_diff.mean("sample").values
    (mesh,) = panels(fig)[0].collections
    if mean.min() < 0 < mean.max():
        pytest.skip("logit_diff takes both signs on this machine")
    assert mesh.get_cmap().name == "viridis" and mesh.get_clim() == pytest.approx((mean.min(), mean.max()))


def test_agent_panels_are_labelled_by_role_and_action_name(runs):
    ds = load(runs, "ablate")
    fig = runner.plot(ds, "action_probs", out=runs / "ablate.png")   # layer x position x action
    assert_png(runs / "ablate.png")
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == ["layer=0", "layer=1"]
    roles = ds.role.values.tolist()
    assert roles[0] == "I0" and roles[-1] == "S1"
    for ax in axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ACTIONS
        assert [t.get_text() for t in ax.get_yticklabels()] == roles
    clims = {ax.collections[0].get_clim() for ax in axes}
    assert len(clims) == 1, "one colour scale for every panel"
    lines = panels(runner.plot(ds, "action_probs", x="action", hue="position", col="layer"))
    assert [t.get_text() for t in lines[0].get_legend().get_texts()] == [f"position={r}" for r in roles]


def test_rollout_success_has_its_interval_as_error_bars(runs):
    ds = load(runs, "ablate").sel(layer=0)
    (ax,) = panels(runner.plot(ds, "success"))   # one dim left: position, by role
    assert [t.get_text() for t in ax.get_xticklabels()] == ds.role.values.tolist()
    line, _, (bars,) = ax.containers[0]
    np.testing.assert_allclose(line.get_ydata(), ds.success.values, rtol=1e-6)
    ends = np.array([sorted(point[1] for point in segment) for segment in bars.get_segments()])
    np.testing.assert_allclose(ends, np.stack([ds.success_ci_low, ds.success_ci_high], axis=1), rtol=1e-5, atol=1e-7)
    assert not np.allclose(ends[:, 1] - ds.success.values, ds.success.values - ends[:, 0]), "Wilson: asymmetric"


def test_too_many_dims_and_unknown_dims_are_refused_with_a_way_out(runs):
    ds = load(runs, "steer")
    with pytest.raises(RunnerError) as err:
        runner.plot(ds, "logits")   # vector x coefficient x layer x vocab, once samples are averaged
    message = str(err.value)
    assert "4 dims" in message and "vocab (20)" in message and "--sel" in message and "ds.sel(" in message
    fig = runner.plot(ds.sel(layer=1), "logits")   # 20 vocab values: a heatmap per vector, not 20 lines
    assert len([ax for ax in panels(fig) if ax.collections]) == 2
    with pytest.raises(RunnerError, match=r"no dim 'nope' \(--x\); its dims: vector \(2\), coefficient \(5\)"):
        runner.plot(ds, "kl", x="nope")
    with pytest.raises(RunnerError, match="no variable 'nope'"):
        runner.plot(ds, "nope")


def test_a_figure_does_not_change_the_run_id_and_is_checked(runs):
    with_figure = runner.load_spec(runs / "steer.yaml")
    without = runner.spec.parse_spec(STEER.replace("figure: {var: logit_diff, x: coefficient, hue: layer}\n", ""))
    assert with_figure.spec.figure.x == "coefficient" and without.spec.figure is None
    assert with_figure.run_id == without.run_id
    with pytest.raises(RunnerError, match=r"figure.hue: figure hue 'layr' .*did you mean 'layer'"):
        runner.spec.parse_spec(STEER.replace("hue: layer}", "hue: layr}"))


def test_cli_plot_writes_the_spec_figure_beside_the_result(runs):
    done = cli("plot", "steer", cwd=runs)
    assert done.returncode == 0, done.stderr
    out = runs / "results" / "steer" / "logit_diff.png"
    assert f"wrote {out.relative_to(runs)}" in done.stdout
    assert_png(out)
    done = cli("plot", "steer.yaml", "logits", "--sel", "layer=0", "--out", "figures/logits.pdf", cwd=runs)
    assert done.returncode == 0, done.stderr
    assert (runs / "figures" / "logits.pdf").read_bytes()[:4] == b"%PDF"


def test_cli_plot_refuses_a_bad_dim_in_one_paragraph(runs):
    done = cli("plot", "steer", "kl", "--x", "nope", cwd=runs)
    assert done.returncode == 2
    assert "no dim 'nope'" in done.stderr and "coefficient (5)" in done.stderr and "Traceback" not in done.stderr
    done = cli("plot", "steer", "logits", "--sel", "layer=7", cwd=runs)
    assert done.returncode == 2 and "layer has no value '7'; its values: 0, 1" in done.stderr


def test_plotting_imports_no_torch(runs):
    code = ("import sys; from runner.cli import main; assert main(['plot', 'patch', '--out', 'p.png']) == 0; "
            "heavy = ('torch', 'ray', 'transformer_lens', 'matplotlib.pyplot'); "
            "print('HEAVY', [m for m in heavy if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=runs, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
