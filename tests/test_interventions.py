"""patch, ablate and scale equal hand-written TransformerLens hooks; coefficient 0 changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runner
from tests.conftest import BASE_SPEC, write_spec

D_VOCAB, BATCH, LENGTH = 20, 4, 8
SOURCE = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], [0, 0, 0, 0, 1, 1, 1, 1], [9, 9, 9, 9, 9, 9, 9, 9]]


def tokens() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, D_VOCAB, size=(BATCH, LENGTH)))


def spec_text(kind: str, extra: str, hook: str = "resid_pre", position: str = "all") -> str:
    text = BASE_SPEC.replace("kind: steer", f"kind: {kind}{extra}").replace("  vector: {random: {seed: 0}}\n", "")
    text = text.replace("hook: resid_pre", f"hook: {hook}").replace("position: all", f"position: {position}")
    return text.replace("{linspace: [-1, 1, 3]}", "[0.0, 0.5, 1.0]").replace("metrics: [logits]", "metrics: [logits, kl]")


def region(name: str, head, positions):
    pos = slice(None) if positions is None else positions
    if name.endswith("hook_pattern"):
        return (slice(None), slice(None) if head is None else head, pos)
    return (slice(None), pos) if head is None else (slice(None), pos, head)


def run_towards(model, name: str, index, c: float, reference) -> np.ndarray:
    def hook(x, hook):
        y = x.clone()
        r = reference(x)
        y[index] = x[index] + c * (r[index] - x[index])
        return y

    with torch.inference_mode():
        return model.run_with_hooks(tokens(), fwd_hooks=[(name, hook)])[:, -1].numpy()


CASES = [  # (kind, extra spec lines, hook, head, position, positions, reference(cache_at_site, x))
    ("scale", "", "resid_pre", None, "all", None, lambda act, x: 2 * x),
    ("scale", "", "z\n  head: 1", 1, "last", [LENGTH - 1], lambda act, x: 2 * x),
    ("ablate", "\n  method: zero", "attn_out", None, "3", [3], lambda act, x: torch.zeros_like(x)),
    ("ablate", "\n  method: mean", "resid_pre", None, "all", None,
     lambda act, x: act.mean(0, keepdim=True).expand_as(act)),
    ("ablate", "\n  method: mean", "z\n  head: 3", 3, "last", [LENGTH - 1],
     lambda act, x: act.mean(0, keepdim=True).expand_as(act)),
    ("ablate", "\n  method: resample\n  seed: 5", "mlp_out", None, "[-1, 2]", [2, LENGTH - 1],
     lambda act, x: act[torch.from_numpy(np.random.default_rng(5).permutation(BATCH))]),
    ("ablate", "\n  method: zero", "pattern\n  head: 2", 2, "last", [LENGTH - 1], lambda act, x: torch.zeros_like(x)),
    ("patch", f"\n  source: {{tokens: {SOURCE}}}", "resid_pre", None, "all", None, "source"),
    ("patch", f"\n  source: {{tokens: {SOURCE}}}", "z\n  head: 0", 0, "last", [LENGTH - 1], "source"),
]


@pytest.mark.parametrize("kind, extra, hook, head, position, positions, reference", CASES,
                         ids=[f"{c[0]}-{c[2].split()[0]}-{c[4]}" for c in CASES])
def test_matches_hand_written_hooks(project, kind, extra, hook, head, position, positions, reference):
    spec = write_spec(project, spec_text(kind, extra, hook, position))
    ds = runner.run(spec)
    model = runner.load_model(spec)
    short = hook.split()[0]
    with torch.inference_mode():
        clean, cache = model.run_with_cache(tokens())
        _, source_cache = model.run_with_cache(torch.tensor(SOURCE))
    for layer in (0, 1):
        name = {"z": f"blocks.{layer}.attn.hook_z", "pattern": f"blocks.{layer}.attn.hook_pattern"}.get(
            short, f"blocks.{layer}.hook_{short}")
        act = cache[name]
        ref = (lambda x: source_cache[name]) if reference == "source" else (lambda x, f=reference: f(act, x))
        for c in (0.5, 1.0):
            expected = run_towards(model, name, region(name, head, positions), c, ref)
            np.testing.assert_allclose(ds.logits.sel(coefficient=c, layer=layer).values, expected, atol=1e-5)
        np.testing.assert_array_equal(ds.logits.sel(coefficient=0.0, layer=layer).values, clean[:, -1].numpy())
        assert (ds.kl.sel(coefficient=0.0, layer=layer) == 0).all()


def test_full_patch_reproduces_the_source_run_at_the_patched_site(project):
    spec = write_spec(project, spec_text("patch", f"\n  source: {{tokens: {SOURCE}}}", "resid_post", "all"))
    ds = runner.run(spec)
    model = runner.load_model(spec)
    with torch.inference_mode():
        source_logits = model(torch.tensor(SOURCE))[:, -1].numpy()
    # patching the whole residual after the last block is the source run, whatever the clean input was
    np.testing.assert_allclose(ds.logits.sel(coefficient=1.0, layer=1).values, source_logits, atol=1e-5)
    assert not np.allclose(ds.logits.sel(coefficient=0.0, layer=1).values, source_logits)


def test_restored_fraction_and_its_baselines(project):
    text = spec_text("patch", f"\n  source: {{tokens: {SOURCE}}}", "resid_post", "all")
    text = text.replace("metrics: [logits, kl]", "metrics: [logits, {restored_fraction: {tokens: [3, 5]}}, "
                                                  "{kl: {reduce: mean}}]")
    ds = runner.run(write_spec(project, text))
    model = runner.load_model(project / "spec.yaml")
    with torch.inference_mode():
        clean = model(tokens())[:, -1]
        source = model(torch.tensor(SOURCE))[:, -1]
    np.testing.assert_allclose(ds.restored_clean.sel(coefficient=0.5, layer=0).values, (clean[:, 3] - clean[:, 5]).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(ds.restored_source.sel(coefficient=0.5, layer=0).values,
                               (source[:, 3] - source[:, 5]).numpy(), atol=1e-5)
    patched = ds.logits.sel(coefficient=0.5, layer=0).values
    expected = ((patched[:, 3] - patched[:, 5]) - (clean[:, 3] - clean[:, 5]).numpy()) / \
        ((source[:, 3] - source[:, 5]) - (clean[:, 3] - clean[:, 5])).numpy()
    np.testing.assert_allclose(ds.restored_fraction.sel(coefficient=0.5, layer=0).values, expected, rtol=1e-4)
    np.testing.assert_allclose(ds.restored_fraction.sel(coefficient=1.0, layer=1).values, 1.0, atol=1e-4)
    assert (ds.restored_fraction.sel(coefficient=0.0) == 0).all()
    assert ds.kl.dims == ("coefficient", "layer") and ds.kl.attrs["cell_methods"] == "sample: mean"


def test_restored_fraction_needs_a_patch(project):
    from tests.conftest import cli

    write_spec(project, BASE_SPEC.replace("metrics: [logits]", "metrics: [restored_fraction]"))
    done = cli("validate", "spec.yaml", cwd=project)
    assert done.returncode == 2 and "needs intervention kind: patch" in done.stderr


def test_resid_norm_logit_lens_and_attention_read_the_intervened_run(project):
    text = spec_text("scale", "", "attn_out", "all").replace(
        "metrics: [logits, kl]", "metrics: [logits, resid_norm, logit_lens, {attention: {heads: [[1, 2], [0, 1]]}}]")
    ds = runner.run(write_spec(project, text))
    model = runner.load_model(project / "spec.yaml")
    for layer in (0, 1):
        name = f"blocks.{layer}.hook_attn_out"

        def double(x, hook):
            return 1.5 * x  # coefficient 0.5: (1 + c)·x

        with torch.inference_mode(), model.hooks(fwd_hooks=[(name, double)]):
            logits, cache = model.run_with_cache(tokens())
        resid = torch.stack([cache[f"blocks.{i}.hook_resid_post"][:, -1] for i in range(2)], dim=1)
        point = ds.sel(coefficient=0.5, layer=layer)
        np.testing.assert_allclose(point.logits.values, logits[:, -1].numpy(), atol=1e-5)
        np.testing.assert_allclose(point.resid_norm.sel(layer_read=["0", "1"]).values, resid.norm(dim=-1).numpy(),
                                   atol=1e-4)
        with torch.inference_mode():
            lens = model.unembed(model.ln_final(resid))
        np.testing.assert_allclose(point.logit_lens.sel(layer_read=["0", "1"]).values, lens.numpy(), atol=1e-4)
        np.testing.assert_allclose(point.attention.sel(attn_head="L1H2").values,
                                   cache["blocks.1.attn.hook_pattern"][:, 2, -1].numpy(), atol=1e-6)
        np.testing.assert_allclose(point.attention.sel(attn_head="L0H1").values,
                                   cache["blocks.0.attn.hook_pattern"][:, 1, -1].numpy(), atol=1e-6)
    assert ds.logit_lens.dims == ("coefficient", "layer", "sample", "layer_read", "vocab")
    np.testing.assert_allclose(ds.logit_lens.isel(layer_read=-1).values, ds.logits.values, atol=1e-4)


def test_a_model_cached_by_a_run_still_takes_gradients(project):
    spec = write_spec(project, BASE_SPEC)
    runner.run(spec)  # builds the model inside inference mode, and caches it for the process
    model = runner.load_model(spec)
    model(torch.tensor([[1, 2, 3]]))[0, -1].logsumexp(-1).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
