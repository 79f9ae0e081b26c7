"""Direction analysis: a steering vector's norm and cosines equal a numpy computation with the model's own W_U and
a TransformerLens run_with_cache; vector_cosine across points equals the cosines of the saved vector files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import runner
from runner.models.windows import windows
from runner.plan.facts import trajectories as load_trajectories
from tests.conftest import cli, write_spec

TOKEN_MODEL = "{transformer: {n_layers: 2, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}}"
BATCH, LENGTH = 4, 8
POSITIONS = {"all": None, "last": [LENGTH - 1], "[1, 4]": [1, 4]}


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of ``a`` with ``b`` (or with each column of a matrix ``b``)."""
    return (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b, axis=0))


def vector_of(folder: Path, vector_id: str) -> np.ndarray:
    return np.load(folder / "vectors" / f"{vector_id}.npy").astype(np.float64)


def clean_region(model, inputs, name: str, positions, head: int | None) -> np.ndarray:
    """The clean activation at ``name`` (positions, head) from one run_with_cache, rows [samples x ..., width]."""
    with torch.inference_mode():
        _, cache = model.run_with_cache(inputs, names_filter=lambda n: n == name)
    acts = cache[name].double().numpy()
    acts = acts if positions is None else acts[:, positions]
    acts = acts if head is None else acts[:, :, head]
    return acts.reshape(-1, acts.shape[-1])


def expected(model, acts: np.ndarray, v: np.ndarray, short: str, layer, head, centred: bool) -> dict:
    """The direction metric written out in numpy from the model's weights."""
    body = getattr(model, "body", model)
    w_u = body.W_U.detach().double().numpy()
    if centred:
        w_u = w_u - w_u.mean(axis=1, keepdims=True)
    resid = v
    if short == "z":
        w_o = body.W_O[layer].detach().double().numpy()
        resid = v @ (w_o[head] if head is not None else w_o.sum(axis=0))
    elif short == "mlp_post":
        resid = v @ body.W_out[layer].detach().double().numpy()
    return {"vector_norm": np.linalg.norm(v), "vector_unembed_cos": cos(resid, w_u),
            "vector_act_cos": cos(v, acts.mean(axis=0)),
            "vector_norm_ratio": np.linalg.norm(v) / np.linalg.norm(acts, axis=1).mean()}


def check_points(ds, folder: Path, model, inputs, site: tuple, centred: bool) -> int:
    """Every point's direction numbers against ``expected``; returns how many points were checked."""
    short, layer, head, position = site
    name = {"z": f"blocks.{layer}.attn.hook_z", "mlp_post": f"blocks.{layer}.mlp.hook_post"}.get(
        short, f"blocks.{layer}.hook_{short}")
    acts = clean_region(model, inputs, name, POSITIONS[position] if isinstance(position, str) else position, head)
    n = 0
    for point in ds.vector_id.stack(point=ds.vector_id.dims):
        want = expected(model, acts, vector_of(folder, str(point.values)), short, layer, head, centred)
        at = {d: point[d].values for d in ds.vector_id.dims}
        for var, value in want.items():
            np.testing.assert_allclose(ds[var].sel(at).values, value, atol=1e-5, rtol=0, err_msg=f"{var} at {at}")
        n += 1
    return n


TOKEN_SITES = [("resid_pre", 1, None, "all", False), ("z", 0, 2, "last", True), ("z", 1, None, "last", False),
               ("mlp_post", 0, None, "[1, 4]", True), ("attn_out", 1, None, "last", False)]


@pytest.mark.parametrize("short,layer,head,position,centred", TOKEN_SITES)
def test_token_model_numbers_equal_numpy_and_run_with_cache(project, short, layer, head, position, centred):
    width = {"z": 8, "mlp_post": 128}.get(short, 32)
    np.save(project / "v.npy", np.random.default_rng(7).standard_normal(width).astype(np.float32))
    address = f"hook: {short}, layer: {layer}" + (f", head: {head}" if head is not None else "")
    contrast = ("{contrast: {positive: {random_tokens: {batch: 3, length: 8, seed: 1}}, "
                "negative: {random_tokens: {batch: 5, length: 8, seed: 2}}}}")
    sources = ["{file: v.npy}", "{random: {seed: 0, norm: match}}", contrast]
    if width == 32:
        sources.append("{direction: {token: 3, against: 5}}")
    write_spec(project, f"""\
        name: direction-tokens
        model: {TOKEN_MODEL}
        data: {{random_tokens: {{batch: {BATCH}, length: {LENGTH}, seed: 0}}}}
        intervention: {{kind: steer, {address}, position: {position}, vector: {{file: v.npy}}}}
        sweep:
          intervention.coefficient: [0.0, 2.0]
          intervention.vector: {{values: [{", ".join(sources)}], name: vec}}
        metrics: [{{direction: {{unembed: {"centred" if centred else "raw"}}}}}, {{logits: {{reduce: mean}}}}]
        """)
    ds = runner.run("spec.yaml")
    assert (ds.status == "ok").all(), ds.error.values
    assert ds.vector_unembed_cos.dims == ("coefficient", "vec", "vocab")
    model = runner.load_model("spec.yaml")
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 20, size=(BATCH, LENGTH)))
    folder = project / "results" / "direction-tokens"
    assert check_points(ds, folder, model, tokens, (short, layer, head, position), centred) == 2 * len(sources)
    np.testing.assert_allclose(ds.vector_norm_ratio.isel(vec=1), 1.0, atol=1e-5)  # norm: match, by definition
    assert ds.vector_cosine.dims == ("vec", "vec_other")  # not over the coefficient: the vector does not change


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run of a random (seeded) behaviour clone: three vectors over two layers, the direction metric centred."""
    from runner.models.agent import Agent, AgentConfig
    from runner.models.checkpoint import save_agent

    folder = tmp_path_factory.mktemp("direction-agent")
    config = AgentConfig("behavior_clone", n_layers=2, d_model=16, n_heads=2, context=2, mission_length=5,
                         max_timestep=64, env_id="BabyAI-GoToRedBallGrey-v0", init_seed=3)
    save_agent(Agent(config).eval(), folder / "bc")
    spec = write_spec(folder, """\
        name: direction-agent
        model: {checkpoint: bc}
        data: {trajectories: {env: BabyAI-GoToRedBallGrey-v0, episodes: 4, seed: 40}}
        intervention:
          kind: steer
          hook: resid_pre
          layer: 0
          position: {token: state, timestep: -1}
          vector: {direction: {action: forward}}
        sweep:
          intervention.coefficient: [0.0, 3.0]
          intervention.layer: [0, 1]
          intervention.vector:
            values:
              - {contrast: {positive: {in_view: red ball}, negative: {mission_word: red}}}
              - {direction: {action: forward}}
              - {direction: {action: forward, against: left}}
            name: vec
        metrics: [{direction: {unembed: centred}}, {action_probs: {reduce: mean}}]
        """, "agent.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        ds = runner.run(spec)
    assert (ds.status == "ok").all(), ds.error.values
    return folder, spec


def test_agent_numbers_equal_numpy_and_run_with_cache(agent_run):
    folder, spec = agent_run
    ds = runner.load(folder / "results" / "direction-agent")
    agent = runner.load_model(folder / "bc")
    traj = load_trajectories(runner.load_spec(spec).spec.data, folder, 0)
    inputs = windows(traj, np.arange(len(traj.actions)), agent.config)
    roles = agent.config.roles()
    last_state = max(i for i, role in enumerate(roles) if role.startswith("S"))  # {token: state, timestep: -1}
    assert list(ds.action.values) == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
    for layer in (0, 1):
        at = ds.sel(layer=layer)
        assert check_points(at, folder / "results" / "direction-agent", agent, inputs,
                            ("resid_pre", layer, None, [last_state]), centred=True) == 6


def test_a_direction_vector_has_cosine_one_with_its_centred_action_column(agent_run):
    folder, _ = agent_run
    ds = runner.load(folder / "results" / "direction-agent")
    w_u = runner.load_model(folder / "bc").body.W_U.detach().double().numpy()
    toward = ds.sel(vec=ds.vec.values[1], coefficient=0.0)
    np.testing.assert_allclose(toward.vector_unembed_cos.sel(action="forward"), 1.0, atol=1e-6)
    others = np.delete(w_u, 2, axis=1).mean(axis=1)
    np.testing.assert_allclose(vector_of(folder / "results" / "direction-agent", str(toward.vector_id.values[0])),
                               w_u[:, 2] - others, atol=1e-6)  # what the direction source builds
    against = ds.sel(vec=ds.vec.values[2], coefficient=0.0).vector_unembed_cos
    assert (against.sel(action="forward") > 0).all() and (against.sel(action="left") < 0).all()


def test_vector_cosine_over_layer_and_vec_equals_the_saved_files(agent_run):
    folder, _ = agent_run
    run = folder / "results" / "direction-agent"
    ds = runner.load(run)
    cosine = ds.vector_cosine
    assert cosine.dims == ("layer", "vec", "layer_other", "vec_other")
    assert list(cosine.layer_other.values) == [0, 1] and list(cosine.vec_other.values) == list(ds.vec.values)
    flat = cosine.values.reshape(6, 6)
    np.testing.assert_array_equal(flat, flat.T)
    np.testing.assert_array_equal(np.diag(flat), 1.0)
    ids = ds.vector_id.sel(coefficient=3.0).values.reshape(-1)   # (layer, vec) in order
    vectors = [vector_of(run, str(i)) for i in ids]
    by_hand = np.array([[cos(a, b) for b in vectors] for a in vectors])
    np.testing.assert_allclose(flat, by_hand, atol=1e-12)
    direction = cosine.sel(vec=ds.vec.values[1], vec_other=ds.vec.values[1])
    np.testing.assert_allclose(direction, 1.0, atol=1e-12)  # W_U's direction is the same at every layer
    assert abs(float(cosine.isel(vec=0, vec_other=0, layer=0, layer_other=1))) < 0.999  # a contrast is not


def test_a_resumed_and_a_finished_rerun_write_the_same_result(agent_run):
    folder, spec = agent_run
    run = folder / "results" / "direction-agent"
    first = runner.load(run)
    copy = folder / "copy"
    shutil.copytree(run, copy / "results" / "direction-agent")
    (copy / "results" / "direction-agent" / "result.nc").unlink()
    for shard in sorted((copy / "results" / "direction-agent" / "shards").glob("*.nc"))[:1]:
        shard.unlink()  # this shard's points run again
    shutil.copy(spec, copy / "agent.yaml")
    shutil.copytree(folder / "bc", copy / "bc")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(copy)
        resumed = runner.run("agent.yaml")
        finished = runner.run("agent.yaml")
    for ds in (resumed, finished):
        for var in ("vector_cosine", "vector_unembed_cos", "vector_norm", "vector_act_cos"):
            np.testing.assert_array_equal(ds[var].values, first[var].values)


def test_hooks_of_other_widths_give_nan_cosines(project):
    write_spec(project, f"""\
        name: widths
        model: {TOKEN_MODEL}
        data: {{random_tokens: {{batch: 2, length: 8, seed: 0}}}}
        intervention: {{kind: steer, hook: resid_pre, layer: 1, position: last, vector: {{random: {{seed: 0}}}}}}
        sweep: {{intervention.hook: [resid_pre, attn_out, mlp_post]}}
        metrics: [direction]
        """)
    ds = runner.run("spec.yaml")
    cosine = ds.vector_cosine.values
    assert ds.vector_cosine.dims == ("hook", "hook_other")
    np.testing.assert_allclose(cosine[:2, :2], 1.0, atol=1e-12)  # the same seeded unit vector in the residual
    assert np.isnan(cosine[2, :2]).all() and np.isnan(cosine[:2, 2]).all() and cosine[2, 2] == 1.0
    assert "vector_cosine" not in runner.run(write_spec(project, f"""\
        name: one-vector
        model: {TOKEN_MODEL}
        data: {{random_tokens: {{batch: 2, length: 8, seed: 0}}}}
        intervention: {{kind: steer, hook: resid_pre, layer: 1, position: last, vector: {{random: {{seed: 0}}}}}}
        sweep: {{intervention.coefficient: [1.0, 2.0]}}
        metrics: [direction]
        """, "one.yaml"))


BAD = [("{kind: ablate, hook: resid_pre, layer: 0, method: zero}", "validate", "intervention kind ablate"),
       (None, "run", "no intervention"),
       ("{kind: steer, hook: q, layer: 0, head: 1, vector: {random: {seed: 0}}}", "run", "blocks.0.attn.hook_q")]


@pytest.mark.parametrize("intervention,verb,phrase", BAD)
def test_direction_without_a_residual_steer_is_a_located_error(project, intervention, verb, phrase):
    line = f"intervention: {intervention}\n" if intervention else ""
    (project / "spec.yaml").write_text(f"name: bad\nmodel: {TOKEN_MODEL}\n"
                                       f"data: {{random_tokens: {{batch: 2, length: 8, seed: 0}}}}\n{line}"
                                       f"metrics: [logits, direction]\n")
    done = cli(verb, "spec.yaml", cwd=project)
    where = f"spec.yaml:{5 if intervention else 4}:"
    assert done.returncode == 2 and where in done.stderr and "metrics[1]" in done.stderr, done.stderr
    assert phrase in done.stderr and "Traceback" not in done.stderr and not (project / "results").exists()


def test_a_zero_vector_is_measured_with_undefined_cosines(project):
    same = "{random_tokens: {batch: 3, length: 8, seed: 1}}"
    write_spec(project, f"""\
        name: zero
        model: {TOKEN_MODEL}
        data: {{random_tokens: {{batch: 2, length: 8, seed: 0}}}}
        intervention: {{kind: steer, hook: resid_pre, layer: 1, position: last,
                        vector: {{contrast: {{positive: {same}, negative: {same}}}}}}}
        metrics: [direction]
        """)
    ds = runner.run("spec.yaml")
    assert (ds.status == "ok").all() and float(ds.vector_norm) == 0.0 and float(ds.vector_norm_ratio) == 0.0
    assert np.isnan(ds.vector_unembed_cos).all() and np.isnan(ds.vector_act_cos) and "undefined" in ds.vector_act_cos.attrs
