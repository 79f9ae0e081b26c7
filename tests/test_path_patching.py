"""path_patch equals path patching written out with TransformerLens hooks; c = 0 is the clean run; bad paths refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import runner
from tests.conftest import cli, write_spec
from tests.test_dla import AGENT_DATA, agent  # noqa: F401  (the perturbed decision transformer fixture)

D_VOCAB, BATCH, LENGTH = 20, 3, 7
TOKEN_MODEL = f"{{transformer: {{n_layers: 3, d_model: 32, n_heads: 4, d_vocab: {D_VOCAB}, n_ctx: 16, init_seed: 1}}}}"
CLEAN = np.random.default_rng(0).integers(0, D_VOCAB, size=(BATCH, LENGTH)).tolist()
SOURCE = np.random.default_rng(1).integers(0, D_VOCAB, size=(BATCH, LENGTH)).tolist()


def direct(model, clean_inputs, source_inputs, sender: tuple, receiver: tuple | str, positions, c: float = 1.0):
    """Path patching with TransformerLens hooks: (path-patched, clean) last-position logits, the sender's change
    (source minus clean) carried into the receiver only, the receiver's input recomputed by hand.

    ``sender`` is (layer, head) or (layer, "mlp"); ``receiver`` is (layer, head, "q" | "k" | "v"), (layer, "mlp")
    or "logits"; ``positions`` a list or slice(None).
    """
    body = getattr(model, "body", model)
    with torch.inference_mode():
        _, clean = model.run_with_cache(clean_inputs)
        _, source = model.run_with_cache(source_inputs)
        layer, head = sender
        if head == "mlp":
            diff = source[f"blocks.{layer}.hook_mlp_out"] - clean[f"blocks.{layer}.hook_mlp_out"]
        else:
            z = f"blocks.{layer}.attn.hook_z"
            diff = (source[z][:, :, head] - clean[z][:, :, head]) @ body.W_O[layer, head]
        delta = torch.zeros_like(diff)
        delta[:, positions] = diff[:, positions]
        patched = model.run_with_hooks(clean_inputs, fwd_hooks=[receiver_hook(body, clean, delta, receiver, c)])
        return patched[:, -1].numpy(), model(clean_inputs)[:, -1].numpy()


def receiver_hook(body, clean, delta: torch.Tensor, receiver: tuple | str, c: float) -> tuple:
    """The hook moving the receiver's site c of the way to what it computes from the clean residual plus delta."""
    if receiver == "logits":
        return f"blocks.{body.cfg.n_layers - 1}.hook_resid_post", lambda x, hook: x + c * delta
    if receiver[1] == "mlp":
        at = receiver[0]
        resid_mid = clean[f"blocks.{at}.hook_resid_mid"]
        np.testing.assert_allclose(hand_mlp(body, at, resid_mid), clean[f"blocks.{at}.hook_mlp_out"],
                                   atol=1e-5)  # the hand-written MLP is the model's
        path = hand_mlp(body, at, resid_mid + delta)
        return f"blocks.{at}.hook_mlp_out", lambda x, hook: x + c * (path - x)
    at, h, which = receiver
    normed = layer_norm(clean[f"blocks.{at}.hook_resid_pre"] + delta, body.blocks[at].ln1.original_component,
                        body.cfg.eps)
    W, b = {"q": (body.W_Q, body.b_Q), "k": (body.W_K, body.b_K), "v": (body.W_V, body.b_V)}[which]
    path = normed @ W[at, h] + b[at, h]                     # [batch, pos, d_head]

    def overwrite(x, hook):
        y = x.clone()
        y[:, :, h] = x[:, :, h] + c * (path - x[:, :, h])
        return y
    return f"blocks.{at}.attn.hook_{which}", overwrite


def layer_norm(x: torch.Tensor, ln, eps: float) -> torch.Tensor:
    """LayerNorm by hand: its scale recomputed on ``x``."""
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / (centred.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt() * ln.weight + ln.bias


def hand_mlp(body, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
    """Block ``layer``'s MLP output from its resid_mid: ln2, W_in, GELU, W_out."""
    normed = layer_norm(resid_mid, body.blocks[layer].ln2.original_component, body.cfg.eps)
    pre = normed @ body.W_in[layer] + body.b_in[layer]
    return torch.nn.functional.gelu(pre) @ body.W_out[layer] + body.b_out[layer]


def tokens_spec(project: Path, name: str, sender: str, receiver: str, sweep: list[str], position: str = "all",
                source: list | None = None) -> Path:
    axes = "".join(f"  {axis}\n" for axis in sweep)
    return write_spec(project, f"""\
name: {name}
model: {TOKEN_MODEL}
data: {{tokens: {CLEAN}}}
intervention:
  kind: path_patch
  source: {{tokens: {SOURCE if source is None else source}}}
  sender: {sender}
  receiver: {receiver}
  position: {position}
sweep:
{axes}metrics: [logits]
""", f"{name}.yaml")


def positions_of(position: str):
    return {"all": slice(None), "last": [LENGTH - 1], "[1, 4]": [1, 4]}[position]


@pytest.mark.parametrize("which,position", [("q", "all"), ("k", "[1, 4]"), ("v", "last")])
def test_senders_x_receivers_match_hooks_written_by_hand(project, which, position):
    sweep = ["intervention.sender.head: {values: [0, 1, 2, 3], name: sender_head}",
             "intervention.receiver.layer: {values: [1, 2], name: receiver_layer}",
             "intervention.receiver.head: {values: [0, 3], name: receiver_head}"]
    spec = tokens_spec(project, f"paths-{which}", "{layer: 0, head: 0}", f"{{layer: 1, head: 0, input: {which}}}",
                       sweep, position)
    ds = runner.run(spec)
    assert (ds.status == "ok").all(), ds.error.values
    assert ds.logits.dims == ("sender_head", "receiver_layer", "receiver_head", "sample", "vocab")
    model = runner.load_model(spec)
    clean, source = torch.tensor(CLEAN), torch.tensor(SOURCE)
    moved = 0.0
    for s in range(4):
        for layer in (1, 2):
            for h in (0, 3):
                expected, unpatched = direct(model, clean, source, (0, s), (layer, h, which), positions_of(position))
                got = ds.logits.sel(sender_head=s, receiver_layer=layer, receiver_head=h).values
                np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"L0H{s} -> L{layer}H{h}.{which}")
                moved = max(moved, np.abs(expected - unpatched).max())
    assert moved > 1e-3  # the hooks really change the run: the comparison is not clean against clean


def test_mlp_and_head_senders_into_the_logits_and_an_mlp_into_a_later_key(project):
    sweep = ["intervention.sender.head: {values: [1, 2], name: sender_head}", "intervention.sender.layer: [0, 2]"]
    spec = tokens_spec(project, "paths-logits", "{layer: 0, head: 0}", "logits", sweep, "last")
    ds = runner.run(spec)
    assert (ds.status == "ok").all(), ds.error.values
    model = runner.load_model(spec)
    clean, source = torch.tensor(CLEAN), torch.tensor(SOURCE)
    for s in (1, 2):
        for layer in (0, 2):
            expected, _ = direct(model, clean, source, (layer, s), "logits", [LENGTH - 1])
            np.testing.assert_allclose(ds.logits.sel(sender_head=s, layer=layer).values, expected, atol=1e-5)
    sweep = ["intervention.coefficient: [0.5, 1.0]"]
    mlp = runner.run(tokens_spec(project, "paths-mlp", "{layer: 0, mlp: true}", "{layer: 2, head: 1, input: k}",
                                 sweep, "[1, 4]"))
    logits = runner.run(tokens_spec(project, "paths-mlp-logits", "{layer: 1, mlp: true}", "logits", sweep))
    for c in (0.5, 1.0):
        expected, unpatched = direct(model, clean, source, (0, "mlp"), (2, 1, "k"), [1, 4], c)
        np.testing.assert_allclose(mlp.logits.sel(coefficient=c).values, expected, atol=1e-5)
        assert np.abs(expected - unpatched).max() > 1e-4
        expected, _ = direct(model, clean, source, (1, "mlp"), "logits", slice(None), c)
        np.testing.assert_allclose(logits.logits.sel(coefficient=c).values, expected, atol=1e-5)


@pytest.mark.parametrize("sender,receiver,position", [((0, 1), (0, "mlp"), "all"), ((0, 2), (1, "mlp"), "[1, 4]"),
                                                      ((0, "mlp"), (2, "mlp"), "last")])
def test_a_head_or_an_mlp_into_an_mlp_of_its_own_block_or_a_later_one(project, sender, receiver, position):
    layer, what = sender
    spec = tokens_spec(project, "paths-into-mlp", f"{{layer: {layer}, " + ("mlp: true}" if what == "mlp" else
                                                                          f"head: {what}}}"),
                       f"{{layer: {receiver[0]}, mlp: true}}", ["intervention.coefficient: [0.5, 1.0]"], position)
    ds = runner.run(spec)
    assert (ds.status == "ok").all(), ds.error.values
    model = runner.load_model(spec)
    for c in (0.5, 1.0):
        expected, unpatched = direct(model, torch.tensor(CLEAN), torch.tensor(SOURCE), sender, receiver,
                                     positions_of(position), c)
        np.testing.assert_allclose(ds.logits.sel(coefficient=c).values, expected, atol=1e-5)
        assert np.abs(expected - unpatched).max() > 1e-4


def test_coefficient_zero_is_the_clean_run_and_a_source_equal_to_clean_changes_nothing(project):
    sweep = ["intervention.coefficient: [0.0, 1.0]",
             "intervention.receiver.head: {values: [0, 1, 2, 3], name: receiver_head}"]
    ds = runner.run(tokens_spec(project, "paths-zero", "{layer: 0, head: 2}", "{layer: 1, head: 0, input: q}", sweep))
    same = runner.run(tokens_spec(project, "paths-same", "{layer: 0, head: 2}", "{layer: 1, head: 0, input: q}", sweep,
                                  "all", CLEAN))
    plain = write_spec(project, f"""\
        name: paths-plain
        model: {TOKEN_MODEL}
        data: {{tokens: {CLEAN}}}
        metrics: [logits]
        """, "plain.yaml")
    clean = runner.run(plain).logits.values
    for h in range(4):
        np.testing.assert_array_equal(ds.logits.sel(coefficient=0.0, receiver_head=h).values, clean)
        assert not np.allclose(ds.logits.sel(coefficient=1.0, receiver_head=h).values, clean, atol=1e-4)
        np.testing.assert_allclose(same.logits.sel(coefficient=1.0, receiver_head=h).values, clean, atol=1e-6)


def test_an_agents_heads_to_heads_and_restored_fraction(project, agent):  # noqa: F811
    from runner.envs.actions import action_id
    from runner.execute.inputs import make_inputs

    write_spec(project, f"""\
        name: paths-agent
        model: {{checkpoint: {agent}}}
        data: {AGENT_DATA}
        intervention:
          kind: path_patch
          source: {{same: {{swap_word: [red, blue]}}}}
          sender: {{layer: 0, head: 0}}
          receiver: {{layer: 1, head: 0, input: q}}
          position: I3
        sweep:
          intervention.sender.head: {{values: [0, 1], name: sender_head}}
          intervention.receiver.head: {{values: [0, 1], name: receiver_head}}
          intervention.receiver.input: [q, v]
        metrics: [action_logits, {{restored_fraction: {{actions: [left, right]}}}}]
        """)
    ds = runner.run(project / "spec.yaml")
    assert (ds.status == "ok").all(), ds.error.values
    model = runner.load_model(agent)
    spec = runner.load_spec("spec.yaml").spec
    clean = make_inputs(spec.data, model, project, 0)
    source = make_inputs(spec.intervention.source, model, project, 0, base_data=spec.data)
    position = model.config.roles().index("I3")  # the colour word of "go to the red ball"
    left, right = action_id("left"), action_id("right")

    def m(logits: np.ndarray) -> np.ndarray:
        return logits[:, left] - logits[:, right]

    for s in (0, 1):
        for h in (0, 1):
            for which in ("q", "v"):
                expected, unpatched = direct(model, clean, source, (0, s), (1, h, which), [position])
                point = ds.sel(sender_head=s, receiver_head=h, input=which)
                np.testing.assert_allclose(point.action_logits.values, expected, atol=1e-5)
                np.testing.assert_allclose(point.restored_clean.values, m(unpatched), atol=1e-5)
                # the fraction's numerator, as the logits are: a small denominator magnifies the last bits
                denominator = point.restored_source.values - point.restored_clean.values
                np.testing.assert_allclose(point.restored_fraction.values * denominator, m(expected) - m(unpatched),
                                           atol=1e-5)
    assert np.abs(ds.restored_fraction).max() > 1e-3


BAD = [  # (sender, receiver, where, says)
    ("{layer: 1, head: 0}", "{layer: 0, head: 0, input: q}", "intervention.receiver.layer",
     "must come after the sender"),
    ("{layer: 1, mlp: true}", "{layer: 1, head: 2, input: k}", "intervention.receiver.layer",
     "must come after the sender"),
    ("{layer: 0, head: 4}", "logits", "intervention.sender.head", "head 4 is out of range"),
    ("{layer: 0, head: 1}", "{layer: 3, head: 0, input: q}", "intervention.receiver.layer", "layer 3 is out of range"),
    ("{layer: 0, head: 1}", "{layer: 1, head: 0, input: z}", "intervention.receiver", "input"),
    ("{layer: 1, mlp: true}", "{layer: 1, mlp: true}", "intervention.receiver.layer", "must come after the sender"),
    ("{layer: 0, head: 1}", "{layer: 1, mlp: true, input: q}", "intervention.receiver", "an MLP receiver reads"),
    ("{layer: 0, head: 1, mlp: true}", "logits", "intervention.sender", "not both"),
    ("{layer: 0}", "logits", "intervention.sender", "give one of head or mlp: true"),
]


@pytest.mark.parametrize("sender,receiver,where,says", BAD, ids=[b[3].split()[0] + str(i) for i, b in enumerate(BAD)])
def test_a_bad_path_is_refused_where_it_is_written(project, sender, receiver, where, says):
    write_spec(project, f"""\
        name: bad-path
        model: {TOKEN_MODEL.replace('n_layers: 3', 'n_layers: 2')}
        data: {{tokens: {CLEAN}}}
        intervention:
          kind: path_patch
          source: {{tokens: {SOURCE}}}
          sender: {sender}
          receiver: {receiver}
        metrics: [logits]
        """)
    done = cli("run", "spec.yaml", cwd=project)
    assert done.returncode == 2 and where in done.stderr and says in done.stderr, done.stderr
    assert "spec.yaml:" in done.stderr and "Traceback" not in done.stderr and not (project / "results").exists()


def test_receivers_before_their_sender_in_a_grid_are_not_applicable(project):
    sweep = ["intervention.sender.layer: {values: [0, 1], name: sender_layer}",
             "intervention.receiver.layer: {values: [0, 1, 2], name: receiver_layer}"]
    spec = tokens_spec(project, "paths-grid", "{layer: 0, head: 1}", "{layer: 1, head: 2, input: q}", sweep)
    plan = cli("plan", str(spec), cwd=project)
    assert plan.returncode == 0 and "3 not applicable" in plan.stdout, plan.stdout + plan.stderr
    ds = runner.run(spec)
    status = ds.status.values
    assert status.tolist() == [["not_applicable", "ok", "ok"], ["not_applicable", "not_applicable", "ok"]]
    assert np.isnan(ds.logits.sel(sender_layer=1, receiver_layer=1)).all()
