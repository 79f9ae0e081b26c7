"""Pretrained Hugging Face models (model: {pretrained: ...}): built here offline, run, and checked against hooks.

No model can be downloaded, so each test model is a tiny one saved with
``save_pretrained`` beside a word-level tokenizer: the same files a hub snapshot holds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import runner
from runner.plan.facts import model_sizes
from tests.conftest import cli, write_spec

WORDS = ["<unk>", "<eos>", "The", "capital", "of", "France", "is", "Paris", "Rome", "Italy", "Germany", "Berlin",
         "a", "city", "and"]
TEXT = ["The capital of France is", "The capital of Italy is", "Rome is a city and"]


def save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", eos_token="<eos>",
                            bos_token="<eos>").save_pretrained(folder)


def save_model(folder: Path, model_type: str) -> Path:
    """A tiny randomly initialised causal LM of ``model_type`` with its tokenizer, as save_pretrained writes it."""
    import transformers as tf

    sizes = dict(vocab_size=len(WORDS), bos_token_id=1, eos_token_id=1)
    config = {"gpt2": lambda: tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=16, **sizes),
              "gpt_neo": lambda: tf.GPTNeoConfig(num_layers=2, hidden_size=32, num_heads=4, window_size=4,
                                                 attention_types=[[["global", "local"], 1]], max_position_embeddings=16,
                                                 **sizes),
              "gpt_bigcode": lambda: tf.GPTBigCodeConfig(n_layer=2, n_embd=32, n_head=4, n_positions=16, **sizes)}
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(config[model_type]()).save_pretrained(folder)
    save_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tmp_path_factory.mktemp("models") / "gpt2-tiny", "gpt2")


SPEC = """\
name: pretrained
seed: 0
model: {{pretrained: {model}}}
data:
  text: {text}
intervention:
  kind: steer
  hook: {hook}
  layer: 0
  position: {position}
  coefficient: 1.0
  vector: {{file: v.npy}}
sweep:
  intervention.coefficient: [-2.0, 0.0, 2.0]
  intervention.layer: [0, 1]
metrics: [logits, kl, {{logit_diff: {{strings: [" Paris", " Rome"]}}}}]
"""


def spec_text(model: Path | str, text: list[str] = TEXT, hook: str = "resid_pre", position: str = "all") -> str:
    return SPEC.format(model=model, text=json.dumps(text), hook=hook, position=position)


@pytest.mark.parametrize("hook, head, width, position", [("resid_pre", None, 32, "all"), ("z\n  head: 1", 1, 8, "last"),
                                                         ("mlp_out", None, 32, "1")])
def test_a_steer_on_a_pretrained_gpt2_equals_run_with_hooks(project, gpt2, hook, head, width, position):
    vector = np.linspace(-1, 1, width).astype(np.float32)
    np.save(project / "v.npy", vector)
    spec = write_spec(project, spec_text(gpt2, hook=hook, position=position))
    ds = runner.run(spec)
    assert (ds.status == "ok").all()
    model = runner.load_model(spec)        # the bridge the run used, for our own hooks
    tokens = model.to_tokens(TEXT)         # TransformerLens's own tokenization: BOS, then the words
    assert tokens.shape == (3, 6) and ds.sample_last_token.values.tolist() == tokens[:, -1].tolist()
    short = hook.split()[0]
    paris, rome = (model.tokenizer.convert_tokens_to_ids(w) for w in ("Paris", "Rome"))
    for layer in (0, 1):
        name = f"blocks.{layer}.attn.hook_{short}" if short == "z" else f"blocks.{layer}.hook_{short}"
        for c in (-2.0, 0.0, 2.0):
            def steer(x, hook):
                x = x.clone()
                at = slice(None) if position == "all" else (-1 if position == "last" else int(position))
                if head is None:
                    x[:, at] += c * torch.from_numpy(vector)
                else:
                    x[:, at, head] += c * torch.from_numpy(vector)
                return x

            with torch.inference_mode():
                expected = model.run_with_hooks(tokens, fwd_hooks=[(name, steer)])[:, -1].numpy()
            point = ds.sel(coefficient=c, layer=layer)
            np.testing.assert_allclose(point.logits.values, expected, atol=1e-5, rtol=0)
            np.testing.assert_allclose(point.logit_diff.values, expected[:, paris] - expected[:, rome], atol=1e-5)
    assert float(abs(ds.logits.sel(coefficient=2.0) - ds.logits.sel(coefficient=0.0)).max()) > 1e-3
    assert ds.logit_diff.attrs["long_name"] == "logit[' Paris'] - logit[' Rome'] at the last position"


def test_text_is_tokenized_alike_at_plan_and_run_time_and_the_model_files_identify_the_points(project, gpt2):
    from runner.execute.inputs import make_inputs
    from runner.plan.facts import token_array

    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    plan = runner.compile_plan(write_spec(project, spec_text(gpt2)))
    spec = plan.spec_of((0, 0))
    sizes = model_sizes(spec.model, project)
    planned = token_array(spec.data, sizes.d_vocab, 0, sizes)
    model = runner.load_model(project / "spec.yaml")
    run = make_inputs(spec.data, model, project, 0)
    assert planned.tolist() == run.tolist() == model.to_tokens(TEXT).tolist()
    assert {Path(p).name for p in plan.reads} >= {"config.json", "model.safetensors", "tokenizer.json"}


@pytest.mark.parametrize("model_type", ["gpt2", "gpt_neo", "gpt_bigcode"])
def test_passes_from_a_cached_residual_are_exact_on_every_architecture_runner_accepts(tmp_path, model_type):
    """runner's folded passes start at the edited block (run_from): each accepted architecture must allow it."""
    from runner.models.pretrained import load, read_sizes
    from runner.models.transformer import run_from

    folder = save_model(tmp_path / model_type, model_type)
    assert read_sizes(folder, model_type).n_layers == 2
    model = load(folder)
    tokens = model.to_tokens(["The capital of France is a city and Rome is", "Berlin and Paris and Rome is a city of"])
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens)
        for layer in (0, 1):
            resid = cache[f"blocks.{layer}.hook_resid_pre"]
            torch.testing.assert_close(run_from(model, resid, layer), logits, atol=1e-5, rtol=0)
            last = run_from(model, resid, layer, slice(-1, None), last_only=True)
            torch.testing.assert_close(last, logits[:, -1:], atol=1e-5, rtol=0)


def test_a_hub_name_is_read_from_the_hugging_face_cache_offline(project, gpt2, monkeypatch):
    from huggingface_hub import constants

    cache = project / "hf-cache"
    snapshot = cache / "models--tiny--gpt2" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in gpt2.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (cache / "models--tiny--gpt2" / "refs").mkdir()
    (cache / "models--tiny--gpt2" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    ds = runner.run(write_spec(project, spec_text("tiny/gpt2")))
    assert (ds.status == "ok").all() and ds.logits.sizes["vocab"] == len(WORDS)


# ---------------------------------------------------------------- refusals: exit 2, located, no traceback


def refused(project: Path, text: str) -> str:
    """What ``runner validate`` says of a spec it refuses (exit 2, the place first, no traceback)."""
    spec = write_spec(project, text)
    done = cli("validate", str(spec), cwd=project, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith(f"error: {spec}:"), done.stderr
    return done.stderr


def test_a_missing_folder_or_unknown_hub_name_without_a_network_is_refused(project, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(project / "hf-home"))   # an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = refused(project, spec_text("models/nowhere"))
    assert "model.pretrained: no model folder" in message and "not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE is set" in message
    # without HF_HUB_OFFLINE the hub is probed (here: a closed port) for a few seconds, not waited for
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    message = refused(project, spec_text("no-such-org/no-such-model"))
    assert "the hub cannot be reached from here (no connection)" in message
    assert "is not a Hugging Face hub name" in refused(project, spec_text("./not/a/../folder"))


def test_text_data_needs_a_pretrained_model(project):
    text = spec_text("x").replace("model: {pretrained: x}", "model:\n  transformer: {n_layers: 2, d_model: 32, "
                                  "n_heads: 4, d_vocab: 20, n_ctx: 16}")
    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    message = refused(project, text)
    assert "data.text: text is tokenized by a pretrained model's tokenizer" in message


def test_strings_need_a_pretrained_model(project):
    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    text = spec_text("x").replace("model: {pretrained: x}", "model:\n  transformer: {n_layers: 2, d_model: 32, "
                                  "n_heads: 4, d_vocab: 20, n_ctx: 16}").replace(
        f"text: {json.dumps(TEXT)}", "tokens: [[1, 2, 3]]")
    assert "metrics[2].logit_diff.strings: strings name tokens by their text" in refused(project, text)


def test_rows_of_unequal_length_and_strings_of_several_tokens_are_refused(project, gpt2):
    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    message = refused(project, spec_text(gpt2, text=["The capital of France is", "Rome is a city"]))
    assert "data.text: every row must tokenize to the same number of tokens" in message
    assert "row 0 ('The capital of France is') has 6, row 1 ('Rome is a city') has 5" in message
    message = refused(project, spec_text(gpt2).replace('" Rome"', '" Rome is"'))
    assert "metrics[2].logit_diff.strings[1]: ' Rome is' is 2 tokens of the model's tokenizer" in message


def test_unsupported_architectures_and_pickled_weights_are_refused(project):
    rotary = project / "llama-tiny"
    rotary.mkdir()
    (rotary / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                                    "num_hidden_layers": 2, "hidden_size": 32,
                                                    "num_attention_heads": 4, "vocab_size": 15}))
    (rotary / "model.safetensors").write_bytes(b"")
    np.save(project / "v.npy", np.ones(32, dtype=np.float32))
    message = refused(project, spec_text("llama-tiny"))
    assert "'llama-tiny' is a 'llama' model; runner runs pretrained gpt2, gpt_neo, gpt_bigcode models" in message
    pickled = project / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"")
    assert "its weights are pickles (pytorch_model.bin), which runner never loads" in refused(project,
                                                                                             spec_text("pickled"))
