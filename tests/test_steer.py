"""Steered numbers equal an independent computation written with TransformerLens hooks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runner
from tests.conftest import BASE_SPEC, write_spec

D_VOCAB, BATCH, LENGTH, SEED = 20, 4, 8, 0


def tokens() -> torch.Tensor:
    # runner's documented random_tokens draw: numpy's default_rng(seed).integers(0, d_vocab, (batch, length))
    return torch.from_numpy(np.random.default_rng(SEED).integers(0, D_VOCAB, size=(BATCH, LENGTH)))


def steered_last_logits(model, hook_name: str, delta: torch.Tensor, positions) -> torch.Tensor:
    def add(x, hook):
        x = x.clone()
        if positions is None:
            x[:, :] += delta
        else:
            x[:, positions] += delta
        return x

    with torch.inference_mode():
        return model.run_with_hooks(tokens(), fwd_hooks=[(hook_name, add)])[:, -1]


def random_unit(seed: int, width: int) -> torch.Tensor:
    v = np.random.default_rng(seed).standard_normal(width)
    return torch.as_tensor(v / np.linalg.norm(v), dtype=torch.float32)


@pytest.mark.parametrize("position, indices", [("all", None), ("last", [LENGTH - 1]), (2, [2]), (-3, [LENGTH - 3]),
                                               ("[1, 4]", [1, 4])])
def test_random_vector_matches_run_with_hooks(project, position, indices):
    spec = write_spec(project, BASE_SPEC.replace("position: all", f"position: {position}"))
    ds = runner.run(spec)
    model = runner.load_model(spec)
    for coefficient in (-1.0, 1.0):
        for layer in (0, 1):
            expected = steered_last_logits(model, f"blocks.{layer}.hook_resid_pre",
                                           coefficient * random_unit(0, 32), indices)
            got = ds.logits.sel(coefficient=coefficient, layer=layer).values
            np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)


def test_norm_match_scales_to_the_mean_activation_norm_at_the_positions_steered(project):
    spec = write_spec(project, BASE_SPEC.replace("{random: {seed: 0}}", "{random: {seed: 3, norm: match}}")
                      .replace("position: all", "position: last"))
    ds = runner.run(spec)
    model = runner.load_model(spec)
    for layer in (0, 1):
        name = f"blocks.{layer}.hook_resid_pre"
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens())
        scale = cache[name][:, -1].norm(dim=-1).mean()  # the last position's norm, not all positions'
        assert abs(float(scale) - float(cache[name].norm(dim=-1).mean())) > 1e-3
        expected = steered_last_logits(model, name, 1.0 * scale * random_unit(3, 32), [LENGTH - 1])
        np.testing.assert_allclose(ds.logits.sel(coefficient=1.0, layer=layer).values, expected.numpy(), atol=1e-5)


def test_norm_like_gives_a_random_vector_another_vectors_norm(project):
    vector = np.linspace(-1, 2, 32).astype(np.float32)
    np.save(project / "v.npy", vector)
    spec = write_spec(project, BASE_SPEC.replace("{random: {seed: 0}}", "{random: {seed: 3, norm: {like: {file: v.npy}}}}"))
    ds = runner.run(spec)
    model = runner.load_model(spec)
    control = float(np.linalg.norm(vector)) * random_unit(3, 32)
    expected = steered_last_logits(model, "blocks.1.hook_resid_pre", 1.0 * control, None)
    np.testing.assert_allclose(ds.logits.sel(coefficient=1.0, layer=1).values, expected.numpy(), atol=1e-5)
    saved = np.load(project / "results" / "base" / "vectors" / f"{ds.vector_id.sel(coefficient=1.0, layer=1).item()}.npy")
    np.testing.assert_allclose(np.linalg.norm(saved), np.linalg.norm(vector), rtol=1e-6)


def test_file_vector_on_attn_out_with_full_hook_name(project):
    vector = np.linspace(-1, 1, 32).astype(np.float32)
    np.save(project / "v.npy", vector)
    text = (BASE_SPEC.replace("hook: resid_pre", "hook: blocks.1.hook_attn_out").replace("  layer: 0\n", "")
            .replace("{random: {seed: 0}}", "{file: v.npy}").replace("  intervention.layer: [0, 1]\n", ""))
    spec = write_spec(project, text)
    ds = runner.run(spec)
    model = runner.load_model(spec)
    for coefficient in (-1.0, 0.0, 1.0):
        expected = steered_last_logits(model, "blocks.1.hook_attn_out", coefficient * torch.from_numpy(vector), None)
        np.testing.assert_allclose(ds.logits.sel(coefficient=coefficient).values, expected.numpy(), atol=1e-5)


def test_contrast_vector_and_every_metric(project):
    text = BASE_SPEC.replace("{random: {seed: 0}}", "{contrast: {positive: {tokens: [[1, 2, 3], [4, 5, 6]]}, "
                                                    "negative: {tokens: [[7, 8, 9, 10]]}}}")
    text = text.replace("metrics: [logits]", "metrics: [logits, probs, kl, {logit_diff: {tokens: [3, 5]}}]")
    spec = write_spec(project, text)
    ds = runner.run(spec)
    model = runner.load_model(spec)
    with torch.inference_mode():
        clean = model(tokens())[:, -1]
    for layer in (0, 1):
        name = f"blocks.{layer}.hook_resid_pre"
        with torch.inference_mode():
            _, pos = model.run_with_cache(torch.tensor([[1, 2, 3], [4, 5, 6]]))
            _, neg = model.run_with_cache(torch.tensor([[7, 8, 9, 10]]))
        v = pos[name].reshape(-1, 32).mean(0) - neg[name].reshape(-1, 32).mean(0)
        for coefficient in (-1.0, 0.0, 1.0):
            out = steered_last_logits(model, name, coefficient * v, None)
            point = ds.sel(coefficient=coefficient, layer=layer)
            np.testing.assert_allclose(point.logits.values, out.numpy(), atol=1e-5)
            np.testing.assert_allclose(point.probs.values, torch.softmax(out, -1).numpy(), atol=1e-6)
            np.testing.assert_allclose(point.logit_diff.values, (out[:, 3] - out[:, 5]).numpy(), atol=1e-5)
            kl = torch.nn.functional.kl_div(torch.log_softmax(out, -1), torch.log_softmax(clean, -1),
                                            log_target=True, reduction="none").sum(-1)
            np.testing.assert_allclose(point.kl.values, kl.numpy(), atol=1e-5)
    assert np.all(ds.kl.sel(coefficient=0.0).values == 0), "coefficient 0 must leave the model untouched"
    assert ds.kl.sel(coefficient=1.0).values.min() > 0


def test_steering_a_head_of_z_touches_only_that_head(project):
    text = BASE_SPEC.replace("hook: resid_pre", "hook: z\n  head: 2").replace("{random: {seed: 0}}", "{random: {seed: 1}}")
    spec = write_spec(project, text)
    ds = runner.run(spec)
    model = runner.load_model(spec)
    v = random_unit(1, 8)

    def add(x, hook):
        x = x.clone()
        x[:, :, 2] += 1.0 * v
        return x

    with torch.inference_mode():
        expected = model.run_with_hooks(tokens(), fwd_hooks=[("blocks.1.attn.hook_z", add)])[:, -1]
    np.testing.assert_allclose(ds.logits.sel(coefficient=1.0, layer=1).values, expected.numpy(), atol=1e-5)


def test_direction_vector_is_the_unembedding_difference(project):
    text = BASE_SPEC.replace("{random: {seed: 0}}", "{direction: {token: 3, against: 5}}").replace(
        "metrics: [logits]", "metrics: [logits, {logit_diff: {tokens: [3, 5]}}]").replace("position: all", "position: last")
    spec = write_spec(project, text)
    ds = runner.run(spec)
    model = runner.load_model(spec)
    v = (model.W_U[:, 3] - model.W_U[:, 5]).detach()
    for layer in (0, 1):
        expected = steered_last_logits(model, f"blocks.{layer}.hook_resid_pre", 1.0 * v, [LENGTH - 1])
        np.testing.assert_allclose(ds.logits.sel(coefficient=1.0, layer=layer).values, expected.numpy(), atol=1e-5)
    diff = ds.logit_diff.mean("sample")
    assert float(diff.sel(coefficient=1.0, layer=1)) > float(diff.sel(coefficient=-1.0, layer=1))


def test_each_distinct_vector_is_saved_once_and_named_by_a_coordinate(project):
    spec = write_spec(project, BASE_SPEC.replace("{random: {seed: 0}}", "{random: {seed: 0, norm: match}}"))
    ds = runner.run(spec)
    folder = project / "results" / "base" / "vectors"
    assert ds.vector_id.dims == ("coefficient", "layer") and "vector_id" in ds.coords
    ids = ds.vector_id.values
    assert (ids == ids[:1]).all() and ids[0, 0] != ids[0, 1], "one vector per layer, whatever the coefficient"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.npy" for i in ids[0])
    v0, v1 = (np.load(folder / f"{ds.vector_id.sel(coefficient=1.0, layer=layer).item()}.npy") for layer in (0, 1))
    model = runner.load_model(spec)
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens())
    for layer, v in ((0, v0), (1, v1)):
        scale = float(cache[f"blocks.{layer}.hook_resid_pre"].norm(dim=-1).mean())
        np.testing.assert_allclose(v, (random_unit(0, 32) * scale).numpy(), rtol=1e-5)


def test_direction_against_of_the_wrong_kind_is_refused(project):
    from tests.conftest import cli

    write_spec(project, BASE_SPEC.replace("{random: {seed: 0}}", "{direction: {token: 3, against: right}}"))
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "intervention.vector.direction.against" in done.stderr
