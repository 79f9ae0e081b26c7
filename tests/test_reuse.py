"""Causal reuse is exact: a pass that starts at the edited layer and position equals a full forward.

A folded pass (runner.execute.fold) starts at the first edited block from the clean
residual and computes only the positions from the first edited one, attending to the
clean keys and values of the positions before it; ``last_only`` computes the final
block for the last position. Here random edits at random sites, layers and positions
are applied both ways: once by a TransformerLens hook in a full forward of the model,
once through ``run_from`` with the reused prefix, several points' rows stacked
against one shared prefix as a folded pass stacks them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runner
from runner.models.transformer import boot_native_body, reuses_prefix, run_from
from tests.conftest import write_spec

N_LAYERS, D_MODEL, N_HEADS, LENGTH, BATCH = 3, 32, 4, 11, 3
SITES = ("hook_resid_pre", "attn.hook_z", "attn.hook_v", "attn.hook_pattern", "hook_resid_mid", "hook_mlp_out")
TRIALS = 24


def token_model():
    tokens = torch.from_numpy(np.random.default_rng(1).integers(0, 20, size=(BATCH, LENGTH)))
    body = boot_native_body(n_layers=N_LAYERS, d_model=D_MODEL, n_heads=N_HEADS, d_vocab=20, n_ctx=16, init_seed=3)
    return body.eval(), tokens


def agent_model():
    from runner.envs.encoding import OBS_ACTIVE, OBS_FEATURES
    from runner.models.agent import Agent, AgentConfig, AgentInputs

    config = AgentConfig("decision_transformer", n_layers=N_LAYERS, d_model=D_MODEL, n_heads=N_HEADS, context=3,
                         mission_length=3, max_timestep=64, init_seed=4)
    agent = Agent(config).eval()
    g = torch.Generator().manual_seed(5)
    k = config.context
    inputs = AgentInputs(mission=torch.randint(1, len(config.words), (BATCH, 3), generator=g),
                         obs=torch.randint(0, OBS_FEATURES, (BATCH, k, OBS_ACTIVE), generator=g),
                         actions=torch.randint(0, 7, (BATCH, k), generator=g),
                         rtg=torch.rand(BATCH, k, generator=g),
                         timesteps=torch.arange(k).repeat(BATCH, 1),
                         valid=torch.tensor([[True] * k, [False] + [True] * (k - 1), [True] * k]))
    return agent, inputs


MODELS = {"tokens": token_model, "agent": agent_model}


def random_edit(rng: np.random.Generator, length: int) -> dict:
    """A random edit: a site of a random block, a head where the site has heads, positions from a random first."""
    site = SITES[rng.integers(len(SITES))]
    first = int(rng.integers(length))
    later = rng.permutation(np.arange(first + 1, length))[:rng.integers(0, 3)]
    positions = sorted({first, *map(int, later)})
    width = {"attn.hook_pattern": length}.get(site, D_MODEL // N_HEADS if site.startswith("attn.") else D_MODEL)
    return dict(layer=int(rng.integers(N_LAYERS)), site=site, head=int(rng.integers(N_HEADS)), positions=positions,
                delta=torch.from_numpy(rng.standard_normal(width).astype(np.float32)) * float(rng.uniform(0.2, 3)))


def hook_for(edit: dict, rows: slice = slice(None), shift: int = 0):
    """A TransformerLens hook adding the edit's delta at its region of ``rows`` (positions moved back by ``shift``)."""
    positions = [p - shift for p in edit["positions"]]

    def hook(x, hook):
        x = x.clone()
        if edit["site"] == "attn.hook_pattern":      # [batch, head, query, key]
            x[rows, edit["head"], positions] += edit["delta"]
        elif edit["site"] in ("attn.hook_z", "attn.hook_v"):  # [batch, pos, head, d_head]
            x[rows, positions, edit["head"]] += edit["delta"]
        else:                                        # [batch, pos, d_model]
            x[rows, positions] += edit["delta"]
        return x

    return f"blocks.{edit['layer']}.{edit['site']}", hook


def test_prefix_reuse_applies_to_both_kinds_of_model():
    assert reuses_prefix(token_model()[0]) and reuses_prefix(agent_model()[0])


@pytest.mark.parametrize("kind", MODELS)
def test_random_edits_from_the_edited_layer_and_position_equal_a_full_forward(kind):
    model, inputs = MODELS[kind]()
    body = model.body if kind == "agent" else model
    rng = np.random.default_rng(7)
    names = [f"blocks.{layer}.{h}" for layer in range(N_LAYERS) for h in ("hook_resid_pre", "attn.hook_k", "attn.hook_v")]
    with torch.inference_mode():
        clean, cache = model.run_with_cache(inputs, names_filter=lambda n: n in names)
        length = clean.shape[1]
        checked = checked_at_input = 0
        for _ in range(TRIALS):
            edits = [random_edit(rng, length) for _ in range(2)]
            edits[1] |= {"layer": edits[0]["layer"]}       # points in one folded pass share the layer
            if rng.random() < 0.3:                          # both at the block's input, as a patch of resid_pre is
                for e in edits:
                    e |= {"site": "hook_resid_pre", "delta": e["delta"][:D_MODEL].repeat(D_MODEL)[:D_MODEL]}
            full = []
            for edit in edits:
                with body.hooks(fwd_hooks=[hook_for(edit)]):
                    full.append(model(inputs))
            layer = edits[0]["layer"]
            start = min(e["positions"][0] for e in edits)
            resid = cache[f"blocks.{layer}.hook_resid_pre"][:, start:]
            prefix = {later: (cache[f"blocks.{later}.attn.hook_k"][:, :start],
                              cache[f"blocks.{later}.attn.hook_v"][:, :start])
                      for later in range(layer, N_LAYERS)} if start else None
            hooks = [hook_for(e, slice(i * BATCH, (i + 1) * BATCH), start) for i, e in enumerate(edits)]
            hooks = [(hooks[0][0], _both(hooks[0][1], hooks[1][1]))] if hooks[0][0] == hooks[1][0] else hooks
            stacked = torch.cat([resid, resid])                # two points' rows, one shared prefix
            with body.hooks(fwd_hooks=hooks):
                reused = run_from(body, stacked, layer, prefix=prefix)
            final = layer == N_LAYERS - 1  # last_only computes the final block for the last position: no hook in it
            with body.hooks(fwd_hooks=hooks):
                last = run_from(body, stacked, layer, slice(-1, None), prefix=prefix, last_only=not final)
            if all(e["site"] == "hook_resid_pre" for e in edits):  # made to the residual a pass starts from
                edited = stacked.clone()
                for i, e in enumerate(edits):
                    edited[i * BATCH:(i + 1) * BATCH, [p - start for p in e["positions"]]] += e["delta"]
                tail = run_from(body, edited, layer, slice(-1, None), prefix=prefix, last_only=True)
                for i, expected in enumerate(full):
                    torch.testing.assert_close(tail[i * BATCH:(i + 1) * BATCH], expected[:, -1:], atol=1e-5, rtol=0)
                    checked_at_input += 1
            for i, expected in enumerate(full):
                rows = slice(i * BATCH, (i + 1) * BATCH)
                torch.testing.assert_close(reused[rows], expected[:, start:], atol=1e-5, rtol=0)
                torch.testing.assert_close(last[rows], expected[:, -1:], atol=1e-5, rtol=0)
                first = edits[i]["positions"][0]                 # the edit is not a no-op
                assert not torch.allclose(expected[:, first], clean[:, first], atol=1e-4)
                checked += 1
    assert checked == 2 * TRIALS and checked_at_input >= 4


def _both(first, second):
    return lambda x, hook: second(first(x, hook), hook)


def test_a_swept_patch_over_layers_and_positions_equals_hand_written_hooks(project):
    """The runner end to end: every (layer, position) point equals a full TransformerLens forward with the patch."""
    spec = write_spec(project, """\
        name: reuse
        model:
          transformer: {n_layers: 3, d_model: 32, n_heads: 4, d_vocab: 20, n_ctx: 16, init_seed: 0}
        data:
          random_tokens: {batch: 4, length: 9, seed: 0}
        intervention:
          kind: patch
          hook: resid_pre
          layer: 0
          position: 0
          source: {random_tokens: {batch: 4, length: 9, seed: 1}}
        sweep:
          intervention.layer: [0, 1, 2]
          intervention.position: [0, 3, 5, 8]
          intervention.coefficient: [0.5, 1.0]
        metrics: [logits]
        """)
    ds = runner.run(spec)
    model = runner.load_model(spec)
    clean_tokens, source_tokens = (torch.from_numpy(np.random.default_rng(seed).integers(0, 20, (4, 9), dtype=np.int64))
                                   for seed in (0, 1))
    with torch.inference_mode():
        _, source = model.run_with_cache(source_tokens)
        for layer in (0, 1, 2):
            name = f"blocks.{layer}.hook_resid_pre"
            for position in (0, 3, 5, 8):
                for c in (0.5, 1.0):
                    def hook(x, hook):
                        x = x.clone()
                        x[:, position] += c * (source[name][:, position] - x[:, position])
                        return x
                    expected = model.run_with_hooks(clean_tokens, fwd_hooks=[(name, hook)])[:, -1]
                    np.testing.assert_allclose(ds.logits.sel(layer=layer, position=position, coefficient=c).values,
                                               expected.numpy(), atol=1e-5)
